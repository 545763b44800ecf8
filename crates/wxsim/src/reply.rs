//! WeChat's reply shapes: always HTTP 200 with JSON, `errcode`/`errmsg`, and the errmsg suffixes
//! real WeChat appends (`rid: …` on OA/MP, `hint: […], from ip: …, more info at …` on WeCom).

use std::net::IpAddr;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A JSON reply with HTTP 200, as WeChat sends even for errors.
pub fn json_reply(v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        body,
    )
        .into_response()
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
        40008 => "invalid message type",
        40013 => "invalid appid",
        40014 => "invalid access_token",
        40032 => "invalid userid list size",
        40036 => "invalid template_id size",
        40037 => "invalid template_id",
        40056 => "invalid agentid",
        40125 => "invalid appsecret",
        40243 => "AppSecret已被冻结，请登录小程序平台解冻后再次调用",
        41001 => "access_token missing",
        41002 => "appid missing",
        41004 => "appsecret missing",
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
