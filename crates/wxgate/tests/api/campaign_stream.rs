//! Campaigns streamed in: NDJSON with its settings on the first line or in the query, a CSV
//! arriving in tiny pieces (records and a byte order mark cut across them) whose bad last row
//! is named by its line and leaves nothing behind, and the size limit of the JSON form.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use wxgate::config::TokenApi;
use wxsim::SimConfig;

use crate::helpers::*;

async fn shop() -> TestApp {
    spawn_with(
        SimConfig::default(),
        vec![crate::helpers::shop(TokenApi::Stable)],
        |_| {},
    )
    .await
}

const Q: &str = "app=shop&type=template&template_id=TPL_ORDER";

impl TestApp {
    /// POSTs `body` as `content_type`, in pieces of `piece` bytes.
    async fn upload(
        &self,
        query: &str,
        content_type: &str,
        body: Vec<u8>,
        piece: usize,
    ) -> (StatusCode, Value) {
        let stream = tokio_util::io::ReaderStream::with_capacity(std::io::Cursor::new(body), piece);
        let resp = self
            .http
            .post(format!("{}/v1/campaigns?{query}", self.base))
            .bearer_auth(ADMIN)
            .header("content-type", content_type)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn stored_messages(&self) -> usize {
        let (s, v) = self
            .call("GET", "/v1/messages?app=shop", Some(ADMIN), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["messages"].as_array().unwrap().len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ndjson_campaign_takes_its_settings_from_the_first_line_or_the_query() {
    let app = shop().await;
    let body = concat!(
        r#"{"app":"shop","type":"template","template_id":"TPL_ORDER","data":{"thing1":"Mug","amount2":"¥1.00","time3":"10:00"}}"#,
        "\n\n",
        r#"{"to":"oNdjson1","data":{"character_string4":"A1"}}"#,
        "\n",
        r#"  {"to":"oNdjson2","data":{"character_string4":"A2"}}  "#,
        "\r\n",
        r#"{"to":"oNdjson1","data":{"character_string4":"again"}}"#,
        "\n"
    );
    let (s, v) = app
        .upload("", "application/x-ndjson", body.as_bytes().to_vec(), 5)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        (v["total"].as_i64(), v["duplicates_skipped"].as_i64()),
        (Some(2), Some(1)),
        "{v}"
    );
    let c = app
        .campaign_done(v["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(c["counts"]["sent"], 2, "{c}");

    // Settings in the query; a broken line is named, and nothing is stored.
    let body = "{\"to\":\"oNdjson3\",\"data\":{\"thing1\":\"a\",\"amount2\":\"¥1.00\",\"time3\":\"10:00\",\"character_string4\":\"B\"}}\n\
                {\"to\":\"oNdjson4\",\"data\":{\"thing1\":\"b\"}}\n\
                {\"to\": oops}\n";
    let before = app.stored_messages().await;
    let (s, v) = app.upload(Q, "application/x-ndjson", body.into(), 64).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["errors"][0]["field"], "line 3", "{v}");
    assert_eq!(v["errors"][0]["rule"], "invalid_recipient", "{v}");
    assert_eq!(
        app.stored_messages().await,
        before,
        "nothing of it is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_arriving_in_pieces_names_the_line_of_its_bad_row_and_leaves_nothing() {
    let app = shop().await;
    // 5,000 rows: more than two store chunks are written before the bad last row is read.
    let mut csv = b"\xEF\xBB\xBFto,thing1,amount2,time3,character_string4\r\n".to_vec();
    for i in 0..5_000 {
        csv.extend_from_slice(
            format!("oPiece{i:05},\"Mug, blue\",¥1.00,10:00,A{i}\r\n").as_bytes(),
        );
    }
    let good = csv.clone();
    csv.extend_from_slice(format!("oPieceLast,{},¥1.00,10:00,Z\r\n", "x".repeat(25)).as_bytes());
    let (s, v) = app.upload(Q, "text/csv", csv, 7).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // The header is line 1.
    let message = v["errors"][0]["message"].as_str().unwrap();
    assert!(message.ends_with("(CSV line 5002)"), "{v}");
    assert_eq!(
        v["errors"][0]["field"], "recipients[5000].data.thing1",
        "{v}"
    );
    assert_eq!(app.stored_messages().await, 0, "nothing of it is stored");

    let (s, v) = app.upload(Q, "text/csv", good, 4096).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["total"], 5_000, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_campaign_over_its_limit_is_refused_with_413() {
    let app = shop().await;
    let mut body = String::from(
        r#"{"app":"shop","type":"template","template_id":"TPL_ORDER","data":{"thing1":"x"},"recipients":["#,
    );
    let one = r#"{"to":"oBigJsonRecipient000000000"},"#;
    while body.len() <= wxgate::api::MAX_JSON_CAMPAIGN_BYTES {
        body.push_str(one);
    }
    body.push_str(r#"{"to":"oLast"}]}"#);
    let (s, v) = app
        .upload("", "application/json", body.into(), 256 * 1024)
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["code"], "payload_too_large", "{v}");
    assert!(v["message"].as_str().unwrap().contains("text/csv"), "{v}");
}
