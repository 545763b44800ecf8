//! Login calls in proxy mode. `/sns/jscode2session` (Mini Program) and
//! `/sns/oauth2/access_token` (OA web login) take the app secret: the SDK sends a wxgate key
//! in its place and the call goes to WeChat with the real one, so services no longer hold the
//! secret. `/sns/userinfo` carries the *user's* OAuth token and passes through untouched.

use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::response::Response;
use secrecy::ExposeSecret;

use super::ProxyState;
use super::forward::{not_forwarded, relay};
use super::query::{join, param, without};
use super::tokens::wrong_appsecret;
use crate::config::AppKind;

/// Passed through as it is, to `wechat_api_base`.
const UNTOUCHED: &str = "/sns/userinfo";

pub(super) async fn jscode2session(State(s): State<ProxyState>, RawQuery(q): RawQuery) -> Response {
    let q = q.as_deref().unwrap_or("");
    with_secret(&s, "/sns/jscode2session", AppKind::MiniProgram, q).await
}

pub(super) async fn oauth2_access_token(
    State(s): State<ProxyState>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = q.as_deref().unwrap_or("");
    with_secret(&s, "/sns/oauth2/access_token", AppKind::OfficialAccount, q).await
}

/// Sends `path` for the `kind` app whose appid the query names and that the key in `secret`
/// is for, with the app's own appid and real secret. Every credential the client sent is
/// dropped (WxJava appends its token to `jscode2session`; it must not reach WeChat).
async fn with_secret(s: &ProxyState, path: &str, kind: AppKind, query: &str) -> Response {
    let appid = param(query, "appid").unwrap_or_default();
    let presented = param(query, "secret").unwrap_or_default();
    let of_kind = |k| k == kind;
    let found = s.credential_for(("appid", &appid), &presented, of_kind, wrong_appsecret);
    let app = match found.await {
        Ok((app, _)) => app,
        Err(r) => return r,
    };
    let rest = without(
        query,
        &[
            "appid",
            "secret",
            "appsecret",
            "access_token",
            "component_access_token",
        ],
    );
    let query = join(
        &join(&rest, "appid", app.wechat_id()),
        "secret",
        app.secret.expose_secret(),
    );
    let url = format!("{}?{query}", s.client.url(kind, path));
    relay(s, &app.id, path, s.client.http().get(url)).await
}

/// The other `/sns/` calls: `/sns/userinfo` forwarded as sent, the rest refused.
pub(super) async fn passthrough(
    s: &ProxyState,
    path: &str,
    query: &str,
    method: &Method,
) -> Response {
    if path != UNTOUCHED {
        return not_forwarded(
            path,
            "of /sns/ only the login calls and userinfo are forwarded",
        );
    }
    let url = format!("{}?{query}", s.client.url(AppKind::OfficialAccount, path));
    relay(
        s,
        "none",
        path,
        s.client.http().request(method.clone(), url),
    )
    .await
}
