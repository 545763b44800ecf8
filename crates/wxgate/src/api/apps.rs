//! `/v1/apps`: register, list, show, delete apps and rotate their secrets, without restart, on
//! every instance sharing the store. Apps declared in `wxgate.toml` are listed but can only be
//! changed there.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Json, response::IntoResponse};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Body, auth::Caller};
use crate::apps::{App, Source};
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
    proxy_accepts_secret: bool,
    /// `config` (wxgate.toml) or `api`.
    source: Source,
    /// This instance's view of the app's token (`null` on an instance that has not loaded it).
    token: Option<SlotStatus>,
}

fn view(s: &AppState, app: &App) -> AppView {
    let c = app.to_config();
    AppView {
        id: c.id,
        kind: c.kind,
        appid: c.appid,
        corpid: c.corpid,
        agentid: c.agentid,
        token_api: c.token_api,
        daily_fetch_budget: app.fetch_budget(&s.token_settings),
        proxy_accepts_secret: c.proxy_accepts_secret,
        source: app.source,
        token: s.tokens.slot(&app.id).map(|slot| slot.status()),
    }
}

pub async fn list(State(s): State<AppState>, caller: Caller) -> Json<Vec<AppView>> {
    Json(
        s.apps
            .ids()
            .iter()
            .filter(|id| caller.may_use(id))
            .filter_map(|id| s.apps.get(id))
            .map(|app| view(&s, &app))
            .collect(),
    )
}

pub async fn show(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AppView>, ApiError> {
    caller.require_app(&id)?;
    let app = s
        .apps
        .get(&id)
        .ok_or_else(|| ApiError::not_found("app", &id))?;
    Ok(Json(view(&s, &app)))
}

pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    body: Body<AppConfig>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_admin()?;
    let Json(def) = body?;
    let app = s.apps.create(def).await?;
    tracing::info!(app = %app.id, kind = %app.kind(), by = %caller.label(), "app registered");
    Ok((StatusCode::CREATED, Json(view(&s, &app))))
}

pub async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    s.apps.delete(&id).await?;
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
) -> Result<Json<AppView>, ApiError> {
    caller.require_admin()?;
    let Json(b) = body?;
    let app = s.apps.rotate_secret(&id, b.secret).await?;
    tracing::info!(app = %id, by = %caller.label(), "app secret rotated");
    Ok(Json(view(&s, &app)))
}

/// The settings `PATCH /v1/apps/{id}` may change (the secret has its own route).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppChanges {
    proxy_accepts_secret: Option<bool>,
}

/// `PATCH /v1/apps/{id}`: change an API app's settings; fields left out stay as they are.
pub async fn change(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Body<AppChanges>,
) -> Result<Json<AppView>, ApiError> {
    caller.require_admin()?;
    let Json(b) = body?;
    let app = s
        .apps
        .change(&id, |c| {
            if let Some(v) = b.proxy_accepts_secret {
                c.proxy_accepts_secret = v;
            }
        })
        .await?;
    tracing::info!(app = %id, by = %caller.label(), proxy_accepts_secret = app.proxy_accepts_secret, "app changed");
    Ok(Json(view(&s, &app)))
}
