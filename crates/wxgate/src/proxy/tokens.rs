//! The token endpoints of proxy mode: OA/MP `GET /cgi-bin/token` and `POST
//! /cgi-bin/stable_token`, WeCom `GET /cgi-bin/gettoken`. They take the app's appid (corpid)
//! and, in the secret slot, a wxgate API key for that app, and answer in WeChat's exact shape
//! with a placeholder. Nothing here calls WeChat: a client's `force_refresh` never reaches it.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::{ProxyState, count, wechat_error, wechat_json};
use crate::config::AppKind;

/// The placeholder never expires, but SDKs need a lifetime: they subtract margins from it
/// (WxJava 200 s, silenceper 1500 s, Senparc 600 s) and break on a small or missing one.
const EXPIRES_IN: i64 = 7200;

type Params = Query<HashMap<String, String>>;

/// `GET /cgi-bin/token?grant_type=client_credential&appid=…&secret=<wxgate key>`.
pub(super) async fn classic(State(s): State<ProxyState>, Query(q): Params) -> Response {
    let param = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    grant(
        &s,
        "/cgi-bin/token",
        param("grant_type"),
        param("appid"),
        param("secret"),
    )
    .await
}

/// The body of `POST /cgi-bin/stable_token`. Its `force_refresh` is ignored with every other
/// field this does not name: WeChat allows 20 forced refreshes a day, and wxgate alone decides
/// when a token is refreshed.
#[derive(Deserialize)]
pub(super) struct StableRequest {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    appid: String,
    #[serde(default)]
    secret: String,
}

/// `POST /cgi-bin/stable_token` with `{grant_type, appid, secret, force_refresh}`.
pub(super) async fn stable(State(s): State<ProxyState>, body: axum::body::Bytes) -> Response {
    let Ok(r) = serde_json::from_slice::<StableRequest>(&body) else {
        return wechat_error(47001, "data format error: expected a JSON body");
    };
    grant(
        &s,
        "/cgi-bin/stable_token",
        &r.grant_type,
        &r.appid,
        &r.secret,
    )
    .await
}

async fn grant(
    s: &ProxyState,
    path: &str,
    grant_type: &str,
    appid: &str,
    secret: &str,
) -> Response {
    if grant_type != "client_credential" {
        return wechat_error(40002, "invalid grant_type: expected client_credential");
    }
    let not_wecom = |k| k != AppKind::Wecom;
    match s
        .credential_for(("appid", appid), secret, not_wecom, wrong_appsecret)
        .await
    {
        Ok((app, holder)) => {
            count(&app.id, path, Some(0));
            let placeholder = s.placeholders.mint(&app.id, &holder);
            wechat_json(
                StatusCode::OK,
                &json!({"access_token": placeholder, "expires_in": EXPIRES_IN}),
            )
        }
        Err(r) => r,
    }
}

pub(super) fn wrong_appsecret() -> Response {
    wechat_error(
        40125,
        "invalid appsecret: give a wxgate API key for this app alone in the secret field \
         (POST /v1/keys with apps [\"<app id>\"]), not the app secret",
    )
}

/// `GET /cgi-bin/gettoken?corpid=…&corpsecret=<wxgate key>`: the key names the WeCom app
/// (a corp has one secret per app).
pub(super) async fn wecom(State(s): State<ProxyState>, Query(q): Params) -> Response {
    let corpid = q.get("corpid").map(String::as_str).unwrap_or("");
    let secret = q.get("corpsecret").map(String::as_str).unwrap_or("");
    let wrong = || {
        wechat_error(
            40001,
            "invalid secret: give a wxgate API key for this WeCom app alone in corpsecret, not \
             the app secret",
        )
    };
    let is_wecom = |k| k == AppKind::Wecom;
    match s
        .credential_for(("corpid", corpid), secret, is_wecom, wrong)
        .await
    {
        Ok((app, holder)) => {
            count(&app.id, "/cgi-bin/gettoken", Some(0));
            let placeholder = s.placeholders.mint(&app.id, &holder);
            wechat_json(
                StatusCode::OK,
                &json!({"errcode": 0, "errmsg": "ok", "access_token": placeholder, "expires_in": EXPIRES_IN}),
            )
        }
        Err(r) => r,
    }
}
