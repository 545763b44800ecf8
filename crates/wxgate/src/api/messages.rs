//! `POST /v1/messages`, `GET /v1/messages/{id}`: one message into the outbox (202 only once it
//! is committed), and everything known about it, every attempt included.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{ApiError, AppState, auth::Caller, idempotency};
use std::sync::Arc;

use crate::apps::App;
use crate::message;
use crate::store::{Inserted, NewMessage, new_id};

/// The app a message names, if the caller may use it.
pub(super) fn app_for(s: &AppState, caller: &Caller, app: &str) -> Result<Arc<App>, ApiError> {
    caller.require_app(app)?;
    s.apps
        .get(app)
        .ok_or_else(|| ApiError::not_found("app", app))
}

/// `send_at` (RFC 3339) as epoch ms; absent = now.
pub(super) fn due_at(send_at: Option<&str>, now_ms: i64) -> Result<i64, ApiError> {
    let Some(text) = send_at else {
        return Ok(now_ms);
    };
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            ApiError::invalid(format!(
                "send_at: {text:?} is not an RFC 3339 time; use e.g. \"2026-11-23T20:00:00+08:00\""
            ))
        })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the JSON body is not valid: {e}")))
}

pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: message::MessageRequest = parse_json(&body)?;
    let app = app_for(&s, &caller, &req.app)?;
    let now = s.tokens.clock().now_ms();
    let due_at_ms = due_at(req.send_at.as_deref(), now)?;
    let id = new_id("msg_", now);
    let prepared = message::prepare(&app, req, Some(&id))?;
    let idempotency = idempotency::from_headers(&headers, &body)?;
    let new = NewMessage {
        id: id.clone(),
        app: app.id.clone(),
        kind: prepared.kind,
        recipient: prepared.to,
        template: prepared.template,
        body: prepared.body,
        due_at_ms,
        idempotency,
    };
    match s.store.insert_message(&new, now).await? {
        Inserted::Created => Ok((StatusCode::ACCEPTED, Json(json!({ "id": id })))),
        Inserted::Existing {
            id,
            same_request: true,
        } => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "replayed": true })),
        )),
        Inserted::Existing { id, .. } => Err(idempotency::reused("message", &id)),
    }
}

pub async fn show(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = s
        .store
        .get_message(&id)
        .await?
        .filter(|m| caller.may_use(&m.summary.app))
        .ok_or_else(|| ApiError::not_found("message", &id))?;
    Ok(Json(serde_json::to_value(record).unwrap_or_default()))
}

/// `GET /v1/messages?campaign=&app=&state=&errcode=&after=&limit=`: messages by id order, a
/// page at a time (`next` is the `after` of the next page).
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    use crate::store::{MessageFilter, MessageState};
    let state = match q.get("state") {
        None => None,
        Some(v) => Some(MessageState::parse(v).ok_or_else(|| {
            ApiError::invalid(format!(
                "state: {v:?} is not one of pending, sending, sent, failed, unknown, cancelled"
            ))
        })?),
    };
    let errcode = match q.get("errcode") {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .map_err(|_| ApiError::invalid(format!("errcode: {v:?} is not an integer")))?,
        ),
    };
    let limit = match q.get("limit") {
        None => 100,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid("limit: use 1..=1000 (default 100)"))?,
    };
    let mut app = q.get("app").cloned();
    if let Some(c) = q.get("campaign") {
        let record = s.store.campaign(c).await?;
        let record = record
            .filter(|r| caller.may_use(&r.app))
            .ok_or_else(|| ApiError::not_found("campaign", c))?;
        app = Some(record.app);
    }
    match &app {
        Some(a) => caller.require_app(a)?,
        // Without an app, only the admin may list across apps.
        None => caller.require_admin()?,
    }
    let filter = MessageFilter {
        app,
        campaign: q.get("campaign").cloned(),
        state,
        errcode,
    };
    let page = s
        .store
        .list_messages(&filter, q.get("after").map(String::as_str), limit)
        .await?;
    let next = (page.len() == limit as usize).then(|| page.last().map(|m| m.id.clone()));
    Ok(Json(json!({ "messages": page, "next": next.flatten() })))
}
