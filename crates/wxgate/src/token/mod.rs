//! The token manager: one access_token per app for every caller.
//!
//! - `get` answers from memory while the token has at least `min_ttl` to live; otherwise every
//!   concurrent caller waits on one fetch (single flight), which runs in its own task so a
//!   caller that disconnects cannot abort it.
//! - A refresher per app fetches ahead of expiry, so callers in steady use never wait.
//! - `invalidate` acts only when the reported token is still the current one, and at most once
//!   per generation; a stored token is never replaced by an older one.
//! - Fetch failures are classified: configuration errors and quota windows open the app's
//!   breaker (no upstream call until it closes; the last good token is served while it lives);
//!   `-1` and transport errors get a bounded, jittered retry. A daily budget per app caps
//!   fetches below WeChat's limit.

mod error;
mod fetch;
mod refresher;
mod slot;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio_util::sync::CancellationToken;

pub use error::TokenError;
pub use slot::{AccessToken, AppSlot, SlotStatus, Token};

use crate::clock::Clock;
use crate::config::{AppConfig, AppKind, TokenSettings};
use crate::wechat::Upstream;

/// What an invalidation report did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Invalidation {
    /// The reported token was current: it is withdrawn and a new one fetched.
    Applied,
    /// This token generation was already invalidated; nothing more was done.
    AlreadyInvalidated,
    /// The reported token is not the current one (older, or unknown); nothing changed.
    Stale,
    /// A report already replaced this app's token less than `REPORT_INTERVAL` ago; the token
    /// is kept, so a caller that reports every token it gets cannot spend the day's budget.
    Throttled,
}

/// Reports withdraw an app's token at most once per this interval.
pub const REPORT_INTERVAL_MS: i64 = 30_000;

pub(crate) struct Inner {
    pub upstream: Upstream,
    pub clock: Clock,
    pub settings: TokenSettings,
    /// Apps by id. Written when apps are added, changed or removed; read on every request.
    slots: RwLock<HashMap<String, Arc<AppSlot>>>,
    /// Parent of every slot's cancellation token: cancelling it stops all refreshers.
    shutdown: CancellationToken,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

impl TokenManager {
    pub fn new(upstream: Upstream, clock: Clock, settings: TokenSettings) -> Self {
        TokenManager {
            inner: Arc::new(Inner {
                upstream,
                clock,
                settings,
                slots: RwLock::new(HashMap::new()),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Add an app, or replace its credentials. Replacing keeps the current token (a new secret
    /// does not invalidate it at WeChat) but closes the breaker, so a fixed secret is tried at
    /// once.
    pub fn upsert(&self, def: AppConfig) {
        let mut slots = self.inner.slots.write().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(&def.id) {
            slot.set_def(def);
            slot.state().block = None;
            slot.changed.notify_one();
            return;
        }
        let slot = Arc::new(AppSlot::new(
            def,
            self.inner.clock.now_ms(),
            self.inner.shutdown.child_token(),
        ));
        slots.insert(slot.id.clone(), slot.clone());
        // The refresher ends when the slot's token is cancelled (app removed or shutdown).
        tokio::spawn(refresher::run(self.inner.clone(), slot));
    }

    /// Remove an app; its refresher stops.
    pub fn remove(&self, id: &str) -> bool {
        let removed = self
            .inner
            .slots
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Some(slot) = &removed {
            slot.cancel.cancel();
        }
        removed.is_some()
    }

    pub fn slot(&self, id: &str) -> Option<Arc<AppSlot>> {
        self.inner
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Stop every refresher. Fetches under way finish on their own.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    fn min_ttl_ms(&self, slot: &AppSlot) -> i64 {
        match slot.kind() {
            // WeCom returns the same token until it expires, so an earlier refresh is impossible.
            AppKind::Wecom => 0,
            _ => self.inner.settings.min_ttl.as_millis() as i64,
        }
    }

    /// The app's current token, fetching it if needed (once, however many callers ask).
    pub async fn get(&self, id: &str) -> Result<Token, TokenError> {
        let slot = self
            .slot(id)
            .ok_or_else(|| TokenError::UnknownApp(id.to_string()))?;
        let now = self.inner.clock.now_ms();
        let min_ttl = self.min_ttl_ms(&slot);
        let (mut rx, how) = {
            let mut st = slot.state();
            if let Some(t) = &st.current
                && !t.invalid
                && t.expires_at_ms - now > min_ttl
            {
                count(id, "hit");
                return Ok(t.clone());
            }
            if let Some(rx) = &st.inflight {
                (rx.clone(), "waited")
            } else if let Some(b) = st.block.clone().filter(|b| b.until_ms > now) {
                if let Some(t) = st.current.as_ref().filter(|t| t.alive(now)) {
                    count(id, "stale_served");
                    return Ok(t.clone());
                }
                count(id, "error");
                return Err(b.error);
            } else {
                (fetch::start(&self.inner, &slot, &mut st), "miss")
            }
        };
        count(id, how);
        match fetch::wait(&mut rx).await {
            Ok(t) => Ok(t),
            Err(e) => {
                // The last good token is served while it lives.
                let st = slot.state();
                let now = self.inner.clock.now_ms();
                match st.current.as_ref().filter(|t| t.alive(now)) {
                    Some(t) => Ok(t.clone()),
                    None => Err(e),
                }
            }
        }
    }

    /// "This token was rejected": acts only if it is still the current token and this
    /// generation was not already invalidated; returns what it did and the token to use now.
    pub async fn invalidate(
        &self,
        id: &str,
        reported: &str,
    ) -> Result<(Invalidation, Token), TokenError> {
        let slot = self
            .slot(id)
            .ok_or_else(|| TokenError::UnknownApp(id.to_string()))?;
        let now = self.inner.clock.now_ms();
        let result = {
            let mut st = slot.state();
            let current = st.current.clone();
            match current {
                Some(t) if t.value.expose() == reported => {
                    if t.invalid || st.invalidated_generation == Some(t.generation) {
                        Invalidation::AlreadyInvalidated
                    } else if st
                        .last_applied_report_ms
                        .is_some_and(|at| now - at < REPORT_INTERVAL_MS)
                    {
                        tracing::warn!(app = %id, "token reported rejected again within 30 s of the last replacement; keeping it (is a caller reporting tokens of another app?)");
                        Invalidation::Throttled
                    } else {
                        st.last_applied_report_ms = Some(now);
                        st.invalidated_generation = Some(t.generation);
                        st.rejected = Some(t.value.clone());
                        if let Some(c) = st.current.as_mut() {
                            c.invalid = true;
                        }
                        refresher::note_foreign_refresh(&slot, &mut st, &t, now);
                        // No fetch while a breaker is open: the report waits for it to close.
                        if st.inflight.is_none()
                            && st.block.as_ref().is_none_or(|b| b.until_ms <= now)
                        {
                            fetch::start(&self.inner, &slot, &mut st);
                        }
                        Invalidation::Applied
                    }
                }
                _ => Invalidation::Stale,
            }
        };
        metrics::counter!("wxgate_token_invalidations_total", "app" => id.to_string(), "result" => label(result)).increment(1);
        let token = self.get(id).await?;
        Ok((result, token))
    }
}

fn label(i: Invalidation) -> &'static str {
    match i {
        Invalidation::Applied => "applied",
        Invalidation::AlreadyInvalidated => "already_invalidated",
        Invalidation::Stale => "stale",
        Invalidation::Throttled => "throttled",
    }
}

fn count(app: &str, result: &'static str) {
    metrics::counter!("wxgate_token_requests_total", "app" => app.to_string(), "result" => result)
        .increment(1);
}
