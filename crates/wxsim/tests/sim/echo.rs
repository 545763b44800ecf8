//! The echo for other token-bearing paths: token check first, then what arrived; faults apply;
//! paths outside WeChat's prefixes still answer 404; every call counts by path.

use serde_json::{Value, json};
use wxsim::Faults;

use crate::helpers::*;

/// SHA-256 of `abc` (FIPS 180-4's first example).
const SHA256_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
/// SHA-256 of nothing.
const SHA256_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

async fn post_raw(s: &Sim, path: &str, content_type: &str, body: &'static [u8]) -> Value {
    let resp =
        s.c.post(s.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    Sim::json_of(resp).await
}

#[tokio::test]
async fn echo_post_with_a_valid_token() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    let path = format!("/cgi-bin/user/info/batchget?lang=zh_CN&access_token={t}&x=1");
    let r = post_raw(&s, &path, "application/json", b"abc").await;
    assert_eq!(
        r,
        json!({"errcode": 0, "errmsg": "ok", "echo": {
            "method": "POST", "path": "/cgi-bin/user/info/batchget", "query": "lang=zh_CN&x=1",
            "content_type": "application/json", "body_len": 3, "body_sha256": SHA256_ABC,
        }})
    );
    assert_eq!(s.calls(OA, "/cgi-bin/user/info/batchget"), 1);
    assert_eq!(s.stats(OA).token_uses.valid, 1);
}

#[tokio::test]
async fn echo_get_on_each_prefix() {
    let s = Sim::demo().await;
    let t = s.token(MP, MP_SECRET).await;
    for path in [
        "/wxa/getpaidunionid",
        "/datacube/getweanalysisappiddailysummarytrend",
        "/card/get",
        "/customservice/kfaccount/add",
        "/merchant/get",
        "/cgi-bin/some/new/api",
    ] {
        let r = s.get(&format!("{path}?access_token={t}")).await;
        assert_ok(&r);
        let e = &r["echo"];
        assert_eq!(e["method"], "GET", "{r}");
        assert_eq!(e["path"], path);
        assert_eq!(e["query"], "");
        assert_eq!(e["content_type"], Value::Null);
        assert_eq!(e["body_len"], 0);
        assert_eq!(e["body_sha256"], SHA256_EMPTY);
        assert_eq!(s.calls(MP, path), 1, "{path}");
    }
}

#[tokio::test]
async fn echo_with_a_revoked_token_40001() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    s.h.revoke_token(OA);
    let path = format!("/cgi-bin/user/get?access_token={t}");
    assert_err(&s.get(&path).await, 40001);
    assert_err(
        &s.get("/cgi-bin/user/get?access_token=garbage").await,
        40014,
    );
    assert_err(&s.get("/cgi-bin/user/get").await, 41001);
    let st = s.stats(OA);
    assert_eq!(st.token_uses.revoked, 1);
    assert_eq!(st.sends_rejected.get(&40001), Some(&1));
    // The revoked call reached WeChat; the garbage ones named no app.
    assert_eq!(st.calls_by_path["/cgi-bin/user/get"], 1);
    // After a new token the same call goes through.
    let t = s.token(OA, OA_SECRET).await;
    assert_ok(&s.get(&format!("/cgi-bin/user/get?access_token={t}")).await);
    assert_eq!(s.calls(OA, "/cgi-bin/user/get"), 2);
}

#[tokio::test]
async fn echo_on_wecom_answers_in_wecom_words() {
    let s = Sim::demo().await;
    let w = s.wecom_token(CORP, WECOM_SECRET).await;
    let path = format!("/cgi-bin/user/get?access_token={w}&userid=zhangsan");
    let r = s.get(&path).await;
    assert_ok(&r);
    assert_eq!(r["echo"]["query"], "userid=zhangsan");
    s.h.revoke_token(WECOM);
    assert_wecom_err(&s.get(&path).await, 40014);
    assert_eq!(s.calls(WECOM, "/cgi-bin/user/get"), 2);
}

#[tokio::test]
async fn echo_is_behind_faults_and_other_paths_stay_404() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    for (method, path) in [
        (reqwest::Method::GET, "/nothing/here".to_string()),
        (
            reqwest::Method::GET,
            format!("/sns/unknown?access_token={t}"),
        ),
        (
            reqwest::Method::PUT,
            format!("/cgi-bin/user/get?access_token={t}"),
        ),
        (reqwest::Method::GET, "/cgi-binx".to_string()),
    ] {
        let resp =
            s.c.request(method.clone(), s.url(&path))
                .send()
                .await
                .unwrap();
        assert_eq!(resp.status(), 404, "{method} {path}");
    }
    // Known routes keep their method rules.
    let resp =
        s.c.get(s.url("/cgi-bin/message/send"))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 405);

    s.h.set_faults(Faults {
        busy_rate: 1.0,
        ..Faults::default()
    });
    let path = format!("/cgi-bin/user/get?access_token={t}");
    assert_err(&s.get(&path).await, -1);
    // Faults are not applied outside WeChat's paths.
    let resp = s.c.get(s.url("/nothing/here")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(s.h.all_stats().faults.busy, 1);
    // A call counts when it arrives, before the fault answers it.
    assert_eq!(s.calls(OA, "/cgi-bin/user/get"), 1);
    assert_eq!(s.stats(OA).token_uses.valid, 0);
}

#[tokio::test]
async fn calls_by_path_counts_the_existing_apis_too() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    s.probe(&t).await;
    s.probe(&t).await;
    s.template_send(&t, &legacy_body("oUser_0001")).await;
    let st = s.stats(OA);
    assert_eq!(st.calls_by_path["/cgi-bin/get_api_domain_ip"], 2);
    assert_eq!(st.calls_by_path["/cgi-bin/message/template/send"], 1);
    // Token fetches carry no token: they are in token_fetches, not here.
    assert!(!st.calls_by_path.contains_key("/cgi-bin/token"));
    // The same numbers over HTTP.
    let all = s.get("/_sim/stats").await;
    assert_eq!(
        all["apps"][OA]["calls_by_path"]["/cgi-bin/get_api_domain_ip"],
        2
    );
    s.h.reset();
    assert!(s.stats(OA).calls_by_path.is_empty());
}

#[tokio::test]
async fn echo_and_media_keep_the_wecom_ip_whitelist() {
    let s = Sim::demo().await;
    let w = s.wecom_token(CORP, WECOM_SECRET).await;
    assert!(s.h.update_app(WECOM, |a| {
        a.ip_whitelist = Some(vec!["10.1.2.3".parse().unwrap()])
    }));
    assert_wecom_err(
        &s.get(&format!("/cgi-bin/user/get?access_token={w}")).await,
        60020,
    );
    assert_wecom_err(&s.upload(&w, "image", "a.jpg", None, b"jpeg").await, 60020);
    assert_eq!(s.stats(WECOM).sends_rejected.get(&60020), Some(&2));
}
