//! Temporary media: `POST /cgi-bin/media/upload` (multipart/form-data, file field `media`) and
//! `GET /cgi-bin/media/get` (the bytes back, with a single `Range`), on both hosts: OA/MP and
//! WeCom answer in their own shapes. Media are kept in memory per app for 3 days.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use crate::config::AppKind;
use crate::reply::json_reply;
use crate::server::ClientIp;
use crate::tokens::{authorize_call, reject_call};
use crate::world::{Media, Sim, lock, random_chars};

/// Temporary media live 3 days; after that `media/get` answers 40007.
const MEDIA_TTL_MS: i64 = 3 * 86_400_000;
const MIB: usize = 1024 * 1024;
/// The largest upload body read: the largest file (20 MiB) plus room for the multipart framing.
pub(crate) const MAX_UPLOAD_BODY: usize = 21 * MIB;

/// The size limit and the errcode past it, per media type (WeChat: image 10 MB, voice 2 MB,
/// video 10 MB, file 20 MB).
fn size_limit(kind: &str) -> Option<(usize, i64)> {
    match kind {
        "image" => Some((10 * MIB, 40009)),
        "voice" => Some((2 * MIB, 40010)),
        "video" => Some((10 * MIB, 40011)),
        "file" => Some((20 * MIB, 40006)),
        _ => None,
    }
}

type Params = Query<HashMap<String, String>>;

/// `POST /cgi-bin/media/upload?access_token=…&type=image|voice|video|file`.
pub(crate) async fn upload(
    State(sim): State<Arc<Sim>>,
    ClientIp(ip): ClientIp,
    Query(q): Params,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let app = match authorize_call(&sim, q.get("access_token").map(String::as_str), ip) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let kind = q.get("type").map(String::as_str).unwrap_or_default();
    let Some((limit, too_big)) = size_limit(kind) else {
        return reject_call(&app, 40004, ip);
    };
    let part = match multipart {
        Ok(m) => media_part(m).await,
        Err(_) => Ok(None),
    };
    let part = match part {
        Ok(p) => p,
        // Past the body limit (or a broken body): WeChat's "too big" for the type.
        Err(()) => return reject_call(&app, too_big, ip),
    };
    let Some(part) = part.filter(|p| !p.data.is_empty()) else {
        return reject_call(&app, 41005, ip);
    };
    if part.data.len() > limit {
        return reject_call(&app, too_big, ip);
    }
    let now = sim.clock.now_ms();
    let media_id = random_chars(64);
    let media = Media {
        bytes: part.data,
        content_type: part
            .content_type
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "application/octet-stream".into()),
        filename: part
            .filename
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "file".into()),
        created_ms: now,
    };
    lock(&app.state).media.insert(media_id.clone(), media);
    let created_at = now.div_euclid(1000);
    if app.kind == AppKind::Wecom {
        json_reply(&json!({
            "errcode": 0, "errmsg": "ok", "type": kind, "media_id": media_id,
            "created_at": created_at.to_string(),
        }))
    } else {
        json_reply(&json!({"type": kind, "media_id": media_id, "created_at": created_at}))
    }
}

/// `GET /cgi-bin/media/get?access_token=…&media_id=…`: the file as it was uploaded, or a single
/// byte range of it (206). Errors are JSON with WeChat's `application/json; encoding=utf-8`,
/// which is how a client tells them from a file.
pub(crate) async fn get(
    State(sim): State<Arc<Sim>>,
    ClientIp(ip): ClientIp,
    Query(q): Params,
    headers: HeaderMap,
) -> Response {
    let app = match authorize_call(&sim, q.get("access_token").map(String::as_str), ip) {
        Ok(a) => a,
        Err(r) => return json_error(r),
    };
    let Some(id) = q.get("media_id").filter(|s| !s.is_empty()) else {
        return json_error(reject_call(&app, 41006, ip));
    };
    let now = sim.clock.now_ms();
    let media = lock(&app.state)
        .media
        .get(id)
        .filter(|m| now - m.created_ms < MEDIA_TTL_MS)
        .cloned();
    let Some(media) = media else {
        return json_error(reject_call(&app, 40007, ip));
    };
    let total = media.bytes.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| byte_range(v, total));
    let (status, body, first) = match range {
        None | Some(RangeAsk::Ignore) => (StatusCode::OK, media.bytes.clone(), None),
        Some(RangeAsk::Unsatisfiable) => {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let cr = format!("bytes */{total}");
            resp.headers_mut()
                .insert(header::CONTENT_RANGE, HeaderValue::from_str(&cr).unwrap());
            return resp;
        }
        Some(RangeAsk::Range(r)) => (
            StatusCode::PARTIAL_CONTENT,
            media.bytes.slice(r.clone()),
            Some(r.start),
        ),
    };
    let len = body.len();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&media.content_type)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_DISPOSITION, disposition(&media.filename));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, must-revalidate"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(first) = first {
        let cr = format!("bytes {first}-{}/{total}", first + len - 1);
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&cr).unwrap());
    }
    resp
}

/// `media/get` words its JSON errors with `encoding=`, not `charset=`.
fn json_error(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; encoding=utf-8"),
    );
    r
}

/// `attachment; filename="…"` with `"` and `\` escaped (and control characters dropped).
fn disposition(filename: &str) -> HeaderValue {
    let mut v = String::from("attachment; filename=\"");
    for c in filename.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            v.push('\\');
        }
        v.push(c);
    }
    v.push('"');
    HeaderValue::from_bytes(v.as_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static("attachment; filename=\"file\""))
}

/// What a `Range` header asks of a file of `total` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// Not a single byte range the simulator serves (another unit, several ranges, garbage):
    /// answered with the whole file, as a server may.
    Ignore,
    /// Starts past the end (or an empty suffix): 416.
    Unsatisfiable,
    Range(Range<usize>),
}

/// Parse `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `total` bytes.
fn byte_range(v: &str, total: usize) -> RangeAsk {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return RangeAsk::Ignore;
    };
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Ignore;
    };
    if spec.contains(',') {
        return RangeAsk::Ignore;
    }
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| s.parse::<usize>().ok();
    let r = match (a.is_empty(), b.is_empty()) {
        (false, true) => num(a).map(|a| a..total),
        (false, false) => match (num(a), num(b)) {
            (Some(a), Some(b)) if a <= b => Some(a..(b + 1).min(total)),
            _ => None,
        },
        (true, false) => match num(b) {
            Some(0) => return RangeAsk::Unsatisfiable,
            Some(n) => Some(total.saturating_sub(n)..total),
            None => None,
        },
        (true, true) => None,
    };
    match r {
        None => RangeAsk::Ignore,
        Some(r) if r.start >= total => RangeAsk::Unsatisfiable,
        Some(r) => RangeAsk::Range(r),
    }
}

/// The `media` file of an upload, read with multer (through axum). `Err` when the body is
/// over the limit; a broken body has no media.
struct FilePart {
    data: axum::body::Bytes,
    filename: Option<String>,
    content_type: Option<String>,
}

async fn media_part(mut m: Multipart) -> Result<Option<FilePart>, ()> {
    let judge = |e: axum::extract::multipart::MultipartError| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Err(()),
        _ => Ok(None),
    };
    loop {
        let field = match m.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(None),
            Err(e) => return judge(e),
        };
        if field.name() != Some("media") {
            continue;
        }
        let filename = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(str::to_string);
        return match field.bytes().await {
            Ok(data) => Ok(Some(FilePart {
                data,
                filename,
                content_type,
            })),
            Err(e) => judge(e),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeAsk::*;
        assert_eq!(byte_range("bytes=0-9", 100), Range(0..10));
        assert_eq!(byte_range("bytes=90-", 100), Range(90..100));
        assert_eq!(byte_range("bytes=90-1000", 100), Range(90..100));
        assert_eq!(byte_range("bytes=-10", 100), Range(90..100));
        assert_eq!(byte_range("bytes=-1000", 100), Range(0..100));
        assert_eq!(byte_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(byte_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(byte_range("bytes=5-2", 100), Ignore);
        assert_eq!(byte_range("bytes=0-1,5-6", 100), Ignore);
        assert_eq!(byte_range("items=0-1", 100), Ignore);
        assert_eq!(byte_range("bytes=x-", 100), Ignore);
    }

    #[test]
    fn disposition_escapes_quotes() {
        assert_eq!(
            disposition("a\"b\\c.jpg"),
            "attachment; filename=\"a\\\"b\\\\c.jpg\""
        );
        assert_eq!(
            disposition("中.png").as_bytes(),
            "attachment; filename=\"中.png\"".as_bytes()
        );
    }
}
