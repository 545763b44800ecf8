//! Message push end to end: the gateway's outbox and workers against the simulator's counts.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use wxgate::config::TokenApi;
use wxsim::{FaultScope, Faults, SimConfig};

use crate::helpers::*;

fn order(to: &str) -> Value {
    json!({
        "app": "shop", "type": "template", "to": to, "template_id": "TPL_ORDER",
        "data": {"thing1": "Blue mug", "amount2": "¥9.90", "time3": "15:01", "character_string4": "A1001"}
    })
}

impl TestApp {
    async fn post_message(&self, body: Value, key: Option<&str>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/messages", self.base))
            .bearer_auth(ADMIN)
            .json(&body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.unwrap();
        let s = resp.status();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    /// Poll the message until it leaves pending/sending (at most 20 s).
    async fn settled(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (s, v) = self
                .call("GET", &format!("/v1/messages/{id}"), Some(ADMIN), None)
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            if !matches!(v["state"].as_str(), Some("pending" | "sending")) {
                return v;
            }
            assert!(Instant::now() < deadline, "message {id} never settled: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn campaign_done(&self, id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (s, v) = self
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
}

async fn shop() -> TestApp {
    spawn_with(
        SimConfig::default(),
        vec![crate::helpers::shop(TokenApi::Stable)],
        |_| {},
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_delivered_once_with_its_attempt_on_record() {
    let app = shop().await;
    let (s, v) = app.post_message(order("oAlice0001"), None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let m = app.settled(v["id"].as_str().unwrap()).await;
    assert_eq!(m["state"], "sent", "{m}");
    assert!(m["msgid"].is_string(), "{m}");
    let log = m["log"].as_array().unwrap();
    assert_eq!(log.len(), 1, "{m}");
    assert_eq!(log[0]["outcome"], "sent");
    assert_eq!(log[0]["errcode"], 0);
    assert!(log[0]["instance"].as_str().is_some_and(|i| !i.is_empty()));
    let stats = app.sim.stats("wxdemo_oa").unwrap();
    assert_eq!(stats.deliveries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_breaks_a_keyword_rule_is_refused_naming_the_field() {
    let app = shop().await;
    let mut body = order("oAlice0001");
    body["data"]["thing1"] = json!("x".repeat(21));
    let (s, v) = app.post_message(body, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "invalid_message");
    assert_eq!(v["errors"][0]["field"], "data.thing1", "{v}");
    assert_eq!(app.sim.stats("wxdemo_oa").unwrap().sends_accepted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_first_message_and_refuses_another_body() {
    let app = shop().await;
    let (s1, v1) = app.post_message(order("oBob00001"), Some("order-42")).await;
    let (s2, v2) = app.post_message(order("oBob00001"), Some("order-42")).await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(v1["id"], v2["id"], "the replay names the first message");
    let (s3, v3) = app
        .post_message(order("oCarol0001"), Some("order-42"))
        .await;
    assert_eq!(s3, StatusCode::CONFLICT, "{v3}");
    app.settled(v1["id"].as_str().unwrap()).await;
    assert_eq!(app.sim.stats("wxdemo_oa").unwrap().deliveries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_at_holds_a_message_until_its_time() {
    let app = shop().await;
    let at = time::OffsetDateTime::from_unix_timestamp(app.clock.now_ms() / 1000 + 3600).unwrap();
    let mut body = order("oDave0001");
    body["send_at"] = json!(
        at.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    let (_, v) = app.post_message(body, None).await;
    let id = v["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, m) = app
        .call("GET", &format!("/v1/messages/{id}"), Some(ADMIN), None)
        .await;
    assert_eq!(m["state"], "pending", "{m}");
    assert_eq!(app.sim.stats("wxdemo_oa").unwrap().deliveries, 0);
    app.clock.advance(Duration::from_secs(3601));
    assert_eq!(app.settled(&id).await["state"], "sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errcodes_by_class_recipient_fails_alone_and_a_revoked_token_costs_no_attempt() {
    let app = shop().await;
    // RECIPIENT: an unfollowed user fails with 43004; nothing else is affected.
    let (_, v) = app.post_message(order("o-unfollowed-1"), None).await;
    let m = app.settled(v["id"].as_str().unwrap()).await;
    assert_eq!(
        (m["state"].as_str(), m["errcode"].as_i64()),
        (Some("failed"), Some(43004)),
        "{m}"
    );
    // REFRESH: the token dies; the send refreshes it once and goes through, attempt unspent.
    let (_, v) = app.post_message(order("oErin0001"), None).await;
    app.settled(v["id"].as_str().unwrap()).await;
    app.sim.revoke_token("wxdemo_oa");
    let (_, v) = app.post_message(order("oFrank0001"), None).await;
    let m = app.settled(v["id"].as_str().unwrap()).await;
    assert_eq!(m["state"], "sent", "{m}");
    assert_eq!(m["attempts"], 1, "the refresh did not count: {m}");
    let outcomes: Vec<_> = m["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].clone())
        .collect();
    assert_eq!(outcomes, vec![json!("refresh"), json!("sent")], "{m}");
    // BACKOFF: system busy is retried and delivered once.
    app.sim.set_faults(Faults {
        busy_rate: 1.0,
        scope: FaultScope::Send,
        ..Faults::default()
    });
    let (_, v) = app.post_message(order("oGina0001"), None).await;
    let id = v["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(800)).await;
    app.sim.set_faults(Faults::default());
    let m = app.settled(&id).await;
    assert_eq!(m["state"], "sent", "{m}");
    assert!(m["log"].as_array().unwrap().len() >= 2, "{m}");
    assert_eq!(app.sim.stats("wxdemo_oa").unwrap().duplicate_deliveries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20k_campaign_with_faults_and_a_revoked_token_delivers_everyone_exactly_once() {
    let app = shop().await;
    app.sim
        .update_app("wxdemo_oa", |a| a.send_daily_limit = Some(1_000_000));
    let n = 20_000;
    let recipients: Vec<Value> = (0..n)
        .map(|i| json!({"to": format!("oUser{i:06}"), "data": {"character_string4": format!("A{i}")}}))
        .collect();
    let body = json!({
        "app": "shop", "type": "template", "template_id": "TPL_ORDER",
        "data": {"thing1": "Sale notice", "amount2": "¥1.00", "time3": "10:00", "character_string4": "X"},
        "recipients": recipients,
    });
    let (s, v) = app
        .call("POST", "/v1/campaigns", Some(ADMIN), Some(body))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["total"], n);
    let id = v["id"].as_str().unwrap().to_string();
    app.sim.set_faults(Faults {
        busy_rate: 0.05,
        drop_rate: 0.01,
        lost_reply_rate: 0.01,
        scope: FaultScope::Send,
        ..Faults::default()
    });
    // Revoke the token half-way through.
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.sim.stats("wxdemo_oa").unwrap().deliveries < n / 2 {
        assert!(
            Instant::now() < deadline,
            "half the campaign not delivered in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.sim.revoke_token("wxdemo_oa");
    let c = app.campaign_done(&id, Duration::from_secs(120)).await;
    let stats = app.sim.stats("wxdemo_oa").unwrap();
    assert_eq!(stats.duplicate_deliveries, 0, "{stats:?}");
    let counts = &c["counts"];
    let sent = counts["sent"].as_u64().unwrap();
    assert_eq!(
        sent + counts["failed"].as_u64().unwrap() + counts["unknown"].as_u64().unwrap(),
        n,
        "{c}"
    );
    assert_eq!(
        stats.deliveries, sent,
        "every message marked sent was delivered once: {c} {stats:?}"
    );
    assert_eq!(
        sent, n,
        "with retries inside the dedupe window every one is delivered: {c}"
    );
    // The faults really happened: lost replies were retried and deduplicated by client_msg_id,
    // busy answers retried, and the revoked token replaced once.
    assert!(stats.dedupe_hits > 0, "{stats:?}");
    let faults = app.sim.all_stats().faults;
    assert!(
        faults.busy > 0 && faults.dropped > 0 && faults.lost_reply > 0,
        "{faults:?}"
    );
    assert!(stats.token_uses.revoked > 0, "{stats:?}");
    assert_eq!(
        stats.token_fetches.total(),
        2,
        "one refresh for the whole campaign: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_campaign_lists_exports_retries_and_cancels() {
    let app = shop().await;
    let mut csv = String::from("to,thing1,character_string4\n");
    for i in 0..49 {
        csv.push_str(&format!("oCsv{i:05},\"Mug, blue\",A{i}\n"));
    }
    csv.push_str(&format!("oCsvLong,{},B1\n", "x".repeat(25)));
    let q = "app=shop&type=template&template_id=TPL_ORDER";
    let resp = app
        .http
        .post(format!("{}/v1/campaigns?{q}", app.base))
        .bearer_auth(ADMIN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    // One row's thing1 is over 20 characters: nothing is accepted, the row is named.
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["errors"][0]["field"], "recipients[49].data.thing1", "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("line 51"),
        "{v}"
    );

    let mut csv = String::from("to,thing1,amount2,time3,character_string4\n");
    for i in 0..49 {
        csv.push_str(&format!("oCsv{i:05},\"Mug, blue\",¥1.00,10:00,A{i}\n"));
    }
    csv.push_str("o-unfollowed-9,Mug,¥1.00,10:00,B1\noCsv00001,dup,¥1.00,10:00,C\n");
    let resp = app
        .http
        .post(format!("{}/v1/campaigns?{q}", app.base))
        .bearer_auth(ADMIN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (v["total"].as_u64(), v["duplicates_skipped"].as_u64()),
        (Some(50), Some(1)),
        "{v}"
    );
    let id = v["id"].as_str().unwrap().to_string();
    let c = app.campaign_done(&id, Duration::from_secs(30)).await;
    assert_eq!(
        (c["counts"]["sent"].as_u64(), c["counts"]["failed"].as_u64()),
        (Some(49), Some(1)),
        "{c}"
    );

    let (s, l) = app
        .call(
            "GET",
            &format!("/v1/messages?campaign={id}&state=failed"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{l}");
    let failed = l["messages"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{l}");
    assert_eq!(
        (
            failed[0]["recipient"].as_str(),
            failed[0]["errcode"].as_i64()
        ),
        (Some("o-unfollowed-9"), Some(43004))
    );
    let (_, l) = app
        .call(
            "GET",
            &format!("/v1/messages?campaign={id}&errcode=43004"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(l["messages"].as_array().unwrap().len(), 1);

    let export = app
        .http
        .get(format!("{}/v1/campaigns/{id}/export", app.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = export.lines().collect();
    assert_eq!(lines.len(), 51, "a header and one line per recipient");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("o-unfollowed-9,failed,43004,")),
        "{export}"
    );
    assert_eq!(lines.iter().filter(|l| l.contains(",sent,")).count(), 49);

    let (s, r) = app
        .call(
            "POST",
            &format!("/v1/campaigns/{id}/retry"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (s, r["requeued"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{r}"
    );
    let c = app.campaign_done(&id, Duration::from_secs(30)).await;
    assert_eq!(c["counts"]["failed"], 1, "still unfollowed: {c}");
    assert_eq!(app.sim.stats("wxdemo_oa").unwrap().deliveries, 49);

    // Cancel: a campaign scheduled for tomorrow never sends.
    let at = time::OffsetDateTime::from_unix_timestamp(app.clock.now_ms() / 1000 + 86_400).unwrap();
    let body = json!({
        "app": "shop", "type": "template", "template_id": "TPL_ORDER",
        "send_at": at.format(&time::format_description::well_known::Rfc3339).unwrap(),
        "data": {"thing1": "Later", "amount2": "¥1.00", "time3": "10:00", "character_string4": "X"},
        "recipients": [{"to": "oLater0001"}, {"to": "oLater0002"}],
    });
    let (_, v) = app
        .call("POST", "/v1/campaigns", Some(ADMIN), Some(body))
        .await;
    let later = v["id"].as_str().unwrap().to_string();
    let (s, c) = app
        .call(
            "POST",
            &format!("/v1/campaigns/{later}/cancel"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (c["counts"]["cancelled"].as_u64(), c["status"].as_str()),
        (Some(2), Some("done")),
        "{c}"
    );
    app.clock.advance(Duration::from_secs(86_401));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        app.sim.stats("wxdemo_oa").unwrap().deliveries,
        49,
        "cancelled messages never went out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_campaign_send_command_uploads_follows_and_summarises() {
    let app = shop().await;
    let dir = temp_dir();
    let file = dir.join("recipients.csv");
    let mut csv = String::from("to,thing1,amount2,time3,character_string4\n");
    for i in 0..19 {
        csv.push_str(&format!("oCli{i:05},Mug,¥1.00,10:00,A{i}\n"));
    }
    csv.push_str("o-unfollowed-cli,Mug,¥1.00,10:00,B\n");
    std::fs::write(&file, csv).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxgate"))
        .args(["campaign", "send", "--server", &app.base, "--app", "shop"])
        .args(["--template-id", "TPL_ORDER", "--csv"])
        .arg(&file)
        .env("WXGATE_TOKEN", ADMIN)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "one failed → exit 3\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("sent       19"), "{stdout}");
    assert!(stdout.contains("errcode 43004: 1"), "{stdout}");
    assert!(stdout.contains("messages/s"), "{stdout}");
    assert!(stderr.contains("20 recipients accepted"), "{stderr}");
    assert!(
        !stderr.contains(ADMIN) && !stdout.contains(ADMIN),
        "the token is never printed"
    );
    assert_eq!(app.sim.stats("wxdemo_oa").unwrap().deliveries, 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_window_pauses_the_app_without_spending_attempts() {
    let app = shop().await;
    app.skip_to_morning();
    app.sim
        .update_app("wxdemo_oa", |a| a.send_daily_limit = Some(1));
    let (_, v) = app.post_message(order("oWin0001"), None).await;
    assert_eq!(
        app.settled(v["id"].as_str().unwrap()).await["state"],
        "sent"
    );
    // The day's quota is used: 45009. The message waits for midnight, attempts unspent.
    let (_, v) = app.post_message(order("oWin0002"), None).await;
    let id = v["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let (_, m) = app
            .call("GET", &format!("/v1/messages/{id}"), Some(ADMIN), None)
            .await;
        if m["log"].as_array().is_some_and(|l| !l.is_empty()) {
            break m;
        }
        assert!(Instant::now() < deadline, "no attempt logged: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(m["state"], "pending", "{m}");
    assert_eq!(m["errcode"], 45009, "{m}");
    assert_eq!(m["attempts"], 0, "a quota window spends no attempt: {m}");
    assert_eq!(m["log"][0]["outcome"], "window");
    // The app is paused: a third message is not even tried before midnight.
    let (_, v3) = app.post_message(order("oWin0003"), None).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        app.sim
            .stats("wxdemo_oa")
            .unwrap()
            .sends_rejected
            .get(&45009),
        Some(&1)
    );
    let (_, m3) = app
        .call(
            "GET",
            &format!("/v1/messages/{}", v3["id"].as_str().unwrap()),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (m3["state"].as_str(), m3["log"].as_array().map(Vec::len)),
        (Some("pending"), Some(0)),
        "{m3}"
    );
    // After midnight (with room for both today) both go out.
    app.sim
        .update_app("wxdemo_oa", |a| a.send_daily_limit = Some(10));
    app.skip_to_morning();
    assert_eq!(app.settled(&id).await["state"], "sent");
    assert_eq!(
        app.settled(v3["id"].as_str().unwrap()).await["state"],
        "sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_template_fails_its_messages_after_a_few_calls_not_one_per_recipient() {
    let app = spawn_with(
        SimConfig::default(),
        vec![crate::helpers::shop(TokenApi::Stable)],
        |c| {
            c.push.per_app_concurrency = 4;
        },
    )
    .await;
    let recipients: Vec<Value> = (0..300)
        .map(|i| json!({"to": format!("oTpl{i:05}")}))
        .collect();
    let body = json!({
        "app": "shop", "type": "template", "template_id": "TPL_NOPE",
        "data": {"thing1": "x"}, "recipients": recipients,
    });
    let (s, v) = app
        .call("POST", "/v1/campaigns", Some(ADMIN), Some(body))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let c = app
        .campaign_done(v["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(c["counts"]["failed"], 300, "{c}");
    let calls = app
        .sim
        .stats("wxdemo_oa")
        .unwrap()
        .sends_rejected
        .get(&40037)
        .copied()
        .unwrap_or(0);
    assert!(
        (1..=8).contains(&calls),
        "{calls} calls for a template WeChat rejects"
    );
    let (_, l) = app
        .call(
            "GET",
            &format!(
                "/v1/messages?campaign={}&errcode=40037&limit=1",
                v["id"].as_str().unwrap()
            ),
            Some(ADMIN),
            None,
        )
        .await;
    let reason = l["messages"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("TPL_NOPE") && reason.contains("template_id"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wecom_partial_failure_is_recorded_per_recipient() {
    let ops = app(
        "ops",
        wxgate::config::AppKind::Wecom,
        "wwdemo_corp",
        "demo-wecom-secret",
        TokenApi::Stable,
    );
    let app = spawn_with(SimConfig::default(), vec![ops], |_| {}).await;
    let post = |to: &str| json!({"app": "ops", "type": "wecom", "to": to, "msgtype": "text", "text": {"content": format!("deploy done for {to}")}});
    let (s, v) = app.post_message(post("alice|invalid1"), None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let m = app.settled(v["id"].as_str().unwrap()).await;
    assert_eq!(m["state"], "sent", "alice got it: {m}");
    assert!(
        m["log"][0]["detail"].as_str().unwrap().contains("invalid1"),
        "{m}"
    );
    let (_, v) = app.post_message(post("invalid2"), None).await;
    let m = app.settled(v["id"].as_str().unwrap()).await;
    assert_eq!(
        (m["state"].as_str(), m["errcode"].as_i64()),
        (Some("failed"), Some(81013)),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_whose_answers_keep_getting_lost_ends_unknown_not_failed() {
    let app = spawn_with(
        SimConfig::default(),
        vec![crate::helpers::shop(TokenApi::Stable)],
        |c| {
            c.push.max_attempts = 2;
        },
    )
    .await;
    app.token("shop").await;
    app.sim.set_faults(Faults {
        lost_reply_rate: 1.0,
        scope: FaultScope::Send,
        ..Faults::default()
    });
    let (_, v) = app.post_message(order("oLost0001"), None).await;
    let m = app.settled(v["id"].as_str().unwrap()).await;
    assert_eq!(m["state"], "unknown", "WeChat may have it: {m}");
    assert_eq!(m["log"].as_array().unwrap().len(), 2, "{m}");
    let stats = app.sim.stats("wxdemo_oa").unwrap();
    assert_eq!(
        (stats.deliveries, stats.dedupe_hits),
        (1, 1),
        "delivered once, the retry deduplicated: {stats:?}"
    );
}
