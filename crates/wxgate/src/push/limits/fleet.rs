//! Limits held for the whole fleet through Redis.
//!
//! - **Concurrency** as holdings: each instance declares how many of the app's sends it wants
//!   to run (running + waiting) and Redis grants its fair share of what the limit leaves (see
//!   `RedisCoord::hold_concurrency`); a background holder
//!   task per app renews the holding (a heartbeat, so a crashed instance's share frees itself)
//!   and asks again when demand rises. One Redis call per change of demand or heartbeat, not
//!   per send.
//! - **Rate** as slots: a batch of consecutive send slots (~100 ms of the app's rate) reserved
//!   in one call; slots handed to different instances never overlap, so the fleet sends at the
//!   app's rate however many instances run. A slot more than `LATE_SLOT` in the past is not
//!   used (a stalled instance does not burst).
//!
//! While Redis does not answer, an instance falls back on its share: the limits divided by the
//! number of instances last seen holding some of the app's sends.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Pacer;
use crate::coord::RedisCoord;
use crate::push::PushSettings;

/// A holding lives this long after its instance's last call; renewed every third of it.
const HOLD_TTL: Duration = Duration::from_secs(3);
/// A send waiting for a concurrency slot looks again at least this often.
const RECHECK: Duration = Duration::from_millis(200);
/// How far ahead rate slots may be reserved.
const HORIZON: Duration = Duration::from_millis(500);
/// A reserved slot this far in the past is dropped rather than used late.
const LATE_SLOT: Duration = Duration::from_millis(40);
/// Rate slots asked for per call: about this long of the app's rate.
const BATCH_SPAN_MS: u32 = 100;

/// One app's fleet-wide limits, as seen by this instance.
pub(crate) struct FleetLimits {
    app: String,
    instance: String,
    coord: RedisCoord,
    limit: u32,
    rate: u32,
    /// Rate slots asked for at most per call.
    batch: u32,
    /// What may start, what runs, what waits. One lock, so that a start's check and count and
    /// the holder's snapshot of what runs cannot interleave. Held for a few instructions, never
    /// across an `.await`.
    conc: Mutex<Conc>,
    /// Instances sharing the app at the last answer (at least 1).
    holders: AtomicU32,
    /// Redis did not answer the last call: the fallback share applies.
    degraded: AtomicBool,
    /// Wakes sends waiting for a concurrency slot: one was freed, or more were granted.
    freed: Notify,
    /// Wakes the holder task: demand rose.
    demand: Notify,
    /// Reserved rate slots not used yet, earliest first. Held across the refill call, so one
    /// refill per app is asked at a time; never held while a send sleeps for its slot.
    slots: tokio::sync::Mutex<VecDeque<Instant>>,
    /// Sends waiting for a rate slot: the size of the next batch.
    waiting_slots: AtomicU32,
    /// Paces sends at the fallback share while Redis is away.
    fallback: Pacer,
}

/// This instance's concurrent sends of one app.
#[derive(Default)]
struct Conc {
    /// How many may start: Redis' last answer capped at the fair share (or the fallback
    /// share). Raised only by an answer, lowered here at will; every call asks Redis to hold at
    /// least `max(allowed, running)`, so the holding is never below what may run here.
    allowed: u32,
    running: u32,
    waiting: u32,
}

/// A running send's concurrency slot; freed on drop.
pub(crate) struct FleetPermit {
    limits: Arc<FleetLimits>,
}

impl Drop for FleetPermit {
    fn drop(&mut self) {
        self.limits.conc().running -= 1;
        self.limits.freed.notify_one();
    }
}

impl FleetLimits {
    /// The app's limits, with its holder task; the task ends with `stop`.
    pub fn new(
        app: &str,
        s: &PushSettings,
        coord: RedisCoord,
        stop: CancellationToken,
    ) -> Arc<FleetLimits> {
        let limit = u32::try_from(s.per_app_concurrency)
            .unwrap_or(u32::MAX)
            .max(1);
        let limits = Arc::new(FleetLimits {
            app: app.to_owned(),
            instance: s.instance.clone(),
            coord,
            limit,
            rate: s.per_app_rate,
            batch: (s.per_app_rate * BATCH_SPAN_MS / 1000).clamp(1, 1000),
            conc: Mutex::new(Conc::default()),
            holders: AtomicU32::new(1),
            degraded: AtomicBool::new(false),
            freed: Notify::new(),
            demand: Notify::new(),
            slots: tokio::sync::Mutex::new(VecDeque::new()),
            waiting_slots: AtomicU32::new(0),
            fallback: Pacer::new(),
        });
        tokio::spawn(hold(limits.clone(), stop));
        limits
    }

    fn conc(&self) -> std::sync::MutexGuard<'_, Conc> {
        self.conc.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a concurrency slot of the fleet, then for a rate slot.
    pub async fn enter(self: &Arc<Self>) -> FleetPermit {
        self.conc().waiting += 1;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut c = self.conc();
                if c.running < c.allowed {
                    c.running += 1;
                    c.waiting -= 1;
                    break;
                }
            }
            self.demand.notify_one();
            let _ = tokio::time::timeout(RECHECK, freed).await;
        }
        let permit = FleetPermit {
            limits: self.clone(),
        };
        self.take_slot().await;
        permit
    }

    /// Waits for this send's rate slot (no wait without a rate limit). A send that wakes more
    /// than `LATE_SLOT` after its slot (this process was busy) takes another one rather than
    /// start late, so a stall here never turns into a burst at WeChat.
    pub(crate) async fn take_slot(&self) {
        if self.rate == 0 {
            return;
        }
        loop {
            match self.next_slot().await {
                Some(at) => {
                    tokio::time::sleep_until(at).await;
                    if Instant::now() <= at + LATE_SLOT {
                        return;
                    }
                    metrics::counter!("wxgate_push_late_slots_total", "app" => self.app.clone())
                        .increment(1);
                }
                None => return self.fallback.wait(self.share(self.rate)).await,
            }
        }
    }

    /// The next reserved slot (reserving a batch when none is left), or `None` when Redis
    /// does not answer.
    async fn next_slot(&self) -> Option<Instant> {
        self.waiting_slots.fetch_add(1, Ordering::AcqRel);
        let slot = loop {
            let mut slots = self.slots.lock().await;
            let now = Instant::now();
            while slots.front().is_some_and(|t| *t + LATE_SLOT < now) {
                slots.pop_front();
            }
            if let Some(at) = slots.pop_front() {
                break Some(at);
            }
            let want = self
                .waiting_slots
                .load(Ordering::Acquire)
                .clamp(1, self.batch);
            match self
                .coord
                .reserve_send_slots(&self.app, want, self.rate, HORIZON)
                .await
            {
                Ok(s) if s.granted > 0 => {
                    self.redis_answered();
                    let first = Instant::now() + s.first_in;
                    slots.extend((0..s.granted).map(|i| first + s.every * i));
                }
                Ok(s) => {
                    drop(slots);
                    tokio::time::sleep(s.retry_in).await;
                }
                Err(e) => {
                    self.redis_failed(&e.to_string());
                    break None;
                }
            }
        };
        self.waiting_slots.fetch_sub(1, Ordering::AcqRel);
        slot
    }

    /// What this instance may use of `total` while Redis is away.
    fn share(&self, total: u32) -> u32 {
        (total / self.holders.load(Ordering::Acquire).max(1)).max(1)
    }

    fn redis_answered(&self) {
        if self.degraded.swap(false, Ordering::AcqRel) {
            tracing::info!(app = %self.app, "redis answers again: the app's send limits are shared by the fleet");
        }
    }

    fn redis_failed(&self, why: &str) {
        if !self.degraded.swap(true, Ordering::AcqRel) {
            let holders = self.holders.load(Ordering::Acquire);
            tracing::warn!(app = %self.app, error = why, holders, "redis unreachable: sending at this instance's share of the app's limits");
            metrics::counter!("wxgate_push_limits_degraded_total", "app" => self.app.clone())
                .increment(1);
        }
    }
}

/// The holder task of one app: keeps this instance's holding in Redis equal to its demand,
/// renewed every third of `HOLD_TTL`. Ends with `stop` (gateway shutdown), releasing it.
async fn hold(me: Arc<FleetLimits>, stop: CancellationToken) {
    loop {
        // What runs or may start here is the floor of the holding asked for: sends started
        // while the call is under way stay within it.
        // Less wanted than allowed: lower the allowance first, so the holding can shrink.
        let (want, floor, idle) = {
            let mut c = me.conc();
            let want = (c.running + c.waiting).min(me.limit);
            let idle = want == 0 && c.allowed == 0;
            c.allowed = c.allowed.min(want);
            (want, c.allowed.max(c.running), idle)
        };
        if !idle {
            let held = me
                .coord
                .hold_concurrency(&me.app, &me.instance, want, floor, me.limit, HOLD_TTL)
                .await;
            let allowed = match held {
                Ok(h) => {
                    me.holders.store(h.holders.max(1), Ordering::Release);
                    me.redis_answered();
                    h.granted.min(h.share)
                }
                Err(e) => {
                    me.redis_failed(&e.to_string());
                    me.share(me.limit)
                }
            };
            me.conc().allowed = allowed;
            me.freed.notify_waiters();
        }
        tokio::select! {
            _ = stop.cancelled() => {
                if me.conc().allowed > 0 {
                    let _ = me.coord.hold_concurrency(&me.app, &me.instance, 0, 0, me.limit, HOLD_TTL).await;
                }
                return;
            }
            _ = me.demand.notified() => {}
            _ = tokio::time::sleep(HOLD_TTL / 3), if !idle => {}
        }
    }
}
