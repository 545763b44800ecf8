//! Fleet mode: keeps this instance's in-process tokens and breakers coherent with Redis, from
//! the events every instance publishes. A `token` event is adopted, an `invalidated` one marks
//! the token withdrawn, a `block` one opens or closes the breaker, and after the stream was
//! lost (`Reconnected`, or a lag) every app is reconciled: the newest token wins, and a token
//! fetched here while Redis was away is published when it is newer than Redis' one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use super::Inner;
use super::fetch::install_shared;
use super::fleet::{Fleet, decode_block};
use super::slot::{AppSlot, Block};
use crate::coord::CoordEvent;

/// Tries to reach Redis after the event stream is back, `RECONCILE_RETRY` apart.
const RECONCILE_ATTEMPTS: u32 = 20;
const RECONCILE_RETRY: Duration = Duration::from_millis(250);

/// Runs until the manager shuts down (its token is cancelled) or the event stream closes.
/// Spawned by `TokenManager::new` in fleet mode.
pub(crate) async fn run(inner: Arc<Inner>) {
    let Some(fleet) = inner.fleet.as_ref() else {
        return;
    };
    let mut rx = fleet.events.subscribe();
    loop {
        let ev = tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            ev = rx.recv() => ev,
        };
        match ev {
            // Always re-read: a generation number alone does not identify a token, since an
            // instance numbers a token it fetched alone (Redis away) on its own.
            Ok(CoordEvent::Token { app, .. }) => {
                if let Some(slot) = inner.slot(&app) {
                    adopt(&inner, fleet, &slot).await;
                }
            }
            Ok(CoordEvent::Invalidated { app, generation }) => {
                if let Some(slot) = inner.slot(&app) {
                    let mut st = slot.state();
                    if let Some(t) = st.current.as_mut().filter(|t| t.generation == generation) {
                        t.invalid = true;
                        let value = t.value.clone();
                        st.invalidated_generation = Some(generation);
                        st.rejected = Some(value);
                    }
                }
            }
            Ok(CoordEvent::Block { app }) => {
                if let Some(slot) = inner.slot(&app) {
                    read_block(fleet, &slot).await;
                }
            }
            Ok(CoordEvent::Unlocked { .. }) => {}
            // Push pacing's events; tokens do not depend on them.
            Ok(CoordEvent::Paused { .. } | CoordEvent::TemplateRejected { .. }) => {}
            Ok(CoordEvent::Disconnected) => fleet.note_disconnected(),
            Ok(CoordEvent::Reconnected) | Err(RecvError::Lagged(_)) => {
                // The command connection may still be reconnecting when the event stream is
                // back: its first calls fail. Retry for a few seconds before giving up (the
                // next fetch or event then catches up).
                for attempt in 0..RECONCILE_ATTEMPTS {
                    if fleet.call(fleet.coord.ping()).await.is_ok() {
                        break;
                    }
                    if attempt + 1 < RECONCILE_ATTEMPTS {
                        tokio::time::sleep(RECONCILE_RETRY).await;
                    }
                }
                for slot in inner.all_slots() {
                    reconcile(&inner, fleet, &slot).await;
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Take the shared token if it is newer than ours.
async fn adopt(inner: &Inner, fleet: &Fleet, slot: &AppSlot) {
    if let Ok(Some(shared)) = fleet.call(fleet.coord.read_token(&slot.id)).await
        && shared.expires_at_ms > inner.clock.now_ms()
    {
        install_shared(&mut slot.state(), &shared);
        slot.changed.notify_one();
    }
}

/// After the stream was down: agree with Redis on the app's token and breaker. The token this
/// instance held when it started (fetched here while Redis was away, or lost by an emptied
/// Redis) is published if Redis lacks it or holds an earlier-fetched one; otherwise Redis' one
/// is adopted. When two instances publish at once, each round compares the same held token
/// with what Redis has now, so the later-fetched token wins.
async fn reconcile(inner: &Inner, fleet: &Fleet, slot: &AppSlot) {
    let now = inner.clock.now_ms();
    let held = slot.state().current.clone().filter(|t| t.alive(now));
    for _ in 0..3 {
        let Ok(shared) = fleet.call(fleet.coord.read_token(&slot.id)).await else {
            return;
        };
        let now = inner.clock.now_ms();
        let shared = shared.filter(|s| s.expires_at_ms > now);
        let publish = match (&held, &shared) {
            (Some(h), Some(s)) => h.value.expose() != s.token && h.fetched_at_ms > s.fetched_at_ms,
            (Some(_), None) => true,
            (None, _) => false,
        };
        match (&held, shared) {
            (Some(h), shared) if publish => {
                let based_on = shared.map_or(h.generation, |s| s.generation.max(h.generation));
                let published = fleet.coord.publish_token(
                    &slot.id,
                    h.value.expose(),
                    h.expires_at_ms,
                    h.fetched_at_ms,
                    Some(based_on),
                );
                match fleet.call(published).await {
                    Ok(stored) if stored.token == h.value.expose() => {
                        install_shared(&mut slot.state(), &stored);
                        break;
                    }
                    // Someone published meanwhile: compare again.
                    Ok(_) => continue,
                    Err(_) => return,
                }
            }
            (_, Some(s)) => {
                install_shared(&mut slot.state(), &s);
                break;
            }
            _ => break,
        }
    }
    slot.changed.notify_one();
    read_block(fleet, slot).await;
}

/// Open or close this instance's breaker as the fleet's is.
async fn read_block(fleet: &Fleet, slot: &AppSlot) {
    let Ok(block) = fleet.call(fleet.coord.get_block(&slot.id)).await else {
        return;
    };
    {
        let mut st = slot.state();
        st.block = match block {
            // The later of the two: this instance may have escalated further than the fleet.
            Some((until_ms, _)) if st.block.as_ref().is_some_and(|b| b.until_ms >= until_ms) => {
                st.block.take()
            }
            Some((until_ms, reason)) => Some(Block {
                until_ms,
                error: decode_block(&reason, until_ms),
            }),
            None => None,
        };
    }
    slot.changed.notify_one();
}
