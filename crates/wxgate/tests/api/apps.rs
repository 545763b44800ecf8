//! App registry over HTTP: register, list, show, delete, rotate — without restart; validation
//! errors name the field; secrets never come back and are encrypted at rest.

use reqwest::StatusCode;
use serde_json::json;
use wxsim::SimConfig;

use crate::helpers::*;

fn mp_app() -> serde_json::Value {
    json!({"id": "miniapp", "kind": "mini_program", "appid": "wxdemo_mp", "secret": "demo-mp-secret"})
}

#[tokio::test]
async fn an_app_registered_over_http_works_at_once_and_after_a_restart() {
    let mut app = spawn_app().await;
    let (s, v) = app
        .call("POST", "/v1/apps", Some(ADMIN), Some(mp_app()))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["source"], "api");
    assert!(
        !v.to_string().contains("demo-mp-secret"),
        "secret in the response: {v}"
    );
    let t = app.token("miniapp").await;
    assert_eq!(app.use_token(&t).await, 0);
    app.restart().await;
    let (s, v) = app.call("GET", "/v1/apps/miniapp", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(app.use_token(&app.token("miniapp").await).await, 0);
    let raw = std::fs::read(app.cfg.database_url.trim_start_matches("sqlite://")).unwrap();
    let secret = b"demo-mp-secret";
    assert!(
        !raw.windows(secret.len()).any(|w| w == secret),
        "secret stored in clear"
    );
}

#[tokio::test]
async fn bad_registrations_name_the_field() {
    let app = spawn_with(SimConfig::default(), vec![], |_| {}).await;
    let cases = [
        (
            json!({"id": "ops", "kind": "wecom", "corpid": "wwdemo_corp", "secret": "s"}),
            "agentid",
        ),
        (
            json!({"id": "x", "kind": "official_account", "secret": "s"}),
            "appid",
        ),
        (
            json!({"id": "Bad Id!", "kind": "official_account", "appid": "wx1", "secret": "s"}),
            "id",
        ),
        (
            json!({"id": "x", "kind": "telegram", "appid": "wx1", "secret": "s"}),
            "kind",
        ),
    ];
    for (body, field) in cases {
        let (s, v) = app
            .call("POST", "/v1/apps", Some(ADMIN), Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["code"], "invalid_request");
        assert!(
            v["message"].as_str().unwrap().contains(field),
            "{body}: {v}"
        );
    }
}

#[tokio::test]
async fn duplicates_conflict_and_config_apps_are_read_only() {
    let app = spawn_app().await;
    let (s, v) = app
        .call("POST", "/v1/apps", Some(ADMIN), Some(json!({
            "id": "shop2", "kind": "official_account", "appid": "wxdemo_oa", "secret": "demo-oa-secret"
        })))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "same WeChat account twice: {v}");
    let (s, v) = app.call("DELETE", "/v1/apps/shop", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["message"].as_str().unwrap().contains("wxgate.toml"));
    let (s, _) = app
        .call("POST", "/v1/apps", Some(ADMIN), Some(mp_app()))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = app
        .call("POST", "/v1/apps", Some(ADMIN), Some(mp_app()))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = app
        .call("DELETE", "/v1/apps/miniapp", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app
        .call("GET", "/v1/apps/miniapp/token", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["code"], "app_not_found");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    let (s, _) = app.call("GET", "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = app.call("GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["mode"], "embedded");
    app.token("shop").await;
    app.token("shop").await;
    let (_, m) = app.call("GET", "/metrics", None, None).await;
    let m = m.as_str().unwrap();
    for series in [
        "wxgate_token_requests_total",
        "wxgate_token_fetches_total",
        "wxgate_token_fetch_seconds",
        "wxgate_token_fetches_today",
        "wxgate_token_breaker_open",
    ] {
        assert!(m.contains(series), "{series} missing from /metrics");
    }
}
