//! `POST /v1/campaigns` (one template, many recipients, streamed in and committed whole before
//! the 202: `campaign_upload.rs`), `GET /v1/campaigns/{id}` (counts per state), cancel, retry
//! of the failed ones, and the export.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use super::{ApiError, AppState, auth::Caller};
use crate::store::CampaignRecord;

/// Streamed: see `campaign_upload.rs`.
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    super::campaign_upload::create(s, caller, query, headers, body).await
}

async fn find(s: &AppState, caller: &Caller, id: &str) -> Result<CampaignRecord, ApiError> {
    s.store
        .campaign(id)
        .await?
        .filter(|c| caller.may_use(&c.app))
        .ok_or_else(|| ApiError::not_found("campaign", id))
}

fn view(c: &CampaignRecord) -> Value {
    let status = if c.is_done() {
        "done"
    } else {
        c.status.as_str()
    };
    json!({
        "id": c.id,
        "app": c.app,
        "type": c.kind.as_str(),
        "template": c.template,
        "status": status,
        "total": c.total,
        "counts": c.counts,
    })
}

pub async fn show(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(view(&find(&s, &caller, &id).await?)))
}

pub async fn cancel(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    find(&s, &caller, &id).await?;
    let now = s.tokens.clock().now_ms();
    let n = s.store.cancel_campaign(&id, now).await?.unwrap_or(0);
    after_change(&s, &caller, &id, "cancelled_now", n).await
}

pub async fn retry(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    find(&s, &caller, &id).await?;
    let now = s.tokens.clock().now_ms();
    let n = s.store.retry_failed(&id, now).await?.unwrap_or(0);
    after_change(&s, &caller, &id, "requeued", n).await
}

/// The campaign as it is after cancel or retry, with how many messages that changed.
async fn after_change(
    s: &AppState,
    caller: &Caller,
    id: &str,
    what: &str,
    n: u64,
) -> Result<Json<Value>, ApiError> {
    let mut v = view(&find(s, caller, id).await?);
    v[what] = n.into();
    Ok(Json(v))
}

/// `GET /v1/campaigns/{id}/export`: one CSV line per recipient (`to,state,errcode,reason,msgid,
/// attempts,updated_at`), read from the store a page at a time.
pub async fn export(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    find(&s, &caller, &id).await?;
    let csv_error = |e: csv::Error| ApiError::internal(format!("cannot write the export: {e}"));
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "to",
        "state",
        "errcode",
        "reason",
        "msgid",
        "attempts",
        "updated_at_ms",
    ])
    .map_err(csv_error)?;
    let mut after: Option<String> = None;
    loop {
        let page = s
            .store
            .export_campaign(&id, after.as_deref(), 5_000)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        for r in &page {
            out.write_record([
                r.recipient.as_str(),
                r.state.as_str(),
                &r.errcode.map(|e| e.to_string()).unwrap_or_default(),
                r.reason.as_deref().unwrap_or(""),
                r.msgid.as_deref().unwrap_or(""),
                &r.attempts.to_string(),
                &r.updated_at_ms.to_string(),
            ])
            .map_err(csv_error)?;
        }
    }
    let bytes = out
        .into_inner()
        .map_err(|e| ApiError::internal(format!("cannot write the export: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], bytes))
}
