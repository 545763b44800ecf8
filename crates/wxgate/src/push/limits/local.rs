//! Limits held in process: a semaphore for concurrency and a pacer that spaces send starts
//! evenly at the app's rate.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// One app's limits in this process.
pub(crate) struct LocalLimits {
    /// Bounds the app's concurrent sends; a permit is held for the duration of one call.
    sem: Arc<Semaphore>,
    /// Sends per second; 0 = no limit.
    rate: u32,
    pacer: Pacer,
}

impl LocalLimits {
    pub fn new(concurrency: usize, rate: u32) -> LocalLimits {
        LocalLimits {
            sem: Arc::new(Semaphore::new(concurrency.max(1))),
            rate,
            pacer: Pacer::new(),
        }
    }

    pub async fn enter(&self) -> OwnedSemaphorePermit {
        let permit = self
            .sem
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        self.pacer.wait(self.rate).await;
        permit
    }

    pub async fn pace(&self) {
        self.pacer.wait(self.rate).await;
    }
}

/// Spaces starts `1 s / rate` apart; the rate is given at each wait, so a fleet's fallback
/// share can change as instances come and go.
pub(crate) struct Pacer {
    /// When the next start may be. Held only to read and bump it, never across an await.
    next_start: Mutex<Instant>,
}

impl Pacer {
    pub fn new() -> Pacer {
        Pacer {
            next_start: Mutex::new(Instant::now()),
        }
    }

    /// Waits for the next start at `per_sec` (no wait when it is 0).
    pub async fn wait(&self, per_sec: u32) {
        if per_sec == 0 {
            return;
        }
        let every = Duration::from_secs_f64(1.0 / f64::from(per_sec));
        let start = {
            let mut next = self.next_start.lock().unwrap_or_else(|p| p.into_inner());
            let start = (*next).max(Instant::now());
            *next = start + every;
            start
        };
        tokio::time::sleep_until(start).await;
    }
}
