//! Counters a test reads to judge the gateway: token fetches, bad-token uses, sends, deliveries
//! and duplicates, logins, and calls by path. Hot counters are atomics; per-errcode maps sit
//! behind a mutex that is only taken on the error path; the per-path map behind its own.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

#[derive(Default)]
pub(crate) struct Counters {
    pub fetch_token: AtomicU64,
    pub fetch_stable: AtomicU64,
    pub fetch_stable_force: AtomicU64,
    pub fetch_gettoken: AtomicU64,
    pub tokens_minted: AtomicU64,
    pub use_valid: AtomicU64,
    pub use_overlap: AtomicU64,
    pub use_expired: AtomicU64,
    pub use_superseded: AtomicU64,
    pub use_revoked: AtomicU64,
    pub sends_accepted: AtomicU64,
    pub deliveries: AtomicU64,
    pub duplicate_deliveries: AtomicU64,
    pub dedupe_hits: AtomicU64,
    pub dropped_member_limit: AtomicU64,
    /// Errcode → count for failed token fetches. Taken only when a fetch fails.
    pub fetch_errors: Mutex<BTreeMap<i64, u64>>,
    /// Errcode → count for rejected business calls. Taken only when a call is rejected.
    pub rejected: Mutex<BTreeMap<i64, u64>>,
    pub jscode2session: AtomicU64,
    pub oauth2_access_token: AtomicU64,
    /// Path → calls that arrived naming this app (see [`AppStats::calls_by_path`]).
    pub calls_by_path: Mutex<BTreeMap<String, u64>>,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// Count one call to `path`; allocates the key only the first time a path is seen.
pub(crate) fn bump_path(m: &Mutex<BTreeMap<String, u64>>, path: &str) {
    let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
    match m.get_mut(path) {
        Some(n) => *n += 1,
        None => {
            m.insert(path.to_string(), 1);
        }
    }
}

pub(crate) fn bump_map(m: &Mutex<BTreeMap<i64, u64>>, code: i64) {
    *m.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(code)
        .or_default() += 1;
}

/// A snapshot of one app's counters, as `/_sim/stats` returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStats {
    /// Token calls by endpoint: every call that named this app, whatever the answer.
    pub token_fetches: TokenFetches,
    /// Failed token fetches by errcode.
    pub token_fetch_errors: BTreeMap<i64, u64>,
    pub tokens_minted: u64,
    /// Business calls by the state of the token they carried.
    pub token_uses: TokenUses,
    pub sends_accepted: u64,
    /// Rejected business calls by errcode.
    pub sends_rejected: BTreeMap<i64, u64>,
    /// Messages handed to a recipient (one per recipient for WeCom).
    pub deliveries: u64,
    /// Deliveries identical to an earlier one (same recipient, template or msgtype, content).
    pub duplicate_deliveries: u64,
    /// Sends answered from the `client_msg_id` / `enable_duplicate_check` window, not delivered.
    pub dedupe_hits: u64,
    /// WeCom sends accepted but not delivered because a member was over 30/min or 1000/h.
    pub dropped_member_limit: u64,
    /// `GET /sns/jscode2session` calls naming this Mini Program's appid, whatever the answer.
    #[serde(default)]
    pub jscode2session_calls: u64,
    /// `GET /sns/oauth2/access_token` calls naming this Official Account's appid, whatever the
    /// answer.
    #[serde(default)]
    pub oauth2_access_token_calls: u64,
    /// Requests that arrived naming this app, by URL path (no query), whatever the answer and
    /// counted before any injected fault: every request carrying one of the app's access tokens
    /// (current, superseded, expired or revoked), a user OAuth token it issued
    /// (`/sns/userinfo`), or its appid on `/sns/jscode2session` and `/sns/oauth2/access_token`.
    /// Token fetches are not in it (see `token_fetches`).
    #[serde(default)]
    pub calls_by_path: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFetches {
    pub token: u64,
    pub stable_token: u64,
    pub stable_token_force: u64,
    pub gettoken: u64,
}

impl TokenFetches {
    pub fn total(&self) -> u64 {
        self.token + self.stable_token + self.stable_token_force + self.gettoken
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUses {
    pub valid: u64,
    /// Valid, but already superseded and inside its overlap window.
    pub overlap: u64,
    pub expired: u64,
    pub superseded: u64,
    pub revoked: u64,
}

impl TokenUses {
    /// Uses WeChat rejected because the token was no longer good.
    pub fn bad(&self) -> u64 {
        self.expired + self.superseded + self.revoked
    }
}

impl Counters {
    pub fn snapshot(&self) -> AppStats {
        let g = |c: &AtomicU64| c.load(Relaxed);
        let m = |m: &Mutex<BTreeMap<i64, u64>>| m.lock().unwrap_or_else(|p| p.into_inner()).clone();
        AppStats {
            token_fetches: TokenFetches {
                token: g(&self.fetch_token),
                stable_token: g(&self.fetch_stable),
                stable_token_force: g(&self.fetch_stable_force),
                gettoken: g(&self.fetch_gettoken),
            },
            token_fetch_errors: m(&self.fetch_errors),
            tokens_minted: g(&self.tokens_minted),
            token_uses: TokenUses {
                valid: g(&self.use_valid),
                overlap: g(&self.use_overlap),
                expired: g(&self.use_expired),
                superseded: g(&self.use_superseded),
                revoked: g(&self.use_revoked),
            },
            sends_accepted: g(&self.sends_accepted),
            sends_rejected: m(&self.rejected),
            deliveries: g(&self.deliveries),
            duplicate_deliveries: g(&self.duplicate_deliveries),
            dedupe_hits: g(&self.dedupe_hits),
            dropped_member_limit: g(&self.dropped_member_limit),
            jscode2session_calls: g(&self.jscode2session),
            oauth2_access_token_calls: g(&self.oauth2_access_token),
            calls_by_path: self
                .calls_by_path
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// Faults the simulator injected, for the whole simulator.
#[derive(Default)]
pub(crate) struct FaultCounters {
    pub busy: AtomicU64,
    pub http_502: AtomicU64,
    pub dropped: AtomicU64,
    pub lost_reply: AtomicU64,
    pub hung: AtomicU64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultStats {
    pub busy: u64,
    pub http_502: u64,
    pub dropped: u64,
    pub lost_reply: u64,
    pub hung: u64,
}

impl FaultCounters {
    pub fn reset(&self) {
        for c in [
            &self.busy,
            &self.http_502,
            &self.dropped,
            &self.lost_reply,
            &self.hung,
        ] {
            c.store(0, Relaxed);
        }
    }

    pub fn snapshot(&self) -> FaultStats {
        FaultStats {
            busy: self.busy.load(Relaxed),
            http_502: self.http_502.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            lost_reply: self.lost_reply.load(Relaxed),
            hung: self.hung.load(Relaxed),
        }
    }
}
