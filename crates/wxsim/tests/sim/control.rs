//! The control and statistics API under `/_sim/`, over HTTP.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const FOLLOWER: &str = "oUser_0001";

/// Call the control API; returns the HTTP status and the JSON body.
async fn ctl(s: &Sim, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = s.c.request(method, s.url(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("control call");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn control_stats_over_http() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    assert_ok(&s.template_send(&t, &legacy_body(FOLLOWER)).await);
    assert_err(&s.token_reply(OA, "bad").await, 40125);

    let (code, all) = ctl(&s, Method::GET, "/_sim/stats", None).await;
    assert_eq!(code, 200);
    let oa = &all["apps"][OA];
    // Every call naming the app counts, the failed one too.
    assert_eq!(oa["token_fetches"]["token"], 2);
    assert_eq!(oa["token_fetch_errors"]["40125"], 1);
    assert_eq!(oa["deliveries"], 1);
    assert!(all["apps"][WECOM].is_object(), "{all}");
    assert_eq!(all["faults"]["busy"], 0);
    assert_eq!(all["deliveries_logged"], 1);

    let (code, one) = ctl(&s, Method::GET, &format!("/_sim/stats/{OA}"), None).await;
    assert_eq!(code, 200);
    assert_eq!(&one, oa);
    let typed: wxsim::AppStats = serde_json::from_value(one).unwrap();
    assert_eq!(typed, s.stats(OA));
    let (code, _) = ctl(&s, Method::GET, "/_sim/stats/wxnobody", None).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn control_deliveries_filter_by_app_and_after_seq() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    let m = s.token(MP, MP_SECRET).await;
    for i in 1..=3 {
        assert_ok(
            &s.template_send(&t, &legacy_body(&format!("oUser_000{i}")))
                .await,
        );
    }
    assert_ok(&s.subscribe_send(&m, &sub_body(FOLLOWER)).await);

    let (_, all) = ctl(&s, Method::GET, "/_sim/deliveries", None).await;
    assert_eq!(all["deliveries"].as_array().unwrap().len(), 4);
    let (_, oa) = ctl(&s, Method::GET, &format!("/_sim/deliveries?app={OA}"), None).await;
    let oa = oa["deliveries"].as_array().unwrap().clone();
    assert_eq!(oa.len(), 3);
    assert!(oa.iter().all(|d| d["app"] == OA && d["api"] == "template"));
    let first = oa[0]["seq"].as_u64().unwrap();
    let path = format!("/_sim/deliveries?app={OA}&after_seq={first}");
    let (_, later) = ctl(&s, Method::GET, &path, None).await;
    let later = later["deliveries"].as_array().unwrap();
    assert_eq!(later.len(), 2);
    assert_eq!(later[0]["to"], "oUser_0002");
    assert!(later.iter().all(|d| d["seq"].as_u64().unwrap() > first));
}

#[tokio::test]
async fn control_clock_advance_expires_a_token() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    let (code, r) = ctl(
        &s,
        Method::POST,
        "/_sim/clock/advance",
        Some(json!({"secs": 7200})),
    )
    .await;
    assert_eq!(code, 200);
    assert!(r["offset_ms"].as_i64().unwrap() >= 7_200_000, "{r}");
    assert_err(&s.probe(&t).await, 42001);
    assert_eq!(s.h.clock().offset_ms(), 7_200_000);
}

#[tokio::test]
async fn control_put_faults() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    let (code, _) = ctl(
        &s,
        Method::PUT,
        "/_sim/faults",
        Some(json!({"busy_rate": 1.0, "scope": "send"})),
    )
    .await;
    assert_eq!(code, 200);
    let (_, f) = ctl(&s, Method::GET, "/_sim/faults", None).await;
    assert_eq!(
        (f["busy_rate"].as_f64(), f["scope"].as_str()),
        (Some(1.0), Some("send"))
    );
    assert_err(&s.template_send(&t, &legacy_body(FOLLOWER)).await, -1);
    ctl(&s, Method::PUT, "/_sim/faults", Some(json!({}))).await;
    assert_ok(&s.template_send(&t, &legacy_body(FOLLOWER)).await);
    assert_eq!(s.h.all_stats().faults.busy, 1);
    // Unknown fields are refused rather than ignored.
    let (code, _) = ctl(&s, Method::PUT, "/_sim/faults", Some(json!({"bussy": 1}))).await;
    assert!(code >= 400);
}

#[tokio::test]
async fn control_post_apps_adds_an_app_usable_at_once() {
    let s = Sim::start(wxsim::SimConfig::empty()).await;
    let spec = json!({"kind": "wecom", "appid": "wwnew", "agentid": 1000005, "secret": "s3"});
    let (code, r) = ctl(&s, Method::POST, "/_sim/apps", Some(spec.clone())).await;
    assert_eq!((code, r["key"].as_str()), (201, Some("wwnew:1000005")));
    let (code, _) = ctl(&s, Method::POST, "/_sim/apps", Some(spec)).await;
    assert_eq!(code, 400, "a second app with the same key is refused");
    let t = s.wecom_token("wwnew", "s3").await;
    let mut body = text_body("bob", "hi");
    body["agentid"] = 1000005.into();
    assert_ok(&s.wecom_send(&t, &body).await);
    assert_eq!(s.stats("wwnew:1000005").deliveries, 1);

    let oa = json!({"kind": "official_account", "appid": "wxnew", "secret": "s1",
        "templates": [{"id": "T1", "style": "legacy", "keywords": ["keyword1"]}]});
    assert_eq!(ctl(&s, Method::POST, "/_sim/apps", Some(oa)).await.0, 201);
    let t = s.token("wxnew", "s1").await;
    let body =
        json!({"touser": FOLLOWER, "template_id": "T1", "data": {"keyword1": {"value": "x"}}});
    assert_ok(&s.template_send(&t, &body).await);
}

#[tokio::test]
async fn control_patch_app_changes_a_limit() {
    let s = Sim::demo().await;
    s.align_day();
    let (code, spec) = ctl(
        &s,
        Method::PATCH,
        &format!("/_sim/apps/{OA}"),
        Some(json!({"token_daily_limit": 1})),
    )
    .await;
    assert_eq!((code, &spec["token_daily_limit"]), (200, &json!(1)));
    assert_eq!(spec["secret"], OA_SECRET, "the rest of the spec is kept");
    s.token(OA, OA_SECRET).await;
    assert_err(&s.token_reply(OA, OA_SECRET).await, 45009);
    // WeCom keys carry a colon.
    let path = format!("/_sim/apps/{WECOM}");
    let patch = Some(json!({"member_minute_limit": 1}));
    let (code, spec) = ctl(&s, Method::PATCH, &path, patch).await;
    assert_eq!((code, &spec["member_minute_limit"]), (200, &json!(1)));
    let (code, _) = ctl(&s, Method::PATCH, &path, Some(json!({"agentid": 7}))).await;
    assert_eq!(code, 400);
    let (code, _) = ctl(&s, Method::PATCH, "/_sim/apps/nope", Some(json!({}))).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn control_revoke_over_http() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    let (code, r) = ctl(&s, Method::POST, &format!("/_sim/apps/{OA}/revoke"), None).await;
    assert_eq!((code, &r["revoked"]), (200, &json!(1)));
    assert_err(&s.probe(&t).await, 40001);
    assert_eq!(s.stats(OA).token_uses.revoked, 1);
    let t2 = s.token(OA, OA_SECRET).await;
    assert!(s.probe(&t2).await.get("errcode").is_none());
}

#[tokio::test]
async fn control_set_follower_unfollowed_43004() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    assert_ok(&s.template_send(&t, &legacy_body(FOLLOWER)).await);
    let path = format!("/_sim/apps/{OA}/followers/{FOLLOWER}");
    let (code, _) = ctl(&s, Method::PUT, &path, Some(json!({"state": "unfollowed"}))).await;
    assert_eq!(code, 200);
    assert_err(&s.template_send(&t, &legacy_body(FOLLOWER)).await, 43004);
    // And the other way: a name outside the convention can be made a follower.
    let path = format!("/_sim/apps/{OA}/followers/user1");
    ctl(&s, Method::PUT, &path, Some(json!({"state": "follower"}))).await;
    assert_ok(&s.template_send(&t, &legacy_body("user1")).await);
    assert_eq!(s.stats(OA).deliveries, 2);
}

#[tokio::test]
async fn control_put_credits() {
    let s = Sim::demo().await;
    let t = s.token(MP, MP_SECRET).await;
    let body = json!({"openid": FOLLOWER, "template_id": "TPL_SUB", "credits": 2});
    let (code, _) = ctl(
        &s,
        Method::PUT,
        &format!("/_sim/apps/{MP}/credits"),
        Some(body),
    )
    .await;
    assert_eq!(code, 200);
    assert_ok(&s.subscribe_send(&t, &sub_body(FOLLOWER)).await);
    assert_ok(&s.subscribe_send(&t, &sub_body(FOLLOWER)).await);
    assert_err(&s.subscribe_send(&t, &sub_body(FOLLOWER)).await, 43101);
}

#[tokio::test]
async fn control_reset_zeroes_counters() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    assert_ok(&s.template_send(&t, &legacy_body(FOLLOWER)).await);
    s.h.set_faults(wxsim::Faults {
        busy_rate: 1.0,
        ..Default::default()
    });
    assert_err(&s.probe(&t).await, -1);
    s.h.set_faults(wxsim::Faults::default());

    let (code, _) = ctl(&s, Method::POST, "/_sim/reset", None).await;
    assert_eq!(code, 200);
    let all = s.h.all_stats();
    for (key, st) in &all.apps {
        assert_eq!(st, &wxsim::AppStats::default(), "{key}");
    }
    assert_eq!(all.faults, wxsim::FaultStats::default());
    assert_eq!(all.deliveries_logged, 0);
    assert!(s.deliveries(OA).is_empty());
    // Tokens are forgotten; apps are kept and work at once.
    assert_err(&s.probe(&t).await, 40014);
    let t = s.token(OA, OA_SECRET).await;
    assert_ok(&s.template_send(&t, &legacy_body(FOLLOWER)).await);
    assert_eq!(s.stats(OA).deliveries, 1);
}
