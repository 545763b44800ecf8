//! A fleet on PostgreSQL, seen by its operators: the store stopped under load, one registry of
//! apps and keys shared by every instance, and instances with different roles (an API
//! instance whose messages go out at once through the fleet's workers).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use wxsim::{FaultScope, Faults, SimConfig};

use crate::pg::{PrivatePg, TestDatabase};
use crate::pg_push::{OA, broadcast, fleet, http};
use crate::procs::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_campaign_answers_503_then_the_campaign_completes() {
    let _timed = TIMED.lock().await;
    let http = http();
    let sim = wxsim::start(SimConfig::default()).await.unwrap();
    sim.update_app("wxdemo_oa", |a| a.send_daily_limit = Some(10_000_000));
    sim.set_faults(Faults {
        latency_ms: 20,
        scope: FaultScope::Send,
        ..Faults::default()
    });
    let pg = PrivatePg::start().await;
    let db = TestDatabase::create_on(&pg.admin_url()).await;
    let fleet = fleet(&sim, &db, &[("WXGATE_PUSH__PER_APP_RATE", "200")]).await;
    let n = 3_000u64;
    let (s, v) = fleet[0]
        .post(
            &http,
            "/v1/campaigns",
            &broadcast(n as usize, "Down", "TPL_ORDER"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    while sim.stats("wxdemo_oa").unwrap().deliveries < n / 4 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pg.stop().await;
    let stopped = Instant::now();
    let message = json!({
        "app": "shop", "type": "template", "to": "oDuringOutage", "template_id": "TPL_ORDER",
        "data": {"thing1": "Blue mug", "amount2": "¥9.90", "time3": "15:01", "character_string4": "A1"}
    });
    let mut saw_readyz = [false; 3];
    let mut saw_post = false;
    while stopped.elapsed() < Duration::from_secs(20) {
        for (i, inst) in fleet.iter().enumerate() {
            let r = http
                .get(format!("{}/readyz", inst.base))
                .send()
                .await
                .unwrap();
            if r.status() == StatusCode::SERVICE_UNAVAILABLE {
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["status"], "store_unavailable", "{v}");
                saw_readyz[i] = true;
            }
        }
        let (s, v) = fleet[1]
            .post(&http, "/v1/messages", &message, Some("outage-1"))
            .await;
        // Never a 202 for a message that is not committed.
        assert_ne!(s, StatusCode::ACCEPTED, "{v}");
        if s == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(v["code"], "store_unavailable", "{v}");
            assert!(
                v["message"]
                    .as_str()
                    .unwrap()
                    .contains("WXGATE_DATABASE_URL"),
                "{v}"
            );
            saw_post = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        saw_readyz.iter().all(|s| *s),
        "every /readyz said 503: {saw_readyz:?}"
    );
    assert!(saw_post, "POST /v1/messages answered 503 store_unavailable");
    pg.resume().await;
    // The same request, retried with its key, is now accepted once.
    let (s, v) = fleet[1]
        .post(&http, "/v1/messages", &message, Some("outage-1"))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let c = fleet[2]
        .campaign_done(&http, &id, Duration::from_secs(120))
        .await;
    let stats = sim.stats("wxdemo_oa").unwrap();
    assert_eq!(c["counts"]["sent"], n, "nothing lost: {c}");
    assert_eq!(stats.duplicate_deliveries, 0, "nothing doubled: {stats:?}");
    for inst in &fleet {
        assert_eq!(inst.readyz(&http).await["status"], "ready");
    }
}

async fn status_of(
    inst: &Instance,
    http: &reqwest::Client,
    path: &str,
    bearer: &str,
) -> StatusCode {
    inst.get_as(http, path, bearer).await.0
}

/// Polls until `f` is true, at most one second; how long it took.
async fn within_a_second<F, Fut>(what: &str, f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(1), f).await,
        "{what} took over a second"
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_and_keys_changed_on_one_instance_take_effect_on_the_others_within_a_second() {
    let http = http();
    let sim = wxsim::start(SimConfig::default()).await.unwrap();
    let db = TestDatabase::create().await;
    let spec = FleetSpec::new(&sim.base_url(), &test_redis_url(), "[]")
        .with("WXGATE_DATABASE_URL", &db.url);
    let fleet = spec.start(3).await;
    let (a, b) = (&fleet[0], &fleet[1]);
    let app = json!({"id": "mini", "kind": "mini_program", "appid": "wxdemo_mp", "secret": "demo-mp-secret"});
    let (s, v) = a.post(&http, "/v1/apps", &app, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let took = within_a_second("the app on B", || async {
        status_of(b, &http, "/v1/apps/mini/token", ADMIN).await == StatusCode::OK
    })
    .await;
    println!("registry: app registered on A served by B after {took:?}");

    let (s, key) = a
        .post(
            &http,
            "/v1/keys",
            &json!({"name": "svc", "apps": ["mini"]}),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{key}");
    let plain = key["key"].as_str().unwrap().to_string();
    assert_eq!(
        status_of(b, &http, "/v1/apps/mini/token", &plain).await,
        StatusCode::OK
    );
    let r = http
        .delete(format!(
            "{}/v1/keys/{}",
            a.base,
            key["id"].as_str().unwrap()
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let took = within_a_second("the key refused by B", || async {
        status_of(b, &http, "/v1/apps/mini/token", &plain).await == StatusCode::UNAUTHORIZED
    })
    .await;
    println!("registry: key deleted on A refused by B after {took:?}");

    // Survives restarts: an instance started now has the app from the store.
    let late = Instance::start(&spec, 3).await;
    assert_eq!(
        status_of(&late, &http, "/v1/apps/mini/token", ADMIN).await,
        StatusCode::OK
    );

    let r = http
        .delete(format!("{}/v1/apps/mini", b.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    within_a_second("the app gone from A", || async {
        status_of(a, &http, "/v1/apps/mini", ADMIN).await == StatusCode::NOT_FOUND
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_accepted_by_an_api_instance_is_sent_at_once_by_a_worker_instance() {
    let _timed = TIMED.lock().await;
    let http = http();
    let sim = wxsim::start(SimConfig::default()).await.unwrap();
    let db = TestDatabase::create().await;
    let spec =
        FleetSpec::new(&sim.base_url(), &test_redis_url(), OA).with("WXGATE_DATABASE_URL", &db.url);
    let api = Instance::start(&spec.clone().with("WXGATE_ROLES", "api,refresher"), 0).await;
    let workers = spec.clone().with("WXGATE_ROLES", "worker");
    let w1 = Instance::start(&workers, 1).await;
    let _w2 = Instance::start(&workers, 2).await;
    // A worker-only instance serves operations, not the API.
    assert_eq!(
        status_of(&w1, &http, "/v1/apps", ADMIN).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(w1.readyz(&http).await["roles"], json!(["worker"]));
    let mut waits = Vec::new();
    // The first message also waits for the app's first token and send limits: not measured.
    for i in 0..11 {
        let message = json!({
            "app": "shop", "type": "template", "to": format!("oIdle{i:04}"), "template_id": "TPL_ORDER",
            "data": {"thing1": "Blue mug", "amount2": "¥9.90", "time3": "15:01", "character_string4": "A1"}
        });
        let (s, v) = api.post(&http, "/v1/messages", &message, None).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        let id = v["id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        let m = loop {
            let (_, m) = api
                .get_as(&http, &format!("/v1/messages/{id}"), ADMIN)
                .await;
            if m["state"] == "sent" {
                break m;
            }
            assert!(Instant::now() < deadline, "not sent: {m}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        // From commit to the call to WeChat, by the store's clock and the worker's.
        let wait = m["log"][0]["at_ms"].as_i64().unwrap() - m["created_at_ms"].as_i64().unwrap();
        assert_ne!(m["log"][0]["instance"], Value::Null);
        if i > 0 {
            waits.push(wait);
        }
        // Idle again before the next one.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    waits.sort_unstable();
    // Idle workers poll once a second; woken by the store's notification they start at once
    // (seen: 9-14 ms). The median is the 50 ms; the slowest may meet a busy machine.
    assert!(
        waits[4] < 50,
        "half the messages waited over 50 ms for an idle fleet: {waits:?}"
    );
    assert!(
        waits[9] < 300,
        "a message waited {} ms for an idle fleet (all: {waits:?})",
        waits[9]
    );
    println!("wake: 202 to the call to WeChat in {waits:?} ms");
}
