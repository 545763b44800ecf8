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
mod fleet;
mod refresher;
mod slot;
mod sync;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio_util::sync::CancellationToken;

pub use error::TokenError;
pub use slot::{AccessToken, AppSlot, SlotStatus, Token};

use self::fetch::Purpose;
use self::fleet::Fleet;
use crate::apps::{App, AppListener};
use crate::clock::Clock;
use crate::config::{AppKind, TokenSettings};
use crate::coord::{InvalidateResult, RedisCoord};
use crate::wechat::Client;

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
    pub client: Client,
    pub clock: Clock,
    pub settings: TokenSettings,
    /// Apps by id. Written when apps are added, changed or removed; read on every request.
    slots: RwLock<HashMap<String, Arc<AppSlot>>>,
    /// Parent of every slot's cancellation token: cancelling it stops all refreshers, and in
    /// fleet mode the event subscriber and the sync task.
    shutdown: CancellationToken,
    /// Fleet mode: the shared token, lock, budget and breaker in Redis. `None` when embedded.
    pub(crate) fleet: Option<Fleet>,
    /// Whether this instance refreshes tokens ahead of expiry (the `refresher` role); without
    /// it tokens are fetched only when asked for.
    refresh_ahead: bool,
}

impl Inner {
    pub(crate) fn slot(&self, id: &str) -> Option<Arc<AppSlot>> {
        self.slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// A token with less than this to live is not handed out.
    pub(crate) fn min_ttl_ms(&self, slot: &AppSlot) -> i64 {
        match slot.kind() {
            // WeCom returns the same token until it expires, so an earlier refresh is impossible.
            AppKind::Wecom => 0,
            _ => self.settings.min_ttl.as_millis() as i64,
        }
    }

    pub(crate) fn all_slots(&self) -> Vec<Arc<AppSlot>> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        slots.values().cloned().collect()
    }
}

/// Cheap to clone.
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

impl TokenManager {
    /// A manager for one instance (`coord: None`) or for one instance of a fleet sharing
    /// tokens through Redis. Must be called inside a Tokio runtime.
    pub fn new(
        client: Client,
        clock: Clock,
        settings: TokenSettings,
        coord: Option<RedisCoord>,
    ) -> Self {
        Self::with_refresher(client, clock, settings, coord, true)
    }

    /// [`new`](Self::new), with or without background refreshers (the `refresher` role).
    pub fn with_refresher(
        client: Client,
        clock: Clock,
        settings: TokenSettings,
        coord: Option<RedisCoord>,
        refresh_ahead: bool,
    ) -> Self {
        let shutdown = CancellationToken::new();
        let fleet = coord.map(|coord| {
            // The subscriber task ends when `shutdown` is cancelled.
            let events = coord.spawn_events(shutdown.clone());
            Fleet::new(coord, events)
        });
        let manager = TokenManager {
            inner: Arc::new(Inner {
                client,
                clock,
                settings,
                slots: RwLock::new(HashMap::new()),
                shutdown,
                fleet,
                refresh_ahead,
            }),
        };
        if manager.inner.fleet.is_some() {
            // Keeps in-process tokens coherent with the fleet; ends with `shutdown`.
            tokio::spawn(sync::run(manager.inner.clone()));
        }
        manager
    }

    /// `None` when embedded; in fleet mode, whether Redis is unreachable right now (tokens are
    /// then served and refreshed per instance).
    pub fn redis_degraded(&self) -> Option<bool> {
        self.inner.fleet.as_ref().map(Fleet::degraded)
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Fleet mode: the Redis coordinator (with this manager's clock), for other parts of the
    /// gateway that share state through it (push limits, pauses).
    pub fn coord(&self) -> Option<RedisCoord> {
        self.inner.fleet.as_ref().map(|f| f.coord.clone())
    }

    /// Fleet mode: a receiver of every instance's coordination events (the stream the token
    /// manager follows; it starts with `Reconnected` once live).
    pub fn fleet_events(
        &self,
    ) -> Option<tokio::sync::broadcast::Receiver<crate::coord::CoordEvent>> {
        self.inner.fleet.as_ref().map(|f| f.events.subscribe())
    }

    /// Add an app, or replace its credentials. Replacing keeps the current token (a new secret
    /// does not invalidate it at WeChat) but closes the breaker, so a fixed secret is tried at
    /// once.
    pub fn upsert(&self, app: Arc<App>) {
        let mut slots = self.inner.slots.write().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(&app.id) {
            slot.set_app(app);
            slot.state().block = None;
            slot.changed.notify_one();
            if self.inner.fleet.is_some() {
                // New credentials close the fleet's breaker too, so they are tried at once.
                let inner = self.inner.clone();
                let id = slot.id.clone();
                tokio::spawn(async move {
                    if let Some(fleet) = &inner.fleet {
                        let _ = fleet.call(fleet.coord.clear_block(&id)).await;
                    }
                });
            }
            return;
        }
        let slot = Arc::new(AppSlot::new(
            app,
            self.inner.clock.now_ms(),
            self.inner.shutdown.child_token(),
        ));
        slots.insert(slot.id.clone(), slot.clone());
        if self.inner.refresh_ahead {
            // The refresher ends when the slot's token is cancelled (app removed or shutdown).
            tokio::spawn(refresher::run(self.inner.clone(), slot));
        }
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
        self.inner.slot(id)
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

    /// The app's current token, fetching it if needed (once, however many callers ask).
    pub async fn get(&self, id: &str) -> Result<Token, TokenError> {
        let slot = self
            .slot(id)
            .ok_or_else(|| TokenError::UnknownApp(id.to_string()))?;
        let now = self.inner.clock.now_ms();
        let min_ttl = self.inner.min_ttl_ms(&slot);
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
                (
                    fetch::start(&self.inner, &slot, &mut st, Purpose::Serve),
                    "miss",
                )
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
    /// In fleet mode the check is also made against Redis, atomically, so reports arriving on
    /// every instance at once still refresh once.
    pub async fn invalidate(
        &self,
        id: &str,
        reported: &str,
    ) -> Result<(Invalidation, Token), TokenError> {
        let slot = self
            .slot(id)
            .ok_or_else(|| TokenError::UnknownApp(id.to_string()))?;
        let now = self.inner.clock.now_ms();
        // First the local check. A token that passes is withdrawn here at once, so concurrent
        // reports on this instance stop at `AlreadyInvalidated`, no caller gets it any more,
        // and no fetch adopts it back from Redis.
        let candidate = {
            let mut st = slot.state();
            match st.current.clone() {
                Some(t) if t.value.expose() == reported => {
                    if t.invalid || st.invalidated_generation == Some(t.generation) {
                        Err(Invalidation::AlreadyInvalidated)
                    } else if st
                        .last_applied_report_ms
                        .is_some_and(|at| now - at < REPORT_INTERVAL_MS)
                    {
                        tracing::warn!(app = %id, "token reported rejected again within 30 s of the last replacement; keeping it (is a caller reporting tokens of another app?)");
                        Err(Invalidation::Throttled)
                    } else {
                        st.invalidated_generation = Some(t.generation);
                        st.rejected = Some(t.value.clone());
                        if let Some(c) = st.current.as_mut() {
                            c.invalid = true;
                        }
                        Ok(t)
                    }
                }
                _ => Err(Invalidation::Stale),
            }
        };
        let result = match candidate {
            // This instance does not hold the reported token (it restarted, or has not heard
            // of it yet), but the fleet may: the caller got it from another instance.
            Err(Invalidation::Stale) if self.inner.fleet.is_some() => {
                self.invalidate_shared(&slot, reported, now).await
            }
            Err(result) => result,
            Ok(t) => {
                // Redis unreachable: act as one instance would (the fleet reconciles later).
                let shared = match &self.inner.fleet {
                    Some(f) => f
                        .call(f.coord.invalidate(id, reported, t.generation))
                        .await
                        .ok(),
                    None => None,
                };
                self.withdraw(&slot, &t, shared, now)
            }
        };
        metrics::counter!("wxgate_token_invalidations_total", "app" => id.to_string(), "result" => label(result)).increment(1);
        let token = self.get(id).await?;
        Ok((result, token))
    }

    /// A report of a token this instance does not hold: compare-and-invalidate it in Redis, and
    /// if that applied, fetch the next one as the instance holding it would have.
    async fn invalidate_shared(
        &self,
        slot: &Arc<AppSlot>,
        reported: &str,
        now: i64,
    ) -> Invalidation {
        let Some(fleet) = &self.inner.fleet else {
            return Invalidation::Stale;
        };
        let Ok(Some(shared)) = fleet.call(fleet.coord.read_token(&slot.id)).await else {
            return Invalidation::Stale;
        };
        if shared.token != reported {
            return Invalidation::Stale;
        }
        let r = fleet.call(
            fleet
                .coord
                .invalidate(&slot.id, reported, shared.generation),
        );
        let result = match r.await {
            Ok(InvalidateResult::Applied) => Invalidation::Applied,
            Ok(InvalidateResult::AlreadyInvalidated) => Invalidation::AlreadyInvalidated,
            _ => return Invalidation::Stale,
        };
        let mut st = slot.state();
        st.rejected = Some(AccessToken::new(reported));
        if result == Invalidation::Applied {
            st.last_applied_report_ms = Some(now);
            refresher::note_foreign_refresh(slot, &mut st, &fleet::as_token(&shared), now);
        }
        fetch::start_if_idle(&self.inner, slot, &mut st, Purpose::Serve, now);
        result
    }

    /// After a reported token was withdrawn here: start getting the next one. `shared` is what Redis
    /// said of the report (`None` when embedded or unreachable): only the instance whose report
    /// was applied fleet-wide counts a foreign refresh and throttles later reports.
    fn withdraw(
        &self,
        slot: &Arc<AppSlot>,
        t: &Token,
        shared: Option<InvalidateResult>,
        now: i64,
    ) -> Invalidation {
        let mut st = slot.state();
        let result = match shared {
            None | Some(InvalidateResult::Applied) => {
                st.last_applied_report_ms = Some(now);
                refresher::note_foreign_refresh(slot, &mut st, t, now);
                Invalidation::Applied
            }
            // Another instance's report won: its fetch is under way, ours waits for it.
            Some(InvalidateResult::AlreadyInvalidated) => Invalidation::AlreadyInvalidated,
            // Redis holds another token (newer) or none: ours is withdrawn all the same, and
            // the next get adopts Redis' token or fetches.
            Some(InvalidateResult::Stale) => Invalidation::Stale,
        };
        fetch::start_if_idle(&self.inner, slot, &mut st, Purpose::Serve, now);
        result
    }
}

/// The registry tells the manager of every app: a slot per app, kept current.
impl AppListener for TokenManager {
    fn app_changed(&self, app: &Arc<App>) {
        self.upsert(app.clone());
    }

    fn app_removed(&self, id: &str) {
        self.remove(id);
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

/// The token manager is where [`crate::wechat::Client::with_token`] takes tokens and reports
/// refused ones (compare-and-invalidate: one refresh per generation).
impl crate::wechat::TokenSource for TokenManager {
    type Token = Token;
    type Error = TokenError;

    async fn current(&self, app: &str) -> Result<Token, TokenError> {
        self.get(app).await
    }

    async fn refused(&self, app: &str, token: &Token) {
        // What it did is already logged and counted by `invalidate`; the caller gets the new
        // token from `current`.
        let _ = self.invalidate(app, token.value.expose()).await;
    }

    fn same(a: &Token, b: &Token) -> bool {
        a.value == b.value
    }
}
