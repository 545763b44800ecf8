//! `POST /v1/campaigns` (one template, many recipients, committed in one transaction before the
//! 202), `GET /v1/campaigns/{id}` (counts per state), cancel, and retry of the failed ones.

use axum::Json;
use axum::body::Bytes;
use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use super::messages::{app_for, due_at, parse_json, stored_body};
use super::{ApiError, AppState, auth::Caller, idempotency};
use crate::message;
use crate::store::{
    CampaignInserted, CampaignMessage, CampaignRecord, ExistingCampaign, NewCampaign, new_ids,
};

/// The largest campaign body accepted (axum's default of 2 MB holds about 20,000 recipients).
pub const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// A campaign from `text/csv`: the settings come from the query string (`app`, `type`,
/// `template_id`, and optionally `send_at`, `url`, `page`, `miniprogram_state`, `lang`,
/// `truncate`), the recipients from the CSV (a `to` column, one column per keyword).
fn from_csv(
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<message::CampaignRequest, ApiError> {
    let mut settings = serde_json::Map::new();
    for (k, v) in query {
        let value = match (k.as_str(), v.as_str()) {
            ("truncate", "true" | "1") => Value::Bool(true),
            ("truncate", _) => Value::Bool(false),
            _ => Value::String(v.clone()),
        };
        settings.insert(k.clone(), value);
    }
    settings.insert("recipients".into(), json!([]));
    let mut req: message::CampaignRequest = serde_json::from_value(Value::Object(settings))
        .map_err(|e| {
            ApiError::invalid(format!(
                "CSV campaign settings go in the query string (?app=…&type=…&template_id=…): {e}"
            ))
        })?;
    req.recipients = message::parse_csv(body)?;
    Ok(req)
}

pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv"));
    let req: message::CampaignRequest = if csv {
        from_csv(&query, &body)?
    } else {
        parse_json(&body)?
    };
    let app = app_for(&s, &caller, &req.app)?;
    // A CSV upload's settings are in the query: they are part of what makes it the same request.
    let settings = if csv {
        canonical_query(&query)
    } else {
        Vec::new()
    };
    let idempotency = idempotency::from_headers(&headers, &[&settings, &body])?;
    // A replay is answered before the (possibly large) campaign is validated again.
    if let Some(key) = &idempotency
        && let Some(existing) = s.store.campaign_by_key(&app.id, key).await?
    {
        return replay(existing);
    }
    let now = s.tokens.clock().now_ms();
    let due_at_ms = due_at(req.send_at.as_deref(), now)?;
    let app_id = app.id.clone();
    // Validation of a large campaign is CPU work: keep it off the async workers.
    let prepared = tokio::task::spawn_blocking(move || message::prepare_campaign(&app, req))
        .await
        .map_err(|e| ApiError::internal(format!("validation failed: {e}")))??;
    let mut ids = new_ids("msg_", now);
    let messages = prepared
        .messages
        .into_iter()
        .map(|p| {
            let id = ids.next().expect("an IdSeq never ends");
            let body = stored_body(&p, &id)?;
            Ok(CampaignMessage {
                id,
                recipient: p.to,
                body,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let total = messages.len();
    let campaign = NewCampaign {
        id: crate::store::new_id("cmp_", now),
        app: app_id,
        kind: prepared.spec.kind,
        template: prepared.spec.template,
        due_at_ms,
        idempotency,
        duplicates_skipped: prepared.duplicates_skipped as u64,
    };
    let id = campaign.id.clone();
    match s.store.create_campaign(&campaign, &messages, now).await? {
        CampaignInserted::Created => Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "id": id,
                "total": total,
                "duplicates_skipped": prepared.duplicates_skipped,
            })),
        )),
        // Another request with the same key committed first (a race): answer with its campaign.
        CampaignInserted::Existing(existing) => replay(existing),
    }
}

/// The answer to a request whose Idempotency-Key the app already used for a campaign: that
/// campaign (`"replayed": true`) when it came with the same request, else 409.
fn replay(existing: ExistingCampaign) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !existing.same_request {
        return Err(idempotency::reused("campaign", &existing.id));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "id": existing.id,
            "total": existing.total,
            "duplicates_skipped": existing.duplicates_skipped,
            "replayed": true,
        })),
    ))
}

/// The query's pairs sorted, one `name=value` per line, so their order does not matter.
fn canonical_query(query: &HashMap<String, String>) -> Vec<u8> {
    let mut pairs: Vec<_> = query.iter().collect();
    pairs.sort();
    let lines: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    lines.concat().into_bytes()
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
        after = Some(last.recipient.clone());
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
