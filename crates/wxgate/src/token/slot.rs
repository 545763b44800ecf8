//! One app's token state: the current token and its generation, the single in-flight fetch,
//! the breaker, and the daily fetch and force-refresh budgets.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::error::TokenError;
use crate::apps::App;
use crate::clock::day_index;
use crate::config::{AppKind, TokenApi};
use crate::wechat::Credentials;

/// An access token. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    pub fn new(s: &str) -> Self {
        AccessToken(Arc::from(s))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

/// A token as wxgate holds it.
#[derive(Clone, Debug)]
pub struct Token {
    pub value: AccessToken,
    /// Increases every time the app gets a different token; never goes back.
    pub generation: u64,
    pub fetched_at_ms: i64,
    pub expires_at_ms: i64,
    /// Reported rejected; not handed out again.
    pub invalid: bool,
}

impl Token {
    pub fn alive(&self, now_ms: i64) -> bool {
        !self.invalid && self.expires_at_ms > now_ms
    }
    pub fn expires_in_secs(&self, now_ms: i64) -> i64 {
        ((self.expires_at_ms - now_ms) / 1000).max(0)
    }
}

/// Result of a fetch, shared with every caller that waited for it.
pub(crate) type Outcome = Result<Token, TokenError>;

/// The breaker: while `until_ms` is ahead, no upstream call is made and `error` is answered
/// (unless the last good token still lives).
#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub until_ms: i64,
    pub error: TokenError,
}

pub(crate) struct SlotState {
    pub current: Option<Token>,
    pub last_generation: u64,
    /// The single fetch under way, if any: callers clone the receiver and wait for `Some`.
    pub inflight: Option<watch::Receiver<Option<Outcome>>>,
    pub block: Option<Block>,
    /// The generation an invalidation already acted on; a second report of it does nothing.
    pub invalidated_generation: Option<u64>,
    /// The token callers reported rejected, until a different one is installed: a stable-API
    /// fetch that returns it again is followed by a `force_refresh`.
    pub rejected: Option<AccessToken>,
    pub day: i64,
    pub fetches_today: u32,
    pub forces_today: u32,
    pub last_force_ms: Option<i64>,
    /// Foreign-refresher warnings are logged once per episode (until this time).
    pub foreign_quiet_until_ms: i64,
    /// Transient failures in a row; each doubles the breaker's cool-down (5 s up to 5 min).
    pub transient_failures: u32,
    /// When a report last withdrew a token; reports are acted on at most once per interval.
    pub last_applied_report_ms: Option<i64>,
    /// Fleet mode with Redis away: when this instance last fetched a classic token on its own
    /// (at most one per lock lease).
    pub degraded_fetch_ms: Option<i64>,
}

impl SlotState {
    /// Start a new budget day when the Shanghai date changes.
    pub fn roll_day(&mut self, now_ms: i64) {
        let d = day_index(now_ms);
        if d != self.day {
            self.day = d;
            self.fetches_today = 0;
            self.forces_today = 0;
        }
    }
}

pub struct AppSlot {
    pub id: String,
    /// The app as the registry has it; replaced on secret rotation, read at each fetch.
    app: RwLock<Arc<App>>,
    /// Held only for short bookkeeping, never across an `.await`.
    state: Mutex<SlotState>,
    /// Wakes the refresher when the token or the breaker changes. Lives as long as the slot.
    pub(crate) changed: Notify,
    /// Cancelled when the app is removed or the manager shuts down; stops the refresher.
    pub(crate) cancel: CancellationToken,
}

impl AppSlot {
    pub(crate) fn new(app: Arc<App>, now_ms: i64, cancel: CancellationToken) -> Self {
        AppSlot {
            id: app.id.clone(),
            app: RwLock::new(app),
            state: Mutex::new(SlotState {
                current: None,
                last_generation: 0,
                inflight: None,
                block: None,
                invalidated_generation: None,
                rejected: None,
                day: day_index(now_ms),
                fetches_today: 0,
                forces_today: 0,
                last_force_ms: None,
                foreign_quiet_until_ms: 0,
                transient_failures: 0,
                last_applied_report_ms: None,
                degraded_fetch_ms: None,
            }),
            changed: Notify::new(),
            cancel,
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn app(&self) -> Arc<App> {
        self.app.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_app(&self, app: Arc<App>) {
        *self.app.write().unwrap_or_else(|p| p.into_inner()) = app;
    }

    pub fn kind(&self) -> AppKind {
        self.app().kind()
    }

    pub fn token_api(&self) -> TokenApi {
        self.app().token_api
    }

    pub(crate) fn credentials(&self) -> Credentials {
        self.app().credentials()
    }

    /// A snapshot for status pages and metrics: (token generation, expires_at, fetches today,
    /// blocked until).
    pub fn status(&self) -> SlotStatus {
        let st = self.state();
        SlotStatus {
            generation: st.current.as_ref().map(|t| t.generation),
            expires_at_ms: st.current.as_ref().map(|t| t.expires_at_ms),
            fetches_today: st.fetches_today,
            forces_today: st.forces_today,
            blocked_until_ms: st.block.as_ref().map(|b| b.until_ms),
            blocked_reason: st.block.as_ref().map(|b| b.error.to_string()),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct SlotStatus {
    pub generation: Option<u64>,
    pub expires_at_ms: Option<i64>,
    pub fetches_today: u32,
    pub forces_today: u32,
    pub blocked_until_ms: Option<i64>,
    pub blocked_reason: Option<String>,
}
