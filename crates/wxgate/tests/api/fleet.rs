//! Fleet mode in one process: three gateways on one Redis (a random key prefix per test), one
//! simulator and one virtual clock, so a whole simulated day runs in seconds. The same
//! behaviour across real processes, SIGKILL and Redis outages is in `tests/fleet`.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::SecretString;
use wxgate::config::{AppConfig, AppKind, TokenApi};
use wxgate::startup::{Gateway, start};
use wxsim::SimConfig;

use crate::helpers::*;

pub fn test_redis_url() -> String {
    std::env::var("WXGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `app` plus two more gateways on the same Redis prefix, simulator and clock.
struct Trio {
    app: TestApp,
    others: Vec<Gateway>,
}

impl Trio {
    async fn start(apps: Vec<AppConfig>) -> Trio {
        let prefix = format!("wxgate-test-{}", wxgate::crypto::random_token(""));
        let redis = test_redis_url();
        let fleet = |cfg: &mut wxgate::config::Config| {
            cfg.redis_url = Some(SecretString::from(redis.clone()));
            cfg.redis_prefix = prefix.clone();
        };
        let app = spawn_with(SimConfig::default(), apps.clone(), fleet).await;
        let mut others = Vec::new();
        for _ in 0..2 {
            let mut cfg = test_config(&app.sim, apps.clone());
            fleet(&mut cfg);
            others.push(start(cfg, app.clock.clone()).await.unwrap());
        }
        Trio { app, others }
    }

    fn bases(&self) -> Vec<String> {
        let mut v = vec![self.app.base.clone()];
        v.extend(self.others.iter().map(Gateway::base_url));
        v
    }

    async fn token_at(&self, base: &str, id: &str) -> String {
        let resp = self
            .app
            .http
            .get(format!("{base}/v1/apps/{id}/token"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let v: serde_json::Value = resp.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }
}

fn oa(id: &str, api: TokenApi) -> AppConfig {
    app(
        id,
        AppKind::OfficialAccount,
        "wxdemo_oa",
        "demo-oa-secret",
        api,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_cold_fetch() {
    let trio = Trio::start(vec![oa("shop", TokenApi::Classic)]).await;
    let mut calls = Vec::new();
    for base in trio.bases() {
        for _ in 0..300 {
            let (http, base) = (trio.app.http.clone(), base.clone());
            calls.push(tokio::spawn(async move {
                let r = http
                    .get(format!("{base}/v1/apps/shop/token"))
                    .bearer_auth(ADMIN)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                let v: serde_json::Value = r.json().await.unwrap();
                v["access_token"].as_str().unwrap().to_string()
            }));
        }
    }
    let mut tokens = std::collections::HashSet::new();
    for c in calls {
        tokens.insert(c.await.unwrap());
    }
    assert_eq!(
        tokens.len(),
        1,
        "every caller on every instance got one token"
    );
    assert_eq!(trio.app.fetches("wxdemo_oa"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_day_refreshes_once_per_period_and_never_serves_a_dead_token() {
    for api in [TokenApi::Classic, TokenApi::Stable] {
        let trio = Trio::start(vec![oa("shop", api)]).await;
        trio.app.skip_to_morning();
        let bases = trio.bases();
        let mut distinct = std::collections::HashSet::new();
        for minute in 0..(24 * 60) {
            for base in &bases {
                let token = trio.token_at(base, "shop").await;
                assert_eq!(
                    trio.app.use_token(&token).await,
                    0,
                    "{api:?} minute {minute}: WeChat rejected the token {base} served"
                );
                distinct.insert(token);
            }
            trio.app.clock.advance(Duration::from_secs(60));
            // Let refreshers and the event stream, woken by the jump, run as in real time.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stats = trio.app.sim.stats("wxdemo_oa").unwrap();
        assert_eq!(stats.token_uses.bad(), 0, "{api:?}: {:?}", stats.token_uses);
        // One fetch per ~2 h period for the whole fleet, as for one instance (see tokens.rs);
        // three instances refreshing on their own would make three times as many.
        let fetches = stats.token_fetches.total();
        assert!((12..=16).contains(&fetches), "{api:?}: {fetches} fetches");
        assert!(
            (12..=14).contains(&distinct.len()),
            "{api:?}: {}",
            distinct.len()
        );
        // Every instance ends on the same token.
        let mut last = std::collections::HashSet::new();
        for base in &bases {
            last.insert(trio.token_at(base, "shop").await);
        }
        assert_eq!(last.len(), 1, "{api:?}: instances disagree");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_reported_on_every_instance_is_refreshed_once() {
    let trio = Trio::start(vec![oa("shop", TokenApi::Classic)]).await;
    let bases = trio.bases();
    let first = trio.token_at(&bases[0], "shop").await;
    for base in &bases {
        assert_eq!(trio.token_at(base, "shop").await, first);
    }
    trio.app.sim.revoke_token("wxdemo_oa");
    let mut reports = Vec::new();
    for base in &bases {
        for _ in 0..100 {
            let (http, base, first) = (trio.app.http.clone(), base.clone(), first.clone());
            reports.push(tokio::spawn(async move {
                let r = http
                    .post(format!("{base}/v1/apps/shop/token/invalidate"))
                    .bearer_auth(ADMIN)
                    .json(&serde_json::json!({ "access_token": first }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                let v: serde_json::Value = r.json().await.unwrap();
                (
                    v["result"].as_str().unwrap().to_string(),
                    v["access_token"].as_str().unwrap().to_string(),
                )
            }));
        }
    }
    let mut applied = 0;
    let mut tokens = std::collections::HashSet::new();
    let mut seen = std::collections::BTreeMap::new();
    for r in reports {
        let (result, token) = r.await.unwrap();
        applied += usize::from(result == "applied");
        *seen.entry((result, token == first)).or_insert(0) += 1;
        tokens.insert(token);
    }
    assert_eq!(applied, 1, "one report acts for the whole fleet: {seen:?}");
    assert_eq!(
        tokens.len(),
        1,
        "every reporter got the one new token: {seen:?}"
    );
    assert!(!tokens.contains(&first));
    assert_eq!(
        trio.app.fetches("wxdemo_oa"),
        2,
        "the first fetch and one refresh"
    );
    for base in &bases {
        let t = trio.token_at(base, "shop").await;
        assert!(tokens.contains(&t), "{base} serves another token");
        assert_eq!(trio.app.use_token(&t).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_reaching_an_instance_that_never_held_the_token_still_acts() {
    let trio = Trio::start(vec![oa("shop", TokenApi::Classic)]).await;
    let bases = trio.bases();
    // Only instance 0 has served (and holds) the token; instance 2 has never seen it.
    let first = trio.token_at(&bases[0], "shop").await;
    trio.app.sim.revoke_token("wxdemo_oa");
    let r = trio
        .app
        .http
        .post(format!("{}/v1/apps/shop/token/invalidate", bases[2]))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({ "access_token": first }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["result"], "applied", "{v}");
    let next = v["access_token"].as_str().unwrap().to_string();
    assert_ne!(
        next, first,
        "the reporter must not get the rejected token back"
    );
    assert_eq!(trio.app.use_token(&next).await, 0);
    assert_eq!(trio.app.fetches("wxdemo_oa"), 2);
    tokio::time::sleep(Duration::from_millis(50)).await;
    for base in &bases {
        assert_eq!(trio.token_at(base, "shop").await, next, "{base}");
    }
}
