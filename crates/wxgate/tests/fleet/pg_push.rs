//! Push on a fleet: three real `wxgate serve` processes on one PostgreSQL and one Redis,
//! against wxsim. Any instance accepts, any instance delivers, each recipient gets a message
//! once, and the app's limits are the app's, however many instances run.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use wxsim::{DeliveryFilter, FaultScope, Faults, SimConfig};

use crate::pg::TestDatabase;
use crate::procs::*;

pub const OA: &str =
    r#"[{id="shop",kind="official_account",appid="wxdemo_oa",secret="demo-oa-secret"}]"#;

pub fn http() -> reqwest::Client {
    wxgate::wechat::init_crypto();
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Three instances on `db` and the shared test Redis, with short leases so a dead
/// instance's messages are taken over within seconds; `env` on top.
pub async fn fleet(
    sim: &wxsim::SimHandle,
    db: &TestDatabase,
    env: &[(&str, &str)],
) -> Vec<Instance> {
    let mut spec = FleetSpec::new(&sim.base_url(), &test_redis_url(), OA)
        .with("WXGATE_DATABASE_URL", &db.url)
        .with("WXGATE_PUSH__LEASE", "5s")
        .with("WXGATE_PUSH__SEND_TIMEOUT", "3s");
    for (k, v) in env {
        spec = spec.with(k, v);
    }
    spec.start(3).await
}

/// A template campaign to `n` recipients `o{tag}000000…`.
pub fn broadcast(n: usize, tag: &str, template: &str) -> Value {
    let recipients: Vec<Value> = (0..n)
        .map(|i| json!({ "to": format!("o{tag}{i:06}") }))
        .collect();
    json!({
        "app": "shop", "type": "template", "template_id": template,
        "data": {"thing1": "Flash sale", "amount2": "¥1.00", "time3": "10:00", "character_string4": "X"},
        "recipients": recipients,
    })
}

async fn sim_with_room() -> wxsim::SimHandle {
    let sim = wxsim::start(SimConfig::default()).await.unwrap();
    sim.update_app("wxdemo_oa", |a| a.send_daily_limit = Some(10_000_000));
    sim
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broadcast_posted_to_two_instances_with_one_key_is_sent_once() {
    let (http, sim, db) = (http(), sim_with_room().await, TestDatabase::create().await);
    let fleet = fleet(&sim, &db, &[]).await;
    let n = 5_000;
    let body = broadcast(n, "Cron", "TPL_ORDER");
    // The same cron in two containers, at the same moment, through two instances.
    let posts: Vec<_> = fleet[..2]
        .iter()
        .map(|inst| {
            let (http, base, body) = (http.clone(), inst.base.clone(), body.clone());
            tokio::spawn(async move {
                Instance::attach(&base)
                    .post(&http, "/v1/campaigns", &body, Some("cron-0800"))
                    .await
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for p in posts {
        let (s, v) = p.await.unwrap();
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["total"], n, "{v}");
        ids.insert(v["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "one campaign for both posts");
    let id = ids.into_iter().next().unwrap();
    let c = fleet[2]
        .campaign_done(&http, &id, Duration::from_secs(120))
        .await;
    assert_eq!(c["counts"]["sent"], n, "{c}");
    let stats = sim.stats("wxdemo_oa").unwrap();
    assert_eq!(
        (stats.deliveries, stats.duplicate_deliveries),
        (n as u64, 0),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_finish_a_faulty_campaign_after_one_instance_is_killed() {
    let _timed = TIMED.lock().await;
    let (http, sim, db) = (http(), sim_with_room().await, TestDatabase::create().await);
    let mut fleet = fleet(&sim, &db, &[]).await;
    let n = 20_000u64;
    let (s, v) = fleet[1]
        .post(
            &http,
            "/v1/campaigns",
            &broadcast(n as usize, "Kill", "TPL_ORDER"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    sim.set_faults(Faults {
        busy_rate: 0.05,
        drop_rate: 0.01,
        lost_reply_rate: 0.01,
        scope: FaultScope::Send,
        ..Faults::default()
    });
    let deliveries = || sim.stats("wxdemo_oa").unwrap().deliveries;
    let wait_for = |share: u64| {
        let deadline = Instant::now() + Duration::from_secs(180);
        async move {
            while deliveries() < n * share / 100 {
                assert!(Instant::now() < deadline, "{share}% not delivered in time");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(40).await;
    // SIGKILL, and never restarted: the others must take its leases over.
    fleet[0].kill().await;
    let at_kill = deliveries();
    wait_for(50).await;
    sim.revoke_token("wxdemo_oa");
    let c = fleet[2]
        .campaign_done(&http, &id, Duration::from_secs(240))
        .await;
    let stats = sim.stats("wxdemo_oa").unwrap();
    assert_eq!(
        c["counts"]["sent"],
        n,
        "{c}\n{}",
        not_sent(&http, &fleet[2], &id).await
    );
    assert_eq!(stats.deliveries, n, "every recipient delivered: {stats:?}");
    assert_eq!(stats.duplicate_deliveries, 0, "none twice: {stats:?}");
    let faults = sim.all_stats().faults;
    assert!(
        faults.busy > 0 && faults.dropped > 0 && faults.lost_reply > 0,
        "{faults:?}"
    );
    assert!(stats.token_uses.revoked > 0, "{stats:?}");
    println!(
        "kill: at {at_kill}/{n}; survivors finished; {} re-sends answered by client_msg_id",
        stats.dedupe_hits
    );
}

/// The campaign's messages that were not sent, with every attempt, for a failure message.
pub async fn not_sent(http: &reqwest::Client, inst: &Instance, id: &str) -> String {
    let mut out = String::new();
    for state in ["failed", "unknown"] {
        let (_, page) = inst
            .get_as(
                http,
                &format!("/v1/messages?campaign={id}&state={state}&limit=5"),
                ADMIN,
            )
            .await;
        for m in page["messages"].as_array().into_iter().flatten() {
            let (_, full) = inst
                .get_as(
                    http,
                    &format!("/v1/messages/{}", m["id"].as_str().unwrap()),
                    ADMIN,
                )
                .await;
            out.push_str(&format!("{full}\n"));
        }
    }
    out
}

/// The most deliveries that started within any one second.
fn busiest_second(at_ms: &mut [i64]) -> usize {
    at_ms.sort_unstable();
    let mut most = 0;
    let mut start = 0;
    for end in 0..at_ms.len() {
        while at_ms[end] - at_ms[start] >= 1000 {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_send_at_the_apps_rate_not_three_times_it() {
    let _timed = TIMED.lock().await;
    let (http, sim, db) = (http(), sim_with_room().await, TestDatabase::create().await);
    let fleet = fleet(&sim, &db, &[("WXGATE_PUSH__PER_APP_RATE", "500")]).await;
    // WeChat's own enforcement: over 525 sends in a second (500 + 5 % for where the windows
    // fall) is answered 45011, which would pause the app for the rest of the minute.
    sim.update_app("wxdemo_oa", |a| a.send_rate_per_sec = Some(525));
    sim.set_faults(Faults {
        latency_ms: 20,
        scope: FaultScope::Send,
        ..Faults::default()
    });
    let n = 5_000;
    let (s, v) = fleet[0]
        .post(
            &http,
            "/v1/campaigns",
            &broadcast(n, "Rate", "TPL_ORDER"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap();
    let c = fleet[1]
        .campaign_done(&http, id, Duration::from_secs(120))
        .await;
    assert_eq!(c["counts"]["sent"], n, "{c}");
    let log = sim.deliveries(&DeliveryFilter {
        app: Some("wxdemo_oa".into()),
        limit: Some(n + 100),
        ..DeliveryFilter::default()
    });
    assert_eq!(log.len(), n);
    let stats = sim.stats("wxdemo_oa").unwrap();
    assert_eq!(
        stats.sends_rejected.get(&45011),
        None,
        "wxsim saw more than 525 sends in a second: {stats:?}"
    );
    // Sliding windows measured at wxsim's side include its own timer jitter on this loaded
    // machine (seen: 501-550); three uncoordinated instances would make ~1,500.
    let mut at: Vec<i64> = log.iter().map(|d| d.at_ms).collect();
    let busiest = busiest_second(&mut at);
    assert!(busiest <= 600, "{busiest} sends in one sliding second");
    let span_s = (at[n - 1] - at[0]) as f64 / 1000.0;
    let rate = n as f64 / span_s;
    // The upper bound is the invariant; the lower one says the fleet uses the rate rather than
    // starving. Three gateways, PostgreSQL, wxsim and this test share two cores, and a slot a
    // busy process reaches late is given up (see push/limits/fleet.rs): seen 298-429 msg/s here.
    assert!(
        rate > 250.0,
        "the fleet sent at {rate:.0}/s; it should use most of 500/s"
    );
    println!("rate: busiest second {busiest}, {rate:.0} msg/s over {span_s:.1} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_hold_one_concurrency_limit() {
    let _timed = TIMED.lock().await;
    let (http, sim, db) = (http(), sim_with_room().await, TestDatabase::create().await);
    // WeChat answers -1 (busy) to a fifth concurrent send: sends at once are counted there.
    sim.update_app("wxdemo_oa", |a| a.max_concurrent_sends = Some(4));
    sim.set_faults(Faults {
        latency_ms: 50,
        scope: FaultScope::Send,
        ..Faults::default()
    });
    let fleet = fleet(&sim, &db, &[("WXGATE_PUSH__PER_APP_CONCURRENCY", "4")]).await;
    let n = 600;
    let (s, v) = fleet[0]
        .post(
            &http,
            "/v1/campaigns",
            &broadcast(n, "Conc", "TPL_ORDER"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap();
    let c = fleet[2]
        .campaign_done(&http, id, Duration::from_secs(120))
        .await;
    assert_eq!(c["counts"]["sent"], n, "{c}");
    let stats = sim.stats("wxdemo_oa").unwrap();
    assert_eq!(stats.deliveries, n as u64, "{stats:?}");
    assert_eq!(
        stats.sends_rejected.get(&-1),
        None,
        "never more than 4 sends at once across the fleet: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_template_costs_a_handful_of_calls_for_the_whole_fleet() {
    let (http, sim, db) = (http(), sim_with_room().await, TestDatabase::create().await);
    // 4 sends at once for the whole fleet: before WeChat's first answer, at most 4 calls.
    let fleet = fleet(&sim, &db, &[("WXGATE_PUSH__PER_APP_CONCURRENCY", "4")]).await;
    let n = 3_000;
    let (s, v) = fleet[0]
        .post(
            &http,
            "/v1/campaigns",
            &broadcast(n, "Tpl", "TPL_NOPE"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap();
    let c = fleet[1]
        .campaign_done(&http, id, Duration::from_secs(120))
        .await;
    assert_eq!(c["counts"]["failed"], n, "{c}");
    let stats = sim.stats("wxdemo_oa").unwrap();
    let calls = stats.sends_rejected.get(&40037).copied().unwrap_or(0);
    assert!(
        (1..=10).contains(&calls),
        "{calls} calls with the wrong template across three instances: {stats:?}"
    );
    println!("wrong template: {calls} calls for {n} recipients on three instances");
    let (_, page) = fleet[2]
        .get_as(&http, &format!("/v1/messages?campaign={id}&limit=5"), ADMIN)
        .await;
    assert_eq!(page["messages"][0]["errcode"], 40037, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_rejected_on_one_instance_costs_the_others_no_call() {
    let (http, sim, db) = (http(), sim_with_room().await, TestDatabase::create().await);
    let fleet = fleet(&sim, &db, &[]).await;
    let id = post_one(&http, &fleet[0], "oFirst0001", "TPL_NOPE").await;
    settled(&http, &fleet[0], &id, "failed").await;
    // One instance got 40037 and published it; the others heard it within milliseconds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = 300;
    let (s, v) = fleet[1]
        .post(
            &http,
            "/v1/campaigns",
            &broadcast(n, "Known", "TPL_NOPE"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let c = fleet[2]
        .campaign_done(&http, v["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(c["counts"]["failed"], n, "{c}");
    let stats = sim.stats("wxdemo_oa").unwrap();
    assert_eq!(
        stats.sends_rejected.get(&40037),
        Some(&1),
        "only the first message reached WeChat: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_window_met_on_one_instance_pauses_the_others() {
    let (http, sim, db) = (http(), sim_with_room().await, TestDatabase::create().await);
    // One send a day: the second gets 45009 (until midnight, Shanghai).
    sim.update_app("wxdemo_oa", |a| a.send_daily_limit = Some(1));
    let fleet = fleet(&sim, &db, &[]).await;
    let first = post_one(&http, &fleet[0], "oQuota0001", "TPL_ORDER").await;
    settled(&http, &fleet[0], &first, "sent").await;
    post_one(&http, &fleet[0], "oQuota0002", "TPL_ORDER").await;
    let rejected = || {
        sim.stats("wxdemo_oa")
            .unwrap()
            .sends_rejected
            .get(&45009)
            .copied()
    };
    assert!(eventually(Duration::from_secs(10), || async { rejected() == Some(1) }).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, v) = fleet[1]
        .post(
            &http,
            "/v1/campaigns",
            &broadcast(300, "Quota", "TPL_ORDER"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rejected(),
        Some(1),
        "no instance tried again before the window reopens"
    );
    let (_, c) = fleet[2]
        .get_as(
            &http,
            &format!("/v1/campaigns/{}", v["id"].as_str().unwrap()),
            ADMIN,
        )
        .await;
    assert_eq!(c["counts"]["pending"], 300, "{c}");
}

/// Posts one template message through `inst`; its id.
async fn post_one(http: &reqwest::Client, inst: &Instance, to: &str, template: &str) -> String {
    let one = json!({
        "app": "shop", "type": "template", "to": to, "template_id": template,
        "data": {"thing1": "Blue mug", "amount2": "¥9.90", "time3": "15:01", "character_string4": "A1"}
    });
    let (s, v) = inst.post(http, "/v1/messages", &one, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// Waits (at most 10 s) until the message is in `state`.
async fn settled(http: &reqwest::Client, inst: &Instance, id: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = inst
            .get_as(http, &format!("/v1/messages/{id}"), ADMIN)
            .await;
        if m["state"] == state {
            return;
        }
        assert!(Instant::now() < deadline, "not {state}: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
