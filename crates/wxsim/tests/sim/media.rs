//! Temporary media: `media/upload` (multipart) and `media/get` (whole, or one `Range`), in OA/MP
//! and WeCom shapes, with the token checks of the send APIs.

use serde_json::Value;

use crate::helpers::*;

const UPLOAD: &str = "/cgi-bin/media/upload";
const GET: &str = "/cgi-bin/media/get";

/// Bytes that would trip a careless multipart parser: every byte value, CRLFs and a fake
/// delimiter.
fn awkward_bytes() -> Vec<u8> {
    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend_from_slice(b"\r\n--wxsim-test-boundar\r\n\r\n--");
    data.extend((0..=255u8).rev());
    data
}

fn media_id(v: &Value) -> String {
    let id = v["media_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no media_id in {v}"));
    assert!(
        id.len() >= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "{id}"
    );
    id.to_string()
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// A JSON error from `media/get`: HTTP 200, WeChat's `encoding=utf-8` content type, this errcode.
async fn assert_get_err(resp: reqwest::Response, code: i64) -> Value {
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type"),
        "application/json; encoding=utf-8"
    );
    let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(errcode(&v), code, "{v}");
    v
}

#[tokio::test]
async fn oa_upload_then_download_byte_for_byte() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    let data = awkward_bytes();
    let before = s.h.clock().now_secs();
    let r = s
        .upload(&t, "image", "photo.png", Some("image/png"), &data)
        .await;
    // OA/MP shape: no errcode, created_at an integer.
    let obj = r.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["created_at", "media_id", "type"], "{r}");
    assert_eq!(r["type"], "image");
    let created = r["created_at"].as_i64().expect("an integer");
    assert!(
        (before..=before + 5).contains(&created),
        "{created} vs {before}"
    );
    let id = media_id(&r);

    let resp = s.media_get(&t, &id, None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "image/png");
    assert_eq!(
        header(&resp, "content-disposition"),
        "attachment; filename=\"photo.png\""
    );
    assert_eq!(header(&resp, "accept-ranges"), "bytes");
    assert_eq!(header(&resp, "content-length"), data.len().to_string());
    assert_eq!(resp.bytes().await.unwrap().as_ref(), data.as_slice());
    assert_eq!(s.calls(OA, UPLOAD), 1);
    assert_eq!(s.calls(OA, GET), 1);
    assert_eq!(s.stats(OA).token_uses.valid, 2);
}

#[tokio::test]
async fn wecom_upload_shape_and_download() {
    let s = Sim::demo().await;
    let w = s.wecom_token(CORP, WECOM_SECRET).await;
    let r = s
        .upload(&w, "file", "报表.xlsx", None, b"PK\x03\x04 sheet")
        .await;
    assert_ok(&r);
    assert_eq!(r["type"], "file");
    let created = r["created_at"].as_str().expect("a string");
    assert!(created.parse::<i64>().unwrap() > 1_600_000_000, "{created}");
    let id = media_id(&r);
    let resp = s.media_get(&w, &id, None).await;
    assert_eq!(resp.status(), 200);
    // No part Content-Type: stored as octet-stream.
    assert_eq!(header(&resp, "content-type"), "application/octet-stream");
    assert_eq!(
        resp.headers()["content-disposition"].as_bytes(),
        "attachment; filename=\"报表.xlsx\"".as_bytes()
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"PK\x03\x04 sheet");
    assert_eq!(s.calls(WECOM, UPLOAD), 1);
    assert_eq!(s.calls(WECOM, GET), 1);
}

#[tokio::test]
async fn media_get_range_206() {
    let s = Sim::demo().await;
    let t = s.token(MP, MP_SECRET).await;
    let data: Vec<u8> = (0..100u8).collect();
    let id = media_id(
        &s.upload(&t, "voice", "a.amr", Some("audio/amr"), &data)
            .await,
    );

    let resp = s.media_get(&t, &id, Some("bytes=10-19")).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(header(&resp, "content-range"), "bytes 10-19/100");
    assert_eq!(header(&resp, "content-length"), "10");
    assert_eq!(header(&resp, "content-type"), "audio/amr");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[10..20]);

    let resp = s.media_get(&t, &id, Some("bytes=95-")).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(header(&resp, "content-range"), "bytes 95-99/100");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[95..]);

    // An end past the file is cut to it; a start past it is unsatisfiable.
    let resp = s.media_get(&t, &id, Some("bytes=90-500")).await;
    assert_eq!(header(&resp, "content-range"), "bytes 90-99/100");
    let resp = s.media_get(&t, &id, Some("bytes=100-")).await;
    assert_eq!(resp.status(), 416);
    assert_eq!(header(&resp, "content-range"), "bytes */100");
}

#[tokio::test]
async fn unknown_or_foreign_or_old_media_40007() {
    let s = Sim::demo().await;
    let oa = s.token(OA, OA_SECRET).await;
    let mp = s.token(MP, MP_SECRET).await;
    let v = assert_get_err(s.media_get(&oa, "no-such-media", None).await, 40007).await;
    assert!(errmsg(&v).starts_with("invalid media_id"), "{v}");
    assert_rid(errmsg(&v));
    // Media belong to the app that uploaded them.
    let id = media_id(
        &s.upload(&oa, "image", "a.jpg", Some("image/jpeg"), b"jpeg")
            .await,
    );
    assert_get_err(s.media_get(&mp, &id, None).await, 40007).await;
    assert_eq!(s.media_get(&oa, &id, None).await.status(), 200);
    // Temporary media live 3 days.
    s.advance_secs(3 * 86_400 - 3600);
    let oa = s.token(OA, OA_SECRET).await;
    assert_eq!(s.media_get(&oa, &id, None).await.status(), 200);
    s.advance_secs(3600);
    let oa = s.token(OA, OA_SECRET).await;
    assert_get_err(s.media_get(&oa, &id, None).await, 40007).await;
    assert_get_err(s.media_get(&oa, "", None).await, 41006).await;
    assert_eq!(s.stats(OA).sends_rejected.get(&40007), Some(&2));
    assert_eq!(s.stats(MP).sends_rejected.get(&40007), Some(&1));
}

#[tokio::test]
async fn upload_without_media_field_41005_and_other_checks() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    let path = format!("{UPLOAD}?access_token={t}&type=image");
    let post = |body: Vec<u8>, ct: &'static str| {
        let req = s.c.post(s.url(&path)).header("content-type", ct).body(body);
        async move { Sim::json_of(req.send().await.unwrap()).await }
    };
    let wrong_field = multipart("bnd", "file", "a.jpg", Some("image/jpeg"), b"data");
    let r = post(wrong_field, "multipart/form-data; boundary=bnd").await;
    assert_err(&r, 41005);
    assert!(errmsg(&r).starts_with("media data missing"), "{r}");
    assert_err(&post(b"{}".to_vec(), "application/json").await, 41005);
    assert_err(
        &post(Vec::new(), "multipart/form-data; boundary=bnd").await,
        41005,
    );
    let empty = multipart("bnd", "media", "a.jpg", Some("image/jpeg"), b"");
    assert_err(
        &post(empty, "multipart/form-data; boundary=bnd").await,
        41005,
    );

    assert_err(&s.upload(&t, "gif", "a.gif", None, b"GIF89a").await, 40004);
    assert_err(&s.upload(&t, "", "a.gif", None, b"GIF89a").await, 40004);
    let big = vec![0u8; 2 * 1024 * 1024 + 1];
    assert_err(&s.upload(&t, "voice", "a.amr", None, &big).await, 40010);
    assert_eq!(s.stats(OA).sends_rejected.get(&41005), Some(&4));
    assert_eq!(s.calls(OA, UPLOAD), 7);
}

#[tokio::test]
async fn media_token_checks_match_the_send_apis() {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    let id = media_id(&s.upload(&t, "image", "a.jpg", None, b"jpeg").await);
    assert_eq!(s.h.revoke_token(OA), 1);
    assert_err(&s.upload(&t, "image", "a.jpg", None, b"jpeg").await, 40001);
    assert_get_err(s.media_get(&t, &id, None).await, 40001).await;
    assert_eq!(s.stats(OA).token_uses.revoked, 2);

    let t = s.token(OA, OA_SECRET).await;
    s.advance_secs(7200);
    assert_err(&s.upload(&t, "image", "a.jpg", None, b"jpeg").await, 42001);
    assert_err(
        &s.upload("garbage", "image", "a.jpg", None, b"jpeg").await,
        40014,
    );
    let r = s
        .post_bytes(&format!("{UPLOAD}?type=image"), Vec::new())
        .await;
    assert_err(&r, 41001);

    // WeCom tokens answer in WeCom's words: revoked → 40014.
    let w = s.wecom_token(CORP, WECOM_SECRET).await;
    s.h.revoke_token(WECOM);
    assert_wecom_err(&s.upload(&w, "image", "a.jpg", None, b"jpeg").await, 40014);
    // The revoked calls still reached WeChat.
    assert_eq!(s.calls(OA, UPLOAD), 3);
    assert_eq!(s.calls(OA, GET), 1);
    assert_eq!(s.calls(WECOM, UPLOAD), 1);
}
