//! `GET /v1/apps/{id}/token` and `POST /v1/apps/{id}/token/invalidate`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::token_error;
use super::{ApiError, AppState, Body, auth::Caller};
use crate::token::Token;

fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn body(t: &Token, now_ms: i64) -> Value {
    json!({
        "access_token": t.value.expose(),
        "expires_in": t.expires_in_secs(now_ms),
        "expires_at": rfc3339(t.expires_at_ms),
    })
}

pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_app(&id)?;
    let t = s
        .tokens
        .get(&id)
        .await
        .map_err(|e| token_error(e, s.tokens.clock().now_ms()))?;
    Ok(Json(body(&t, s.tokens.clock().now_ms())))
}

#[derive(Deserialize)]
pub struct Report {
    access_token: Option<String>,
}

/// "This token was rejected by WeChat": refreshes once if it is still the current token, and
/// answers with the token to use now.
pub async fn invalidate(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    report: Body<Report>,
) -> Result<Json<Value>, ApiError> {
    caller.require_app(&id)?;
    let Json(r) = report?;
    let reported = r.access_token.filter(|t| !t.is_empty()).ok_or_else(|| {
        ApiError::invalid("access_token: required — the token WeChat rejected (40001/40014/42001)")
    })?;
    let (result, t) = s
        .tokens
        .invalidate(&id, &reported)
        .await
        .map_err(|e| token_error(e, s.tokens.clock().now_ms()))?;
    let mut out = body(&t, s.tokens.clock().now_ms());
    out["result"] = serde_json::to_value(result).unwrap_or_default();
    Ok(Json(out))
}
