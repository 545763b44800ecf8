//! Delivery workers: claim due messages from the outbox, send each with its app's token,
//! classify WeChat's answer by errcode class (invariant 10) and record the outcome and the
//! attempt in the store, fenced by the claim's lease (invariant 9).
//!
//! One dispatcher task per process claims batches (`claim_due`) while fewer than
//! `max_in_flight` messages are being sent, and spawns one task per message; an app's sends are
//! bounded by its semaphore (`per_app_concurrency`) and its pacer (`per_app_rate`). Results go
//! through a channel to one finisher task that writes them in batches (one transaction each),
//! so the SQLite writer is not asked for a transaction per message. No transaction is ever held
//! across a call to WeChat.

mod gate;
mod send;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::gate::AppGate;
use crate::clock::Clock;
use crate::config::{ApiBase, PushConfig};
use crate::store::{Finish, Store};
use crate::token::TokenManager;

/// How the workers pace and retry.
#[derive(Clone, Debug)]
pub struct PushSettings {
    /// Names this process in leases and in the delivery log.
    pub instance: String,
    /// A claimed message not finished within this is claimed again by another worker.
    pub lease: Duration,
    /// Messages claimed per store round trip.
    pub batch: usize,
    /// Messages being sent at once by this process, all apps together.
    pub max_in_flight: usize,
    /// Sends at once per app.
    pub per_app_concurrency: usize,
    /// Sends per second per app (0 = no limit).
    pub per_app_rate: u32,
    /// Attempts (calls that reached WeChat and failed transiently) before a message fails.
    pub max_attempts: i64,
    /// An OA template retry later than this after the first try is not safe (WeChat forgets
    /// the `client_msg_id` after 10 minutes): the message ends `unknown`.
    pub template_retry_window: Duration,
    /// Per call to WeChat.
    pub send_timeout: Duration,
}

impl PushSettings {
    pub fn from_config(c: &PushConfig) -> PushSettings {
        PushSettings {
            instance: default_instance(),
            lease: c.lease,
            batch: (c.per_app_concurrency * 2).clamp(100, 1000),
            max_in_flight: (c.per_app_concurrency * 4).clamp(512, 8192),
            per_app_concurrency: c.per_app_concurrency,
            per_app_rate: c.per_app_rate,
            max_attempts: i64::from(c.max_attempts),
            template_retry_window: Duration::from_secs(600),
            send_timeout: c.send_timeout,
        }
    }
}

/// `hostname:pid`, so the delivery log says which process made each call.
fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "wxgate".into());
    format!("{host}:{}", std::process::id())
}

pub(crate) struct Inner {
    pub store: Store,
    pub tokens: TokenManager,
    pub http: reqwest::Client,
    pub wechat: ApiBase,
    pub wecom: ApiBase,
    pub clock: Clock,
    pub settings: PushSettings,
    /// Per-app semaphores, pacers and pauses; created on first use, never removed (an app
    /// that is gone costs one small entry).
    gates: Mutex<HashMap<String, Arc<AppGate>>>,
    /// Wakes the dispatcher early: a message was accepted, or an app's pause ended.
    wake: Notify,
}

impl Inner {
    pub(crate) fn gate(&self, app: &str) -> Arc<AppGate> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates
            .entry(app.to_string())
            .or_insert_with(|| Arc::new(AppGate::new(&self.settings)))
            .clone()
    }

    fn paused_apps(&self, now_ms: i64) -> Vec<String> {
        let gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates
            .iter()
            .filter(|(_, g)| g.paused_until_ms() > now_ms)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// The push side of a gateway. Cheap to clone.
#[derive(Clone)]
pub struct Pusher {
    inner: Arc<Inner>,
}

impl Pusher {
    pub fn new(
        store: Store,
        tokens: TokenManager,
        (wechat, wecom): (ApiBase, ApiBase),
        settings: PushSettings,
    ) -> Pusher {
        let http = crate::wechat::http_client_for(settings.send_timeout, settings.max_in_flight);
        let clock = tokens.clock().clone();
        Pusher {
            inner: Arc::new(Inner {
                store,
                tokens,
                http,
                wechat,
                wecom,
                clock,
                settings,
                gates: Mutex::new(HashMap::new()),
                wake: Notify::new(),
            }),
        }
    }

    /// A message was committed: look for due work now instead of at the next poll.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Start the dispatcher and the finisher. Both end when `stop` is cancelled; sends under
    /// way finish and are recorded first (the finisher drains its channel).
    pub fn spawn(&self, stop: CancellationToken) -> JoinHandle<()> {
        let inner = self.inner.clone();
        // Results of sends → the finisher. Bounded so a slow store slows the senders.
        let (tx, rx) = mpsc::channel::<Finish>(4096);
        let finisher = tokio::spawn(finish_loop(inner.clone(), rx));
        tokio::spawn(async move {
            dispatch_loop(inner, tx, stop).await;
            // `tx` clones held by send tasks keep the finisher alive until they are done.
            let _ = finisher.await;
        })
    }
}

/// Claims due messages and starts their sends, until `stop`.
async fn dispatch_loop(inner: Arc<Inner>, tx: mpsc::Sender<Finish>, stop: CancellationToken) {
    let s = &inner.settings;
    // Bounds the messages claimed but not yet finished by this process.
    let in_flight = Arc::new(Semaphore::new(s.max_in_flight));
    let lease_ms = s.lease.as_millis() as i64;
    // Queue depth for metrics, every 15 s: it costs ~0.2 s of the store per million queued.
    let mut depth_at = std::time::Instant::now() - Duration::from_secs(60);
    loop {
        if stop.is_cancelled() {
            return;
        }
        if depth_at.elapsed() >= Duration::from_secs(15) {
            depth_at = std::time::Instant::now();
            if let Ok(d) = inner.store.queue_depth(inner.clock.now_ms()).await {
                metrics::gauge!("wxgate_push_queue", "state" => "due").set(d.due as f64);
                metrics::gauge!("wxgate_push_queue", "state" => "pending").set(d.pending as f64);
                metrics::gauge!("wxgate_push_queue", "state" => "sending").set(d.sending as f64);
            }
        }
        let room = in_flight.available_permits().min(s.batch);
        if room == 0 {
            // Wait for one send to finish.
            tokio::select! {
                _ = stop.cancelled() => return,
                p = in_flight.acquire() => drop(p),
            }
            continue;
        }
        let now = inner.clock.now_ms();
        let paused = inner.paused_apps(now);
        let claimed = match inner
            .store
            .claim_due(&s.instance, now, lease_ms, room as u32, &paused)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming messages failed; retrying in 1 s");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        };
        if claimed.is_empty() {
            let next = inner.store.next_due_ms(&paused).await.ok().flatten();
            let wait = next
                .map(|t| (t - inner.clock.now_ms()).clamp(0, 1000) as u64)
                .unwrap_or(1000);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = inner.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait.max(5))) => {}
            }
            continue;
        }
        metrics::counter!("wxgate_push_claimed_total").increment(claimed.len() as u64);
        for c in claimed {
            let permit = in_flight
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let (inner, tx) = (inner.clone(), tx.clone());
            // One task per message; it ends when its result is handed to the finisher.
            tokio::spawn(async move {
                let finish = send::deliver(&inner, c).await;
                let _ = tx.send(finish).await;
                drop(permit);
            });
        }
    }
}

/// Writes results in batches: whatever arrived within a few milliseconds, up to 500, in one
/// transaction. Ends when every sender is gone.
async fn finish_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<Finish>) {
    let mut batch = Vec::with_capacity(500);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(5);
        while batch.len() < 500 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(f)) => batch.push(f),
                _ => break,
            }
        }
        let mut tries = 0;
        loop {
            match inner.store.finish(&batch, inner.clock.now_ms()).await {
                Ok(applied) => {
                    let fenced = applied.iter().filter(|a| !**a).count();
                    if fenced > 0 {
                        metrics::counter!("wxgate_push_fenced_total").increment(fenced as u64);
                        tracing::warn!(
                            fenced,
                            "results of sends whose lease another worker took over were not applied"
                        );
                    }
                    break;
                }
                // The results stay in memory and are retried; if the process dies now, the
                // leases expire and the messages are claimed again (idempotent retries).
                Err(e) if tries < 10 => {
                    tries += 1;
                    tracing::warn!(error = %e, "recording send results failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, n = batch.len(), "recording send results failed; their leases will expire and they are claimed again");
                    break;
                }
            }
        }
        batch.clear();
    }
}
