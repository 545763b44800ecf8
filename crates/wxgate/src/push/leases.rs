//! The messages this instance holds: claimed and not finished yet. The keeper renews their
//! leases while they wait for their app's limits, so a slow app (a low `per_app_rate`) never
//! loses a lease it is still working on, and a message whose lease was taken over anyway is
//! not sent (another worker has it now). The per-app counts bound how far ahead an app is
//! claimed (`limits::claim_budget`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Inner;
use crate::store::{Claimed, Lease};

/// One held message.
struct Entry {
    app: String,
    token: String,
    until_ms: i64,
    /// Set when a renewal found the lease taken over: the send must not happen.
    lost: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    /// By message id.
    leases: HashMap<String, Entry>,
    per_app: HashMap<String, usize>,
}

/// Held messages.
pub(crate) struct Held {
    /// Held only for bookkeeping, never across an `.await`.
    state: Mutex<State>,
    /// Messages of one app held at most (`limits::claim_budget`).
    budget: usize,
    /// Wakes the dispatcher when an app that was full has room again.
    pub room: Notify,
}

impl Held {
    pub fn new(budget: usize) -> Held {
        Held {
            state: Mutex::new(State::default()),
            budget,
            room: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts holding `c`; the flag turns true if its lease is found taken over.
    pub fn add(&self, c: &Claimed) -> Arc<AtomicBool> {
        let lost = Arc::new(AtomicBool::new(false));
        let mut st = self.state();
        let entry = Entry {
            app: c.app.clone(),
            token: c.lease_token.clone(),
            until_ms: c.lease_until_ms,
            lost: lost.clone(),
        };
        if st.leases.insert(c.id.clone(), entry).is_none() {
            *st.per_app.entry(c.app.clone()).or_default() += 1;
        }
        lost
    }

    /// Stops holding the message under this lease (a newer claim of it stays).
    pub fn remove(&self, id: &str, token: &str) {
        let mut st = self.state();
        if st.leases.get(id).is_some_and(|e| e.token == token)
            && let Some(e) = st.leases.remove(id)
            && let Some(n) = st.per_app.get_mut(&e.app)
        {
            *n -= 1;
            if *n + 1 == self.budget {
                self.room.notify_one();
            }
            if *n == 0 {
                st.per_app.remove(&e.app);
            }
        }
    }

    /// Apps of which this instance already holds its budget of messages.
    pub fn full_apps(&self) -> Vec<String> {
        let st = self.state();
        st.per_app
            .iter()
            .filter(|(_, n)| **n >= self.budget)
            .map(|(app, _)| app.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.state().leases.len()
    }

    /// Leases ending before `before_ms`.
    fn ending_before(&self, before_ms: i64) -> Vec<Lease> {
        let st = self.state();
        st.leases
            .iter()
            .filter(|(_, e)| e.until_ms < before_ms)
            .map(|(id, e)| Lease {
                id: id.clone(),
                token: e.token.clone(),
            })
            .collect()
    }

    /// Records what a renewal to `until_ms` found.
    fn renewed(&self, leases: &[Lease], held: &[bool], until_ms: i64) {
        let mut st = self.state();
        for (lease, held) in leases.iter().zip(held) {
            if let Some(e) = st
                .leases
                .get_mut(&lease.id)
                .filter(|e| e.token == lease.token)
            {
                if *held {
                    e.until_ms = until_ms;
                } else {
                    e.lost.store(true, Ordering::Release);
                }
            }
        }
    }
}

/// Renews the leases of held messages before they run out: every quarter lease, those with
/// less than half a lease left. Runs until `stop`.
pub(crate) async fn keep(inner: Arc<Inner>, stop: CancellationToken) {
    let lease_ms = inner.settings.lease.as_millis() as i64;
    let every = Duration::from_millis((lease_ms / 4).max(100) as u64);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = inner.clock.now_ms();
        let due = inner.held.ending_before(now + lease_ms / 2);
        if due.is_empty() {
            continue;
        }
        let until = now + lease_ms;
        match inner
            .store
            .extend_leases(&inner.settings.instance, &due, until)
            .await
        {
            Ok(held) => {
                let lost = held.iter().filter(|h| !**h).count();
                if lost > 0 {
                    tracing::warn!(
                        lost,
                        "leases of held messages were taken over; they will not be sent by this instance"
                    );
                }
                metrics::counter!("wxgate_push_leases_renewed_total")
                    .increment((held.len() - lost) as u64);
                inner.held.renewed(&due, &held, until);
            }
            Err(e) => tracing::warn!(error = %e, n = due.len(), "renewing leases failed; retrying"),
        }
    }
}
