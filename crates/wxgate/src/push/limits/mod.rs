//! How many of an app's sends may run at once (`push.per_app_concurrency`) and how fast they
//! may start (`push.per_app_rate`), held in process ([`local`], one instance) or for the whole
//! fleet through Redis ([`fleet`]), so three instances send at the app's rate, not three times
//! it (invariant 12). A send holds a [`Permit`] for the length of its call to WeChat.

mod fleet;
mod local;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

pub(crate) use fleet::FleetLimits;
pub(crate) use local::{LocalLimits, Pacer};

use super::PushSettings;
use crate::coord::RedisCoord;

/// One app's limits.
pub(crate) enum Limits {
    Local(LocalLimits),
    Fleet(Arc<FleetLimits>),
}

/// A running send's share of its app's concurrency; released on drop (held, never read).
#[allow(dead_code)]
pub(crate) enum Permit {
    Local(OwnedSemaphorePermit),
    Fleet(fleet::FleetPermit),
}

impl Limits {
    /// The limits of app `app`: the fleet's when a coordinator is given, else this process's.
    /// Fleet limits run a task per app until `stop`.
    pub fn new(
        app: &str,
        s: &PushSettings,
        coord: Option<&RedisCoord>,
        stop: &CancellationToken,
    ) -> Limits {
        match coord {
            Some(coord) => Limits::Fleet(FleetLimits::new(app, s, coord.clone(), stop.clone())),
            None => Limits::Local(LocalLimits::new(s.per_app_concurrency, s.per_app_rate)),
        }
    }

    /// Waits for a concurrency slot, then for the send's turn at the app's rate.
    pub async fn enter(&self) -> Permit {
        match self {
            Limits::Local(l) => Permit::Local(l.enter().await),
            Limits::Fleet(f) => Permit::Fleet(f.enter().await),
        }
    }

    /// Waits for one more turn at the app's rate, for a send that already holds its permit
    /// and calls WeChat again (a replay with a new token).
    pub async fn pace(&self) {
        match self {
            Limits::Local(l) => l.pace().await,
            Limits::Fleet(f) => f.take_slot().await,
        }
    }
}

/// How far ahead a claim may take an app's messages: what it can start in this long.
pub(crate) const CLAIM_HORIZON: Duration = Duration::from_secs(2);

/// The most messages of one app this instance should hold (claimed, not yet finished) so that
/// it can start them soon: all of a rate-limited app's `CLAIM_HORIZON` worth, or two rounds of
/// its concurrency; at least one.
pub(crate) fn claim_budget(s: &PushSettings) -> usize {
    let rounds = s.batch;
    let budget = match s.per_app_rate {
        0 => rounds,
        rate => (rate as usize * CLAIM_HORIZON.as_secs() as usize).min(rounds),
    };
    budget.max(1)
}
