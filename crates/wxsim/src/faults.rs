//! Fault injection in front of the WeChat endpoints: latency with jitter, hangs, dropped
//! connections, HTTP 502, `-1 system error`, replies lost after the work was done, and the
//! per-app cap on concurrent sends (45033 on WeCom, -1 on OA/MP).

use std::sync::Arc;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::{AppKind, FaultScope};
use crate::reply::{errmsg, mp_error, wecom_error};
use crate::server::{ConnKiller, client_ip};
use crate::stats::{bump, bump_map};
use crate::world::{App, Sim};

fn is_token_path(path: &str) -> bool {
    matches!(
        path,
        "/cgi-bin/token" | "/cgi-bin/stable_token" | "/cgi-bin/gettoken"
    )
}

fn is_send_path(path: &str) -> bool {
    path.starts_with("/cgi-bin/message/")
}

/// Calls answered by WeCom (qyapi), whose errors carry `hint`, `from ip` and `more info`.
fn is_wecom_call(path: &str, app: Option<&App>) -> bool {
    matches!(path, "/cgi-bin/gettoken" | "/cgi-bin/message/send")
        || app.is_some_and(|a| a.kind == AppKind::Wecom)
}

fn roll(rate: f64) -> bool {
    rate > 0.0 && rand::random::<f64>() < rate
}

/// The app whose token the request carries, if any (for the concurrency cap).
fn app_of(sim: &Sim, req: &Request) -> Option<Arc<App>> {
    let q = req.uri().query()?;
    let token = q
        .split('&')
        .find_map(|kv| kv.strip_prefix("access_token="))?;
    sim.tokens
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(token)
        .map(|r| r.app.clone())
}

/// Decrements the in-flight count when the request ends, however it ends.
struct InFlight(Arc<App>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, AcqRel);
    }
}

pub(crate) async fn inject(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    // Borrowed, not copied: its last use is before `req` moves into `next.run`.
    let path = req.uri().path();
    let _guard = if is_send_path(path) {
        match app_of(&sim, &req) {
            Some(app) => {
                let cap = app
                    .state
                    .lock()
                    .ok()
                    .and_then(|s| s.spec.max_concurrent_sends);
                let n = app.in_flight.fetch_add(1, AcqRel) + 1;
                let guard = InFlight(app.clone());
                if cap.is_some_and(|c| n > c) {
                    let ip = client_ip(&sim, req.extensions(), req.headers());
                    return if app.kind == AppKind::Wecom {
                        bump_map(&app.counters.rejected, 45033);
                        wecom_error(45033, errmsg(45033), ip)
                    } else {
                        bump_map(&app.counters.rejected, -1);
                        mp_error(-1, errmsg(-1))
                    };
                }
                Some(guard)
            }
            None => None,
        }
    } else {
        None
    };
    let f = sim.faults.read().unwrap_or_else(|p| p.into_inner()).clone();
    let applies = match f.scope {
        FaultScope::All => true,
        FaultScope::Token => is_token_path(path),
        FaultScope::Send => is_send_path(path),
    };
    if !applies || f.is_quiet() {
        return next.run(req).await;
    }
    let killer = req.extensions().get::<ConnKiller>().cloned();
    let fc = &sim.fault_counters;
    let delay = f.latency_ms
        + if f.jitter_ms > 0 {
            rand::random::<u64>() % (f.jitter_ms + 1)
        } else {
            0
        };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if roll(f.hang_rate) {
        bump(&fc.hung);
        tokio::time::sleep(Duration::from_millis(f.hang_ms.max(1))).await;
        if let Some(k) = &killer {
            k.kill().await;
        }
    }
    if roll(f.drop_rate)
        && let Some(k) = &killer
    {
        bump(&fc.dropped);
        k.kill().await;
    }
    if roll(f.http_502_rate) {
        bump(&fc.http_502);
        return (
            StatusCode::BAD_GATEWAY,
            "<html><body>502 Bad Gateway</body></html>",
        )
            .into_response();
    }
    if roll(f.busy_rate) {
        bump(&fc.busy);
        return if is_wecom_call(path, app_of(&sim, &req).as_deref()) {
            wecom_error(
                -1,
                errmsg(-1),
                client_ip(&sim, req.extensions(), req.headers()),
            )
        } else {
            mp_error(-1, errmsg(-1))
        };
    }
    let lose = roll(f.lost_reply_rate);
    let resp = next.run(req).await;
    if lose && let Some(k) = &killer {
        fc.lost_reply.fetch_add(1, Relaxed);
        k.kill().await;
    }
    resp
}
