//! `/healthz` (the process answers), `/readyz` (the store answers; which mode), `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    // Redis away is `degraded`, still 200: every instance keeps serving its in-process tokens,
    // so a load balancer must not take the whole fleet out of rotation for it.
    // From the state kept by Redis calls and the event stream's pings, not a ping here: a hung
    // Redis would make every probe wait for the call's timeout.
    let redis = s.tokens.redis_degraded().map(|down| !down);
    let (status, state) = match s.store.ping().await {
        Ok(()) if redis == Some(false) => (StatusCode::OK, "degraded"),
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: store unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
        }
    };
    let mut body = json!({
        "status": state,
        "mode": s.mode,
        "store": s.store.kind(),
        "roles": s.roles,
        "apps": s.apps.len(),
    });
    if let Some(up) = redis {
        body["redis"] = json!(if up { "ok" } else { "unavailable" });
    }
    (status, Json(body))
}

pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}
