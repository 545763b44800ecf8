//! `Idempotency-Key` on `POST /v1/campaigns`: the same broadcast posted several times with one
//! key (a cron running in several containers) is one campaign, delivered once per recipient.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

fn broadcast(n: usize, thing: &str) -> Value {
    let recipients: Vec<Value> = (0..n)
        .map(|i| json!({ "to": format!("oIdem{i:06}") }))
        .collect();
    json!({
        "app": "shop", "type": "template", "template_id": "TPL_ORDER",
        "data": {"thing1": thing, "amount2": "¥1.00", "time3": "10:00", "character_string4": "X"},
        "recipients": recipients,
    })
}

async fn post(app: &TestApp, body: &Value, key: &str) -> (StatusCode, Value) {
    post_to(&app.http, &app.base, body, key).await
}

async fn post_to(
    http: &reqwest::Client,
    base: &str,
    body: &Value,
    key: &str,
) -> (StatusCode, Value) {
    let r = http
        .post(format!("{base}/v1/campaigns"))
        .bearer_auth(ADMIN)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn done(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v) = app
            .call("GET", &format!("/v1/campaigns/{id}"), Some(ADMIN), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if v["status"] == "done" {
            return v;
        }
        assert!(Instant::now() < deadline, "campaign {id} not done: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_concurrent_posts_of_one_broadcast_with_one_key_make_one_campaign() {
    let app = spawn_app().await;
    let body = broadcast(300, "Flash sale");
    let posts: Vec<_> = (0..4)
        .map(|_| {
            let (http, base, body) = (app.http.clone(), app.base.clone(), body.clone());
            tokio::spawn(async move { post_to(&http, &base, &body, "cron-2026-12-01-0800").await })
        })
        .collect();
    let mut answers = Vec::new();
    for p in posts {
        answers.push(p.await.unwrap());
    }
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|(s, v)| {
            assert_eq!(*s, StatusCode::ACCEPTED, "{v}");
            assert_eq!(v["total"], 300, "{v}");
            v["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one campaign for all four: {answers:?}");
    let replayed = answers
        .iter()
        .filter(|(_, v)| v["replayed"] == true)
        .count();
    assert_eq!(replayed, 3, "{answers:?}");

    let id = ids.into_iter().next().unwrap();
    let c = done(&app, &id).await;
    assert_eq!(c["counts"]["sent"], 300, "{c}");
    let stats = app.sim.stats("wxdemo_oa").unwrap();
    assert_eq!(stats.deliveries, 300, "{stats:?}");
    assert_eq!(stats.duplicate_deliveries, 0, "{stats:?}");

    // Later, the same key again: still the first campaign, nothing sent again.
    let (s, v) = post(&app, &body, "cron-2026-12-01-0800").await;
    assert_eq!(
        (s, v["id"].as_str()),
        (StatusCode::ACCEPTED, Some(id.as_str()))
    );
    assert_eq!(v["replayed"], true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.sim.stats("wxdemo_oa").unwrap().deliveries, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reused_for_another_broadcast_is_a_conflict() {
    let app = spawn_app().await;
    let (s, first) = post(&app, &broadcast(3, "Flash sale"), "k1").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    let (s, v) = post(&app, &broadcast(3, "Other sale"), "k1").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "conflict");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains(first["id"].as_str().unwrap()),
        "names the campaign the key belongs to: {v}"
    );
    // A new key is a new campaign.
    let (s, v) = post(&app, &broadcast(3, "Other sale"), "k2").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_ne!(v["id"], first["id"]);
    assert!(v.get("replayed").is_none(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_upload_replays_only_with_the_same_settings_and_rows() {
    let app = spawn_app().await;
    let csv = "to,thing1,amount2,time3,character_string4\noCsvIdem01,Mug,¥1.00,10:00,A\n";
    let upload = |query: &'static str, body: &'static str| {
        app.http
            .post(format!("{}/v1/campaigns?{query}", app.base))
            .bearer_auth(ADMIN)
            .header("content-type", "text/csv")
            .header("Idempotency-Key", "csv-1")
            .body(body)
            .send()
    };
    let q = "app=shop&type=template&template_id=TPL_ORDER";
    let first: Value = upload(q, csv).await.unwrap().json().await.unwrap();
    // The same settings in another order are the same request.
    let r = upload("template_id=TPL_ORDER&app=shop&type=template", csv)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let again: Value = r.json().await.unwrap();
    assert_eq!(
        (&again["id"], &again["replayed"]),
        (&first["id"], &json!(true))
    );
    // Another template in the query is another request.
    let r = upload("app=shop&type=template&template_id=TPL_LEGACY", csv)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
}
