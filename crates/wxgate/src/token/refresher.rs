//! The background refresher of one app: fetches ahead of expiry so callers in steady use never
//! wait on WeChat, and notices tokens that someone else made invalid.

use std::sync::Arc;
use std::time::Duration;

use super::fetch::Purpose;
use super::slot::{AppSlot, SlotState, Token};
use super::{Inner, fetch};
use crate::config::{AppKind, TokenApi};

/// WeChat rotates a stable token only in its last 300 s; refreshing earlier returns it again.
const STABLE_ROTATION_MS: i64 = 300_000;
/// Background attempts are at least this far apart, so a refresh that changes nothing can't spin.
const MIN_SPACING: Duration = Duration::from_secs(10);
/// A foreign-refresher warning is logged at most once per this period.
const FOREIGN_QUIET_MS: i64 = 3_600_000;

/// When to refresh `t`, with a jitter drawn once per token so instances spread out.
pub(crate) fn refresh_at(inner: &Inner, slot: &AppSlot, t: &Token) -> i64 {
    let jitter_max = inner.settings.refresh_jitter.as_millis() as i64;
    let jitter = |max: i64| {
        if max <= 0 {
            0
        } else {
            // Derived from the generation so the same token always gets the same point.
            (t.generation.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as i64 % max
        }
    };
    match (slot.kind(), slot.token_api()) {
        // WeCom hands out the same token until it expires.
        (AppKind::Wecom, _) => t.expires_at_ms + 1_000,
        (_, TokenApi::Stable) => {
            t.expires_at_ms - STABLE_ROTATION_MS + 10_000 + jitter(jitter_max.min(60_000))
        }
        (_, TokenApi::Classic) => {
            t.expires_at_ms - inner.settings.refresh_ahead.as_millis() as i64 - jitter(jitter_max)
        }
    }
}

/// Runs until the slot is cancelled (app removed, or the manager shuts down).
pub(crate) async fn run(inner: Arc<Inner>, slot: Arc<AppSlot>) {
    loop {
        let due = {
            let st = slot.state();
            let refresh = st
                .current
                .as_ref()
                .filter(|t| !t.invalid)
                .map(|t| refresh_at(&inner, &slot, t));
            match (refresh, st.block.as_ref().map(|b| b.until_ms)) {
                (Some(r), Some(b)) => Some(r.max(b)),
                (r, _) => r,
            }
        };
        tokio::select! {
            _ = slot.cancel.cancelled() => return,
            _ = slot.changed.notified() => continue,
            _ = async {
                match due {
                    Some(at) => inner.clock.sleep_until_ms(at).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        let rx = {
            let mut st = slot.state();
            let now = inner.clock.now_ms();
            fetch::start_if_idle(&inner, &slot, &mut st, Purpose::Refresh, now)
        };
        if let Some(mut rx) = rx
            && let Err(e) = fetch::wait(&mut rx).await
        {
            tracing::warn!(app = %slot.id, error = %e, "background token refresh failed");
        }
        tokio::select! {
            _ = slot.cancel.cancelled() => return,
            _ = inner.clock.sleep(MIN_SPACING) => {}
        }
    }
}

/// Invariant 6: a token rejected well before its expiry means someone else fetched a new one
/// (another environment, a script with the same secret). Counted always; logged once per
/// episode with advice.
pub(crate) fn note_foreign_refresh(slot: &AppSlot, st: &mut SlotState, t: &Token, now: i64) {
    if t.expires_at_ms - now <= 60_000 {
        return; // Near expiry: clock skew, not a foreign fetch.
    }
    metrics::counter!("wxgate_token_foreign_refresh_total", "app" => slot.id.clone()).increment(1);
    if now < st.foreign_quiet_until_ms {
        return;
    }
    st.foreign_quiet_until_ms = now + FOREIGN_QUIET_MS;
    let age_s = (now - t.fetched_at_ms) / 1000;
    let advice = match (slot.kind(), slot.token_api()) {
        (AppKind::Wecom, _) => {
            "WeCom may also invalidate tokens early; if this repeats, look for another service using this app's secret"
        }
        (_, TokenApi::Classic) => {
            "another client fetched a new token with this app's secret (another environment or service?). Switch the app to token_api = \"stable\" so other fetches no longer invalidate this one, and find the other fetcher"
        }
        (_, TokenApi::Stable) => {
            "someone called stable_token with force_refresh for this app; find the other client using its secret"
        }
    };
    tracing::warn!(app = %slot.id, token_age_s = age_s, generation = t.generation, "token rejected {age_s} s after it was fetched: {advice}");
}
