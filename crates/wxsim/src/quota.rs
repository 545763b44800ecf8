//! Quota management: `clear_quota` (with a token), `clear_quota/v2` (with appid + appsecret),
//! both limited to 10 resets a month (48006), and `openapi/quota/get`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::config::AppKind;
use crate::reply::{errmsg, json_reply, mp_error};
use crate::tokens::{Platform, TokenQuery, authorize};
use crate::world::{App, DayCounts, Sim, lock};

const CLEARS_PER_MONTH: u32 = 10;

#[derive(Deserialize, Default)]
struct ClearBody {
    appid: Option<String>,
    appsecret: Option<String>,
}

fn clear(sim: &Sim, app: &App) -> Response {
    let mut st = lock(&app.state);
    st.roll(sim.clock.now_ms());
    if st.clears_this_month >= CLEARS_PER_MONTH {
        return mp_error(48006, errmsg(48006));
    }
    st.clears_this_month += 1;
    st.daily = DayCounts::default();
    json_reply(&json!({"errcode": 0, "errmsg": "ok"}))
}

/// `POST /cgi-bin/clear_quota?access_token=…` `{"appid"}`.
pub(crate) async fn clear_quota(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<TokenQuery>,
    body: Bytes,
) -> Response {
    let app = match authorize(&sim, q.access_token.as_deref(), Platform::Mp) {
        Ok(a) => a,
        Err(c) => return mp_error(c, errmsg(c)),
    };
    let b: ClearBody = serde_json::from_slice(&body).unwrap_or_default();
    if b.appid.as_deref() != Some(app.key.as_str()) {
        return mp_error(40013, errmsg(40013));
    }
    clear(&sim, &app)
}

/// `POST /cgi-bin/clear_quota/v2` `{"appid","appsecret"}`: works when no token can be had.
pub(crate) async fn clear_quota_v2(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let b: ClearBody = serde_json::from_slice(&body).unwrap_or_default();
    let Some(app) = b.appid.as_deref().and_then(|a| sim.app_by_appid(a)) else {
        return mp_error(40013, errmsg(40013));
    };
    if b.appsecret.as_deref() != Some(lock(&app.state).spec.secret.as_str()) {
        return mp_error(40125, errmsg(40125));
    }
    clear(&sim, &app)
}

#[derive(Deserialize, Default)]
struct QuotaBody {
    cgi_path: Option<String>,
}

/// `POST /cgi-bin/openapi/quota/get?access_token=…` `{"cgi_path"}`.
pub(crate) async fn quota_get(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<TokenQuery>,
    body: Bytes,
) -> Response {
    let app = match authorize(&sim, q.access_token.as_deref(), Platform::Mp) {
        Ok(a) => a,
        Err(c) => return mp_error(c, errmsg(c)),
    };
    let b: QuotaBody = serde_json::from_slice(&body).unwrap_or_default();
    let path = b.cgi_path.unwrap_or_default();
    if !path.starts_with('/') || path.contains("://") || path.contains("weixin.qq.com") {
        return mp_error(76003, errmsg(76003));
    }
    // 76022: the API belongs to another account type (and `/sns/` paths are not supported).
    let owner = match path.as_str() {
        "/cgi-bin/message/template/send" => Some(AppKind::OfficialAccount),
        "/cgi-bin/message/subscribe/send" => Some(AppKind::MiniProgram),
        _ => None,
    };
    if path.starts_with("/sns/") || owner.is_some_and(|k| k != app.kind) {
        return mp_error(76022, errmsg(76022));
    }
    let mut st = lock(&app.state);
    st.roll(sim.clock.now_ms());
    let (limit, used, per_min) = match path.as_str() {
        "/cgi-bin/token" => (
            u64::from(st.spec.token_daily_limit),
            u64::from(st.daily.token),
            st.spec.token_minute_limit.map_or(0, u64::from),
        ),
        "/cgi-bin/stable_token" => (
            u64::from(st.spec.stable_daily_limit),
            u64::from(st.daily.stable),
            u64::from(st.spec.stable_minute_limit),
        ),
        "/cgi-bin/message/template/send" | "/cgi-bin/message/subscribe/send" => (
            st.spec.daily_send_limit(),
            st.daily.sends,
            st.spec
                .send_rate_per_sec
                .map_or(4_200_000, |r| u64::from(r) * 60),
        ),
        _ => return mp_error(76021, errmsg(76021)),
    };
    json_reply(&json!({
        "errcode": 0, "errmsg": "ok",
        "quota": {"daily_limit": limit, "used": used, "remain": limit.saturating_sub(used)},
        "rate_limit": {"call_count": per_min, "refresh_second": 60},
        "component_rate_limit": {"call_count": per_min / 4, "refresh_second": 60},
    }))
}
