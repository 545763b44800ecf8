//! SIGKILL of the server in the middle of a campaign, then a restart on the same database:
//! the campaign completes, nothing lost, nothing delivered twice (invariants 7–9).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wxsim::{FaultScope, Faults, SimConfig};

use crate::procs::{ADMIN, Instance, free_port, temp_dir};

/// Embedded mode (no Redis) on `dir`'s database, with a short lease so the messages the
/// killed process held are taken over quickly.
async fn serve(dir: &Path, port: u16, sim_base: &str) -> Instance {
    let env = [
        ("WXGATE_PUSH__LEASE", "5s"),
        ("WXGATE_PUSH__SEND_TIMEOUT", "3s"),
        (
            "WXGATE_APPS",
            r#"[{id="shop",kind="official_account",appid="wxdemo_oa",secret="demo-oa-secret"}]"#,
        ),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    Instance::serve(dir, port, sim_base, &env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_campaign_then_restart_completes_it_exactly_once() {
    wxgate::wechat::init_crypto();
    let sim = wxsim::start(SimConfig::default()).await.unwrap();
    // Slow sends, so the kill lands with many messages in flight.
    sim.set_faults(Faults {
        latency_ms: 20,
        scope: FaultScope::Send,
        ..Faults::default()
    });
    let dir = temp_dir("crash");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut gw = serve(&dir, port, &sim.base_url()).await;

    let n = 5_000u64;
    let recipients: Vec<Value> = (0..n)
        .map(|i| json!({ "to": format!("oCrash{i:06}") }))
        .collect();
    let body = json!({
        "app": "shop", "type": "template", "template_id": "TPL_ORDER",
        "data": {"thing1": "Flash sale", "amount2": "¥1.00", "time3": "10:00", "character_string4": "X"},
        "recipients": recipients,
    });
    let r = http
        .post(format!("{base}/v1/campaigns"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Kill it when about a third has been delivered.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.stats("wxdemo_oa").unwrap().deliveries < n / 3 {
        assert!(Instant::now() < deadline, "a third not delivered in 60 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.kill().await;
    let at_kill = sim.stats("wxdemo_oa").unwrap().deliveries;
    assert!(at_kill < n, "the campaign was already over when killed");

    let _gw = serve(&dir, port, &sim.base_url()).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let campaign = loop {
        let v: Value = http
            .get(format!("{base}/v1/campaigns/{id}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["status"] == "done" {
            break v;
        }
        assert!(Instant::now() < deadline, "not done after the restart: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stats = sim.stats("wxdemo_oa").unwrap();
    assert_eq!(campaign["counts"]["sent"], n, "{campaign}");
    assert_eq!(stats.deliveries, n, "every recipient delivered: {stats:?}");
    assert_eq!(stats.duplicate_deliveries, 0, "none twice: {stats:?}");
    println!(
        "crash: killed at {at_kill}/{n} delivered; after restart all {n} sent, {} retries answered by client_msg_id",
        stats.dedupe_hits
    );
}
