//! The token endpoints (`/cgi-bin/token`, `/cgi-bin/stable_token`, WeCom `/cgi-bin/gettoken`)
//! and the token check every business call goes through.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::config::{AppKind, ForceWithin30s, WecomExpiresIn};
use crate::reply::{errmsg, json_reply, mp_error, wecom_error};
use crate::server::ClientIp;
use crate::stats::{bump, bump_map};
use crate::world::{App, Sim, TokenKind, TokenRecord, TokenStatus, lock};

type Params = Query<HashMap<String, String>>;

fn param<'a>(q: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    q.get(k).map(|s| s.as_str()).filter(|s| !s.is_empty())
}

/// Reject a fetch: count it against the app (when known) and answer in OA/MP form.
fn fetch_error(app: Option<&App>, code: i64) -> Response {
    if let Some(app) = app {
        bump_map(&app.counters.fetch_errors, code);
    }
    mp_error(code, errmsg(code))
}

/// Which counter a token call goes to. Every call naming a known app is counted, failed or not.
#[derive(Clone, Copy)]
enum Endpoint {
    Classic,
    Stable,
    StableForce,
}

/// Checks shared by both OA/MP token endpoints, in the order WeChat applies them.
fn check_credentials(
    sim: &Sim,
    endpoint: Endpoint,
    grant_type: Option<&str>,
    appid: Option<&str>,
    secret: Option<&str>,
    ip: IpAddr,
) -> Result<Arc<App>, Response> {
    let Some(appid) = appid else {
        return Err(fetch_error(None, 41002));
    };
    let Some(secret) = secret else {
        return Err(fetch_error(None, 41004));
    };
    if grant_type != Some("client_credential") {
        return Err(fetch_error(None, 40002));
    }
    let Some(app) = sim.app_by_appid(appid) else {
        return Err(fetch_error(None, 40013));
    };
    bump(match endpoint {
        Endpoint::Classic => &app.counters.fetch_token,
        Endpoint::Stable => &app.counters.fetch_stable,
        Endpoint::StableForce => &app.counters.fetch_stable_force,
    });
    let st = lock(&app.state);
    let code = if st.spec.secret != secret {
        40125
    } else if st.spec.frozen {
        40243
    } else if st
        .spec
        .ip_whitelist
        .as_ref()
        .is_some_and(|l| !l.contains(&ip))
    {
        40164
    } else {
        0
    };
    drop(st);
    match code {
        0 => Ok(app),
        40164 => {
            bump_map(&app.counters.fetch_errors, 40164);
            let msg = format!("invalid ip {ip} ipv6 ::ffff:{ip}, not in whitelist");
            Err(mp_error(40164, &msg))
        }
        c => Err(fetch_error(Some(&app), c)),
    }
}

fn insert_token(sim: &Sim, app: &Arc<App>, kind: TokenKind, expires_ms: i64) -> Arc<str> {
    let token = sim.mint_token_string();
    let rec = TokenRecord {
        app: app.clone(),
        kind,
        expires_ms,
        dies_ms: None,
        revoked: false,
    };
    sim.tokens
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(token.clone(), rec);
    bump(&app.counters.tokens_minted);
    token
}

/// Mark a token superseded: it keeps working until `dies_ms`, then answers 40001.
pub(crate) fn supersede(sim: &Sim, token: &str, dies_ms: i64) {
    if let Some(rec) = sim
        .tokens
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(token)
    {
        rec.dies_ms = Some(rec.dies_ms.map_or(dies_ms, |d| d.min(dies_ms)));
    }
}

/// `GET /cgi-bin/token`: a new token on every call; the previous one lives for the overlap.
pub(crate) async fn classic(
    State(sim): State<Arc<Sim>>,
    ClientIp(ip): ClientIp,
    Query(q): Params,
) -> Response {
    let app = match check_credentials(
        &sim,
        Endpoint::Classic,
        param(&q, "grant_type"),
        param(&q, "appid"),
        param(&q, "secret"),
        ip,
    ) {
        Ok(app) => app,
        Err(r) => return r,
    };
    let now = sim.clock.now_ms();
    let (ttl, overlap) = {
        let s = sim.settings();
        (s.token_ttl_secs, s.overlap_secs)
    };
    let previous = {
        let mut st = lock(&app.state);
        st.roll(now);
        if st.daily.token >= st.spec.token_daily_limit {
            drop(st);
            return fetch_error(Some(&app), 45009);
        }
        if st
            .spec
            .token_minute_limit
            .is_some_and(|m| st.per_minute.token >= m)
        {
            drop(st);
            return fetch_error(Some(&app), 45011);
        }
        st.daily.token += 1;
        st.per_minute.token += 1;
        st.tok.classic.take()
    };
    if let Some(prev) = previous {
        supersede(&sim, &prev, now + overlap * 1000);
    }
    let token = insert_token(&sim, &app, TokenKind::Classic, now + ttl * 1000);
    lock(&app.state).tok.classic = Some(token.clone());
    json_reply(&json!({"access_token": &*token, "expires_in": ttl}))
}

#[derive(Deserialize)]
struct StableBody {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    force_refresh: bool,
}

/// `POST /cgi-bin/stable_token`: the same token while it has more than the overlap to live;
/// `force_refresh` replaces it at once, at most 20 a day and 30 s apart.
pub(crate) async fn stable(
    State(sim): State<Arc<Sim>>,
    ClientIp(ip): ClientIp,
    body: Bytes,
) -> Response {
    if body.is_empty() {
        return fetch_error(None, 44002);
    }
    let Ok(b) = serde_json::from_slice::<StableBody>(&body) else {
        return fetch_error(None, 47001);
    };
    let ne = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let endpoint = if b.force_refresh {
        Endpoint::StableForce
    } else {
        Endpoint::Stable
    };
    let app = match check_credentials(
        &sim,
        endpoint,
        b.grant_type.as_deref(),
        ne(&b.appid).as_deref(),
        ne(&b.secret).as_deref(),
        ip,
    ) {
        Ok(app) => app,
        Err(r) => return r,
    };
    let now = sim.clock.now_ms();
    let (ttl, overlap, within_30s) = {
        let s = sim.settings();
        (s.token_ttl_secs, s.overlap_secs, s.force_refresh_within_30s)
    };
    let mut st = lock(&app.state);
    st.roll(now);
    if st.daily.stable >= st.spec.stable_daily_limit
        || st.per_minute.stable >= st.spec.stable_minute_limit
    {
        drop(st);
        return fetch_error(Some(&app), 45009);
    }
    st.daily.stable += 1;
    st.per_minute.stable += 1;
    let mut force = b.force_refresh;
    if force {
        if st.daily.force >= st.spec.force_daily_limit {
            drop(st);
            return fetch_error(Some(&app), 45009);
        }
        let too_soon = st.tok.last_force_ms.is_some_and(|t| now - t < 30_000);
        if too_soon && within_30s == ForceWithin30s::Unchanged {
            force = false;
        } else {
            st.daily.force += 1;
            st.tok.last_force_ms = Some(now);
        }
    }
    let current = st.tok.stable.clone();
    drop(st);
    if let Some((tok, exp)) = &current {
        let alive = sim
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tok)
            .map(|r| r.status(now))
            .is_some_and(|s| s == TokenStatus::Valid);
        let remaining = exp - now;
        if !force && alive && remaining > overlap * 1000 {
            return json_reply(&json!({"access_token": &**tok, "expires_in": remaining / 1000}));
        }
        // Rotating: forced → the old one dies now; in the last 5 minutes → it lives out its time.
        supersede(&sim, tok, if force { now } else { *exp });
    }
    let expires = now + ttl * 1000;
    let token = insert_token(&sim, &app, TokenKind::Stable, expires);
    lock(&app.state).tok.stable = Some((token.clone(), expires));
    json_reply(&json!({"access_token": &*token, "expires_in": ttl}))
}

/// `GET /cgi-bin/gettoken` (WeCom): one token per (corpid, secret), the same while valid.
pub(crate) async fn gettoken(
    State(sim): State<Arc<Sim>>,
    ClientIp(ip): ClientIp,
    Query(q): Params,
) -> Response {
    let Some(corpid) = param(&q, "corpid") else {
        return wecom_error(41002, "corpid missing", ip);
    };
    let Some(secret) = param(&q, "corpsecret") else {
        return wecom_error(41004, "corpsecret missing", ip);
    };
    let apps = sim.wecom_apps(corpid);
    if apps.is_empty() {
        return wecom_error(40013, "invalid corpid", ip);
    }
    let Some(app) = apps
        .into_iter()
        .find(|a| lock(&a.state).spec.secret == secret)
    else {
        return wecom_error(40001, "invalid credential", ip);
    };
    bump(&app.counters.fetch_gettoken);
    let now = sim.clock.now_ms();
    let (ttl, mode) = {
        let s = sim.settings();
        (s.token_ttl_secs, s.wecom_expires_in)
    };
    let current = lock(&app.state).tok.wecom.clone();
    if let Some((tok, exp)) = current {
        let alive = sim
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tok)
            .is_some_and(|r| r.status(now) == TokenStatus::Valid);
        if alive {
            let expires_in = match mode {
                WecomExpiresIn::Remaining => (exp - now) / 1000,
                WecomExpiresIn::Fixed => ttl,
            };
            return json_reply(&json!({
                "errcode": 0, "errmsg": "ok", "access_token": &*tok, "expires_in": expires_in
            }));
        }
    }
    let expires = now + ttl * 1000;
    let token = insert_token(&sim, &app, TokenKind::Wecom, expires);
    lock(&app.state).tok.wecom = Some((token.clone(), expires));
    json_reply(&json!({"errcode": 0, "errmsg": "ok", "access_token": &*token, "expires_in": ttl}))
}

/// Which host a business call arrived on: api.weixin.qq.com (OA/MP) or qyapi (WeCom).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Platform {
    Mp,
    Wecom,
}

/// The token check of every business call. Counts the use by token state and returns the app,
/// or the errcode WeChat answers: 41001 missing, 40014 unknown or another platform's,
/// 42001 expired, 40001 superseded or revoked (WeCom: 40014 revoked).
pub(crate) fn authorize(
    sim: &Sim,
    token: Option<&str>,
    platform: Platform,
) -> Result<Arc<App>, i64> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(41001);
    };
    let now = sim.clock.now_ms();
    let tokens = sim.tokens.read().unwrap_or_else(|p| p.into_inner());
    let Some(rec) = tokens.get(token) else {
        return Err(40014);
    };
    let wecom_token = rec.kind == TokenKind::Wecom;
    if wecom_token != (platform == Platform::Wecom) {
        return Err(40014);
    }
    let app = rec.app.clone();
    let status = rec.status(now);
    drop(tokens);
    let c = &app.counters;
    let code = match status {
        TokenStatus::Valid => {
            bump(&c.use_valid);
            return Ok(app);
        }
        TokenStatus::Overlap => {
            bump(&c.use_overlap);
            return Ok(app);
        }
        TokenStatus::Expired => {
            bump(&c.use_expired);
            42001
        }
        TokenStatus::Superseded => {
            bump(&c.use_superseded);
            40001
        }
        TokenStatus::Revoked => {
            bump(&c.use_revoked);
            if wecom_token { 40014 } else { 40001 }
        }
    };
    bump_map(&c.rejected, code);
    Err(code)
}

#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    pub access_token: Option<String>,
}

/// The platform a token belongs to, for calls both hosts serve on one path
/// (`get_api_domain_ip`, media, the echo): WeCom for a WeCom token, OA/MP for anything else
/// (an unknown or missing token is answered as api.weixin.qq.com would).
pub(crate) fn platform_of(sim: &Sim, token: Option<&str>) -> Platform {
    let wecom = token
        .and_then(|t| {
            sim.tokens
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(t)
                .map(|r| r.kind == TokenKind::Wecom)
        })
        .unwrap_or(false);
    if wecom { Platform::Wecom } else { Platform::Mp }
}

/// An error in the shape of `platform`'s host, with the standard errmsg.
pub(crate) fn platform_error(code: i64, platform: Platform, ip: IpAddr) -> Response {
    match platform {
        Platform::Wecom => wecom_error(code, errmsg(code), ip),
        Platform::Mp => mp_error(code, errmsg(code)),
    }
}

/// The token check of a business call that both hosts serve on the same path (media, the
/// echo): [`authorize`] on the token's own platform, its error worded as that host words it,
/// and for WeCom the app's `ip_whitelist` (60020), as `message/send` checks it.
pub(crate) fn authorize_call(
    sim: &Sim,
    token: Option<&str>,
    ip: IpAddr,
) -> Result<Arc<App>, Response> {
    let platform = platform_of(sim, token);
    let app = authorize(sim, token, platform).map_err(|c| platform_error(c, platform, ip))?;
    if app.kind == AppKind::Wecom {
        let allowed = lock(&app.state)
            .spec
            .ip_whitelist
            .as_ref()
            .is_none_or(|l| l.contains(&ip));
        if !allowed {
            bump_map(&app.counters.rejected, 60020);
            return Err(wecom_error(60020, errmsg(60020), ip));
        }
    }
    Ok(app)
}

/// Count a business call's rejection against the app and answer it as the app's host words it.
pub(crate) fn reject_call(app: &App, code: i64, ip: IpAddr) -> Response {
    bump_map(&app.counters.rejected, code);
    let platform = if app.kind == AppKind::Wecom {
        Platform::Wecom
    } else {
        Platform::Mp
    };
    platform_error(code, platform, ip)
}

/// `GET /cgi-bin/get_api_domain_ip`: a cheap authenticated call, used as a token probe.
pub(crate) async fn api_domain_ip(
    State(sim): State<Arc<Sim>>,
    ClientIp(ip): ClientIp,
    Query(q): Query<TokenQuery>,
) -> Response {
    let platform = platform_of(&sim, q.access_token.as_deref());
    match authorize(&sim, q.access_token.as_deref(), platform) {
        Ok(_) if platform == Platform::Wecom => {
            json_reply(&json!({"errcode": 0, "errmsg": "ok", "ip_list": ["127.0.0.1"]}))
        }
        Ok(_) => json_reply(&json!({"ip_list": ["127.0.0.1"]})),
        Err(code) => platform_error(code, platform, ip),
    }
}

/// Revoke an app's current tokens at once, as another environment fetching a new one would.
/// The next fetch returns a new token. Returns how many tokens were revoked.
pub(crate) fn revoke(sim: &Sim, app: &App) -> usize {
    let mut st = lock(&app.state);
    let current: Vec<Arc<str>> = [
        st.tok.classic.take(),
        st.tok.stable.take().map(|t| t.0),
        st.tok.wecom.take().map(|t| t.0),
    ]
    .into_iter()
    .flatten()
    .collect();
    drop(st);
    let mut tokens = sim.tokens.write().unwrap_or_else(|p| p.into_inner());
    let mut n = 0;
    for t in current {
        if let Some(rec) = tokens.get_mut(&t) {
            rec.revoked = true;
            n += 1;
        }
    }
    n
}

/// Answer for the kind check of an endpoint: `48001 api unauthorized` when an app of another
/// kind calls it (e.g. a Mini Program token on the OA template API).
pub(crate) fn require_kind(app: &App, kind: AppKind) -> Result<(), i64> {
    if app.kind == kind {
        Ok(())
    } else {
        bump_map(&app.counters.rejected, 48001);
        Err(48001)
    }
}
