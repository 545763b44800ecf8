//! One app's send gate: how many of its sends may run at once, how fast they may start, and
//! whether the app is paused (a quota window or a configuration error, invariant 10).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::PushSettings;

pub(crate) struct AppGate {
    /// Bounds the app's concurrent sends; a permit is held for the duration of one call.
    sem: Arc<Semaphore>,
    /// Time between send starts (`None`: no rate limit).
    interval: Option<Duration>,
    /// When the next send may start. Held only to read and bump it, never across an await.
    next_start: Mutex<Instant>,
    /// Epoch ms (the gateway's clock) until which the app's messages are not claimed.
    paused_until_ms: AtomicI64,
    /// Why the app is paused, for logs and message reasons.
    pause_reason: Mutex<String>,
    /// Templates WeChat rejected (errcode, reason, until epoch ms): their messages fail without
    /// a call until then, so a campaign on a wrong template costs one call, not one per
    /// recipient.
    bad_templates: Mutex<std::collections::HashMap<String, (i64, String, i64)>>,
}

impl AppGate {
    pub fn new(s: &PushSettings) -> AppGate {
        AppGate {
            sem: Arc::new(Semaphore::new(s.per_app_concurrency.max(1))),
            interval: (s.per_app_rate > 0)
                .then(|| Duration::from_secs_f64(1.0 / f64::from(s.per_app_rate))),
            next_start: Mutex::new(Instant::now()),
            paused_until_ms: AtomicI64::new(0),
            pause_reason: Mutex::new(String::new()),
            bad_templates: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Wait for a concurrency slot and the pacer; the permit is the slot.
    pub async fn enter(&self) -> OwnedSemaphorePermit {
        let permit = self
            .sem
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if let Some(every) = self.interval {
            let start = {
                let mut next = self.next_start.lock().unwrap_or_else(|p| p.into_inner());
                let start = (*next).max(Instant::now());
                *next = start + every;
                start
            };
            tokio::time::sleep_until(start).await;
        }
        permit
    }

    pub fn paused_until_ms(&self) -> i64 {
        self.paused_until_ms.load(Ordering::Relaxed)
    }

    /// Mark a template rejected until `until_ms`.
    pub fn reject_template(&self, template: &str, errcode: i64, reason: &str, until_ms: i64) {
        let mut bad = self.bad_templates.lock().unwrap_or_else(|p| p.into_inner());
        bad.insert(
            template.to_string(),
            (errcode, reason.to_string(), until_ms),
        );
    }

    /// (errcode, reason) while `template` is marked rejected.
    pub fn template_rejected(&self, template: &str, now_ms: i64) -> Option<(i64, String)> {
        let bad = self.bad_templates.lock().unwrap_or_else(|p| p.into_inner());
        bad.get(template)
            .filter(|(_, _, until)| *until > now_ms)
            .map(|(code, reason, _)| (*code, reason.clone()))
    }

    /// Stop claiming the app's messages until `until_ms` (a later pause wins).
    pub fn pause(&self, app: &str, until_ms: i64, reason: &str) {
        let before = self.paused_until_ms.fetch_max(until_ms, Ordering::Relaxed);
        if until_ms > before {
            *self.pause_reason.lock().unwrap_or_else(|p| p.into_inner()) = reason.to_string();
            tracing::warn!(app, until_ms, reason, "sending paused for this app");
            metrics::counter!("wxgate_push_app_paused_total", "app" => app.to_string())
                .increment(1);
        }
    }
}
