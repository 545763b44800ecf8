//! Stock SDKs through the proxy: wechatpy (Python) and node-webot's wechat-api (Node), installed
//! by `crates/wxgate/tests/sdk/setup.sh` (which `.ci/run` calls), each driven by a script in
//! `crates/wxgate/tests/sdk/` against a gateway and wxsim on loopback. They send template
//! messages, upload an image and download it back, log a user in without the app secret, see
//! WeChat revoke the token mid-run without noticing (one refresh upstream), and lose access when
//! their key is deleted. Missing SDKs fail the test, never skip it.

use std::path::PathBuf;

use serde_json::{Value, json};
use wxgate::config::TokenApi;

use crate::helpers::*;
use crate::proxy::{key, mini, proxy, with_proxy};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sdk_path(env: &str, default: &str) -> PathBuf {
    let p = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(default));
    assert!(
        p.exists(),
        "{} is missing: run crates/wxgate/tests/sdk/setup.sh (CI's .ci/run does), or set {env}",
        p.display()
    );
    p
}

async fn gateway() -> TestApp {
    let apps = vec![shop(TokenApi::Classic), mini()];
    with_proxy(apps).await
}

/// Runs `program args…` and returns the JSON object it prints.
async fn run(mut cmd: tokio::process::Command) -> Value {
    let out = cmd.output().await.expect("the SDK script starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the SDK script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// What every SDK run must have seen, and what wxsim must have seen of it.
fn check_common(app: &TestApp, seen: &Value, sends: u64) {
    assert_eq!(seen["token_is_placeholder"], true, "{seen}");
    assert_eq!(seen["first_send"]["errcode"], 0, "{seen}");
    assert_eq!(seen["download_same_bytes"], true, "{seen}");
    assert_eq!(seen["download_content_type"], "image/jpeg", "{seen}");
    assert_eq!(
        seen["upload_after_revoke"], true,
        "replayed, multipart body and all: {seen}"
    );
    assert_eq!(
        seen["after_revoke"],
        json!([0, 0, 0, 0]),
        "the SDK never noticed: {seen}"
    );
    assert_eq!(seen["after_key_deleted"], 40001, "{seen}");
    assert_eq!(seen["token_after_key_deleted"], 40125, "{seen}");
    let stats = app.sim.stats("wxdemo_oa").unwrap();
    assert_eq!(
        stats.token_fetches.total(),
        2,
        "one fetch, then one refresh for the revocation: {stats:?}"
    );
    assert_eq!(
        (stats.deliveries, stats.duplicate_deliveries),
        (sends, 0),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechatpy_works_through_the_proxy_without_the_real_token_or_secret() {
    let python = sdk_path("WXGATE_TEST_PYTHON", "target/sdk/venv/bin/python");
    let app = gateway().await;
    let (oa_id, oa_key) = key(&app, json!(["shop"])).await;
    let (_, mp_key) = key(&app, json!(["mini"])).await;
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(workspace().join("crates/wxgate/tests/sdk/wechatpy_through_proxy.py"))
        .arg(proxy(&app))
        .arg(app.sim.base_url())
        .arg(&app.base)
        .args([ADMIN, oa_id.as_str(), oa_key.as_str(), mp_key.as_str()]);
    let seen = run(cmd).await;
    check_common(&app, &seen, 5);
    let session = &seen["session"];
    assert_eq!(
        session["openid"],
        wxsim::openid_for_code("wxdemo_mp", "wechatpy-code-1"),
        "{seen}"
    );
    assert_eq!(app.sim.stats("wxdemo_mp").unwrap().jscode2session_calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_wechat_api_works_through_the_proxy_by_setting_its_endpoint() {
    let modules = sdk_path("WXGATE_TEST_NODE_MODULES", "target/sdk/node_modules");
    assert!(
        modules.join("wechat-api").exists(),
        "wechat-api is not installed: run crates/wxgate/tests/sdk/setup.sh"
    );
    let app = gateway().await;
    let (oa_id, oa_key) = key(&app, json!(["shop"])).await;
    let mut cmd = tokio::process::Command::new("node");
    cmd.env("NODE_PATH", &modules)
        .arg(workspace().join("crates/wxgate/tests/sdk/wechat_api_through_proxy.js"))
        .arg(proxy(&app))
        .arg(app.sim.base_url())
        .arg(&app.base)
        .args([ADMIN, oa_id.as_str(), oa_key.as_str()]);
    let seen = run(cmd).await;
    check_common(&app, &seen, 5);
}
