//! Invariants 1–3 and 6 against the simulator's counters: one fetch per refresh however many
//! callers, refresh ahead of expiry, invalidation once per generation.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use wxgate::config::{AppKind, TokenApi};
use wxsim::SimConfig;

use crate::helpers::*;

async fn stampede(app: Arc<TestApp>, n: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let app = app.clone();
        tasks.push(tokio::spawn(async move { app.token("shop").await }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_cold_callers_cause_one_upstream_fetch() {
    for api in [TokenApi::Stable, TokenApi::Classic] {
        let app = Arc::new(spawn_with(SimConfig::default(), vec![shop(api)], |_| {}).await);
        let tokens = stampede(app.clone(), 1000).await;
        assert_eq!(
            app.fetches("wxdemo_oa"),
            1,
            "{api:?}: one upstream fetch for 1000 callers"
        );
        assert!(
            tokens.iter().all(|t| t == &tokens[0]),
            "everyone got the same token"
        );
        assert_eq!(app.use_token(&tokens[0]).await, 0);
    }
}

/// A simulated day in one-minute steps: the token is refreshed ahead of expiry in the
/// background, callers never get a token with less than a minute to live, and WeChat never sees
/// an expired or superseded token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_steady_use_refreshes_ahead_and_never_serves_a_dead_token() {
    for (api, id) in [
        (TokenApi::Stable, "steady-stable"),
        (TokenApi::Classic, "steady-classic"),
    ] {
        let def = app(
            id,
            AppKind::OfficialAccount,
            "wxdemo_oa",
            "demo-oa-secret",
            api,
        );
        let app = spawn_with(SimConfig::default(), vec![def], |_| {}).await;
        let mut distinct = std::collections::HashSet::new();
        for minute in 0..(24 * 60) {
            let (s, v) = app
                .call("GET", &format!("/v1/apps/{id}/token"), Some(ADMIN), None)
                .await;
            assert_eq!(s, StatusCode::OK, "{api:?} minute {minute}: {v}");
            let token = v["access_token"].as_str().unwrap().to_string();
            let expires_in = v["expires_in"].as_i64().unwrap();
            assert!(
                expires_in >= 60,
                "{api:?} minute {minute}: a token with {expires_in} s to live"
            );
            assert_eq!(
                app.use_token(&token).await,
                0,
                "{api:?} minute {minute}: WeChat rejected it"
            );
            distinct.insert(token);
            app.clock.advance(Duration::from_secs(60));
            // Let the refresher, woken by the jump, do its work like it would in real time.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let stats = app.sim.stats("wxdemo_oa").unwrap();
        assert_eq!(stats.token_uses.bad(), 0, "{api:?}: {:?}", stats.token_uses);
        // 24 h / ~2 h per token: 12 or 13 tokens, each fetched once (a stable refresh that
        // lands a moment before WeChat rotates may cost one extra call).
        let fetches = stats.token_fetches.total();
        assert!(
            (12..=16).contains(&fetches),
            "{api:?}: {fetches} fetches in a day"
        );
        assert!(
            (12..=14).contains(&distinct.len()),
            "{api:?}: {} tokens",
            distinct.len()
        );
        assert_eq!(stats.token_fetches.stable_token_force, 0);
        // Only the very first call waited on WeChat: every later refresh happened in the
        // background before any caller needed it (without the refresher, callers would miss).
        let (_, m) = app.call("GET", "/metrics", None, None).await;
        let m = m.as_str().unwrap();
        let count = |result: &str| {
            let prefix =
                format!("wxgate_token_requests_total{{app=\"{id}\",result=\"{result}\"}} ");
            m.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .map_or(0, |v| v.trim().parse::<u64>().unwrap())
        };
        assert_eq!(count("miss"), 1, "{api:?}: callers had to fetch");
        assert_eq!(count("waited"), 0, "{api:?}: callers waited on a fetch");
        assert_eq!(count("hit"), 24 * 60 - 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_reported_by_200_callers_refreshes_once() {
    for api in [TokenApi::Stable, TokenApi::Classic] {
        let app = Arc::new(spawn_with(SimConfig::default(), vec![shop(api)], |_| {}).await);
        let old = app.token("shop").await;
        assert_eq!(app.sim.revoke_token("wxdemo_oa"), 1);
        assert_eq!(app.use_token(&old).await, 40001);
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let (app, old) = (app.clone(), old.clone());
            tasks.push(tokio::spawn(
                async move { app.invalidate("shop", &old).await },
            ));
        }
        let mut applied = 0;
        let mut new_tokens = std::collections::HashSet::new();
        for t in tasks {
            let (s, v) = t.await.unwrap();
            assert_eq!(s, StatusCode::OK, "{v}");
            match v["result"].as_str().unwrap() {
                "applied" => applied += 1,
                // Reported while the refresh ran, or after it finished: nothing more happens.
                "already_invalidated" | "stale" => {}
                other => panic!("unexpected result {other}"),
            }
            new_tokens.insert(v["access_token"].as_str().unwrap().to_string());
        }
        assert_eq!(applied, 1, "{api:?}: exactly one report acts");
        assert_eq!(
            new_tokens.len(),
            1,
            "{api:?}: every reporter got the same new token"
        );
        let new = new_tokens.into_iter().next().unwrap();
        assert_ne!(new, old);
        assert_eq!(app.use_token(&new).await, 0);
        assert_eq!(
            app.fetches("wxdemo_oa"),
            2,
            "{api:?}: first fetch + exactly one refresh"
        );
    }
}

#[tokio::test]
async fn a_report_naming_an_older_token_changes_nothing() {
    let app = spawn_with(SimConfig::default(), vec![shop(TokenApi::Classic)], |_| {}).await;
    let first = app.token("shop").await;
    let (_, v) = app.invalidate("shop", &first).await;
    assert_eq!(v["result"], "applied");
    let second = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(app.fetches("wxdemo_oa"), 2);
    // A late caller still holding the first token reports it: no refresh, current token kept.
    let (s, v) = app.invalidate("shop", &first).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["result"], "stale");
    assert_eq!(v["access_token"], second.as_str());
    let (_, v) = app.invalidate("shop", "made-up-token").await;
    assert_eq!(v["result"], "stale");
    assert_eq!(app.fetches("wxdemo_oa"), 2, "no fetch for stale reports");
}

/// The stable API returns the same token while it lives. When callers report it rejected and
/// WeChat still hands it out, wxgate uses one `force_refresh`.
#[tokio::test]
async fn a_rejected_stable_token_is_replaced_by_one_forced_refresh() {
    let app = spawn_app().await;
    let first = app.token("shop").await;
    let (s, v) = app.invalidate("shop", &first).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["result"], "applied");
    let second = v["access_token"].as_str().unwrap();
    assert_ne!(second, first);
    let st = app.sim.stats("wxdemo_oa").unwrap().token_fetches;
    assert_eq!((st.stable_token, st.stable_token_force), (2, 1));
    assert_eq!(
        app.use_token(&first).await,
        40001,
        "the forced refresh killed the old one"
    );
    assert_eq!(app.use_token(second).await, 0);
}

#[tokio::test]
async fn wecom_tokens_are_per_agent() {
    let mut sim_cfg = SimConfig::default();
    sim_cfg
        .apps
        .push(wxsim::AppSpec::wecom("wwdemo_corp", 1_000_003, "hr-secret"));
    let mut hr = app(
        "hr",
        AppKind::Wecom,
        "wwdemo_corp",
        "hr-secret",
        TokenApi::Stable,
    );
    hr.agentid = Some(1_000_003);
    let ops = app(
        "ops",
        AppKind::Wecom,
        "wwdemo_corp",
        "demo-wecom-secret",
        TokenApi::Stable,
    );
    let app = spawn_with(sim_cfg, vec![ops, hr], |_| {}).await;
    let (a, b) = (app.token("ops").await, app.token("hr").await);
    assert_ne!(a, b);
    assert_eq!(app.token("ops").await, a, "served from memory");
    assert_eq!(app.fetches("wwdemo_corp:1000002"), 1);
    assert_eq!(app.fetches("wwdemo_corp:1000003"), 1);
}

/// Invariant 6: a token rejected long before its expiry means someone else fetched one.
#[tokio::test]
async fn a_foreign_refresh_is_counted() {
    let foreign = app(
        "foreign",
        AppKind::OfficialAccount,
        "wxdemo_oa",
        "demo-oa-secret",
        TokenApi::Classic,
    );
    let app = spawn_with(SimConfig::default(), vec![foreign], |_| {}).await;
    let first = app.token("foreign").await;
    // Another environment fetches with the same secret; five minutes later ours dies.
    app.http
        .get(format!(
            "{}/cgi-bin/token?grant_type=client_credential&appid=wxdemo_oa&secret=demo-oa-secret",
            app.sim.base_url()
        ))
        .send()
        .await
        .unwrap();
    app.clock.advance(Duration::from_secs(301));
    assert_eq!(app.use_token(&first).await, 40001);
    let (_, v) = app.invalidate("foreign", &first).await;
    assert_eq!(v["result"], "applied");
    let (_, metrics) = app.call("GET", "/metrics", None, None).await;
    let text = metrics.as_str().unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("wxgate_token_foreign_refresh_total{app=\"foreign\"}"))
        .unwrap_or_else(|| panic!("no foreign-refresh counter in {text}"));
    assert!(line.ends_with(" 1"), "{line}");
}
