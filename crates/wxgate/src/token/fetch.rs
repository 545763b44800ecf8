//! The single upstream fetch of an app: budget checks, bounded retries with jittered backoff,
//! a forced refresh when the stable API keeps returning a rejected token, and the breaker that
//! a failure opens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::watch;

use super::Inner;
use super::error::TokenError;
use super::fleet::{self, Fleet};
use super::slot::{AccessToken, AppSlot, Block, Outcome, SlotState, Token};
use crate::clock::{day_index, next_shanghai_midnight_ms};
use crate::config::{AppKind, TokenApi};
use crate::coord::{LockGuard, SharedToken};
use crate::wechat::{ErrClass, FetchError, Fetched, classify_fetch, fetch_hint};

/// WeChat allows 20 forced stable-token refreshes a day, at least 30 s apart.
const FORCE_PER_DAY: u32 = 20;
const FORCE_SPACING_MS: i64 = 30_000;
/// How long a configuration error keeps the breaker open before one probe is allowed.
const CONFIG_COOLDOWN_MS: i64 = 5 * 60_000;
/// How long a transient failure (after its retries) keeps the breaker open; it doubles with each
/// failure in a row up to `TRANSIENT_COOLDOWN_MAX_MS`, so an outage cannot spend the day's budget.
const TRANSIENT_COOLDOWN_MS: i64 = 5_000;
const TRANSIENT_COOLDOWN_MAX_MS: i64 = 5 * 60_000;

/// Start the app's one fetch and return the receiver its callers wait on. The caller holds the
/// slot's lock and has checked that no fetch is under way.
pub(crate) fn start(
    inner: &Arc<Inner>,
    slot: &Arc<AppSlot>,
    st: &mut SlotState,
    purpose: Purpose,
) -> watch::Receiver<Option<Outcome>> {
    // One sender, kept by the task; receivers are cloned by every waiting caller. Dropping the
    // sender without a value (a panic) wakes waiters with an error instead of hanging them.
    let (tx, rx) = watch::channel(None);
    st.inflight = Some(rx.clone());
    let (inner, slot) = (inner.clone(), slot.clone());
    // Its own task, so a caller that goes away cannot abort a fetch half-way. It ends when the
    // fetch ends: retries are bounded and each call has a timeout.
    tokio::spawn(async move {
        let mut result = obtain(&inner, &slot, purpose).await;
        // A report of this very token may have arrived while the fetch adopted it: then it is
        // withdrawn already, and the callers need the next one. Once more, not in a loop.
        if let Ok(Got::Shared(s)) = &result
            && slot
                .state()
                .rejected
                .as_ref()
                .is_some_and(|r| r.expose() == s.token)
        {
            result = obtain(&inner, &slot, Purpose::Serve).await;
        }
        let mut st = slot.state();
        st.inflight = None;
        let outcome = match result {
            Ok(got) => {
                st.transient_failures = 0;
                let token = match got {
                    Got::Fetched(fetched, at_ms) => install(&mut st, fetched, at_ms),
                    Got::Shared(shared) => install_shared(&mut st, &shared),
                };
                if token.invalid {
                    Err(TokenError::Unavailable {
                        detail: "the token was reported rejected while it was being fetched; \
                                 ask again"
                            .into(),
                        wechat_errcode: None,
                        retry_at_ms: inner.clock.now_ms(),
                    })
                } else {
                    Ok(token)
                }
            }
            Err(e) => {
                if let Some(until_ms) = e.retry_at_ms() {
                    st.block = Some(Block {
                        until_ms,
                        error: e.clone(),
                    });
                }
                Err(e)
            }
        };
        let blocked = st.block.is_some();
        drop(st);
        metrics::gauge!("wxgate_token_breaker_open", "app" => slot.id.clone()).set(if blocked {
            1.0
        } else {
            0.0
        });
        slot.changed.notify_one();
        let _ = tx.send(Some(outcome));
    });
    rx
}

/// Start the app's fetch unless one is under way or the breaker is open (then a report or a
/// refresh waits for it to close). The caller holds the slot's lock.
pub(crate) fn start_if_idle(
    inner: &Arc<Inner>,
    slot: &Arc<AppSlot>,
    st: &mut SlotState,
    purpose: Purpose,
    now: i64,
) -> Option<watch::Receiver<Option<Outcome>>> {
    let blocked = st.block.as_ref().is_some_and(|b| b.until_ms > now);
    (st.inflight.is_none() && !blocked).then(|| start(inner, slot, st, purpose))
}

/// One fetch: through the fleet, or alone (embedded mode).
async fn obtain(inner: &Arc<Inner>, slot: &AppSlot, purpose: Purpose) -> Result<Got, TokenError> {
    match &inner.fleet {
        Some(fleet) => fleet::obtain(inner, fleet, slot, purpose).await,
        None => run(inner, slot, &Ledger::Local, None)
            .await
            .map(|(f, at_ms)| Got::Fetched(f, at_ms))
            .map_err(|e| escalate(inner, slot, e)),
    }
}

/// A transient failure (after its retries) keeps the breaker open 5 s, doubling with each
/// failure in a row up to 5 min, so an outage cannot spend the day's budget. Other errors
/// carry their own reopening time.
pub(crate) fn escalate(inner: &Inner, slot: &AppSlot, mut e: TokenError) -> TokenError {
    if let TokenError::Unavailable { retry_at_ms, .. } = &mut e {
        let mut st = slot.state();
        let n = st.transient_failures.min(6);
        st.transient_failures += 1;
        let cooldown = (TRANSIENT_COOLDOWN_MS << n).min(TRANSIENT_COOLDOWN_MAX_MS);
        *retry_at_ms = inner.clock.now_ms() + cooldown;
    }
    e
}

/// Wait for a fetch's outcome.
pub(crate) async fn wait(rx: &mut watch::Receiver<Option<Outcome>>) -> Outcome {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone().unwrap_or_else(|| unreachable!("waited for Some")),
        Err(_) => Err(TokenError::Unavailable {
            detail: "the token fetch ended without a result".into(),
            wechat_errcode: None,
            retry_at_ms: 0,
        }),
    }
}

/// Why a fetch was started: the acceptance test for a token another instance stored differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A caller needs a token with at least `min_ttl` to live.
    Serve,
    /// The refresher: the current token is due for refresh.
    Refresh,
}

/// A token from a fetch: fetched here (embedded mode, or fleet mode with Redis away) or the
/// fleet's shared record (fetched here and published, or fetched by another instance).
pub(crate) enum Got {
    Fetched(Fetched, i64),
    Shared(SharedToken),
}

/// Store the fleet's shared token as this instance's current one, keeping its generation so
/// every instance names a token the same way. Never replaces the current token by an older
/// one: a different token is taken if it has a higher generation or was fetched later (a
/// token fetched here while Redis was away has a generation numbered here alone); the same
/// token string is relabelled with the shared generation, whose numbering wins.
pub(crate) fn install_shared(st: &mut SlotState, s: &SharedToken) -> Token {
    if let Some(c) = &st.current
        && c.value.expose() != s.token
        && c.generation >= s.generation
        && c.fetched_at_ms >= s.fetched_at_ms
    {
        return c.clone();
    }
    let same = st.current.as_ref().filter(|c| c.value.expose() == s.token);
    let token = Token {
        value: same.map_or_else(|| AccessToken::new(&s.token), |c| c.value.clone()),
        generation: s.generation,
        fetched_at_ms: s.fetched_at_ms,
        expires_at_ms: s.expires_at_ms.max(same.map_or(0, |c| c.expires_at_ms)),
        invalid: s.invalid || same.is_some_and(|c| c.invalid),
    };
    if same.is_none() {
        st.rejected = None;
    }
    if token.invalid {
        st.invalidated_generation = Some(token.generation);
        st.rejected = Some(token.value.clone());
    } else {
        st.block = None;
    }
    st.last_generation = st.last_generation.max(s.generation);
    st.current = Some(token.clone());
    token
}

/// Where the daily fetch and force-refresh counts live: this process (embedded mode, or fleet
/// mode while Redis is away), or Redis for the whole fleet. Local counts are kept in both, so
/// an instance can fall back to them.
pub(crate) enum Ledger<'a> {
    Local,
    /// The fleet's counters; `guard` is the fetch lock, extended before each retry.
    Shared {
        fleet: &'a Fleet,
        guard: &'a LockGuard,
    },
}

impl Ledger<'_> {
    /// (fetches, forces) spent today by this app.
    async fn spent(&self, slot: &AppSlot, now: i64) -> (u32, u32) {
        let local = {
            let mut st = slot.state();
            st.roll_day(now);
            (st.fetches_today, st.forces_today)
        };
        let Ledger::Shared { fleet, .. } = self else {
            return local;
        };
        let day = day_index(now);
        let fetches = fleet.call(fleet.coord.get_daily(&slot.id, "fetches", day));
        let forces = fleet.call(fleet.coord.get_daily(&slot.id, "forces", day));
        match tokio::join!(fetches, forces) {
            (Ok(f), Ok(g)) => (
                u32::try_from(f).unwrap_or(u32::MAX).max(local.0),
                u32::try_from(g).unwrap_or(u32::MAX).max(local.1),
            ),
            _ => local,
        }
    }

    /// Count one upstream call that reached WeChat.
    async fn charge(&self, slot: &AppSlot, now: i64, force: bool) {
        let local = {
            let mut st = slot.state();
            st.fetches_today += 1;
            if force {
                st.forces_today += 1;
                st.last_force_ms = Some(now);
            }
            st.fetches_today
        };
        let mut shown = local;
        if let Ledger::Shared { fleet, .. } = self {
            let day = day_index(now);
            if let Ok(n) = fleet
                .call(fleet.coord.incr_daily(&slot.id, "fetches", day))
                .await
            {
                shown = u32::try_from(n).unwrap_or(u32::MAX);
            }
            if force {
                let _ = fleet
                    .call(fleet.coord.incr_daily(&slot.id, "forces", day))
                    .await;
            }
        }
        metrics::gauge!("wxgate_token_fetches_today", "app" => slot.id.clone()).set(shown as f64);
    }

    /// Before a retry: keep the fleet's lock for another lease.
    async fn keep_alive(&self, lease: Duration) {
        if let Ledger::Shared { fleet, guard } = self {
            let _ = fleet.call(fleet.coord.extend(guard, lease)).await;
        }
    }
}

/// Store a fetched token. The same value keeps its generation; a new value gets the next one.
fn install(st: &mut SlotState, f: Fetched, at_ms: i64) -> Token {
    let same = st
        .current
        .as_ref()
        .filter(|t| t.value.expose() == f.access_token);
    let generation = match same {
        Some(t) => t.generation,
        None => {
            st.last_generation += 1;
            st.rejected = None;
            st.last_generation
        }
    };
    let token = Token {
        value: AccessToken::new(&f.access_token),
        generation,
        fetched_at_ms: at_ms,
        expires_at_ms: at_ms + f.expires_in * 1000,
        invalid: false,
    };
    st.current = Some(token.clone());
    st.block = None;
    token
}

/// The upstream fetch with its budget, force-refresh and retry rules. `rejected` names a token
/// the fleet saw rejected (besides the one this instance saw), so a stable API that returns it
/// again is forced.
pub(crate) async fn run(
    inner: &Inner,
    slot: &AppSlot,
    ledger: &Ledger<'_>,
    rejected: Option<AccessToken>,
) -> Result<(Fetched, i64), TokenError> {
    let creds = slot.credentials();
    let budget = slot.app().fetch_budget(&inner.settings);
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(3))
        .with_max_times(inner.settings.fetch_retries as usize)
        .with_jitter()
        .build();
    let mut force = false;
    let mut wecom_renewal_waited = false;
    loop {
        let now = inner.clock.now_ms();
        let (fetches_today, forces_today) = ledger.spent(slot, now).await;
        if fetches_today >= budget {
            metrics::counter!("wxgate_token_fetches_total", "app" => slot.id.clone(), "outcome" => "budget_exhausted").increment(1);
            return Err(TokenError::BudgetExhausted {
                used: fetches_today,
                budget,
                retry_at_ms: next_shanghai_midnight_ms(now),
            });
        }
        let rejected = {
            let st = slot.state();
            if force {
                if forces_today >= FORCE_PER_DAY {
                    return Err(TokenError::ForceRefreshUnavailable {
                        retry_at_ms: next_shanghai_midnight_ms(now),
                    });
                }
                let next_ok = st.last_force_ms.map_or(now, |t| t + FORCE_SPACING_MS);
                if next_ok > now {
                    return Err(TokenError::ForceRefreshUnavailable {
                        retry_at_ms: next_ok,
                    });
                }
            }
            [st.rejected.clone(), rejected.clone()]
        };
        let started = Instant::now();
        let result = inner
            .client
            .fetch(&creds, force, inner.settings.fetch_timeout)
            .await;
        // Charged after the call (this is the app's only fetch, in this process and, holding
        // the lock, in the fleet), and only if it reached WeChat: a connect failure costs no
        // quota, so it costs no budget.
        if !matches!(result, Err(FetchError::Connect(_))) {
            ledger.charge(slot, now, force).await;
        }
        metrics::histogram!("wxgate_token_fetch_seconds", "app" => slot.id.clone())
            .record(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(_) if force => "ok_forced".to_string(),
            Ok(_) => "ok".to_string(),
            Err(e) => e.outcome(),
        };
        metrics::counter!("wxgate_token_fetches_total", "app" => slot.id.clone(), "outcome" => outcome).increment(1);
        match result {
            Ok(f) => {
                let again = rejected
                    .iter()
                    .flatten()
                    .any(|r| r.expose() == f.access_token);
                if again
                    && creds.kind != AppKind::Wecom
                    && creds.token_api == TokenApi::Stable
                    && !force
                {
                    // The stable API still hands out the token callers saw rejected.
                    tracing::warn!(app = %slot.id, "a rejected stable token was returned again; forcing a refresh");
                    force = true;
                    continue;
                }
                if creds.kind == AppKind::Wecom && f.expires_in <= 1 && !wecom_renewal_waited {
                    // WeCom returns the same token until it expires; this one is about to, so
                    // ask again just after.
                    wecom_renewal_waited = true;
                    tokio::time::sleep(Duration::from_millis(1100)).await;
                    continue;
                }
                return Ok((f, now));
            }
            Err(e) => {
                if e.is_transient()
                    && let Some(delay) = backoff.next()
                {
                    tracing::warn!(app = %slot.id, error = %e, ?delay, "token fetch failed; retrying");
                    ledger.keep_alive(inner.settings.lock_lease).await;
                    tokio::time::sleep(delay).await;
                    continue;
                }
                tracing::warn!(app = %slot.id, error = %e, "token fetch failed");
                return Err(classify(e, now, creds.kind));
            }
        }
    }
}

/// Turn a failed fetch into the error callers see, with when the breaker lets the next try out.
fn classify(e: FetchError, now: i64, kind: AppKind) -> TokenError {
    let Some(errcode) = e.errcode() else {
        return TokenError::Unavailable {
            detail: e.to_string(),
            wechat_errcode: None,
            retry_at_ms: now + TRANSIENT_COOLDOWN_MS,
        };
    };
    let errmsg = match &e {
        FetchError::WeChat { errmsg, .. } => errmsg.clone(),
        _ => String::new(),
    };
    match (classify_fetch(errcode), errcode) {
        // WeCom's 45009 is a minute, hour or day frequency block; retry after a minute.
        (ErrClass::Window, 45009) if kind == AppKind::Wecom => TokenError::QuotaWindow {
            errcode,
            retry_at_ms: now + 60_000,
        },
        (ErrClass::Window, 45009) => TokenError::QuotaWindow {
            errcode,
            retry_at_ms: next_shanghai_midnight_ms(now),
        },
        (ErrClass::Window, 45011) => TokenError::QuotaWindow {
            errcode,
            retry_at_ms: (now.div_euclid(60_000) + 1) * 60_000,
        },
        (ErrClass::Window, c) => TokenError::Misconfigured {
            errcode: c,
            errmsg,
            hint: fetch_hint(c),
            retry_at_ms: now
                + if c == 89506 {
                    24 * 3_600_000
                } else {
                    3_600_000
                },
        },
        (ErrClass::Backoff, _) => TokenError::Unavailable {
            detail: e.to_string(),
            wechat_errcode: Some(errcode),
            retry_at_ms: now + TRANSIENT_COOLDOWN_MS,
        },
        _ => TokenError::Misconfigured {
            errcode,
            errmsg,
            hint: fetch_hint(errcode),
            retry_at_ms: now + CONFIG_COOLDOWN_MS,
        },
    }
}
