//! Delivery workers: claim due messages from the outbox, send each with its app's token,
//! classify WeChat's answer by errcode class (invariant 10) and record the outcome and the
//! attempt in the store, fenced by the claim's lease (invariant 9).
//!
//! Tasks of one process, all started by [`Pusher::spawn`] and ended by its stop token:
//! - the **dispatcher** (`dispatch.rs`) claims batches while fewer than `max_in_flight`
//!   messages are held, at most `limits::claim_budget` per app, and spawns one task per
//!   message; it sleeps until the next message is due or the store announces new work;
//! - each **send task** (`send.rs`) waits at its app's gate (limits, pause, rejected
//!   templates), calls WeChat with no transaction open, and hands its result on;
//! - the **finisher** (`finish.rs`) writes results in batches, one transaction each;
//! - the **lease keeper** (`leases.rs`) renews the leases of messages still waiting;
//! - the **upload janitor** (`uploads.rs`) deletes campaign uploads of dead processes and
//!   releases campaigns sealed just before a crash;
//! - in a fleet, **fleet sync** (`fleet_sync.rs`) applies pauses and template rejections
//!   published by other instances, and the per-app limits hold the fleet's rate and
//!   concurrency (`limits/`).

mod dispatch;
mod finish;

/// Send results waiting for the finisher: two of its batches.
const FINISH_QUEUE: usize = 1024;
mod fleet_sync;
mod gate;
mod leases;
mod limits;
mod send;
mod uploads;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::gate::AppGate;
use self::leases::Held;
use crate::apps::AppRegistry;
use crate::clock::Clock;
use crate::config::PushConfig;
use crate::coord::RedisCoord;
use crate::store::{Finish, Store};
use crate::token::TokenManager;
use crate::wechat::Client;

/// How the workers pace and retry.
#[derive(Clone, Debug)]
pub struct PushSettings {
    /// Names this process in leases and in the delivery log.
    pub instance: String,
    /// A claimed message not finished within this is claimed again by another worker. Held
    /// messages' leases are renewed, so only a dead worker's run out.
    pub lease: Duration,
    /// Messages claimed per store round trip.
    pub batch: usize,
    /// Messages held (claimed, not finished) at once by this process, all apps together.
    pub max_in_flight: usize,
    /// Sends at once per app (for the whole fleet when it shares Redis).
    pub per_app_concurrency: usize,
    /// Sends per second per app, for the whole fleet when it shares Redis (0 = no limit).
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
    pub apps: AppRegistry,
    /// The WeChat call layer, shared with the token manager (one connection pool).
    pub client: Client,
    pub clock: Clock,
    pub settings: PushSettings,
    /// Fleet mode: where limits, pauses and template rejections are shared.
    coord: Option<RedisCoord>,
    /// Per-app gates; created on first use, never removed (an app that is gone costs one
    /// small entry). Held only to find or insert one.
    gates: Mutex<HashMap<String, Arc<AppGate>>>,
    /// Messages claimed and not finished, with their leases.
    pub held: Held,
    /// Wakes the dispatcher early: an app's pause ended or was set, work may be due.
    wake: Notify,
    /// Stops the per-app limit tasks; cancelled when the workers have stopped.
    limits_stop: CancellationToken,
}

impl Inner {
    pub(crate) fn gate(&self, app: &str) -> Arc<AppGate> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(gate) = gates.get(app) {
            return gate.clone();
        }
        gates
            .entry(app.to_string())
            .or_insert_with(|| {
                Arc::new(AppGate::new(
                    app,
                    &self.settings,
                    self.coord.as_ref(),
                    &self.limits_stop,
                ))
            })
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
        apps: AppRegistry,
        client: Client,
        settings: PushSettings,
    ) -> Pusher {
        let clock = tokens.clock().clone();
        let coord = tokens.coord();
        let held = Held::new(limits::claim_budget(&settings));
        Pusher {
            inner: Arc::new(Inner {
                store,
                tokens,
                apps,
                client,
                clock,
                settings,
                coord,
                gates: Mutex::new(HashMap::new()),
                held,
                wake: Notify::new(),
                limits_stop: CancellationToken::new(),
            }),
        }
    }

    /// Start the workers. They end when `stop` is cancelled; sends under way finish and are
    /// recorded first (the finisher drains its channel).
    pub fn spawn(&self, stop: CancellationToken) -> JoinHandle<()> {
        let inner = self.inner.clone();
        // Results of sends → the finisher. Bounded so a slow store slows the senders, and
        // small (two batches) because a result waiting here is a send a crash would repeat.
        let (tx, rx) = mpsc::channel::<Finish>(FINISH_QUEUE);
        let finisher = tokio::spawn(finish::run(inner.clone(), rx, stop.clone()));
        tokio::spawn(leases::keep(inner.clone(), stop.clone()));
        tokio::spawn(uploads::run(inner.clone(), stop.clone()));
        if let (Some(coord), Some(events)) = (inner.coord.clone(), inner.tokens.fleet_events()) {
            tokio::spawn(fleet_sync::run(inner.clone(), coord, events, stop.clone()));
        }
        tokio::spawn(async move {
            dispatch::run(inner.clone(), tx, stop).await;
            // `tx` clones held by send tasks keep the finisher alive until they are done.
            let _ = finisher.await;
            inner.limits_stop.cancel();
        })
    }
}
