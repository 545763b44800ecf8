//! The echo: any `GET` or `POST` under WeChat's token-bearing prefixes (`/cgi-bin/`, `/wxa/`,
//! `/datacube/`, `/card/`, `/customservice/`, `/merchant/`) that no other route serves passes the
//! token check and answers what it received, so a test can see a call proxied to WeChat as it
//! was sent. Other unknown paths still answer 404.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::response::Response;
use serde_json::json;

use crate::calls::raw_param;
use crate::digest::{hex, sha256};
use crate::reply::json_reply;
use crate::server::client_ip;
use crate::tokens::authorize_call;
use crate::world::Sim;

const PREFIXES: [&str; 6] = [
    "/cgi-bin/",
    "/wxa/",
    "/datacube/",
    "/card/",
    "/customservice/",
    "/merchant/",
];

/// The largest body read; a bigger one answers 413.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Whether the echo answers this request (the router's fallback asks before passing it on).
pub(crate) fn serves(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::POST)
        && PREFIXES.iter().any(|p| path.starts_with(p))
}

/// The query string without its `access_token` pairs, in the order sent.
fn query_without_token(query: &str) -> String {
    query
        .split('&')
        .filter(|kv| !kv.is_empty() && *kv != "access_token" && !kv.starts_with("access_token="))
        .collect::<Vec<_>>()
        .join("&")
}

/// `{"errcode":0,"errmsg":"ok","echo":{"method","path","query","content_type","body_len",
/// "body_sha256"}}` after the token check of the token's own host.
pub(crate) async fn echo(State(sim): State<Arc<Sim>>, req: Request) -> Response {
    let ip = client_ip(&sim, req.extensions(), req.headers());
    let query = req.uri().query().unwrap_or_default().to_string();
    if let Err(r) = authorize_call(&sim, raw_param(&query, "access_token"), ip) {
        return r;
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let mut r = Response::new(axum::body::Body::from("body too large"));
            *r.status_mut() = axum::http::StatusCode::PAYLOAD_TOO_LARGE;
            return r;
        }
    };
    json_reply(&json!({
        "errcode": 0,
        "errmsg": "ok",
        "echo": {
            "method": method,
            "path": path,
            "query": query_without_token(&query),
            "content_type": content_type,
            "body_len": body.len(),
            "body_sha256": hex(&sha256(&body)),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_pairs_leave_the_query() {
        assert_eq!(query_without_token("access_token=83_x&a=1&b=2"), "a=1&b=2");
        assert_eq!(query_without_token("a=1&access_token=83_x"), "a=1");
        assert_eq!(query_without_token("access_token=83_x"), "");
        assert_eq!(
            query_without_token("my_access_token=1&&c"),
            "my_access_token=1&c"
        );
    }

    #[test]
    fn serves_get_and_post_under_the_prefixes_only() {
        assert!(serves(&Method::GET, "/cgi-bin/user/info"));
        assert!(serves(&Method::POST, "/wxa/getwxacodeunlimit"));
        assert!(serves(&Method::POST, "/merchant/x"));
        assert!(!serves(&Method::PUT, "/cgi-bin/user/info"));
        assert!(!serves(&Method::GET, "/sns/whatever"));
        assert!(!serves(&Method::GET, "/cgi-binx"));
        assert!(!serves(&Method::GET, "/"));
    }
}
