//! Injected faults: busy, 502, dropped connections, lost replies, hangs, latency, scopes, rate
//! and concurrency caps.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinSet;
use wxsim::{FaultScope, Faults};

use crate::helpers::*;

const FOLLOWER: &str = "oUser_0001";

/// The demo world with an OA token fetched before any fault is switched on.
async fn oa() -> (Sim, String) {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    (s, t)
}

/// Send an OA template message and return the raw outcome (no status or body checks).
async fn raw_send(s: &Sim, t: &str) -> reqwest::Result<reqwest::Response> {
    s.c.post(s.url(&format!("/cgi-bin/message/template/send?access_token={t}")))
        .json(&legacy_body(FOLLOWER))
        .send()
        .await
}

#[tokio::test]
async fn fault_busy_answers_minus_1_and_does_nothing() {
    let (s, t) = oa().await;
    let w = s.wecom_token(CORP, WECOM_SECRET).await;
    s.h.set_faults(Faults {
        busy_rate: 1.0,
        ..Faults::default()
    });
    let r = s.template_send(&t, &legacy_body(FOLLOWER)).await;
    assert_err(&r, -1);
    assert!(errmsg(&r).starts_with("system error"));
    // On qyapi the same fault is worded as WeCom words its errors.
    assert_wecom_err(&s.wecom_send(&w, &text_body("bob", "x")).await, -1);
    assert_eq!(s.stats(OA).deliveries + s.stats(WECOM).deliveries, 0);
    assert_eq!(s.stats(OA).sends_accepted, 0);
    assert_eq!(s.h.all_stats().faults.busy, 2);
}

#[tokio::test]
async fn fault_http_502() {
    let (s, t) = oa().await;
    s.h.set_faults(Faults {
        http_502_rate: 1.0,
        ..Faults::default()
    });
    let resp = raw_send(&s, &t).await.expect("a reply");
    assert_eq!(resp.status(), 502);
    assert_eq!(s.stats(OA).deliveries, 0);
    assert_eq!(s.h.all_stats().faults.http_502, 1);
}

#[tokio::test]
async fn fault_drop_closes_the_connection_before_doing_anything() {
    let (s, t) = oa().await;
    s.h.set_faults(Faults {
        drop_rate: 1.0,
        ..Faults::default()
    });
    let err = raw_send(&s, &t).await.expect_err("connection dropped");
    assert!(!err.is_timeout(), "{err:?}");
    let st = s.stats(OA);
    assert_eq!((st.sends_accepted, st.deliveries), (0, 0));
    assert_eq!(s.h.all_stats().faults.dropped, 1);
}

#[tokio::test]
async fn fault_lost_reply_delivers_but_the_client_sees_an_error() {
    let (s, t) = oa().await;
    s.h.set_faults(Faults {
        lost_reply_rate: 1.0,
        ..Faults::default()
    });
    raw_send(&s, &t).await.expect_err("reply lost");
    let st = s.stats(OA);
    assert_eq!((st.sends_accepted, st.deliveries), (1, 1));
    assert_eq!(s.h.all_stats().faults.lost_reply, 1);
    // The client retries without a dedupe key: the recipient gets the message twice.
    s.h.set_faults(Faults::default());
    assert_ok(&s.template_send(&t, &legacy_body(FOLLOWER)).await);
    let st = s.stats(OA);
    assert_eq!((st.deliveries, st.duplicate_deliveries), (2, 1));
}

#[tokio::test]
async fn fault_hang_holds_then_closes_without_doing_anything() {
    let (s, t) = oa().await;
    s.h.set_faults(Faults {
        hang_rate: 1.0,
        hang_ms: 300,
        ..Faults::default()
    });
    let started = Instant::now();
    raw_send(&s, &t).await.expect_err("no reply");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A client with a shorter timeout gives up first.
    let quick =
        s.c.get(s.url(&format!("/cgi-bin/get_api_domain_ip?access_token={t}")))
            .timeout(Duration::from_millis(100))
            .send()
            .await
            .expect_err("timeout");
    assert!(quick.is_timeout(), "{quick:?}");
    assert_eq!(s.stats(OA).deliveries, 0);
    assert!(s.h.all_stats().faults.hung >= 1);
}

#[tokio::test]
async fn fault_latency_delays_every_reply() {
    let (s, t) = oa().await;
    s.h.set_faults(Faults {
        latency_ms: 100,
        ..Faults::default()
    });
    let started = Instant::now();
    let r = s.probe(&t).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(r.get("errcode").is_none(), "{r}");
    let started = Instant::now();
    assert_ok(&s.template_send(&t, &legacy_body(FOLLOWER)).await);
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn fault_scope_token_hits_token_calls_not_sends() {
    let (s, t) = oa().await;
    s.h.set_faults(Faults {
        busy_rate: 1.0,
        scope: FaultScope::Token,
        ..Faults::default()
    });
    assert_err(&s.token_reply(OA, OA_SECRET).await, -1);
    assert_err(&s.stable_reply(OA, OA_SECRET, false).await, -1);
    assert_ok(&s.template_send(&t, &legacy_body(FOLLOWER)).await);
    assert_eq!(s.stats(OA).deliveries, 1);
    assert_eq!(s.h.all_stats().faults.busy, 2);
    // And the other way round.
    s.h.set_faults(Faults {
        busy_rate: 1.0,
        scope: FaultScope::Send,
        ..Faults::default()
    });
    s.token(OA, OA_SECRET).await;
    assert_err(&s.template_send(&t, &legacy_body(FOLLOWER)).await, -1);
    assert_eq!(s.stats(OA).deliveries, 1);
}

#[tokio::test]
async fn fault_send_rate_per_second_45011() {
    let (s, t) = oa().await;
    s.h.update_app(OA, |a| a.send_rate_per_sec = Some(3));
    s.align_second();
    for _ in 0..3 {
        assert_ok(&s.template_send(&t, &legacy_body(FOLLOWER)).await);
    }
    let r = s.template_send(&t, &legacy_body(FOLLOWER)).await;
    assert_err(&r, 45011);
    assert_eq!(s.stats(OA).deliveries, 3);
    s.advance_secs(1);
    assert_ok(&s.template_send(&t, &legacy_body(FOLLOWER)).await);
    assert_eq!(s.stats(OA).sends_rejected.get(&45011), Some(&1));
}

#[tokio::test]
async fn fault_max_concurrent_sends_45033_on_wecom() {
    let s = Sim::demo().await;
    let t = s.wecom_token(CORP, WECOM_SECRET).await;
    s.h.update_app(WECOM, |a| a.max_concurrent_sends = Some(2));
    s.h.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let mut set = JoinSet::new();
    for i in 0..6 {
        let (c, url) = (
            s.c.clone(),
            s.url(&format!("/cgi-bin/message/send?access_token={t}")),
        );
        let body = text_body(&format!("user{i}"), "hi");
        set.spawn(async move {
            let r = c.post(url).json(&body).send().await.unwrap();
            r.json::<Value>().await.unwrap()
        });
    }
    let (mut ok, mut busy) = (0, 0);
    while let Some(r) = set.join_next().await {
        let r = r.unwrap();
        match errcode(&r) {
            0 => ok += 1,
            45033 => {
                assert_wecom_err(&r, 45033);
                busy += 1;
            }
            _ => panic!("{r}"),
        }
    }
    assert!(
        (1..=2).contains(&ok) && ok + busy == 6,
        "ok {ok}, 45033 {busy}"
    );
    let st = s.stats(WECOM);
    assert_eq!(st.deliveries, ok);
    assert_eq!(st.sends_rejected.get(&45033), Some(&busy));
}

#[tokio::test]
async fn fault_lost_reply_on_a_token_fetch_still_mints_and_supersedes() {
    let (s, old) = oa().await;
    s.h.set_faults(Faults {
        lost_reply_rate: 1.0,
        scope: FaultScope::Token,
        ..Faults::default()
    });
    s.c.get(s.url(&format!(
        "/cgi-bin/token?grant_type=client_credential&appid={OA}&secret={OA_SECRET}"
    )))
    .send()
    .await
    .expect_err("reply lost");
    assert_eq!(s.stats(OA).tokens_minted, 2);
    // The token the client holds is now only in its overlap.
    assert!(s.probe(&old).await.get("errcode").is_none());
    assert_eq!(s.stats(OA).token_uses.overlap, 1);
    s.advance_secs(301);
    assert_err(&s.probe(&old).await, 40001);
}
