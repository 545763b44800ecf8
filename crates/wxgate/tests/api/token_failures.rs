//! Invariant 4 and the breaker: configuration errors and quota windows never loop, transient
//! errors get bounded retries, the daily budget caps fetches, the last good token is served.

use std::time::Duration;

use reqwest::StatusCode;
use wxgate::config::{AppKind, TokenApi};
use wxsim::{FaultScope, Faults, SimConfig};

use crate::helpers::*;

#[tokio::test]
async fn a_wrong_secret_is_a_clear_error_and_never_a_retry_loop() {
    let bad = app(
        "shop",
        AppKind::OfficialAccount,
        "wxdemo_oa",
        "wrong-secret",
        TokenApi::Stable,
    );
    let app = spawn_with(SimConfig::default(), vec![bad], |_| {}).await;
    for _ in 0..50 {
        let (s, v) = app
            .call("GET", "/v1/apps/shop/token", Some(ADMIN), None)
            .await;
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
        assert_eq!(v["code"], "app_misconfigured");
        assert_eq!(v["wechat_errcode"], 40125);
        assert!(v["message"].as_str().unwrap().contains("secret"), "{v}");
        assert!(
            !v.to_string().contains("wrong-secret"),
            "the secret leaked: {v}"
        );
    }
    assert_eq!(
        app.fetches("wxdemo_oa"),
        1,
        "one upstream call for 50 requests"
    );
    // The breaker lets one probe through after its cool-down, not more.
    app.clock.advance(Duration::from_secs(301));
    for _ in 0..10 {
        app.call("GET", "/v1/apps/shop/token", Some(ADMIN), None)
            .await;
    }
    assert_eq!(app.fetches("wxdemo_oa"), 2);
}

#[tokio::test]
async fn rotating_the_secret_fixes_a_misconfigured_app_at_once() {
    let app = spawn_with(SimConfig::default(), vec![], |_| {}).await;
    let (s, v) = app
        .call(
            "POST",
            "/v1/apps",
            Some(ADMIN),
            Some(serde_json::json!({
                "id": "shop", "kind": "official_account", "appid": "wxdemo_oa", "secret": "wrong"
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _) = app
        .call("GET", "/v1/apps/shop/token", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    let (s, v) = app
        .call(
            "PUT",
            "/v1/apps/shop/secret",
            Some(ADMIN),
            Some(serde_json::json!({"secret": "demo-oa-secret"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(app.use_token(&app.token("shop").await).await, 0);
}

#[tokio::test]
async fn the_daily_budget_stops_fetching_with_a_clear_error() {
    let mut shop = shop(TokenApi::Classic);
    shop.daily_fetch_budget = Some(2);
    let app = spawn_with(SimConfig::default(), vec![shop], |_| {}).await;
    let t1 = app.token("shop").await;
    let (_, v) = app.invalidate("shop", &t1).await;
    let t2 = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(app.fetches("wxdemo_oa"), 2);
    app.clock.advance(Duration::from_secs(31)); // past the report throttle
    let (s, v) = app.invalidate("shop", &t2).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["code"], "fetch_budget_exhausted");
    assert!(v["retry_after_secs"].as_i64().unwrap() > 0);
    assert_eq!(
        app.fetches("wxdemo_oa"),
        2,
        "no upstream call past the budget"
    );
    // A new Shanghai day brings a new budget.
    app.clock.advance(Duration::from_secs(86_400));
    assert_eq!(app.use_token(&app.token("shop").await).await, 0);
    assert_eq!(app.fetches("wxdemo_oa"), 3);
}

#[tokio::test]
async fn system_busy_gets_bounded_retries_then_a_short_breaker() {
    let app = spawn_app().await;
    app.sim.set_faults(Faults {
        busy_rate: 1.0,
        scope: FaultScope::Token,
        ..Faults::default()
    });
    let (s, v) = app
        .call("GET", "/v1/apps/shop/token", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(v["code"], "wechat_unavailable");
    assert_eq!(v["wechat_errcode"], -1);
    let busy = app.sim.all_stats().faults.busy;
    assert_eq!(busy, 4, "one try and three retries (token.fetch_retries)");
    for _ in 0..20 {
        app.call("GET", "/v1/apps/shop/token", Some(ADMIN), None)
            .await;
    }
    assert_eq!(
        app.sim.all_stats().faults.busy,
        4,
        "no calls while the breaker is open"
    );
    app.sim.set_faults(Faults::default());
    app.clock.advance(Duration::from_secs(6));
    assert_eq!(app.use_token(&app.token("shop").await).await, 0);
}

#[tokio::test]
async fn quota_exhaustion_opens_the_breaker_and_the_last_good_token_is_served() {
    let mut sim_cfg = SimConfig::default();
    sim_cfg.apps[0].token_daily_limit = 1;
    let app = spawn_with(sim_cfg, vec![shop(TokenApi::Classic)], |_| {}).await;
    app.skip_to_morning();
    let t1 = app.token("shop").await;
    // Ten minutes before expiry the refresher tries, gets 45009, and keeps serving t1.
    app.clock.advance(Duration::from_secs(7200 - 9 * 60));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = app.sim.stats("wxdemo_oa").unwrap();
    assert_eq!(stats.token_fetch_errors.get(&45009), Some(&1), "{stats:?}");
    for _ in 0..20 {
        assert_eq!(
            app.token("shop").await,
            t1,
            "the last good token while it lives"
        );
    }
    assert_eq!(
        app.sim
            .stats("wxdemo_oa")
            .unwrap()
            .token_fetch_errors
            .get(&45009),
        Some(&1)
    );
    // Once it is dead, a clear quota error with the WeChat errcode; still no upstream call.
    app.clock.advance(Duration::from_secs(10 * 60));
    let (s, v) = app
        .call("GET", "/v1/apps/shop/token", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["code"], "wechat_quota_exhausted");
    assert_eq!(v["wechat_errcode"], 45009);
    assert_eq!(app.fetches("wxdemo_oa"), 2);
}

/// A caller that reports every token it gets (wrong app, buggy client) cannot spend the budget:
/// reports replace a token at most once per 30 s.
#[tokio::test]
async fn a_caller_reporting_every_token_cannot_spend_the_budget() {
    let app = spawn_with(SimConfig::default(), vec![shop(TokenApi::Classic)], |_| {}).await;
    let mut token = app.token("shop").await;
    let mut results = Vec::new();
    for _ in 0..200 {
        let (s, v) = app.invalidate("shop", &token).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        results.push(v["result"].as_str().unwrap().to_string());
        token = v["access_token"].as_str().unwrap().to_string();
    }
    assert_eq!(results[0], "applied");
    assert!(results[1..].iter().all(|r| r == "throttled"), "{results:?}");
    assert_eq!(
        app.fetches("wxdemo_oa"),
        2,
        "one initial fetch and one replacement"
    );
    app.clock.advance(Duration::from_secs(31));
    let (_, v) = app.invalidate("shop", &token).await;
    assert_eq!(v["result"], "applied");
    assert_eq!(app.fetches("wxdemo_oa"), 3);
}

/// During a long WeChat outage the breaker's cool-down doubles with each failure in a row, so
/// ten minutes of callers every 5 s cost a few dozen attempts, not hundreds.
#[tokio::test]
async fn an_outage_costs_a_bounded_number_of_attempts() {
    let app = spawn_app().await;
    app.sim.set_faults(Faults {
        busy_rate: 1.0,
        scope: FaultScope::Token,
        ..Faults::default()
    });
    for _ in 0..120 {
        let (s, _) = app
            .call("GET", "/v1/apps/shop/token", Some(ADMIN), None)
            .await;
        assert_ne!(s, StatusCode::OK);
        app.clock.advance(Duration::from_secs(5));
    }
    let attempts = app.sim.all_stats().faults.busy;
    // Cycles of 4 attempts at about 0, 5, 15, 35, 75, 155, 315 s and then every 5 min.
    assert!(attempts <= 40, "{attempts} attempts in 10 minutes");
    app.sim.set_faults(Faults::default());
    app.clock.advance(Duration::from_secs(301));
    assert_eq!(
        app.use_token(&app.token("shop").await).await,
        0,
        "recovers after the outage"
    );
}
