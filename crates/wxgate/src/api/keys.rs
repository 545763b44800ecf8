//! `/v1/keys`: API keys, created by the admin, scoped to apps. The key itself is shown once,
//! at creation; only its hash is stored.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Json, response::IntoResponse};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, Body, auth::Caller};
use crate::store::AppScope;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    name: String,
    /// App ids the key may use, or `"*"` for all.
    apps: AppScope,
}

pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    body: Body<NewKey>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_admin()?;
    let Json(k) = body?;
    if k.name.trim().is_empty() || k.name.len() > 100 {
        return Err(ApiError::invalid(
            "name: required, 1 to 100 characters, e.g. \"order-service\"",
        ));
    }
    if let AppScope::Only(ids) = &k.apps {
        if ids.is_empty() {
            return Err(ApiError::invalid(
                "apps: list at least one app id, or \"*\" for all apps",
            ));
        }
        if let Some(missing) = ids.iter().find(|id| s.apps.get(id).is_none()) {
            return Err(ApiError::invalid(format!(
                "apps: no app with id {missing:?}"
            )));
        }
    }
    let (record, key) = s.store.create_api_key(k.name.trim(), k.apps).await?;
    tracing::info!(key_id = %record.id, by = %caller.label(), "API key created");
    let mut body = serde_json::to_value(&record).unwrap_or_default();
    body["key"] = json!(key);
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_admin()?;
    Ok(Json(s.store.list_api_keys().await?))
}

pub async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    if !s.store.delete_api_key(&id).await? {
        return Err(ApiError::not_found("API key", &id));
    }
    s.keys.forget(&id);
    tracing::info!(key_id = %id, by = %caller.label(), "API key deleted");
    Ok(StatusCode::NO_CONTENT)
}
