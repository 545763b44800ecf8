//! A clock that tests can move: real time plus an offset that only grows. The gateway and the
//! simulator both read time from it, so a test that shares one `Clock` moves both at once.
//!
//! The simulator answers every "has this token expired?", "is this a new day?" and "is this
//! `client_msg_id` still inside its 10-minute window?" question with [`Clock::now_ms`]. A test
//! that shares the same `Clock` with the gateway crosses token expiry, the 5-minute overlap or a
//! day boundary in milliseconds by calling [`Clock::advance`]. Sleepers wake early when the clock
//! jumps, so background refreshers scheduled on this clock react at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// Shanghai is UTC+8 all year; WeChat's daily counters roll over at its midnight.
const SHANGHAI_OFFSET_MS: i64 = 8 * 3600 * 1000;
const DAY_MS: i64 = 86_400_000;

/// Cheap to clone; all clones share one offset.
#[derive(Clone)]
pub struct Clock(Arc<Inner>);

struct Inner {
    start: Instant,
    start_unix_ms: i64,
    offset_ms: AtomicI64,
    /// Bumped on every `advance` so that `sleep_until_ms` re-computes its deadline. The sender
    /// lives as long as the clock; receivers are created per sleep and dropped with it.
    jumps: watch::Sender<u64>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("now_ms", &self.now_ms())
            .field("offset_ms", &self.offset_ms())
            .finish()
    }
}

impl Clock {
    /// A clock that starts at the real time.
    pub fn new() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Clock(Arc::new(Inner {
            start: Instant::now(),
            start_unix_ms: unix,
            offset_ms: AtomicI64::new(0),
            jumps: watch::channel(0).0,
        }))
    }

    /// Milliseconds since the Unix epoch, as this clock sees them.
    pub fn now_ms(&self) -> i64 {
        self.0.start_unix_ms
            + self.0.start.elapsed().as_millis() as i64
            + self.0.offset_ms.load(Ordering::Relaxed)
    }

    /// Seconds since the Unix epoch.
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// How far this clock is ahead of real time.
    pub fn offset_ms(&self) -> i64 {
        self.0.offset_ms.load(Ordering::Relaxed)
    }

    /// Move the clock forward. Time never goes backwards, so a negative or zero step is ignored.
    pub fn advance(&self, by: Duration) {
        let ms = by.as_millis() as i64;
        if ms <= 0 {
            return;
        }
        self.0.offset_ms.fetch_add(ms, Ordering::Relaxed);
        self.0.jumps.send_modify(|n| *n += 1);
    }

    /// The WeChat "natural day" index (days since the epoch in Asia/Shanghai).
    pub fn day_index(&self) -> i64 {
        day_index(self.now_ms())
    }

    /// Sleep until this clock reads `target_ms`; returns early-correctly when the clock jumps.
    pub async fn sleep_until_ms(&self, target_ms: i64) {
        let mut jumps = self.0.jumps.subscribe();
        loop {
            let left = target_ms - self.now_ms();
            if left <= 0 {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(left as u64)) => {}
                changed = jumps.changed() => {
                    if changed.is_err() {
                        // Cannot happen while `self` holds the sender; fall back to real sleep.
                        tokio::time::sleep(Duration::from_millis(left as u64)).await;
                    }
                }
            }
        }
    }

    /// Sleep for `d` of this clock's time.
    pub async fn sleep(&self, d: Duration) {
        self.sleep_until_ms(self.now_ms() + d.as_millis() as i64)
            .await
    }
}

/// Days since the epoch in Asia/Shanghai for a Unix millisecond timestamp.
pub fn day_index(unix_ms: i64) -> i64 {
    (unix_ms + SHANGHAI_OFFSET_MS).div_euclid(DAY_MS)
}

/// (year, month) in Asia/Shanghai for a day index; used by the 10-per-month clear_quota budget.
pub fn year_month(day: i64) -> (i64, u32) {
    // Howard Hinnant's civil_from_days.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_time_and_never_back() {
        let c = Clock::new();
        let t0 = c.now_ms();
        c.advance(Duration::from_secs(7200));
        assert!(c.now_ms() - t0 >= 7_200_000);
        c.advance(Duration::ZERO);
        assert!(c.offset_ms() == 7_200_000);
    }

    #[test]
    fn day_rolls_over_at_shanghai_midnight() {
        // 2026-01-01T15:59:59Z is 23:59:59 in Shanghai; one second later is a new day.
        let before = 1_767_283_199_000;
        assert_eq!(day_index(before) + 1, day_index(before + 1000));
        assert_eq!(day_index(before), day_index(before - 3_600_000));
    }

    #[test]
    fn civil_months() {
        assert_eq!(year_month(0), (1970, 1));
        // 2025-12-31T16:00:00Z is midnight of 2026-01-01 in Shanghai.
        assert_eq!(year_month(day_index(1_767_196_800_000)), (2026, 1));
        assert_eq!(year_month(day_index(1_767_196_799_000)), (2025, 12));
    }

    #[tokio::test]
    async fn sleepers_wake_when_the_clock_jumps() {
        let c = Clock::new();
        let target = c.now_ms() + 3_600_000;
        let c2 = c.clone();
        let h = tokio::spawn(async move { c2.sleep_until_ms(target).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.advance(Duration::from_secs(3600));
        tokio::time::timeout(Duration::from_secs(2), h)
            .await
            .expect("sleeper woke after the jump")
            .unwrap();
    }
}
