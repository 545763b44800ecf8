//! Forwarding: a call carrying a placeholder goes to its app's host (OA/MP → `wechat_api_base`,
//! WeCom → `wecom_api_base`) with the real token in place of the placeholder, through
//! [`Client::with_token`](crate::wechat::Client::with_token): a refused token is reported once
//! and the call replayed once. Bodies are handled in `bodies.rs`; JSON answers pass on byte for
//! byte, except that the real token is never in them.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::bodies::{Outgoing, REQUEST_HEADERS, Upstream, pick};
use super::query::{join, param, plain_path, without};
use super::{ProxyState, count, wechat_error, wechat_json};
use crate::token::{Token, TokenError};
use crate::wechat::{Answer, Called, ErrClass, classify_call};

/// Paths forwarded with the app's token. `/sns/` calls are handled in `sns.rs`.
pub(super) const PREFIXES: [&str; 6] = [
    "/cgi-bin/",
    "/wxa/",
    "/datacube/",
    "/card/",
    "/customservice/",
    "/merchant/",
];

/// Within the prefixes, but never forwarded: WeChat's answer would hand out what wxgate keeps.
/// `rid/get` returns the failed call's query string, real access_token included.
const REFUSED: [&str; 1] = ["/cgi-bin/openapi/rid/get"];

/// Query parameters never passed on: credentials of the app, which only wxgate adds.
const CREDENTIALS: [&str; 5] = [
    "access_token",
    "secret",
    "appsecret",
    "corpsecret",
    "component_access_token",
];

/// The catch-all route: every path that is not a token endpoint or a login call.
pub(super) async fn forward(State(s): State<ProxyState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    if !plain_path(&path) {
        return not_forwarded(&path, "it has dot segments or encoded separators");
    }
    if path.starts_with("/sns/") {
        return super::sns::passthrough(&s, &path, parts.uri.query().unwrap_or(""), &parts.method)
            .await;
    }
    if !PREFIXES.iter().any(|p| path.starts_with(p)) {
        return not_forwarded(&path, "it is outside the allowlist");
    }
    if REFUSED.contains(&path.as_str()) {
        return not_forwarded(&path, "its answer would contain the real access_token");
    }
    let query = parts.uri.query().unwrap_or("");
    let Some(placeholder) = param(query, "access_token") else {
        return wechat_error(41001, "access_token missing");
    };
    let app = match s.holder(&placeholder).await {
        Ok(Some(app)) => app,
        Ok(None) => {
            count("unknown", &path, Some(40001));
            return wechat_error(
                40001,
                "invalid credential, access_token is invalid or not latest: not a placeholder \
                 of this wxgate, or its API key was deleted; fetch a token from the proxy again",
            );
        }
        Err(r) => return r,
    };
    let idle = s.settings.timeout;
    let mut outgoing = match Outgoing::of(body, s.settings.replay_body_limit, idle).await {
        Ok(o) => o,
        Err(e) => {
            // The client stopped sending: nothing of it goes to WeChat.
            tracing::info!(app = %app.id, path = %path, error = %e, "proxy: the request body broke off");
            return wechat_json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"errcode": -1, "errmsg": "the request body broke off before its end; nothing was sent to WeChat"}),
            );
        }
    };
    let replayable = outgoing.replayable();
    let url = s.client.url(app.kind(), &path);
    let rest = without(query, &CREDENTIALS);
    let mut headers = pick(&parts.headers, &REQUEST_HEADERS);
    if !replayable && let Some(n) = parts.headers.get(header::CONTENT_LENGTH) {
        // A streamed body keeps its length: WeChat's upload endpoints may want it.
        headers.insert(header::CONTENT_LENGTH, n.clone());
    }
    let called = s
        .client
        .with_token(
            &s.tokens,
            &app.id,
            || replayable,
            |token: Token| {
                let query = join(&rest, "access_token", token.value.expose());
                let request = s
                    .client
                    .http()
                    .request(parts.method.clone(), format!("{url}?{query}"))
                    .headers(headers.clone())
                    .body(outgoing.body());
                async move { Upstream::send(request, idle).await }
            },
        )
        .await;
    let Called {
        mut answer,
        token,
        refused,
    } = match called {
        Ok(c) => c,
        Err(e) => return no_token(&app.id, &path, &e),
    };
    answer.scrub(token.value.expose(), &placeholder);
    let code = answer.errcode();
    count(&app.id, &path, code);
    if code.is_some_and(|c| classify_call(c) == ErrClass::Refresh) {
        // A token error here would send SDKs into their own refresh-and-resend loops
        // (wechatpy's has no limit): "system busy", which they retry a bounded number of times.
        tracing::warn!(app = %app.id, path = %path, errcode = ?code, replayed = refused.is_some(), "proxy: WeChat refused the app's token and the call could not be completed");
        let why = match (refused.is_some(), replayable) {
            (true, _) => "again after wxgate refreshed it and sent the call once more",
            (false, false) => {
                "and the request body was over proxy.replay_body_limit, so it was not sent again \
                 (the token was refreshed)"
            }
            (false, true) => {
                "and wxgate replaced this app's token less than 30 s ago, so it keeps it (is \
                 another system fetching this app's tokens? use the stable token API)"
            }
        };
        return wechat_error(
            -1,
            format!(
                "system error: WeChat refused app {:?}'s access_token (errcode {}) {why}; send \
                 the request again",
                app.id,
                code.unwrap_or_default()
            ),
        );
    }
    answer.into_response()
}

/// Sends `request` (already complete: the query holds the real secret, or only the user's own
/// token) and passes the answer on: login calls and `/sns/userinfo`.
pub(super) async fn relay(
    s: &ProxyState,
    app: &str,
    path: &str,
    request: reqwest::RequestBuilder,
) -> Response {
    let answer = Upstream::send(request, s.settings.timeout).await;
    count(app, path, answer.errcode());
    answer.into_response()
}

/// WeChat has no token for the app now (breaker open, wrong app secret, quota): a "system
/// busy" that SDKs retry a bounded number of times, with the reason's code (not WeChat's
/// errmsg, which names the failed fetch).
fn no_token(app: &str, path: &str, e: &TokenError) -> Response {
    count(app, path, Some(-1));
    let upstream = e
        .wechat_errcode()
        .map_or_else(String::new, |c| format!(", WeChat errcode {c}"));
    wechat_error(
        -1,
        format!(
            "system error: wxgate has no access_token for app {app:?} now ({}{upstream}); see GET \
             /v1/apps/{app} on the wxgate API",
            e.code()
        ),
    )
}

/// 404 with WeChat's "invalid url" errcode and what is forwarded.
pub(super) fn not_forwarded(path: &str, why: &str) -> Response {
    wechat_json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({
            "errcode": 40066,
            "errmsg": format!(
                "invalid url: the wxgate proxy does not forward {path:?}: {why}; it forwards {} \
                 and /sns/jscode2session, /sns/oauth2/access_token, /sns/userinfo",
                PREFIXES.join(", ")
            ),
        }),
    )
}

/// 405 in WeChat's shape (43001 "require GET method", 43002 "require POST method").
pub(super) async fn wrong_method(req: Request) -> Response {
    let (code, what) = match *req.method() {
        axum::http::Method::POST => (43001, "require GET method"),
        _ => (43002, "require POST method"),
    };
    let v = serde_json::json!({"errcode": code, "errmsg": what});
    wechat_json(StatusCode::METHOD_NOT_ALLOWED, &v)
}
