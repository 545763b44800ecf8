//! Coordination between wxgate instances of one fleet: the shared token, the lease lock that
//! lets one instance fetch for everybody, the shared daily counters and breaker, push pacing
//! (one send rate and concurrency limit per app, shared pauses and template rejections), and
//! an event stream that tells every instance when one of these changed.
//!
//! Only the Redis backend lives here so far ([`RedisCoord`]); the embedded mode keeps all of
//! this inside the token manager. Every call is bounded in time and fails with
//! [`CoordError::Unavailable`] when Redis cannot be reached, so the caller can fall back to its
//! in-process copy (invariant 5) instead of hanging.
//!
//! Times are always the caller's epoch milliseconds (its `Clock`, which tests move), never
//! Redis `TIME`. Redis TTLs run on Redis' real clock, so they only garbage-collect: whether a
//! token or a block is still current is decided by comparing the stored `*_ms` values with the
//! caller's clock. The one exception is push pacing's send rate and concurrency holdings,
//! which compare instants written by different instances at millisecond scale: those are
//! measured on Redis `TIME` inside their scripts, so clock skew between hosts cannot break them.

mod redis;

pub use self::redis::{Holding, LockGuard, RedisCoord, RejectedTemplate, SendSlots};

/// The key prefix (and channel prefix) when the configuration names none.
pub const DEFAULT_PREFIX: &str = "wxgate";

/// The token every instance shares, as stored in Redis. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedToken {
    pub token: String,
    /// Rises by one each time a different token is stored; never goes back, even after the
    /// token itself expired from Redis.
    pub generation: u64,
    pub expires_at_ms: i64,
    pub fetched_at_ms: i64,
    /// Reported rejected by a caller; not to be handed out again.
    pub invalid: bool,
}

impl std::fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedToken")
            .field("token", &"[redacted]")
            .field("generation", &self.generation)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("fetched_at_ms", &self.fetched_at_ms)
            .field("invalid", &self.invalid)
            .finish()
    }
}

/// What a shared invalidation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidateResult {
    /// The named token was the stored one: it is now marked invalid fleet-wide.
    Applied,
    /// Someone already invalidated this generation; nothing changed.
    AlreadyInvalidated,
    /// The stored token is another one (newer, or none): nothing changed.
    Stale,
}

/// A change another instance (or this one) made, as seen on the event stream. Events are
/// hints: the receiver re-reads the state from Redis rather than trusting the event alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordEvent {
    /// A token was stored (a new generation, or the same token with a later expiry).
    Token { app: String, generation: u64 },
    /// The stored token of this generation was marked invalid.
    Invalidated { app: String, generation: u64 },
    /// The fetch lock was released: waiters may read the token or try the lock now.
    Unlocked { app: String },
    /// The app's breaker was opened or closed: re-read it with `get_block`.
    Block { app: String },
    /// The app's sends were paused, or the pause extended: re-read it with `get_pause`.
    Paused { app: String },
    /// A template of the app was rejected: re-read them with `rejected_templates`.
    TemplateRejected { app: String, template: String },
    /// The stream was lost (Redis went away or stopped answering): until `Reconnected`, events
    /// are missed and Redis is probably unreachable.
    Disconnected,
    /// The stream is live again after it was down (also sent once when it first goes live):
    /// events may have been missed, so re-read everything.
    Reconnected,
}

impl CoordEvent {
    /// The app the event is about; `None` for `Reconnected`.
    pub fn app(&self) -> Option<&str> {
        match self {
            CoordEvent::Token { app, .. }
            | CoordEvent::Invalidated { app, .. }
            | CoordEvent::Unlocked { app }
            | CoordEvent::Block { app }
            | CoordEvent::Paused { app }
            | CoordEvent::TemplateRejected { app, .. } => Some(app),
            CoordEvent::Reconnected | CoordEvent::Disconnected => None,
        }
    }
}

/// Why a coordination call failed. Messages never contain the Redis password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoordError {
    /// Redis could not be reached or did not answer in time (refused, timeout, dropped,
    /// loading, failing over). The caller degrades to its in-process state.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered something unexpected, or the request was malformed (a bug, or a key
    /// written by something else).
    #[error("redis protocol error: {0}")]
    Protocol(String),
}
