//! WeCom `GET /cgi-bin/gettoken`: one token per (corpid, secret), the same while valid.

use wxsim::{AppSpec, SimConfig};

use crate::helpers::*;

#[tokio::test]
async fn gettoken_same_token_while_valid_with_errcode_0() {
    let s = Sim::demo().await;
    let r1 = s.gettoken_reply(CORP, WECOM_SECRET).await;
    assert_ok(&r1);
    assert_eq!(r1["expires_in"], 7200);
    s.advance_secs(100);
    let r2 = s.gettoken_reply(CORP, WECOM_SECRET).await;
    assert_ok(&r2);
    assert_eq!(access_token(&r1), access_token(&r2));
    let left = r2["expires_in"].as_i64().unwrap();
    assert!((7098..=7100).contains(&left), "remaining lifetime: {left}");
    // Past its lifetime the token answers 42001 and the next fetch mints a new one.
    s.advance_secs(7100);
    let r = s
        .wecom_send(&access_token(&r1), &text_body("bob", "hi"))
        .await;
    assert_wecom_err(&r, 42001);
    let r3 = s.gettoken_reply(CORP, WECOM_SECRET).await;
    assert_ne!(access_token(&r3), access_token(&r1));
    let st = s.stats(WECOM);
    assert_eq!((st.token_fetches.gettoken, st.tokens_minted), (3, 2));
}

#[tokio::test]
async fn gettoken_one_token_per_corp_and_secret() {
    let s = Sim::start(SimConfig {
        apps: vec![
            AppSpec::wecom("wwcorp", 1_000_002, "secret-a"),
            AppSpec::wecom("wwcorp", 1_000_003, "secret-b"),
        ],
        ..SimConfig::empty()
    })
    .await;
    let a = s.wecom_token("wwcorp", "secret-a").await;
    let b = s.wecom_token("wwcorp", "secret-b").await;
    assert_ne!(a, b);
    assert_eq!(s.wecom_token("wwcorp", "secret-a").await, a);
    assert_eq!(s.stats("wwcorp:1000002").tokens_minted, 1);
    assert_eq!(s.stats("wwcorp:1000003").tokens_minted, 1);
    // Each token is its own agent's.
    let mut body = text_body("bob", "hi");
    body["agentid"] = 1_000_003.into();
    assert_ok(&s.wecom_send(&b, &body).await);
    assert_eq!(s.deliveries("wwcorp:1000003").len(), 1);
    assert!(s.deliveries("wwcorp:1000002").is_empty());
}

#[tokio::test]
async fn gettoken_wrong_or_missing_credentials() {
    let s = Sim::demo().await;
    assert_wecom_err(&s.gettoken_reply("wwnobody", WECOM_SECRET).await, 40013);
    assert_wecom_err(&s.gettoken_reply(CORP, "wrong-secret").await, 40001);
    assert_wecom_err(&s.gettoken_reply("", WECOM_SECRET).await, 41002);
    assert_wecom_err(&s.gettoken_reply(CORP, "").await, 41004);
    assert_wecom_err(&s.get("/cgi-bin/gettoken").await, 41002);
    assert_eq!(s.stats(WECOM).tokens_minted, 0);
}

#[tokio::test]
async fn gettoken_revoked_token_answers_40014_and_next_fetch_is_new() {
    let s = Sim::demo().await;
    let old = s.wecom_token(CORP, WECOM_SECRET).await;
    assert_ok(&s.wecom_send(&old, &text_body("bob", "before")).await);
    assert_eq!(s.h.revoke_token(WECOM), 1);
    let r = s.wecom_send(&old, &text_body("bob", "after")).await;
    assert_wecom_err(&r, 40014);
    let new = s.wecom_token(CORP, WECOM_SECRET).await;
    assert_ne!(new, old);
    assert_ok(&s.wecom_send(&new, &text_body("bob", "after")).await);
    let st = s.stats(WECOM);
    assert_eq!(st.token_uses.revoked, 1);
    assert_eq!(st.sends_rejected.get(&40014), Some(&1));
    assert_eq!(st.deliveries, 2);
}

#[tokio::test]
async fn wecom_and_mp_tokens_do_not_cross_platforms() {
    let s = Sim::demo().await;
    let wecom = s.wecom_token(CORP, WECOM_SECRET).await;
    let oa = s.token(OA, OA_SECRET).await;
    assert_err(
        &s.template_send(&wecom, &legacy_body("oUser_0001")).await,
        40014,
    );
    assert_wecom_err(&s.wecom_send(&oa, &text_body("bob", "hi")).await, 40014);
    // The WeCom probe answers in WeCom form.
    let p = s.probe(&wecom).await;
    assert_ok(&p);
    assert!(p["ip_list"].is_array());
}

#[tokio::test]
async fn gettoken_fixed_expires_in_mode() {
    let s = Sim::start(SimConfig {
        wecom_expires_in: wxsim::WecomExpiresIn::Fixed,
        ..SimConfig::default()
    })
    .await;
    let t = s.wecom_token(CORP, WECOM_SECRET).await;
    s.advance_secs(3600);
    let r = s.gettoken_reply(CORP, WECOM_SECRET).await;
    assert_eq!((access_token(&r), &r["expires_in"]), (t, &7200.into()));
}
