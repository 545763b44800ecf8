//! Bodies in proxy mode, both ways. A request body is kept when it ends within
//! `proxy.replay_body_limit` (so a call whose token was refused can be sent again) and streamed
//! once otherwise; an answer is read whole when it is JSON or text within a megabyte (its
//! errcode decides on a replay, and its bytes pass on unchanged) and streamed otherwise. A
//! stream that stalls for `proxy.timeout` between two chunks is cut; nothing else bounds how
//! long a big file may take.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::Deserialize;

use super::wechat_json;
use crate::wechat::Answer;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Request headers passed to WeChat (not `Accept-Encoding`: answers are read as sent).
pub(super) const REQUEST_HEADERS: [HeaderName; 4] = [
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

/// JSON and text answers up to this size are read whole; bigger ones stream.
const JSON_READ_LIMIT: usize = 1024 * 1024;

/// The headers of `from` named in `names`.
pub(super) fn pick(from: &HeaderMap, names: &[HeaderName]) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in names {
        for v in from.get_all(name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

/// A stream read up to a limit: all of it, or what was read and the rest.
enum Read<S> {
    Whole(Bytes),
    Partial(Bytes, S),
}

/// Reads `s` until it ends (`Whole`) or holds more than `limit` bytes (`Partial`), waiting at
/// most `idle` for each chunk.
async fn read_up_to<S, E>(mut s: S, limit: usize, idle: Duration) -> Result<Read<S>, BoxError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<BoxError>,
{
    let mut buf = BytesMut::new();
    loop {
        match tokio::time::timeout(idle, s.next()).await {
            Err(_) => return Err("no data for proxy.timeout".into()),
            Ok(None) => return Ok(Read::Whole(buf.freeze())),
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(Some(Ok(chunk))) => {
                buf.extend_from_slice(&chunk);
                if buf.len() > limit {
                    return Ok(Read::Partial(buf.freeze(), s));
                }
            }
        }
    }
}

/// `first` and then the rest of `s`, each later chunk within `idle` of the one before.
fn resumed<S, E>(
    first: Bytes,
    s: S,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send + 'static,
    E: Into<BoxError> + 'static,
{
    let rest = futures_util::stream::unfold(Some(s), move |s| async move {
        let mut s = s?;
        match tokio::time::timeout(idle, s.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(s))),
            Ok(Some(Err(e))) => Some((Err(e.into()), None)),
            Ok(None) => None,
            Err(_) => Some((Err("no data for proxy.timeout".into()), None)),
        }
    });
    futures_util::stream::once(async move { Ok(first) }).chain(rest)
}

/// A request body: kept (small enough to send twice) or streamed once.
pub(super) enum Outgoing {
    Kept(Bytes),
    Streamed(Option<reqwest::Body>),
}

impl Outgoing {
    /// Reads up to `limit` bytes of `body`. `Err`: the client stopped sending (cut short, or
    /// silent for `idle`); nothing is to be sent to WeChat.
    pub(super) async fn of(body: Body, limit: usize, idle: Duration) -> Result<Outgoing, BoxError> {
        Ok(
            match read_up_to(body.into_data_stream(), limit, idle).await? {
                Read::Whole(b) => Outgoing::Kept(b),
                Read::Partial(first, rest) => {
                    Outgoing::Streamed(Some(reqwest::Body::wrap_stream(resumed(first, rest, idle))))
                }
            },
        )
    }

    pub(super) fn replayable(&self) -> bool {
        matches!(self, Outgoing::Kept(_))
    }

    /// The body for one send: the kept bytes every time, a stream only once.
    pub(super) fn body(&mut self) -> reqwest::Body {
        match self {
            Outgoing::Kept(b) => reqwest::Body::from(b.clone()),
            Outgoing::Streamed(s) => s
                .take()
                .unwrap_or_else(|| reqwest::Body::from(Bytes::new())),
        }
    }
}

/// WeChat's answer to one call.
pub(super) enum Upstream {
    /// JSON (or text), read whole: its errcode decides whether the call is replayed.
    Read {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        errcode: Option<i64>,
    },
    /// A file (or a big answer), passed on as it streams.
    Stream {
        status: StatusCode,
        headers: HeaderMap,
        body: Body,
    },
    /// No answer, or it broke off before its body was read.
    Failed { timeout: bool, error: String },
}

#[derive(Deserialize)]
struct Errcode {
    errcode: Option<i64>,
}

impl Upstream {
    /// Sends `request`, waiting `idle` for the headers and for each chunk of the body.
    pub(super) async fn send(request: reqwest::RequestBuilder, idle: Duration) -> Upstream {
        let resp = match tokio::time::timeout(idle, request.send()).await {
            Err(_) => return Upstream::failed(true, "WeChat did not answer in time"),
            Ok(Err(e)) => return Upstream::failed(e.is_timeout(), &e.without_url().to_string()),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let mut headers = pick(resp.headers(), &ANSWER_HEADERS);
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let length = resp.headers().get(header::CONTENT_LENGTH).cloned();
        let stream = resp.bytes_stream().map_err(|e| e.without_url());
        if !(ct.contains("json") || ct.starts_with("text/")) {
            if let Some(n) = length {
                headers.insert(header::CONTENT_LENGTH, n);
            }
            let body = Body::from_stream(stream.map_err(BoxError::from));
            return Upstream::Stream {
                status,
                headers,
                body,
            };
        }
        match read_up_to(stream, JSON_READ_LIMIT, idle).await {
            Ok(Read::Whole(body)) => {
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
            Ok(Read::Partial(first, rest)) => Upstream::Stream {
                status,
                headers,
                body: Body::from_stream(resumed(first, rest, idle)),
            },
            Err(e) => Upstream::failed(false, &e.to_string()),
        }
    }

    fn failed(timeout: bool, error: &str) -> Upstream {
        Upstream::Failed {
            timeout,
            error: error.to_string(),
        }
    }

    /// Replaces every occurrence of `secret` in a read answer with `with` (an answer that
    /// echoes the request, as WeChat's `rid/get` does, must not hand out the real token).
    pub(super) fn scrub(&mut self, secret: &str, with: &str) {
        let Upstream::Read { body, .. } = self else {
            return;
        };
        if secret.is_empty() || !contains(body, secret.as_bytes()) {
            return;
        }
        let text = String::from_utf8_lossy(body).replace(secret, with);
        *body = Bytes::from(text);
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
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
            Upstream::Stream {
                status,
                headers,
                body,
            } => (status, headers, body).into_response(),
            Upstream::Failed { timeout, error } => {
                tracing::warn!(%error, "proxy: no answer from WeChat");
                let (status, what) = if timeout {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, BoxError>> + Unpin {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn a_stream_within_the_limit_is_kept_and_a_longer_one_resumes_whole() {
        let idle = Duration::from_secs(1);
        match read_up_to(chunks(&[b"ab", b"cd"]), 4, idle).await.unwrap() {
            Read::Whole(b) => assert_eq!(&b[..], b"abcd"),
            Read::Partial(..) => panic!("within the limit"),
        }
        let Read::Partial(first, rest) = read_up_to(chunks(&[b"ab", b"cd", b"ef", b"g"]), 3, idle)
            .await
            .unwrap()
        else {
            panic!("past the limit");
        };
        assert_eq!(&first[..], b"abcd");
        let all: Vec<Bytes> = resumed(first, rest, idle).try_collect().await.unwrap();
        assert_eq!(all.concat(), b"abcdefg");
    }

    #[tokio::test]
    async fn a_stalled_stream_is_cut_after_the_idle_time() {
        let stalled = futures_util::stream::pending::<Result<Bytes, BoxError>>();
        let r = read_up_to(stalled, 10, Duration::from_millis(20)).await;
        assert!(r.is_err());
    }

    #[test]
    fn a_read_answer_never_carries_the_real_token() {
        let mut a = Upstream::Read {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(br#"{"request":{"request_url":"access_token=REAL&x=1"}}"#),
            errcode: Some(0),
        };
        a.scrub("REAL", "wxgp.shop.k.m");
        let Upstream::Read { body, .. } = a else {
            unreachable!()
        };
        assert_eq!(
            &body[..],
            br#"{"request":{"request_url":"access_token=wxgp.shop.k.m&x=1"}}"#
        );
    }
}
