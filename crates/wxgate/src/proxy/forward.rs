//! Forwarding: a call carrying a placeholder goes to its app's host (OA/MP → `wechat_api_base`,
//! WeCom → `wecom_api_base`) with the real token in place of the placeholder, through
//! [`Client::with_token`](crate::wechat::Client::with_token): a refused token is reported once
//! and the call replayed once. Bodies stream both ways; JSON answers are read (to see their
//! errcode) and passed on byte for byte; files keep their headers, `Range` and 206 included.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use super::{ProxyState, count, wechat_error, wechat_json};
use crate::token::{Token, TokenError};
use crate::wechat::{Answer, Called, ErrClass, classify_call};

/// Paths forwarded with the app's token. `/sns/` calls are handled in `sns.rs`.
const PREFIXES: [&str; 6] = [
    "/cgi-bin/",
    "/wxa/",
    "/datacube/",
    "/card/",
    "/customservice/",
    "/merchant/",
];

/// Request headers passed to WeChat (not `Accept-Encoding`: answers are read as sent).
const REQUEST_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::RANGE,
    header::IF_RANGE,
];

/// Answer headers passed back: SDKs tell a file from an error by `Content-Type`, WxJava needs
/// `Content-Disposition`, WeCom's big media need the range headers.
const ANSWER_HEADERS: [HeaderName; 7] = [
    header::CONTENT_TYPE,
    header::CONTENT_DISPOSITION,
    header::CONTENT_RANGE,
    header::ACCEPT_RANGES,
    header::CACHE_CONTROL,
    header::ETAG,
    header::LAST_MODIFIED,
];

/// JSON answers up to this size are read whole to see their errcode; anything bigger streams.
const JSON_READ_LIMIT: u64 = 1024 * 1024;

/// The catch-all route: every path that is not a token endpoint or a login call.
pub(super) async fn forward(State(s): State<ProxyState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    if path.starts_with("/sns/") {
        return super::sns::passthrough(&s, &path, parts.uri.query().unwrap_or(""), &parts.method)
            .await;
    }
    if !PREFIXES.iter().any(|p| path.starts_with(p)) {
        return not_forwarded(&path);
    }
    let query = parts.uri.query().unwrap_or("");
    let Some(placeholder) = param(query, "access_token") else {
        return wechat_error(41001, "access_token missing");
    };
    let app = match s.holder(&placeholder).await {
        Ok(Some(held)) => held,
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
    let mut outgoing = Outgoing::of(body, &parts.headers, s.settings.replay_body_limit).await;
    let replayable = matches!(outgoing, Outgoing::Kept(_));
    let url = s.client.url(app.kind(), &path);
    let rest = without(query, "access_token");
    let mut headers = pick(&parts.headers, &REQUEST_HEADERS);
    if !replayable && let Some(n) = parts.headers.get(header::CONTENT_LENGTH) {
        // A streamed body keeps its length: WeChat's upload endpoints may want it.
        headers.insert(header::CONTENT_LENGTH, n.clone());
    }
    let called = s
        .client
        .with_token(&s.tokens, &app.id, replayable, |token: Token| {
            let query = join(&rest, "access_token", token.value.expose());
            let request = s
                .client
                .http()
                .request(parts.method.clone(), format!("{url}?{query}"))
                .headers(headers.clone())
                .timeout(s.settings.timeout)
                .body(outgoing.body());
            async move { Upstream::of(request.send().await).await }
        })
        .await;
    let Called {
        answer, refused, ..
    } = match called {
        Ok(c) => c,
        Err(e) => return no_token(&app.id, &path, &e),
    };
    let code = answer.errcode();
    if code.is_some_and(|c| classify_call(c) == ErrClass::Refresh) {
        // Refused again after one refresh and replay, or not replayable: a token error here
        // would send SDKs into their own refresh-and-resend loops (wechatpy's has no limit).
        count(&app.id, &path, code);
        tracing::warn!(app = %app.id, path = %path, errcode = ?code, replayed = refused.is_some(), "proxy: WeChat refused the app's token and the call could not be completed");
        let why = if replayable {
            "even after wxgate refreshed it"
        } else {
            "and the request body was over proxy.replay_body_limit, so it was not replayed"
        };
        return wechat_error(
            -1,
            format!(
                "system error: WeChat refused app {:?}'s access_token (errcode {}) {why}; \
                 send the request again",
                app.id,
                code.unwrap_or_default()
            ),
        );
    }
    count(&app.id, &path, code);
    answer.into_response()
}

/// Sends `request` (already complete: the query holds the real token or secret) and passes
/// the answer on; for calls that need no token handling (login calls, `/sns/userinfo`).
pub(super) async fn relay(app: &str, path: &str, request: reqwest::RequestBuilder) -> Response {
    let answer = Upstream::of(request.send().await).await;
    count(app, path, answer.errcode());
    answer.into_response()
}

/// WeChat has no token for the app now (breaker open, wrong app secret, quota): a "system
/// busy" that SDKs retry a bounded number of times, with the reason (never the secret).
fn no_token(app: &str, path: &str, e: &TokenError) -> Response {
    count(app, path, Some(-1));
    wechat_error(
        -1,
        format!("system error: wxgate has no access_token for app {app:?} now: {e}"),
    )
}

fn not_forwarded(path: &str) -> Response {
    let mut r = wechat_json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({
            "errcode": 40066,
            "errmsg": format!(
                "invalid url: the wxgate proxy does not forward {path:?}; it forwards {} and \
                 /sns/jscode2session, /sns/oauth2/*, /sns/userinfo, /sns/auth",
                PREFIXES.join(", ")
            ),
        }),
    );
    r.headers_mut().remove(header::CONTENT_LENGTH);
    r
}

/// A request body: kept (small enough to send twice) or streamed once.
enum Outgoing {
    Kept(Bytes),
    Streamed(Option<reqwest::Body>),
}

impl Outgoing {
    async fn of(body: Body, headers: &HeaderMap, limit: usize) -> Outgoing {
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let chunked = headers.contains_key(header::TRANSFER_ENCODING);
        match length {
            Some(n) if n <= limit as u64 => {
                if let Ok(b) = axum::body::to_bytes(body, limit).await {
                    return Outgoing::Kept(b);
                }
                // Shorter or longer than it said: pass on what there is and let WeChat judge.
                Outgoing::Kept(Bytes::new())
            }
            None if !chunked => Outgoing::Kept(Bytes::new()),
            _ => Outgoing::Streamed(Some(reqwest::Body::wrap_stream(body.into_data_stream()))),
        }
    }

    /// The body for one send: the kept bytes every time, a stream only once.
    fn body(&mut self) -> reqwest::Body {
        match self {
            Outgoing::Kept(b) => reqwest::Body::from(b.clone()),
            Outgoing::Streamed(s) => s
                .take()
                .unwrap_or_else(|| reqwest::Body::from(Bytes::new())),
        }
    }
}

/// WeChat's answer to one call.
enum Upstream {
    /// JSON (or text), read whole: its errcode decides whether the call is replayed.
    Read {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        errcode: Option<i64>,
    },
    /// A file, passed on as it streams.
    Stream(reqwest::Response),
    /// No answer.
    Failed(reqwest::Error),
}

#[derive(Deserialize)]
struct Errcode {
    errcode: Option<i64>,
}

impl Upstream {
    async fn of(sent: Result<reqwest::Response, reqwest::Error>) -> Upstream {
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return Upstream::Failed(e.without_url()),
        };
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let small = resp.content_length().is_none_or(|n| n <= JSON_READ_LIMIT);
        if !(small && (ct.contains("json") || ct.starts_with("text/"))) {
            return Upstream::Stream(resp);
        }
        let status = resp.status();
        let headers = pick(resp.headers(), &ANSWER_HEADERS);
        match resp.bytes().await {
            Ok(body) => {
                let errcode = serde_json::from_slice::<Errcode>(&body)
                    .ok()
                    .and_then(|e| e.errcode);
                Upstream::Read {
                    status,
                    headers,
                    body,
                    errcode,
                }
            }
            Err(e) => Upstream::Failed(e.without_url()),
        }
    }
}

impl Answer for Upstream {
    fn errcode(&self) -> Option<i64> {
        match self {
            Upstream::Read { errcode, .. } => *errcode,
            _ => None,
        }
    }
}

impl IntoResponse for Upstream {
    fn into_response(self) -> Response {
        match self {
            Upstream::Read {
                status,
                headers,
                body,
                ..
            } => (status, headers, body).into_response(),
            Upstream::Stream(resp) => {
                let status = resp.status();
                let mut headers = pick(resp.headers(), &ANSWER_HEADERS);
                if let Some(n) = resp.headers().get(header::CONTENT_LENGTH) {
                    headers.insert(header::CONTENT_LENGTH, n.clone());
                }
                (status, headers, Body::from_stream(resp.bytes_stream())).into_response()
            }
            Upstream::Failed(e) => {
                tracing::warn!(error = %e, "proxy: no answer from WeChat");
                let (status, what) = if e.is_timeout() {
                    (StatusCode::GATEWAY_TIMEOUT, "WeChat did not answer in time")
                } else {
                    (StatusCode::BAD_GATEWAY, "wxgate could not reach WeChat")
                };
                wechat_json(
                    status,
                    &serde_json::json!({"errcode": -1, "errmsg": format!("system error: {what}")}),
                )
            }
        }
    }
}

/// The headers of `from` named in `names`.
fn pick(from: &HeaderMap, names: &[HeaderName]) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in names {
        for v in from.get_all(name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

/// The value of the first `name=` pair of a raw query string (undecoded: WeChat tokens and
/// placeholders are URL-safe).
pub(super) fn param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A raw query string without its `name` pairs; the others kept as sent, in order.
pub(super) fn without(query: &str, name: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(name))
        .collect::<Vec<_>>()
        .join("&")
}

/// `query` with `name=value` added (`value` percent-encoded).
pub(super) fn join(query: &str, name: &str, value: &str) -> String {
    let value: String = url_escape(value);
    match query.is_empty() {
        true => format!("{name}={value}"),
        false => format!("{query}&{name}={value}"),
    }
}

fn url_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_replaced_in_place_and_kept_as_sent() {
        let q = "type=image&access_token=wxgp.a.b.c&x=%E4%B8%AD";
        assert_eq!(param(q, "access_token").as_deref(), Some("wxgp.a.b.c"));
        assert_eq!(param(q, "access"), None);
        let rest = without(q, "access_token");
        assert_eq!(rest, "type=image&x=%E4%B8%AD");
        assert_eq!(
            join(&rest, "access_token", "T/+1"),
            "type=image&x=%E4%B8%AD&access_token=T%2F%2B1"
        );
        assert_eq!(join("", "access_token", "T"), "access_token=T");
        assert_eq!(without("access_token=1&access_token=2", "access_token"), "");
    }
}
