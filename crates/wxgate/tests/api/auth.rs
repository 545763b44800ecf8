//! Auth: the admin may do everything; API keys are scoped to apps; no key → 401, another app →
//! 403; keys are shown once and stored hashed.

use reqwest::StatusCode;
use serde_json::json;
use wxgate::config::{AppKind, TokenApi};
use wxsim::SimConfig;

use crate::helpers::*;

async fn two_apps() -> TestApp {
    let mp = app(
        "miniapp",
        AppKind::MiniProgram,
        "wxdemo_mp",
        "demo-mp-secret",
        TokenApi::Stable,
    );
    spawn_with(
        SimConfig::default(),
        vec![shop(TokenApi::Stable), mp],
        |_| {},
    )
    .await
}

async fn key_for(app: &TestApp, apps: serde_json::Value) -> String {
    let (s, v) = app
        .call(
            "POST",
            "/v1/keys",
            Some(ADMIN),
            Some(json!({"name": "order-service", "apps": apps})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["key"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn no_or_unknown_credentials_are_401() {
    let app = spawn_app().await;
    let (s, v) = app.call("GET", "/v1/apps/shop/token", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["code"], "unauthorized");
    let (s, _) = app
        .call(
            "GET",
            "/v1/apps/shop/token",
            Some("wxg_not-a-real-key"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = app
        .call("GET", "/v1/apps", Some(&ADMIN[..ADMIN.len() - 1]), None)
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a prefix of the admin token is not the admin token"
    );
}

#[tokio::test]
async fn a_key_is_scoped_to_its_apps() {
    let app = two_apps().await;
    let key = key_for(&app, json!(["shop"])).await;
    let (s, v) = app
        .call("GET", "/v1/apps/shop/token", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app
        .call("GET", "/v1/apps/miniapp/token", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["code"], "forbidden");
    let (s, _) = app
        .call(
            "POST",
            "/v1/apps/miniapp/token/invalidate",
            Some(&key),
            Some(json!({"access_token": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, v) = app.call("GET", "/v1/apps", Some(&key), None).await;
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["shop"], "a key lists only its apps");
    let all = key_for(&app, json!("*")).await;
    let (s, _) = app
        .call("GET", "/v1/apps/miniapp/token", Some(&all), None)
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn keys_cannot_manage_and_deleted_keys_stop_working() {
    let app = two_apps().await;
    let key = key_for(&app, json!("*")).await;
    let (s, _) = app.call("GET", "/v1/keys", Some(&key), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.call("DELETE", "/v1/apps/shop", Some(&key), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = app.call("GET", "/v1/keys", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::OK);
    let listed = v.to_string();
    assert!(
        !listed.contains(&key),
        "the key is shown only once: {listed}"
    );
    let id = v[0]["id"].as_str().unwrap().to_string();
    let (s, _) = app
        .call("DELETE", &format!("/v1/keys/{id}"), Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app
        .call("GET", "/v1/apps/shop/token", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn keys_survive_a_restart_and_are_stored_hashed() {
    let mut app = spawn_app().await;
    let key = key_for(&app, json!(["shop"])).await;
    app.restart().await;
    let (s, _) = app
        .call("GET", "/v1/apps/shop/token", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let db = app
        .cfg
        .database_url
        .trim_start_matches("sqlite://")
        .to_string();
    let raw = std::fs::read(&db).unwrap();
    let needle = key.as_bytes();
    assert!(
        !raw.windows(needle.len()).any(|w| w == needle),
        "the plaintext key is in the database file"
    );
}
