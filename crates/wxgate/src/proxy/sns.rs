//! Login calls in proxy mode. `/sns/jscode2session` (Mini Program) and
//! `/sns/oauth2/access_token` (OA web login) take the app secret: the SDK sends a wxgate key
//! in its place and the call goes to WeChat with the real one, so services no longer hold the
//! secret. `/sns/userinfo`, `/sns/auth` and `/sns/oauth2/refresh_token` carry the *user's*
//! OAuth token (or none) and pass through untouched.

use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::response::Response;
use secrecy::ExposeSecret;

use super::forward::{join, param, relay, without};
use super::{ProxyState, wechat_error};
use crate::config::AppKind;

/// Passed through as they are, to `wechat_api_base`.
const UNTOUCHED: [&str; 3] = ["/sns/userinfo", "/sns/auth", "/sns/oauth2/refresh_token"];

pub(super) async fn jscode2session(State(s): State<ProxyState>, RawQuery(q): RawQuery) -> Response {
    with_secret(
        &s,
        "/sns/jscode2session",
        AppKind::MiniProgram,
        q.as_deref().unwrap_or(""),
    )
    .await
}

pub(super) async fn oauth2_access_token(
    State(s): State<ProxyState>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = q.as_deref().unwrap_or("");
    with_secret(&s, "/sns/oauth2/access_token", AppKind::OfficialAccount, q).await
}

/// Sends `path` with the real secret of the `kind` app whose appid the query names and that
/// the key in `secret` may use. Any `access_token` is dropped (WxJava appends its token to
/// `jscode2session`; it must not reach WeChat).
async fn with_secret(s: &ProxyState, path: &str, kind: AppKind, query: &str) -> Response {
    let appid = param(query, "appid").unwrap_or_default();
    let presented = param(query, "secret").unwrap_or_default();
    let holders = match s.holders(&appid, &presented).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let apps: Vec<_> = holders
        .into_iter()
        .map(|(a, _)| a)
        .filter(|a| a.kind() == kind)
        .collect();
    let [app] = apps.as_slice() else {
        if !s.knows(&appid) {
            return wechat_error(40013, "invalid appid: no app of this wxgate has it");
        }
        return wechat_error(
            40125,
            "invalid appsecret: give a wxgate API key for this app in the secret field, not \
             the app secret",
        );
    };
    let rest = without(&without(query, "secret"), "access_token");
    let query = join(&rest, "secret", app.secret.expose_secret());
    let url = format!("{}?{query}", s.client.url(kind, path));
    let request = s.client.http().get(url).timeout(s.settings.timeout);
    relay(&app.id, path, request).await
}

/// The `/sns/` calls without an app secret: forwarded as sent, or refused.
pub(super) async fn passthrough(
    s: &ProxyState,
    path: &str,
    query: &str,
    method: &Method,
) -> Response {
    if !UNTOUCHED.contains(&path) {
        return wechat_error(
            40066,
            format!("invalid url: the wxgate proxy does not forward {path:?}"),
        );
    }
    let url = format!("{}?{query}", s.client.url(AppKind::OfficialAccount, path));
    let request = s
        .client
        .http()
        .request(method.clone(), url)
        .timeout(s.settings.timeout);
    relay("none", path, request).await
}
