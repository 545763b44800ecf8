//! WeChat's reply shapes: always HTTP 200 with JSON, `errcode`/`errmsg`, and the errmsg suffixes
//! real WeChat appends (`rid: …` on OA/MP, `hint: […], from ip: …, more info at …` on WeCom).

use std::net::IpAddr;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde_json::{Value, json};

/// A JSON reply with HTTP 200, as WeChat sends even for errors.
pub fn json_reply(v: &Value) -> Response {
    json_bytes_reply(serde_json::to_vec(v).unwrap_or_default())
}

/// HTTP 200 with an already serialised JSON body. Built by hand rather than through a
/// `(StatusCode, headers, body)` tuple: same response, without a second header insert per reply.
fn json_bytes_reply(body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// The success reply of a send, `{"errcode":0,"errmsg":"ok","msgid":N}`: byte for byte what
/// `json_reply(&json!({...}))` writes (serde_json orders keys), without building a `Value`.
/// It is on the hot path of every accepted send.
pub fn ok_msgid(msgid: u64) -> Response {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(br#"{"errcode":0,"errmsg":"ok","msgid":"#);
    body.extend_from_slice(msgid.to_string().as_bytes());
    body.push(b'}');
    json_bytes_reply(body)
}

/// An OA/MP error: `{"errcode":N,"errmsg":"<msg> rid: xxxxxxxx-xxxxxxxx-xxxxxxxx"}`.
pub fn mp_error(code: i64, msg: &str) -> Response {
    let rid = format!(
        "{:08x}-{:08x}-{:08x}",
        rand::random::<u32>(),
        rand::random::<u32>(),
        rand::random::<u32>()
    );
    json_reply(&json!({"errcode": code, "errmsg": format!("{msg} rid: {rid}")}))
}

/// A WeCom error with its `hint`, `from ip` and `more info` suffix.
pub fn wecom_error(code: i64, msg: &str, ip: IpAddr) -> Response {
    json_reply(&json!({"errcode": code, "errmsg": wecom_errmsg(code, msg, ip)}))
}

pub fn wecom_errmsg(code: i64, msg: &str, ip: IpAddr) -> String {
    format!(
        "{msg}, hint: [{}], from ip: {ip}, more info at https://open.work.weixin.qq.com/devtool/query?e={code}",
        rand::random::<u64>() % 10_000_000_000_000_000_000
    )
}

/// The standard errmsg for the codes the simulator answers.
pub fn errmsg(code: i64) -> &'static str {
    match code {
        -1 => "system error",
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40003 => "invalid openid",
        40004 => "invalid media type",
        40006 => "invalid media size",
        40007 => "invalid media_id",
        40008 => "invalid message type",
        40009 => "invalid image size",
        40010 => "invalid voice size",
        40011 => "invalid video size",
        40013 => "invalid appid",
        40014 => "invalid access_token",
        40032 => "invalid userid list size",
        40036 => "invalid template_id size",
        40037 => "invalid template_id",
        40056 => "invalid agentid",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40243 => "AppSecret已被冻结，请登录小程序平台解冻后再次调用",
        41001 => "access_token missing",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41005 => "media data missing",
        41006 => "media_id missing",
        41008 => "missing code",
        41009 => "missing openid",
        41030 => "invalid page",
        41033 => "missing textcard description",
        42001 => "access_token expired",
        43004 => "require subscribe",
        43101 => "user refuse to accept the msg",
        44002 => "empty post data",
        44004 => "empty content",
        45009 => "reach max api daily quota limit",
        45011 => "api minute-quota reach limit, must slower, retry next minute",
        45033 => "api concurrent out of limit",
        47001 => "data format error",
        47003 => "argument invalid!",
        48001 => "api unauthorized",
        48002 => "api forbidden for user refuse",
        48006 => "forbid to clear quota because of reaching the limit",
        50002 => "user limited",
        60020 => "not allow to access from your ip",
        76003 => "invalid cgi_path",
        76021 => "cgi_path not found, please check",
        76022 => "could not use this cgi_path, no permission",
        81013 => "UserID、部门ID、标签ID全部非法或无权限",
        82002 => "invalid party list size",
        82003 => "invalid tag list size",
        301002 => "not allow operate another agent with this accesstoken.",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_msgid_matches_the_json_value_reply() {
        for msgid in [0, 7, 3_428_411_849_815_982_087, u64::MAX] {
            let fast =
                serde_json::to_vec(&json!({"errcode": 0, "errmsg": "ok", "msgid": msgid})).unwrap();
            let resp = ok_msgid(msgid);
            assert_eq!(resp.status(), axum::http::StatusCode::OK);
            assert_eq!(
                resp.headers()[header::CONTENT_TYPE],
                "application/json; charset=utf-8"
            );
            let body = body_bytes(resp);
            assert_eq!(body, fast);
        }
    }

    fn body_bytes(resp: Response) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap()
                .to_vec()
        })
    }
}
