//! The control and statistics API under `/_sim/`: counters per app, the delivery log, faults,
//! the clock, apps and their followers, credits and limits, token revocation, and reset.
//! [`crate::SimHandle`] offers the same operations to in-process tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{AppSpec, Faults};
use crate::stats::{AppStats, FaultStats};
use crate::tokens::revoke;
use crate::world::{Delivery, Follow, Sim, lock};

/// Everything `/_sim/stats` reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimStats {
    pub apps: BTreeMap<String, AppStats>,
    pub faults: FaultStats,
    pub deliveries_logged: u64,
    pub deliveries_evicted: u64,
    pub clock_ms: i64,
    pub clock_offset_ms: i64,
}

/// Which deliveries to list.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DeliveryFilter {
    pub app: Option<String>,
    pub to: Option<String>,
    /// Only deliveries with a larger sequence number.
    pub after_seq: Option<u64>,
    /// At most this many (default 1000).
    pub limit: Option<usize>,
}

pub(crate) fn stats(sim: &Sim) -> SimStats {
    let log = lock(&sim.log);
    let (logged, evicted) = (log.entries.len() as u64, log.evicted);
    drop(log);
    SimStats {
        apps: sim
            .all_apps()
            .iter()
            .map(|a| (a.key.clone(), a.counters.snapshot()))
            .collect(),
        faults: sim.fault_counters.snapshot(),
        deliveries_logged: logged,
        deliveries_evicted: evicted,
        clock_ms: sim.clock.now_ms(),
        clock_offset_ms: sim.clock.offset_ms(),
    }
}

pub(crate) fn deliveries(sim: &Sim, f: &DeliveryFilter) -> Vec<Delivery> {
    let limit = f.limit.unwrap_or(1000);
    lock(&sim.log)
        .entries
        .iter()
        .filter(|d| f.app.as_ref().is_none_or(|a| &d.app == a))
        .filter(|d| f.to.as_ref().is_none_or(|t| &d.to == t))
        .filter(|d| f.after_seq.is_none_or(|s| d.seq > s))
        .take(limit)
        .cloned()
        .collect()
}

/// Merge a partial JSON object into an app's spec (`{"token_daily_limit": 5}`).
pub(crate) fn patch_app(sim: &Sim, key: &str, patch: &Value) -> Result<AppSpec, String> {
    let app = sim.app(key).ok_or_else(|| format!("no app {key}"))?;
    let mut st = lock(&app.state);
    let mut current = serde_json::to_value(&st.spec).map_err(|e| e.to_string())?;
    let (Some(cur), Some(p)) = (current.as_object_mut(), patch.as_object()) else {
        return Err("the patch must be a JSON object".into());
    };
    for (k, v) in p {
        if matches!(k.as_str(), "kind" | "appid" | "agentid") {
            return Err(format!("{k} cannot change; add a new app instead"));
        }
        cur.insert(k.clone(), v.clone());
    }
    let spec: AppSpec = serde_json::from_value(current).map_err(|e| e.to_string())?;
    st.templates = spec
        .templates
        .iter()
        .map(|t| (t.id.clone(), t.clone()))
        .collect();
    st.spec = spec.clone();
    Ok(spec)
}

pub(crate) fn set_follower(sim: &Sim, key: &str, openid: &str, state: Follow) -> bool {
    sim.app(key)
        .map(|a| lock(&a.state).follow.insert(openid.to_string(), state))
        .is_some()
}

pub(crate) fn set_credits(sim: &Sim, key: &str, openid: &str, template: &str, n: u32) -> bool {
    sim.app(key)
        .map(|a| {
            lock(&a.state)
                .credits
                .insert((openid.to_string(), template.to_string()), n)
        })
        .is_some()
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": format!("no {what}")})),
    )
        .into_response()
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response()
}

#[derive(Deserialize)]
struct Advance {
    #[serde(default)]
    secs: f64,
    #[serde(default)]
    ms: i64,
}

#[derive(Deserialize)]
struct FollowBody {
    state: Follow,
}

#[derive(Deserialize)]
struct CreditsBody {
    openid: String,
    template_id: String,
    credits: u32,
}

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/_sim/stats", get(|State(sim): State<Arc<Sim>>| async move { Json(stats(&sim)) }))
        .route(
            "/_sim/stats/{app}",
            get(|State(sim): State<Arc<Sim>>, Path(key): Path<String>| async move {
                match sim.app(&key) {
                    Some(a) => Json(a.counters.snapshot()).into_response(),
                    None => not_found("app"),
                }
            }),
        )
        .route(
            "/_sim/deliveries",
            get(|State(sim): State<Arc<Sim>>, Query(f): Query<DeliveryFilter>| async move {
                Json(json!({"deliveries": deliveries(&sim, &f)}))
            }),
        )
        .route(
            "/_sim/reset",
            post(|State(sim): State<Arc<Sim>>| async move {
                sim.reset();
                Json(json!({"ok": true}))
            }),
        )
        .route(
            "/_sim/clock",
            get(|State(sim): State<Arc<Sim>>| async move {
                Json(json!({"now_ms": sim.clock.now_ms(), "offset_ms": sim.clock.offset_ms()}))
            }),
        )
        .route(
            "/_sim/clock/advance",
            post(|State(sim): State<Arc<Sim>>, Json(a): Json<Advance>| async move {
                let ms = a.ms + (a.secs * 1000.0) as i64;
                sim.clock.advance(Duration::from_millis(ms.max(0) as u64));
                Json(json!({"now_ms": sim.clock.now_ms(), "offset_ms": sim.clock.offset_ms()}))
            }),
        )
        .route(
            "/_sim/faults",
            get(|State(sim): State<Arc<Sim>>| async move {
                Json(sim.faults.read().unwrap_or_else(|p| p.into_inner()).clone())
            })
            .put(|State(sim): State<Arc<Sim>>, Json(f): Json<Faults>| async move {
                *sim.faults.write().unwrap_or_else(|p| p.into_inner()) = f.clone();
                Json(f)
            }),
        )
        .route(
            "/_sim/apps",
            get(|State(sim): State<Arc<Sim>>| async move {
                let specs: Vec<AppSpec> =
                    sim.all_apps().iter().map(|a| lock(&a.state).spec.clone()).collect();
                Json(specs)
            })
            .post(|State(sim): State<Arc<Sim>>, Json(spec): Json<AppSpec>| async move {
                match sim.add_app(spec) {
                    Ok(key) => (StatusCode::CREATED, Json(json!({"key": key}))).into_response(),
                    Err(e) => bad_request(e),
                }
            }),
        )
        .route(
            "/_sim/apps/{app}",
            axum::routing::patch(
                |State(sim): State<Arc<Sim>>, Path(key): Path<String>, Json(p): Json<Value>| async move {
                    match patch_app(&sim, &key, &p) {
                        Ok(spec) => Json(spec).into_response(),
                        Err(e) if e.starts_with("no app") => not_found("app"),
                        Err(e) => bad_request(e),
                    }
                },
            ),
        )
        .route(
            "/_sim/apps/{app}/revoke",
            post(|State(sim): State<Arc<Sim>>, Path(key): Path<String>| async move {
                match sim.app(&key) {
                    Some(a) => Json(json!({"revoked": revoke(&sim, &a)})).into_response(),
                    None => not_found("app"),
                }
            }),
        )
        .route(
            "/_sim/apps/{app}/followers/{openid}",
            put(
                |State(sim): State<Arc<Sim>>,
                 Path((key, openid)): Path<(String, String)>,
                 Json(b): Json<FollowBody>| async move {
                    if set_follower(&sim, &key, &openid, b.state) {
                        Json(json!({"ok": true})).into_response()
                    } else {
                        not_found("app")
                    }
                },
            ),
        )
        .route(
            "/_sim/apps/{app}/credits",
            put(
                |State(sim): State<Arc<Sim>>, Path(key): Path<String>, Json(b): Json<CreditsBody>| async move {
                    if set_credits(&sim, &key, &b.openid, &b.template_id, b.credits) {
                        Json(json!({"ok": true})).into_response()
                    } else {
                        not_found("app")
                    }
                },
            ),
        )
}
