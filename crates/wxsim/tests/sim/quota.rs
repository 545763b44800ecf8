//! Quota management: `clear_quota`, `clear_quota/v2` and `openapi/quota/get`.

use serde_json::{Value, json};
use wxsim::{AppSpec, SimConfig};

use crate::helpers::*;

/// One OA with a daily token limit of 2, at the start of a Shanghai day.
async fn tight_oa() -> Sim {
    let mut spec = AppSpec::official_account(OA, OA_SECRET);
    spec.token_daily_limit = 2;
    let s = Sim::start(SimConfig {
        apps: vec![spec],
        ..SimConfig::empty()
    })
    .await;
    s.align_day();
    s
}

async fn clear(s: &Sim, token: &str, appid: &str) -> Value {
    let path = format!("/cgi-bin/clear_quota?access_token={token}");
    s.post(&path, &json!({"appid": appid})).await
}

async fn clear_v2(s: &Sim, appid: &str, secret: &str) -> Value {
    let body = json!({"appid": appid, "appsecret": secret});
    s.post("/cgi-bin/clear_quota/v2", &body).await
}

async fn quota(s: &Sim, token: &str, cgi_path: &str) -> Value {
    let path = format!("/cgi-bin/openapi/quota/get?access_token={token}");
    s.post(&path, &json!({"cgi_path": cgi_path})).await
}

#[tokio::test]
async fn clear_quota_resets_the_daily_token_counter() {
    let s = tight_oa().await;
    s.token(OA, OA_SECRET).await;
    let t = s.token(OA, OA_SECRET).await;
    assert_err(&s.token_reply(OA, OA_SECRET).await, 45009);
    assert_ok(&clear(&s, &t, OA).await);
    s.token(OA, OA_SECRET).await;
    s.token(OA, OA_SECRET).await;
    assert_err(&s.token_reply(OA, OA_SECRET).await, 45009);
}

#[tokio::test]
async fn clear_quota_with_another_appid_40013() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    let r = clear(&s, &t, MP).await;
    assert_err(&r, 40013);
    assert_err(&clear(&s, "garbage", OA).await, 40014);
}

#[tokio::test]
async fn clear_quota_11th_in_a_month_48006() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    for _ in 0..5 {
        assert_ok(&clear(&s, &t, OA).await);
    }
    // v2 draws on the same budget.
    for _ in 0..5 {
        assert_ok(&clear_v2(&s, OA, OA_SECRET).await);
    }
    let r = clear(&s, &t, OA).await;
    assert_err(&r, 48006);
    assert!(errmsg(&r).starts_with("forbid to clear quota because of reaching the limit"));
    assert_err(&clear_v2(&s, OA, OA_SECRET).await, 48006);
    // Another account has its own budget.
    assert_ok(&clear_v2(&s, MP, MP_SECRET).await);
}

#[tokio::test]
async fn clear_quota_v2_works_without_a_token() {
    let s = tight_oa().await;
    s.token(OA, OA_SECRET).await;
    s.token(OA, OA_SECRET).await;
    assert_err(&s.token_reply(OA, OA_SECRET).await, 45009);
    assert_err(&clear_v2(&s, OA, "wrong").await, 40125);
    assert_err(&clear_v2(&s, "wxnobody", OA_SECRET).await, 40013);
    assert_err(&s.token_reply(OA, OA_SECRET).await, 45009);
    assert_ok(&clear_v2(&s, OA, OA_SECRET).await);
    s.token(OA, OA_SECRET).await;
}

#[tokio::test]
async fn quota_get_reports_used_and_remain() {
    let s = Sim::demo().await;
    s.align_day();
    s.token(OA, OA_SECRET).await;
    let t = s.token(OA, OA_SECRET).await;
    assert_ok(&s.template_send(&t, &legacy_body("oUser_0001")).await);

    let r = quota(&s, &t, "/cgi-bin/token").await;
    assert_ok(&r);
    assert_eq!(
        r["quota"],
        json!({"daily_limit": 2000, "used": 2, "remain": 1998})
    );
    assert_eq!(r["rate_limit"]["refresh_second"], 60);
    assert!(r["component_rate_limit"].is_object());
    let r = quota(&s, &t, "/cgi-bin/message/template/send").await;
    assert_eq!(
        r["quota"],
        json!({"daily_limit": 100000, "used": 1, "remain": 99999})
    );
    // A clear shows at once.
    assert_ok(&clear(&s, &t, OA).await);
    assert_eq!(quota(&s, &t, "/cgi-bin/token").await["quota"]["used"], 0);
}

#[tokio::test]
async fn quota_get_bad_path_76003_unknown_path_76021() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    let r = quota(&s, &t, "cgi-bin/token").await;
    assert_err(&r, 76003);
    assert_err(
        &quota(&s, &t, "https://api.weixin.qq.com/cgi-bin/token").await,
        76003,
    );
    let r = quota(&s, &t, "/cgi-bin/no/such/api").await;
    assert_err(&r, 76021);
    assert!(errmsg(&r).starts_with("cgi_path not found, please check"));
}

#[tokio::test]
async fn quota_get_api_of_another_account_type_76022() {
    let s = Sim::demo().await;
    let oa = s.token(OA, OA_SECRET).await;
    let mp = s.token(MP, MP_SECRET).await;
    assert_err(
        &quota(&s, &mp, "/cgi-bin/message/template/send").await,
        76022,
    );
    assert_err(
        &quota(&s, &oa, "/cgi-bin/message/subscribe/send").await,
        76022,
    );
    assert_err(&quota(&s, &oa, "/sns/jscode2session").await, 76022);
    assert_ok(&quota(&s, &mp, "/cgi-bin/message/subscribe/send").await);
}
