//! The HTTP API (axum): routes, shared state, auth and the JSON error shape.

mod apps;
pub mod auth;
mod campaign_upload;
mod campaigns;
pub mod error;
mod health;
mod idempotency;
mod keys;
mod messages;
mod tokens;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post, put};
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::SecretString;

pub use campaign_upload::{
    BODY_IDLE as CAMPAIGN_BODY_IDLE, MAX_JSON_BYTES as MAX_JSON_CAMPAIGN_BYTES,
    MAX_STREAM_BYTES as MAX_STREAM_CAMPAIGN_BYTES,
};
pub use error::ApiError;

/// A JSON body whose rejection the handler returns itself, after its auth checks: a caller
/// without the right to act gets 401/403 before any word about a malformed body.
pub type Body<T> = Result<axum::Json<T>, axum::extract::rejection::JsonRejection>;

use crate::apps::AppRegistry;
use crate::config::{Roles, TokenSettings};
use crate::store::Store;
use crate::token::TokenManager;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub apps: AppRegistry,
    pub tokens: TokenManager,
    pub store: Store,
    pub admin_token: Option<SecretString>,
    pub keys: Arc<auth::KeyCache>,
    pub token_settings: TokenSettings,
    pub metrics: PrometheusHandle,
    /// `embedded` or `fleet`.
    pub mode: &'static str,
    pub roles: Roles,
}

/// The HTTP routes: the `/v1` API when this instance has the `api` role, and the operations
/// routes (`/healthz`, `/readyz`, `/metrics`) always.
pub fn router(state: AppState) -> Router {
    let ops = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics));
    let routes = if state.roles.api {
        ops.merge(v1())
    } else {
        ops
    };
    routes
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such route; see the README for the API (an instance without the api role \
                 serves only /healthz, /readyz and /metrics)",
            )
        })
        .layer(axum::middleware::from_fn(log_requests))
        .with_state(state)
}

fn v1() -> Router<AppState> {
    Router::new()
        .route("/v1/apps", get(apps::list).post(apps::create))
        .route(
            "/v1/apps/{id}",
            get(apps::show).delete(apps::delete).patch(apps::change),
        )
        .route("/v1/apps/{id}/secret", put(apps::rotate_secret))
        .route("/v1/apps/{id}/token", get(tokens::get))
        .route("/v1/apps/{id}/token/invalidate", post(tokens::invalidate))
        .route("/v1/messages", post(messages::create).get(messages::list))
        .route("/v1/messages/{id}", get(messages::show))
        .route(
            "/v1/campaigns",
            // Streamed, with limits of its own per format (campaign_upload.rs).
            post(campaigns::create).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/v1/campaigns/{id}", get(campaigns::show))
        .route("/v1/campaigns/{id}/cancel", post(campaigns::cancel))
        .route("/v1/campaigns/{id}/retry", post(campaigns::retry))
        .route("/v1/campaigns/{id}/export", get(campaigns::export))
        .route("/v1/keys", get(keys::list).post(keys::create))
        .route("/v1/keys/{id}", axum::routing::delete(keys::delete))
}

/// Logs and counts each request by its route template — never the raw URI, headers or body,
/// so no token or key reaches the logs.
async fn log_requests(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    metrics::counter!("wxgate_http_requests_total", "route" => route.clone(), "status" => status.to_string()).increment(1);
    if status >= 400 {
        tracing::info!(%method, %route, status, ms, "request");
    } else {
        tracing::debug!(%method, %route, status, ms, "request");
    }
    resp
}
