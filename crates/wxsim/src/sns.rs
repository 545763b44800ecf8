//! User logins: the Mini Program `GET /sns/jscode2session`, the Official Account web login
//! `GET /sns/oauth2/access_token` and `GET /sns/userinfo` with the user's token. They take the
//! appid and the app's current secret, not an access token; each code works once (40163).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::json;

use crate::config::AppKind;
use crate::digest::{base64, hex, sha256};
use crate::reply::{errmsg, json_reply, mp_error};
use crate::stats::{bump, bump_map};
use crate::world::{App, OauthGrant, Sim, lock};

type Params = Query<HashMap<String, String>>;

/// A user OAuth token lives 2 hours, as WeChat's do.
const OAUTH_TTL_SECS: i64 = 7200;

fn param<'a>(q: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    q.get(k).map(|s| s.as_str()).filter(|s| !s.is_empty())
}

/// The openid a login code resolves to in an app: `o` and 27 hex digits of
/// SHA-256(appid, code), so a test can predict it. The same code gives the same openid, and
/// every such openid is a follower by the naming convention.
pub fn openid_for_code(appid: &str, code: &str) -> String {
    let digest = sha256(format!("{appid}\0{code}").as_bytes());
    format!("o{}", &hex(&digest)[..27])
}

/// Which login a request is.
#[derive(Clone, Copy)]
enum Login {
    /// Mini Program `jscode2session`: code in `js_code`.
    MiniProgram,
    /// OA web login `oauth2/access_token`: code in `code`.
    Web,
}

/// The checks both exchanges share, in order: appid (41002 missing), secret (41004 missing),
/// grant_type `authorization_code` (40002), an app of the right kind (40013), its current
/// secret (40125), a code (41008) not used before (40163). Returns the app and the code, which
/// is then used up. Every call naming a known app of the right kind is counted.
fn exchange<'q>(
    sim: &Sim,
    q: &'q HashMap<String, String>,
    login: Login,
) -> Result<(Arc<App>, &'q str), Response> {
    let fail = |app: Option<&App>, code: i64| {
        if let Some(app) = app {
            bump_map(&app.counters.rejected, code);
        }
        mp_error(code, errmsg(code))
    };
    let Some(appid) = param(q, "appid") else {
        return Err(fail(None, 41002));
    };
    let Some(secret) = param(q, "secret") else {
        return Err(fail(None, 41004));
    };
    if param(q, "grant_type") != Some("authorization_code") {
        return Err(fail(None, 40002));
    }
    let (kind, code_key) = match login {
        Login::MiniProgram => (AppKind::MiniProgram, "js_code"),
        Login::Web => (AppKind::OfficialAccount, "code"),
    };
    let Some(app) = sim.app_by_appid(appid).filter(|a| a.kind == kind) else {
        return Err(fail(None, 40013));
    };
    bump(match login {
        Login::MiniProgram => &app.counters.jscode2session,
        Login::Web => &app.counters.oauth2_access_token,
    });
    let login_code = param(q, code_key);
    let mut st = lock(&app.state);
    let err = if st.spec.secret != secret {
        40125
    } else {
        match login_code {
            None => 41008,
            Some(c) if !st.used_codes.insert(c.to_string()) => 40163,
            Some(_) => 0,
        }
    };
    drop(st);
    match login_code {
        Some(c) if err == 0 => Ok((app, c)),
        _ => Err(fail(Some(&app), err)),
    }
}

/// `GET /sns/jscode2session?appid=…&secret=…&js_code=…&grant_type=authorization_code`.
pub(crate) async fn jscode2session(State(sim): State<Arc<Sim>>, Query(q): Params) -> Response {
    let (app, code) = match exchange(&sim, &q, Login::MiniProgram) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let session_key = base64(&rand::random::<[u8; 16]>());
    json_reply(&json!({"openid": openid_for_code(&app.key, code), "session_key": session_key}))
}

/// `GET /sns/oauth2/access_token?appid=…&secret=…&code=…&grant_type=authorization_code`.
pub(crate) async fn oauth2_access_token(State(sim): State<Arc<Sim>>, Query(q): Params) -> Response {
    let (app, code) = match exchange(&sim, &q, Login::Web) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let openid = openid_for_code(&app.key, code);
    let token = sim.mint_token_string();
    let refresh = sim.mint_token_string();
    let grant = OauthGrant {
        app: app.clone(),
        openid: openid.clone(),
        expires_ms: sim.clock.now_ms() + OAUTH_TTL_SECS * 1000,
    };
    sim.oauth_tokens
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(token.clone(), grant);
    json_reply(&json!({
        "access_token": &*token, "expires_in": OAUTH_TTL_SECS, "refresh_token": &*refresh,
        "openid": openid, "scope": "snsapi_userinfo",
    }))
}

/// `GET /sns/userinfo?access_token=<user token>&openid=…&lang=zh_CN`: 40001 for a token the
/// simulator did not issue, 42001 once it has expired, 41009 / 40003 for a missing or another
/// user's openid.
pub(crate) async fn userinfo(State(sim): State<Arc<Sim>>, Query(q): Params) -> Response {
    let Some(token) = param(&q, "access_token") else {
        return mp_error(41001, errmsg(41001));
    };
    let now = sim.clock.now_ms();
    let found = sim
        .oauth_tokens
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(token)
        .map(|g| (g.app.clone(), g.openid.clone(), g.expires_ms));
    let code = match (&found, param(&q, "openid")) {
        (None, _) => 40001,
        (Some((_, _, exp)), _) if now >= *exp => 42001,
        (_, None) => 41009,
        (Some((_, openid, _)), Some(asked)) if openid != asked => 40003,
        _ => 0,
    };
    if code != 0 {
        if let Some((app, _, _)) = &found {
            bump_map(&app.counters.rejected, code);
        }
        return mp_error(code, errmsg(code));
    }
    let lang = param(&q, "lang")
        .filter(|l| matches!(*l, "zh_CN" | "zh_TW" | "en"))
        .unwrap_or("zh_CN");
    let openid = found.map(|f| f.1).unwrap_or_default();
    json_reply(&json!({
        "openid": openid, "nickname": "sim user", "sex": 0, "language": lang,
        "province": "", "city": "", "country": "", "headimgurl": "", "privilege": [],
    }))
}

#[cfg(test)]
mod tests {
    use super::openid_for_code;

    #[test]
    fn openids_are_per_app_and_code_and_follow_by_convention() {
        let a = openid_for_code("wxdemo_mp", "code1");
        assert_eq!(a, openid_for_code("wxdemo_mp", "code1"));
        assert_ne!(a, openid_for_code("wxdemo_mp", "code2"));
        assert_ne!(a, openid_for_code("wxdemo_oa", "code1"));
        assert_eq!(a.len(), 28);
        assert_eq!(crate::follow_by_convention(&a), crate::Follow::Follower);
    }
}
