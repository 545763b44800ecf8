//! OA/MP token endpoints: `GET /cgi-bin/token` and `POST /cgi-bin/stable_token`.

use serde_json::json;
use wxsim::{AppSpec, SimConfig};

use crate::helpers::*;

/// A world with one OA whose spec the test shapes.
async fn with_oa(f: impl FnOnce(&mut AppSpec)) -> Sim {
    let mut spec = AppSpec::official_account(OA, OA_SECRET);
    f(&mut spec);
    Sim::start(SimConfig {
        apps: vec![spec],
        ..SimConfig::empty()
    })
    .await
}

#[tokio::test]
async fn classic_token_is_new_on_every_call_and_has_no_errcode() {
    let s = Sim::demo().await;
    let r1 = s.token_reply(OA, OA_SECRET).await;
    let r2 = s.token_reply(OA, OA_SECRET).await;
    for r in [&r1, &r2] {
        assert!(r.get("errcode").is_none(), "OA success has no errcode: {r}");
        assert_eq!(r["expires_in"], 7200);
    }
    assert_ne!(access_token(&r1), access_token(&r2));
    let st = s.stats(OA);
    assert_eq!(st.token_fetches.token, 2);
    assert_eq!(st.tokens_minted, 2);
}

#[tokio::test]
async fn classic_previous_token_overlaps_300s_then_40001() {
    let s = Sim::demo().await;
    let old = s.token(OA, OA_SECRET).await;
    let new = s.token(OA, OA_SECRET).await;
    let probe = s.probe(&old).await;
    assert!(probe.get("errcode").is_none(), "{probe}");
    assert!(probe["ip_list"].is_array());
    assert_eq!(s.stats(OA).token_uses.overlap, 1);

    s.advance_secs(299);
    assert!(s.probe(&old).await.get("errcode").is_none());
    assert_eq!(s.stats(OA).token_uses.overlap, 2);

    s.advance_secs(2);
    let r = s.probe(&old).await;
    assert_err(&r, 40001);
    assert!(errmsg(&r).starts_with("invalid credential, access_token is invalid or not latest"));
    assert!(s.probe(&new).await.get("errcode").is_none());
    let uses = s.stats(OA).token_uses;
    assert_eq!((uses.superseded, uses.valid), (1, 1));
    assert_eq!(s.stats(OA).sends_rejected.get(&40001), Some(&1));
}

#[tokio::test]
async fn classic_token_expires_after_7200s_with_42001() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    s.advance_secs(7199);
    assert!(s.probe(&t).await.get("errcode").is_none());
    s.advance_secs(2);
    let r = s.probe(&t).await;
    assert_err(&r, 42001);
    assert!(errmsg(&r).starts_with("access_token expired"));
    assert_eq!(s.stats(OA).token_uses.expired, 1);
}

#[tokio::test]
async fn classic_daily_quota_45009_resets_at_shanghai_midnight() {
    let s = with_oa(|a| a.token_daily_limit = 3).await;
    s.align_day(); // 00:00:01 in Shanghai
    for _ in 0..3 {
        s.token(OA, OA_SECRET).await;
    }
    let r = s.token_reply(OA, OA_SECRET).await;
    assert_err(&r, 45009);
    assert!(errmsg(&r).starts_with("reach max api daily quota limit rid: "));
    // UTC midnight (08:00 in Shanghai) is not the boundary.
    s.advance_secs(8 * 3600 + 60);
    assert_err(&s.token_reply(OA, OA_SECRET).await, 45009);
    // The next Shanghai midnight is.
    s.advance_secs(16 * 3600 - 120);
    assert_err(&s.token_reply(OA, OA_SECRET).await, 45009);
    s.advance_secs(120);
    s.token(OA, OA_SECRET).await;
    let st = s.stats(OA);
    assert_eq!(st.token_fetch_errors.get(&45009), Some(&3));
    assert_eq!(st.tokens_minted, 4);
}

#[tokio::test]
async fn classic_minute_limit_45011_then_ok_next_minute() {
    let s = with_oa(|a| a.token_minute_limit = Some(2)).await;
    s.align_minute();
    s.token(OA, OA_SECRET).await;
    s.token(OA, OA_SECRET).await;
    let r = s.token_reply(OA, OA_SECRET).await;
    assert_err(&r, 45011);
    assert!(errmsg(&r).starts_with("api minute-quota reach limit"));
    s.advance_secs(60);
    s.token(OA, OA_SECRET).await;
    assert_eq!(s.stats(OA).token_fetch_errors.get(&45011), Some(&1));
}

#[tokio::test]
async fn token_wrong_appid_40013() {
    let s = Sim::demo().await;
    let r = s.token_reply("wxnobody", OA_SECRET).await;
    assert_err(&r, 40013);
    assert!(errmsg(&r).starts_with("invalid appid"));
}

#[tokio::test]
async fn token_wrong_secret_40125() {
    let s = Sim::demo().await;
    let r = s.token_reply(OA, "not-the-secret").await;
    assert_err(&r, 40125);
    assert!(errmsg(&r).starts_with("invalid appsecret rid: "));
    assert_eq!(s.stats(OA).token_fetch_errors.get(&40125), Some(&1));
    assert_eq!(s.stats(OA).tokens_minted, 0);
}

#[tokio::test]
async fn token_frozen_secret_40243() {
    let s = with_oa(|a| a.frozen = true).await;
    assert_err(&s.token_reply(OA, OA_SECRET).await, 40243);
    let body = json!({"grant_type": "client_credential", "appid": OA, "secret": OA_SECRET});
    assert_err(&s.post("/cgi-bin/stable_token", &body).await, 40243);
}

#[tokio::test]
async fn token_missing_appid_41002_missing_secret_41004() {
    let s = Sim::demo().await;
    let q = |appid: &'static str, secret: &'static str| {
        [
            ("grant_type", "client_credential"),
            ("appid", appid),
            ("secret", secret),
        ]
    };
    assert_err(
        &s.get_query("/cgi-bin/token", &q("", OA_SECRET)).await,
        41002,
    );
    assert_err(&s.get_query("/cgi-bin/token", &q(OA, "")).await, 41004);
    let no_params = s.get("/cgi-bin/token?grant_type=client_credential").await;
    assert_err(&no_params, 41002);
}

#[tokio::test]
async fn token_bad_grant_type_40002() {
    let s = Sim::demo().await;
    let q = [
        ("grant_type", "authorization_code"),
        ("appid", OA),
        ("secret", OA_SECRET),
    ];
    assert_err(&s.get_query("/cgi-bin/token", &q).await, 40002);
    let no_grant = [("appid", OA), ("secret", OA_SECRET)];
    assert_err(&s.get_query("/cgi-bin/token", &no_grant).await, 40002);
}

#[tokio::test]
async fn token_ip_whitelist_40164_names_the_ip() {
    let s = with_oa(|a| a.ip_whitelist = Some(vec!["10.1.2.3".parse().unwrap()])).await;
    let r = s.token_reply(OA, OA_SECRET).await;
    assert_err(&r, 40164);
    assert!(
        errmsg(&r)
            .starts_with("invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1, not in whitelist rid: "),
        "{r}"
    );
    assert_eq!(s.stats(OA).token_fetch_errors.get(&40164), Some(&1));
}

#[tokio::test]
async fn token_ip_whitelist_uses_trusted_forwarded_for() {
    let mut spec = AppSpec::official_account(OA, OA_SECRET);
    spec.ip_whitelist = Some(vec!["10.1.2.3".parse().unwrap()]);
    let s = Sim::start(SimConfig {
        apps: vec![spec],
        trust_forwarded_for: true,
        ..SimConfig::empty()
    })
    .await;
    let fetch = |ip: &'static str| {
        s.c.get(s.url("/cgi-bin/token"))
            .query(&[
                ("grant_type", "client_credential"),
                ("appid", OA),
                ("secret", OA_SECRET),
            ])
            .header("x-forwarded-for", ip)
            .send()
    };
    let r: serde_json::Value = fetch("47.103.62.98").await.unwrap().json().await.unwrap();
    assert_err(&r, 40164);
    assert!(
        errmsg(&r).starts_with(
            "invalid ip 47.103.62.98 ipv6 ::ffff:47.103.62.98, not in whitelist rid: "
        )
    );
    let ok: serde_json::Value = fetch("10.1.2.3, 47.103.62.98")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    access_token(&ok);
}

#[tokio::test]
async fn stable_token_is_the_same_with_decreasing_expires_in() {
    let s = Sim::demo().await;
    let r1 = s.stable_reply(MP, MP_SECRET, false).await;
    assert!(r1.get("errcode").is_none(), "{r1}");
    assert_eq!(r1["expires_in"], 7200);
    s.advance_secs(100);
    let r2 = s.stable_reply(MP, MP_SECRET, false).await;
    assert_eq!(access_token(&r1), access_token(&r2));
    let left = r2["expires_in"].as_i64().unwrap();
    assert!((7098..=7100).contains(&left), "{left}");
    let st = s.stats(MP);
    assert_eq!((st.token_fetches.stable_token, st.tokens_minted), (2, 1));
}

#[tokio::test]
async fn stable_token_rotates_in_last_300s_old_lives_to_its_expiry() {
    let s = Sim::demo().await;
    let old = s.stable(MP, MP_SECRET, false).await;
    // 301 s left: still the same token, never less than 300 s handed out.
    s.advance_secs(6899);
    let r = s.stable_reply(MP, MP_SECRET, false).await;
    assert_eq!(access_token(&r), old);
    // 300 once a millisecond of real time has passed since the fetch (the simulated clock runs
    // on), 301 when both requests fell in the same millisecond.
    let left = r["expires_in"].as_i64().unwrap();
    assert!((300..=301).contains(&left), "{left}");
    // Inside the last 300 s: a new token with a full lifetime.
    s.advance_secs(100);
    let r = s.stable_reply(MP, MP_SECRET, false).await;
    let new = access_token(&r);
    assert_ne!(new, old);
    assert_eq!(r["expires_in"], 7200);
    // The old one keeps working until its own expiry…
    s.advance_secs(190);
    assert!(s.probe(&old).await.get("errcode").is_none());
    assert_eq!(s.stats(MP).token_uses.overlap, 1);
    // …and then answers 42001, while the new one works.
    s.advance_secs(20);
    assert_err(&s.probe(&old).await, 42001);
    assert!(s.probe(&new).await.get("errcode").is_none());
    assert_eq!(s.stable(MP, MP_SECRET, false).await, new);
}

#[tokio::test]
async fn stable_force_refresh_invalidates_old_at_once() {
    let s = Sim::demo().await;
    let old = s.stable(MP, MP_SECRET, false).await;
    let new = s.stable(MP, MP_SECRET, true).await;
    assert_ne!(old, new);
    assert_err(&s.probe(&old).await, 40001);
    assert!(s.probe(&new).await.get("errcode").is_none());
    let st = s.stats(MP);
    assert_eq!(st.token_fetches.stable_token_force, 1);
    assert_eq!(st.token_uses.superseded, 1);
}

#[tokio::test]
async fn stable_second_force_within_30s_returns_current_token() {
    let s = Sim::demo().await;
    let first = s.stable(MP, MP_SECRET, true).await;
    s.advance_secs(10);
    let again = s.stable_reply(MP, MP_SECRET, true).await;
    assert_eq!(access_token(&again), first);
    assert!(s.probe(&first).await.get("errcode").is_none());
    s.advance_secs(21);
    let later = s.stable(MP, MP_SECRET, true).await;
    assert_ne!(later, first);
    assert_err(&s.probe(&first).await, 40001);
    assert_eq!(s.stats(MP).tokens_minted, 2);
}

#[tokio::test]
async fn stable_21st_force_in_a_day_45009() {
    let s = Sim::demo().await;
    s.align_day();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        assert!(seen.insert(s.stable(MP, MP_SECRET, true).await));
        s.advance_secs(31);
    }
    let r = s.stable_reply(MP, MP_SECRET, true).await;
    assert_err(&r, 45009);
    // Normal mode still works, and the count starts again the next day.
    let current = s.stable(MP, MP_SECRET, false).await;
    assert!(seen.contains(&current));
    s.advance_secs(86_400);
    assert!(!seen.contains(&s.stable(MP, MP_SECRET, true).await));
    assert_eq!(s.stats(MP).token_fetch_errors.get(&45009), Some(&1));
}

#[tokio::test]
async fn stable_and_classic_tokens_are_independent() {
    let s = Sim::demo().await;
    let stable = s.stable(OA, OA_SECRET, false).await;
    let c1 = s.token(OA, OA_SECRET).await;
    let c2 = s.token(OA, OA_SECRET).await;
    s.advance_secs(301);
    assert_err(&s.probe(&c1).await, 40001);
    // Fetching classic tokens did not touch the stable one: still valid, not in an overlap.
    assert!(s.probe(&stable).await.get("errcode").is_none());
    assert_eq!(s.stable(OA, OA_SECRET, false).await, stable);
    // And forcing the stable token does not touch the classic one.
    s.stable(OA, OA_SECRET, true).await;
    assert!(s.probe(&c2).await.get("errcode").is_none());
    let uses = s.stats(OA).token_uses;
    assert_eq!((uses.valid, uses.overlap), (2, 0));
}

#[tokio::test]
async fn stable_token_non_json_body_47001() {
    let s = Sim::demo().await;
    let form = format!("grant_type=client_credential&appid={MP}&secret={MP_SECRET}");
    assert_err(&s.post_bytes("/cgi-bin/stable_token", form).await, 47001);
    assert_err(&s.post_bytes("/cgi-bin/stable_token", "").await, 44002);
    let wrong = json!({"grant_type": "client_credential", "appid": MP, "secret": "nope"});
    assert_err(&s.post("/cgi-bin/stable_token", &wrong).await, 40125);
    assert_eq!(s.stats(MP).tokens_minted, 0);
}

#[tokio::test]
async fn stable_token_minute_cap_45009() {
    let s = with_oa(|a| a.stable_minute_limit = 2).await;
    s.align_minute();
    let t = s.stable(OA, OA_SECRET, false).await;
    assert_eq!(s.stable(OA, OA_SECRET, false).await, t);
    assert_err(&s.stable_reply(OA, OA_SECRET, false).await, 45009);
    s.advance_secs(60);
    assert_eq!(s.stable(OA, OA_SECRET, false).await, t);
}
