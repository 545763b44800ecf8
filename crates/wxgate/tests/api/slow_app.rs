//! A slow app (a low `push.per_app_rate`) with a short lease: messages waiting for their turn
//! keep their leases (renewed by the lease keeper) and the dispatcher claims no further ahead
//! than the app can send, so nothing is fenced, re-sent or turned `unknown` by the wait.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use wxgate::config::TokenApi;
use wxsim::{FaultScope, Faults, SimConfig};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_slower_than_its_lease_is_sent_once_each_without_fencing() {
    let app = spawn_with(SimConfig::default(), vec![shop(TokenApi::Stable)], |c| {
        c.push.per_app_rate = 50;
        c.push.lease = Duration::from_secs(5);
        c.push.send_timeout = Duration::from_secs(3);
    })
    .await;
    // 600 messages at 50/s take 12 s: more than two leases.
    let n = 600;
    let recipients: Vec<Value> = (0..n)
        .map(|i| json!({"to": format!("oSlow{i:05}")}))
        .collect();
    let body = json!({
        "app": "shop", "type": "template", "template_id": "TPL_ORDER",
        "data": {"thing1": "Slow", "amount2": "¥1.00", "time3": "10:00", "character_string4": "X"},
        "recipients": recipients,
    });
    let (s, v) = app
        .call("POST", "/v1/campaigns", Some(ADMIN), Some(body))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (c, most_sending) = follow(&app, &id).await;
    // Claimed no further ahead than the app can send: 2 s of its rate, plus one claim.
    assert!(most_sending <= 200, "{most_sending} claimed at once");
    assert_sent_once_each(&app, &id, &c, n).await;
}

/// Slow WeChat (100 ms a call) and one send at a time: the app's first claim holds messages
/// for longer than the lease, so only renewed leases keep them from being taken over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_waiting_longer_than_the_lease_keep_it() {
    let app = spawn_with(SimConfig::default(), vec![shop(TokenApi::Stable)], |c| {
        c.push.per_app_concurrency = 1;
        c.push.lease = Duration::from_secs(5);
        c.push.send_timeout = Duration::from_secs(3);
    })
    .await;
    app.sim.set_faults(Faults {
        latency_ms: 100,
        scope: FaultScope::Send,
        ..Faults::default()
    });
    let n = 120;
    let recipients: Vec<Value> = (0..n)
        .map(|i| json!({"to": format!("oWait{i:05}")}))
        .collect();
    let body = json!({
        "app": "shop", "type": "template", "template_id": "TPL_ORDER",
        "data": {"thing1": "Slow", "amount2": "¥1.00", "time3": "10:00", "character_string4": "X"},
        "recipients": recipients,
    });
    let (s, v) = app
        .call("POST", "/v1/campaigns", Some(ADMIN), Some(body))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (c, most_sending) = follow(&app, &id).await;
    assert!(
        most_sending > 50,
        "the test needs a deep claim: {most_sending}"
    );
    assert_sent_once_each(&app, &id, &c, n).await;
}

/// Polls the campaign until done: its last state and the most messages seen `sending`.
async fn follow(app: &TestApp, id: &str) -> (Value, u64) {
    let started = Instant::now();
    let mut most_sending = 0;
    loop {
        let (_, c) = app
            .call("GET", &format!("/v1/campaigns/{id}"), Some(ADMIN), None)
            .await;
        most_sending = most_sending.max(c["counts"]["sending"].as_u64().unwrap());
        if c["status"] == "done" {
            return (c, most_sending);
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not done: {c}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every message sent, each reaching WeChat once, with one attempt and one claim.
async fn assert_sent_once_each(app: &TestApp, id: &str, c: &Value, n: usize) {
    assert_eq!(c["counts"]["sent"], n, "{c}");
    assert_eq!(c["counts"]["unknown"], 0, "{c}");
    let stats = app.sim.stats("wxdemo_oa").unwrap();
    assert_eq!(
        (stats.sends_accepted, stats.dedupe_hits, stats.deliveries),
        (n as u64, 0, n as u64),
        "each message reached WeChat exactly once: {stats:?}"
    );
    // No attempt of any message was fenced (its lease taken over while it waited).
    let (_, page) = app
        .call(
            "GET",
            &format!("/v1/messages?campaign={id}&limit=1000"),
            Some(ADMIN),
            None,
        )
        .await;
    let attempts: u64 = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["attempts"].as_u64().unwrap())
        .sum();
    assert_eq!(attempts, n as u64, "one attempt each");
    let (_, m) = app
        .call(
            "GET",
            &format!(
                "/v1/messages/{}",
                page["messages"][n - 1]["id"].as_str().unwrap()
            ),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(m["log"].as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m["log"][0]["fenced"], false, "{m}");
    assert_eq!(
        m["claims"], 1,
        "claimed once, its lease renewed while it waited: {m}"
    );
}
