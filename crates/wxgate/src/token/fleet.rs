//! Fleet mode: an app's fetch coordinated through Redis, so that any number of instances make
//! one upstream call per refresh (invariant 1) and keep serving when Redis is away (invariant 5).
//!
//! The fetch task of an instance (still one per app per process, see `fetch::start`):
//! 1. reads the shared token and adopts it if it is good enough for the purpose;
//! 2. honours the fleet's breaker;
//! 3. takes the app's lease lock; the holder re-reads the shared token (someone may have
//!    published while it waited), fetches with the fleet's daily budget, publishes with
//!    write-if-newer, and unlocks;
//! 4. a non-holder waits for the holder's `token` / `unlocked` event (no polling), bounded by
//!    the lease per round and by `token.lock_wait` in all; a crashed holder's lease expires and
//!    a waiter takes over.
//!
//! Any Redis failure turns the fetch into the embedded one (local budget and breaker). Classic
//! tokens then get at most one fetch per instance per lease, since each classic fetch
//! invalidates every other instance's token; stable and WeCom fetches return the same token
//! and only spend quota.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::broadcast;

use super::Inner;
use super::error::TokenError;
use super::fetch::{self, Got, Ledger, Purpose};
use super::refresher;
use super::slot::{AccessToken, AppSlot, Token};
use crate::config::{AppKind, TokenApi};
use crate::coord::{CoordError, CoordEvent, LockGuard, RedisCoord, SharedToken};

mod block;

pub(crate) use block::{decode_block, encode_block};

/// The Redis side of a token manager in fleet mode.
pub(crate) struct Fleet {
    pub coord: RedisCoord,
    /// Every instance's events (from `RedisCoord::spawn_events`): fetch tasks subscribe to wait
    /// for a lock holder, the sync task keeps the in-process tokens coherent. The subscriber
    /// task is stopped by the manager's shutdown token.
    pub events: broadcast::Sender<CoordEvent>,
    /// Redis is unreachable: tokens are served and fetched per instance. Set by any failed
    /// call, cleared by any call that succeeds.
    degraded: AtomicBool,
}

impl Fleet {
    pub fn new(coord: RedisCoord, events: broadcast::Sender<CoordEvent>) -> Fleet {
        metrics::gauge!("wxgate_redis_degraded").set(0.0);
        Fleet {
            coord,
            events,
            degraded: AtomicBool::new(false),
        }
    }

    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Run a coordination call, keeping track of whether Redis answers.
    pub async fn call<T>(
        &self,
        op: impl Future<Output = Result<T, CoordError>>,
    ) -> Result<T, CoordError> {
        let r = op.await;
        match &r {
            Err(e @ CoordError::Unavailable(_)) => self.set_degraded(Some(&e.to_string())),
            _ => self.set_degraded(None),
        }
        r
    }

    /// `why` Redis is down, or `None` when it answered.
    fn set_degraded(&self, why: Option<&str>) {
        let down = why.is_some();
        if self.degraded.swap(down, Ordering::Relaxed) == down {
            return;
        }
        metrics::gauge!("wxgate_redis_degraded").set(if down { 1.0 } else { 0.0 });
        if let Some(error) = why {
            metrics::counter!("wxgate_redis_degraded_total").increment(1);
            tracing::warn!(%error, "redis unreachable: serving in-process tokens, refreshing per instance at a bounded rate");
        } else {
            tracing::info!("redis reachable again: tokens are shared by the fleet");
        }
    }

    /// Mark Redis as down without a failed call (the event stream was lost).
    pub fn note_disconnected(&self) {
        self.set_degraded(Some("event stream lost"));
    }
}

/// Obtain a token for `slot` through the fleet (see the module comment).
pub(crate) async fn obtain(
    inner: &Arc<Inner>,
    fleet: &Fleet,
    slot: &AppSlot,
    purpose: Purpose,
) -> Result<Got, TokenError> {
    let lease = inner.settings.lock_lease;
    let wait_ms = inner.settings.lock_wait.as_millis() as i64;
    let deadline = inner.clock.now_ms() + wait_ms;
    // Subscribed before the first look at the lock, so an unlock right after it is not missed.
    let mut events = fleet.events.subscribe();
    loop {
        let shared = match fleet.call(fleet.coord.read_token(&slot.id)).await {
            Ok(s) => s,
            Err(e) => return degraded(inner, slot, purpose, e).await,
        };
        if let Some(s) = shared.filter(|s| acceptable(inner, slot, purpose, s)) {
            metrics::counter!("wxgate_token_fetches_total", "app" => slot.id.clone(), "outcome" => "adopted").increment(1);
            return Ok(Got::Shared(s));
        }
        match fleet.call(fleet.coord.get_block(&slot.id)).await {
            Ok(Some((until_ms, reason))) => return Err(decode_block(&reason, until_ms)),
            Ok(None) => {}
            Err(e) => return degraded(inner, slot, purpose, e).await,
        }
        match fleet.call(fleet.coord.try_lock(&slot.id, lease)).await {
            Ok(Some(guard)) => {
                let result = hold(inner, fleet, slot, purpose, &guard).await;
                // If this fails the lease runs out by itself.
                let _ = fleet.call(fleet.coord.unlock(&guard)).await;
                return result;
            }
            Ok(None) => {}
            Err(e) => return degraded(inner, slot, purpose, e).await,
        }
        let now = inner.clock.now_ms();
        if now >= deadline {
            return Err(TokenError::Unavailable {
                detail: format!(
                    "another wxgate instance has been fetching this app's token for over {} \
                     without finishing; try again shortly",
                    humantime::format_duration(inner.settings.lock_wait)
                ),
                wechat_errcode: None,
                retry_at_ms: now,
            });
        }
        // Until the holder's event, or just past the end of its lease (it may have died).
        let left = fleet
            .call(fleet.coord.lock_remaining(&slot.id))
            .await
            .ok()
            .flatten()
            .map_or(Duration::ZERO, |d| d + Duration::from_millis(20));
        let round = left
            .min(lease)
            .min(Duration::from_millis((deadline - now) as u64));
        wait_for_app(&mut events, &slot.id, round).await;
    }
}

/// Holding the lock: re-check, fetch, publish.
async fn hold(
    inner: &Arc<Inner>,
    fleet: &Fleet,
    slot: &AppSlot,
    purpose: Purpose,
    guard: &LockGuard,
) -> Result<Got, TokenError> {
    // The re-check after acquiring: a holder that finished just before we locked published.
    let shared = match fleet.call(fleet.coord.read_token(&slot.id)).await {
        Ok(s) => s,
        Err(e) => return degraded(inner, slot, purpose, e).await,
    };
    if let Some(s) = shared
        .as_ref()
        .filter(|s| acceptable(inner, slot, purpose, s))
    {
        return Ok(Got::Shared(s.clone()));
    }
    let rejected = shared
        .as_ref()
        .filter(|s| s.invalid)
        .map(|s| AccessToken::new(&s.token));
    let known = slot.state().last_generation;
    let based_on = shared.as_ref().map_or(known, |s| s.generation.max(known));
    let ledger = Ledger::Shared { fleet, guard };
    // The lease is renewed every third of it while WeChat is being asked, so a slow but live
    // holder keeps the lock (a dead one stops renewing and loses it within one lease).
    let heartbeat = async {
        let every = inner.settings.lock_lease / 3;
        loop {
            tokio::time::sleep(every).await;
            let _ = fleet.coord.extend(guard, inner.settings.lock_lease).await;
        }
    };
    let fetched = tokio::select! {
        r = fetch::run(inner, slot, &ledger, rejected) => r,
        never = heartbeat => never,
    };
    let (f, at_ms) = match fetched {
        Ok(v) => v,
        Err(e) => {
            // Escalated here (not after return) so the fleet's breaker gets the same doubling
            // cool-down as this instance's.
            let e = fetch::escalate(inner, slot, e);
            if let Some(until_ms) = e.retry_at_ms() {
                let _ = fleet
                    .call(fleet.coord.set_block(&slot.id, until_ms, &encode_block(&e)))
                    .await;
            }
            return Err(e);
        }
    };
    let expires_at_ms = at_ms + f.expires_in * 1000;
    let published = fleet.call(fleet.coord.publish_fresh_token(
        &slot.id,
        &f.access_token,
        expires_at_ms,
        at_ms,
        Some(based_on),
    ));
    match published.await {
        Ok(stored) => Ok(Got::Shared(stored)),
        // Redis went away mid-fetch: keep the token here; `sync` publishes it on reconnect.
        Err(_) => Ok(Got::Fetched(f, at_ms)),
    }
}

/// Whether a token another instance stored will do for `purpose`.
fn acceptable(inner: &Inner, slot: &AppSlot, purpose: Purpose, s: &SharedToken) -> bool {
    let now = inner.clock.now_ms();
    if s.invalid || s.expires_at_ms - now <= inner.min_ttl_ms(slot) {
        return false;
    }
    {
        // A token this instance saw rejected is not taken back, whatever Redis says.
        let st = slot.state();
        if st.rejected.as_ref().is_some_and(|r| r.expose() == s.token) {
            return false;
        }
    }
    match purpose {
        Purpose::Serve => true,
        Purpose::Refresh => refresher::refresh_at(inner, slot, &as_token(s)) > now,
    }
}

pub(crate) fn as_token(s: &SharedToken) -> Token {
    Token {
        value: AccessToken::new(&s.token),
        generation: s.generation,
        fetched_at_ms: s.fetched_at_ms,
        expires_at_ms: s.expires_at_ms,
        invalid: s.invalid,
    }
}

/// Redis is away: fetch as the embedded mode does, at most once per lease for classic tokens.
/// A background refresh waits while the token has long to live: a Redis blip at refresh time
/// must not make each instance fetch its own token (the refresher tries again 10 s later).
async fn degraded(
    inner: &Arc<Inner>,
    slot: &AppSlot,
    purpose: Purpose,
    e: CoordError,
) -> Result<Got, TokenError> {
    let now = inner.clock.now_ms();
    let lease_ms = inner.settings.lock_lease.as_millis() as i64;
    if purpose == Purpose::Refresh {
        let margin = inner.settings.min_ttl.as_millis() as i64 + 2 * lease_ms;
        let st = slot.state();
        if st
            .current
            .as_ref()
            .is_some_and(|t| t.alive(now) && t.expires_at_ms - now > margin)
        {
            return Err(TokenError::Unavailable {
                detail: format!("Redis is unreachable ({e}); the refresh waits for it"),
                wechat_errcode: None,
                retry_at_ms: now,
            });
        }
    }
    let classic = slot.kind() != AppKind::Wecom && slot.token_api() == TokenApi::Classic;
    if classic {
        let mut st = slot.state();
        if let Some(last) = st.degraded_fetch_ms.filter(|t| now - t < lease_ms) {
            return Err(TokenError::Unavailable {
                detail: format!(
                    "Redis is unreachable ({e}) and this instance fetched a classic token less \
                     than token.lock_lease ago; each classic fetch invalidates the other \
                     instances' tokens, so the next is allowed at {} ms",
                    last + lease_ms
                ),
                wechat_errcode: None,
                retry_at_ms: last + lease_ms,
            });
        }
        st.degraded_fetch_ms = Some(now);
    }
    tracing::warn!(app = %slot.id, error = %e, "redis unreachable; fetching the token for this instance only");
    metrics::counter!("wxgate_token_degraded_fetches_total", "app" => slot.id.clone()).increment(1);
    fetch::run(inner, slot, &Ledger::Local, None)
        .await
        .map(|(f, at_ms)| Got::Fetched(f, at_ms))
        .map_err(|e| fetch::escalate(inner, slot, e))
}

/// Wait until an event about `app` arrives (or the stream lags or closes), at most `max`.
async fn wait_for_app(events: &mut broadcast::Receiver<CoordEvent>, app: &str, max: Duration) {
    let _ = tokio::time::timeout(max, async {
        loop {
            match events.recv().await {
                Ok(ev) if ev.app() == Some(app) || ev.app().is_none() => return,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                // The subscriber task has stopped (shutdown): only the timeout is left.
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    })
    .await;
}
