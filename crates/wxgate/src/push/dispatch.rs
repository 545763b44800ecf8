//! The dispatcher: claims due messages while this process holds fewer than `max_in_flight`,
//! each app at most `limits::claim_budget` ahead (what it can start soon), single messages
//! before campaign messages, and starts one send task per message. Idle, it sleeps until the
//! next message is due, an app's pause ends, or the store announces new work
//! ([`Change::Due`], from any instance on the store).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::limits::claim_budget;
use super::{Inner, send};
use crate::store::{Change, Claimed, Finish, Lane};

/// Longest idle sleep: a safety net for a missed notification.
const IDLE_POLL_MS: i64 = 1000;
/// Single messages are claimed ahead of campaign messages (so a verification code does not
/// wait behind a campaign of its app), looked for on their own at most this often unless the
/// last look found some: each look is one more store statement, and claims come hundreds of
/// times a second while a campaign is delivered.
const SINGLES_EVERY: Duration = Duration::from_millis(20);
/// Queue depth for metrics every this long: it costs ~0.2 s of the store per million queued.
const DEPTH_EVERY: Duration = Duration::from_secs(15);

/// Claims and starts sends until `stop`.
pub(crate) async fn run(inner: Arc<Inner>, tx: mpsc::Sender<Finish>, stop: CancellationToken) {
    let s = &inner.settings;
    // Bounds the messages held (claimed, not finished) by this process.
    let in_flight = Arc::new(Semaphore::new(s.max_in_flight));
    let budget = claim_budget(s);
    // Subscribed before the first claim, so work committed meanwhile is not missed.
    let mut changes = inner.store.changes();
    let mut depth_at = std::time::Instant::now() - DEPTH_EVERY;
    // When single messages were last looked for, and whether that look found some (then the
    // next claim looks again at once).
    let mut singles_at = std::time::Instant::now() - SINGLES_EVERY;
    let mut singles_found = false;
    loop {
        if stop.is_cancelled() {
            return;
        }
        if depth_at.elapsed() >= DEPTH_EVERY {
            depth_at = std::time::Instant::now();
            record_depth(&inner).await;
        }
        let room = in_flight.available_permits().min(s.batch);
        if room == 0 {
            // Wait for one send to finish.
            tokio::select! {
                _ = stop.cancelled() => return,
                p = in_flight.acquire() => drop(p),
            }
            continue;
        }
        let now = inner.clock.now_ms();
        let mut skip = inner.paused_apps(now);
        skip.extend(inner.held.full_apps());
        let look_for_singles = singles_found || singles_at.elapsed() >= SINGLES_EVERY;
        if look_for_singles {
            singles_at = std::time::Instant::now();
        }
        let claimed = match claim(&inner, now, room, budget, &skip, look_for_singles).await {
            Ok((c, singles)) => {
                singles_found = singles;
                c
            }
            Err(e) => {
                tracing::warn!(error = %e, "claiming messages failed; retrying in 1 s");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        };
        if claimed.is_empty() {
            let next = inner.store.next_due_ms(&skip).await.ok().flatten();
            let wait = next
                .map(|t| (t - inner.clock.now_ms()).clamp(0, IDLE_POLL_MS) as u64)
                .unwrap_or(IDLE_POLL_MS as u64);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = inner.wake.notified() => {}
                // An app that was skipped as full has room again.
                _ = inner.held.room.notified() => {}
                change = changes.recv() => match change {
                    Ok(Change::Due) | Err(RecvError::Lagged(_)) => {}
                    // Other changes are not work; look again all the same, it is cheap.
                    Ok(_) => {}
                    Err(RecvError::Closed) => {}
                },
                _ = tokio::time::sleep(Duration::from_millis(wait.max(5))) => {}
            }
            continue;
        }
        metrics::counter!("wxgate_push_claimed_total").increment(claimed.len() as u64);
        for c in claimed {
            let permit = in_flight
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let lost = inner.held.add(&c);
            let (inner, tx) = (inner.clone(), tx.clone());
            // One task per message; it ends when its result is handed to the finisher.
            tokio::spawn(async move {
                let (id, token) = (c.id.clone(), c.lease_token.clone());
                let finish = send::deliver(&inner, c, &lost).await;
                inner.held.remove(&id, &token);
                if let Some(f) = finish {
                    let _ = tx.send(f).await;
                }
                drop(permit);
            });
        }
    }
}

/// Up to `room` due messages, at most `budget` of any one app: single messages first when
/// `singles_first`, then the rest of the room from every message, oldest due first (an app
/// with due singles may so get up to twice `budget`; singles are few). Also whether the
/// singles claim found any.
async fn claim(
    inner: &Inner,
    now: i64,
    room: usize,
    budget: usize,
    skip: &[String],
    singles_first: bool,
) -> Result<(Vec<Claimed>, bool), crate::store::StoreError> {
    let (owner, lease_ms) = (
        &inner.settings.instance,
        inner.settings.lease.as_millis() as i64,
    );
    let mut claimed = Vec::new();
    if singles_first {
        claimed = inner
            .store
            .claim_due_in(
                Lane::Singles,
                (owner, now, lease_ms),
                room as u32,
                budget as u32,
                skip,
            )
            .await?;
    }
    let found_singles = !claimed.is_empty();
    let left = room - claimed.len();
    if left > 0 {
        let rest = inner
            .store
            .claim_due_per_app(owner, now, lease_ms, left as u32, budget as u32, skip)
            .await?;
        claimed.extend(rest);
    }
    Ok((claimed, found_singles))
}

async fn record_depth(inner: &Inner) {
    if let Ok(d) = inner.store.queue_depth(inner.clock.now_ms()).await {
        metrics::gauge!("wxgate_push_queue", "state" => "due").set(d.due as f64);
        metrics::gauge!("wxgate_push_queue", "state" => "pending").set(d.pending as f64);
        metrics::gauge!("wxgate_push_queue", "state" => "sending").set(d.sending as f64);
    }
    metrics::gauge!("wxgate_push_held").set(inner.held.len() as f64);
}
