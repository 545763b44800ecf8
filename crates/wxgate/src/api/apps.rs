//! `/v1/apps`: register, list, show, delete apps and rotate their secrets, without restart.
//! Apps declared in `wxgate.toml` are listed but can only be changed there.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Json, response::IntoResponse};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Body, auth::Caller};
use crate::config::{AppConfig, AppKind, TokenApi};
use crate::token::SlotStatus;

/// An app as the API shows it: never its secret.
#[derive(Serialize)]
pub struct AppView {
    id: String,
    kind: AppKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    appid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    corpid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agentid: Option<i64>,
    token_api: TokenApi,
    daily_fetch_budget: u32,
    /// `config` (wxgate.toml) or `api`.
    source: &'static str,
    token: SlotStatus,
}

fn view(s: &AppState, id: &str) -> Option<AppView> {
    let slot = s.tokens.slot(id)?;
    let d = slot.def();
    Some(AppView {
        id: d.id.clone(),
        kind: d.kind,
        appid: d.appid.clone(),
        corpid: d.corpid.clone(),
        agentid: d.agentid,
        token_api: d.token_api,
        daily_fetch_budget: d.fetch_budget(&s.token_settings),
        source: if s.config_apps.contains(id) {
            "config"
        } else {
            "api"
        },
        token: slot.status(),
    })
}

pub async fn list(State(s): State<AppState>, caller: Caller) -> Json<Vec<AppView>> {
    Json(
        s.tokens
            .ids()
            .iter()
            .filter(|id| caller.may_use(id))
            .filter_map(|id| view(&s, id))
            .collect(),
    )
}

pub async fn show(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AppView>, ApiError> {
    caller.require_app(&id)?;
    view(&s, &id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("app", &id))
}

/// Another registered app for the same WeChat account (same appid, or same corpid + agentid).
fn same_account(s: &AppState, def: &AppConfig) -> Option<String> {
    s.tokens.ids().into_iter().find(|other| {
        other != &def.id
            && s.tokens.slot(other).is_some_and(|slot| {
                let o = slot.def();
                match def.kind {
                    AppKind::Wecom => o.corpid == def.corpid && o.agentid == def.agentid,
                    _ => o.kind != AppKind::Wecom && o.appid == def.appid,
                }
            })
    })
}

pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    body: Body<AppConfig>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_admin()?;
    let Json(def) = body?;
    def.validate().map_err(ApiError::invalid)?;
    if s.tokens.slot(&def.id).is_some() {
        return Err(ApiError::conflict(format!(
            "an app with id {:?} already exists; rotate its secret with PUT /v1/apps/{}/secret or delete it first",
            def.id, def.id
        )));
    }
    if let Some(other) = same_account(&s, &def) {
        return Err(ApiError::conflict(format!(
            "app {other:?} already holds the credentials of this WeChat account; two entries would fetch two tokens and invalidate each other"
        )));
    }
    s.store.put_app(&def, &s.master_key).await?;
    s.tokens.upsert(def.clone());
    tracing::info!(app = %def.id, kind = %def.kind, by = %caller.label(), "app registered");
    Ok((StatusCode::CREATED, Json(view(&s, &def.id))))
}

fn api_managed(s: &AppState, id: &str) -> Result<(), ApiError> {
    if s.config_apps.contains(id) {
        return Err(ApiError::conflict(format!(
            "app {id:?} is declared in wxgate.toml; change it there and restart"
        )));
    }
    if s.tokens.slot(id).is_none() {
        return Err(ApiError::not_found("app", id));
    }
    Ok(())
}

pub async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    api_managed(&s, &id)?;
    s.store.delete_app(&id).await?;
    s.tokens.remove(&id);
    tracing::info!(app = %id, by = %caller.label(), "app deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSecret {
    secret: SecretString,
}

/// `PUT /v1/apps/{id}/secret`: replace the secret; the breaker closes so it is tried at once.
pub async fn rotate_secret(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Body<NewSecret>,
) -> Result<Json<Option<AppView>>, ApiError> {
    caller.require_admin()?;
    api_managed(&s, &id)?;
    let Json(b) = body?;
    let slot = s
        .tokens
        .slot(&id)
        .ok_or_else(|| ApiError::not_found("app", &id))?;
    let mut def = slot.def();
    def.secret = b.secret;
    def.validate().map_err(ApiError::invalid)?;
    s.store.put_app(&def, &s.master_key).await?;
    s.tokens.upsert(def);
    tracing::info!(app = %id, by = %caller.label(), "app secret rotated");
    Ok(Json(view(&s, &id)))
}
