//! Secrets and tokens never reach the logs: the real binary at debug level, driven through
//! registration, token fetches, invalidation, a wrong secret, key creation and proxy mode
//! (placeholders, forwarded calls with the real token, a login call with the real secret).

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wxsim::SimConfig;

use crate::helpers::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_tokens_never_appear_in_logs() {
    wxgate::wechat::init_crypto();
    let sim = wxsim::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let port = free_port();
    let proxy_port = free_port();
    let toml = format!(
        "listen = \"127.0.0.1:{port}\"\n\
         proxy_listen = \"127.0.0.1:{proxy_port}\"\n\
         database_url = \"sqlite://{db}\"\n\
         master_key_file = \"{key}\"\n\
         wechat_api_base = \"{base}\"\n\
         wecom_api_base = \"{base}\"\n\
         [[apps]]\nid = \"shop\"\nkind = \"official_account\"\nappid = \"wxdemo_oa\"\nsecret = \"demo-oa-secret\"\n",
        db = dir.join("w.db").display(),
        key = dir.join("w.key").display(),
        base = sim.base_url(),
    );
    std::fs::write(dir.join("wxgate.toml"), toml).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxgate"))
        .arg("--config")
        .arg(dir.join("wxgate.toml"))
        .arg("serve")
        .env("RUST_LOG", "debug")
        .env("WXGATE_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "wxgate serve did not start");
    let call = |method: &str, path: &str, body: Option<Value>| {
        let mut r = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .bearer_auth(ADMIN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let resp = r.send().await.unwrap();
            let s = resp.status();
            (s, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, v) = call("GET", "/v1/apps/shop/token", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let t1 = v["access_token"].as_str().unwrap().to_string();
    // Proxy mode: a placeholder for the key, a call forwarded with the real token after a
    // revocation (refused, the token refreshed, the call replayed with the new one), a login
    // call sent with the real secret.
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let (_, v) = call(
        "POST",
        "/v1/keys",
        Some(json!({"name": "sdk", "apps": ["shop"]})),
    )
    .await;
    let sdk_key = v["key"].as_str().unwrap().to_string();
    let q = [
        ("grant_type", "client_credential"),
        ("appid", "wxdemo_oa"),
        ("secret", sdk_key.as_str()),
    ];
    let answer = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (_, v) = answer(http.get(format!("{proxy}/cgi-bin/token")).query(&q)).await;
    let placeholder = v["access_token"].as_str().unwrap().to_string();
    sim.revoke_token("wxdemo_oa");
    let send = json!({"touser": "oLog0001", "template_id": "TPL_ORDER", "data": {
        "thing1": {"value": "x"}, "amount2": {"value": "¥1.00"}, "time3": {"value": "10:00"},
        "character_string4": {"value": "L1"}}});
    let url = format!("{proxy}/cgi-bin/message/template/send");
    let req = http
        .post(url)
        .query(&[("access_token", placeholder.as_str())]);
    let (_, v) = answer(req.json(&send)).await;
    assert_eq!(v["errcode"], 0, "replayed with the new token: {v}");
    let login = [
        ("appid", "wxdemo_oa"),
        ("secret", sdk_key.as_str()),
        ("code", "oauth-code-secret-value"),
        ("grant_type", "authorization_code"),
    ];
    let url = format!("{proxy}/sns/oauth2/access_token");
    let (s, _) = answer(http.get(url).query(&login)).await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = call("GET", "/v1/apps/shop/token", None).await;
    let t_replayed = v["access_token"].as_str().unwrap().to_string();
    assert_ne!(
        t_replayed, t1,
        "the proxied call's refusal replaced the token"
    );
    let (_, v) = call(
        "POST",
        "/v1/apps/shop/token/invalidate",
        Some(json!({"access_token": t1})),
    )
    .await;
    let t2 = v["access_token"].as_str().unwrap().to_string();
    let (s, _) = call("POST", "/v1/apps", Some(json!({
        "id": "bad", "kind": "mini_program", "appid": "wxdemo_mp", "secret": "a-wrong-secret-value"
    }))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call("GET", "/v1/apps/bad/token", None).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    let (_, v) = call(
        "POST",
        "/v1/keys",
        Some(json!({"name": "svc", "apps": "*"})),
    )
    .await;
    let key = v["key"].as_str().unwrap().to_string();
    let token_url = format!("{base}/v1/apps/shop/token");
    let (s, _) = answer(http.get(&token_url).bearer_auth(&key)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = answer(http.get(&token_url).bearer_auth("wxg_wrong-key-value")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, v) = call("GET", "/v1/apps/shop/token", None).await;
    let t3 = v["access_token"].as_str().unwrap().to_string();
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        logs.contains("app registered"),
        "debug logs were captured: {logs}"
    );
    assert!(
        logs.contains("token fetch failed"),
        "the wrong secret was logged as an event: {logs}"
    );
    let master_key = std::fs::read_to_string(dir.join("w.key")).unwrap();
    for secret in [
        "demo-oa-secret",
        "a-wrong-secret-value",
        ADMIN,
        &key,
        &sdk_key,
        "wxg_wrong-key-value",
        &t1,
        &t2,
        &t3,
        &t_replayed,
        &placeholder,
        "oauth-code-secret-value",
        master_key.trim(),
    ] {
        assert!(
            !logs.contains(secret),
            "a secret or token reached the logs:\n{logs}"
        );
    }
}
