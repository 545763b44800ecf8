//! The event subscriber behind [`RedisCoord::spawn_events`](super::RedisCoord::spawn_events): its own RESP3 connection that
//! SUBSCRIBEs to `<prefix>:events`, turns each JSON payload into a [`CoordEvent`], and
//! reconnects with backoff when Redis goes away or stops answering PINGs.
//!
//! RESP3 because push messages then arrive on a plain tokio channel (no `Stream` plumbing) and
//! the same connection can still PING while subscribed; Redis 6+ speaks it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::{AsyncConnectionConfig, Client, Msg, PushKind, RedisError, Value, cmd};
use tokio::sync::{broadcast, mpsc};

use super::{ATTEMPT_TIMEOUT, OP_TIMEOUT, RESPONSE_TIMEOUT, classify};
use crate::coord::CoordEvent;

/// Events buffered per receiver; one that falls behind gets `Lagged` and should re-read all.
pub(super) const EVENTS_CAPACITY: usize = 1024;
/// The subscriber pings this often, so a Redis that hangs without closing is noticed.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Reconnect backoff of the subscriber.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A session that lived this long resets the backoff; a flapping one keeps backing off.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// The event subscriber's state; see [`RedisCoord::spawn_events`](super::RedisCoord::spawn_events).
pub(super) struct Subscriber {
    pub client: Client,
    pub channel: String,
    pub addr: Arc<str>,
    pub password: Option<Arc<str>>,
    /// Also held by the caller; sending fails only while nobody subscribed, which is fine.
    pub tx: broadcast::Sender<CoordEvent>,
}

impl Subscriber {
    /// Reconnects forever; the caller drops this future when it is cancelled.
    pub async fn run(self) -> Infallible {
        let mut failures: u32 = 0;
        loop {
            let started = Instant::now();
            let (live, reason) = match self.session(failures).await {
                Ok(never) => match never {},
                Err(e) => e,
            };
            if live && started.elapsed() >= STABLE_SESSION {
                failures = 0;
            }
            if failures == 0 {
                // Err only when no receiver exists right now; nobody to tell then.
                let _ = self.tx.send(CoordEvent::Disconnected);
                tracing::warn!(redis = %self.addr, %reason, "redis event stream lost; reconnecting");
            } else {
                tracing::debug!(redis = %self.addr, %reason, failures, "redis event stream still down");
            }
            failures = failures.saturating_add(1);
            tokio::time::sleep(backoff(failures)).await;
        }
    }

    /// One connection: subscribe, then forward until it fails. The error says whether the
    /// subscription had gone live, and why it ended.
    async fn session(&self, failures: u32) -> Result<Infallible, (bool, String)> {
        let fail = |e: RedisError, what: &str| {
            (
                false,
                classify(&e, what, &self.addr, self.password.as_deref()).to_string(),
            )
        };
        // Push messages (published events, subscribe confirmations, and a `Disconnection`
        // when the socket closes) arrive on this channel; it closes with the connection.
        let (push_tx, mut push_rx) = mpsc::unbounded_channel();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(ATTEMPT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_push_sender(push_tx);
        let timed_out = |what: &str| (false, format!("{what}: no answer within {OP_TIMEOUT:?}"));
        let mut conn = tokio::time::timeout(
            OP_TIMEOUT,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| timed_out("connect"))?
        .map_err(|e| fail(e, "connect"))?;
        // Named after the channel, so `CLIENT LIST` shows what the connection is for.
        let setname = cmd("CLIENT").arg("SETNAME").arg(&self.channel).to_owned();
        tokio::time::timeout(OP_TIMEOUT, setname.exec_async(&mut conn))
            .await
            .map_err(|_| timed_out("CLIENT SETNAME"))?
            .map_err(|e| fail(e, "CLIENT SETNAME"))?;
        tokio::time::timeout(OP_TIMEOUT, conn.subscribe(&self.channel))
            .await
            .map_err(|_| timed_out("SUBSCRIBE"))?
            .map_err(|e| fail(e, "SUBSCRIBE"))?;
        if failures > 0 {
            tracing::info!(redis = %self.addr, "redis event stream is back");
        }
        let _ = self.tx.send(CoordEvent::Reconnected);

        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await; // the first tick is immediate
        loop {
            tokio::select! {
                push = push_rx.recv() => match push {
                    None => return Err((true, "connection closed".into())),
                    Some(p) if p.kind == PushKind::Disconnection => {
                        return Err((true, "connection closed".into()));
                    }
                    Some(p) => {
                        if let Some(msg) = Msg::from_push_info(p) {
                            self.forward(&msg);
                        }
                    }
                },
                _ = ping.tick() => {
                    let pong = tokio::time::timeout(
                        OP_TIMEOUT,
                        cmd("PING").query_async::<Value>(&mut conn),
                    )
                    .await;
                    match pong {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err((true, fail(e, "PING").1)),
                        Err(_) => return Err((true, timed_out("PING").1)),
                    }
                }
            }
        }
    }

    fn forward(&self, msg: &Msg) {
        if msg.get_channel_name() != self.channel {
            return;
        }
        match parse_event(msg.get_payload_bytes()) {
            Some(ev) => {
                // Err only when no receiver exists right now; nobody to tell then.
                let _ = self.tx.send(ev);
            }
            None => tracing::debug!(channel = %self.channel, "ignoring an unknown event"),
        }
    }
}

#[derive(serde::Deserialize)]
struct WireEvent {
    app: String,
    kind: String,
    #[serde(default)]
    generation: Option<u64>,
    #[serde(default)]
    template: Option<String>,
}

pub(super) fn parse_event(payload: &[u8]) -> Option<CoordEvent> {
    let w: WireEvent = serde_json::from_slice(payload).ok()?;
    Some(match (w.kind.as_str(), w.generation) {
        ("token", Some(generation)) => CoordEvent::Token {
            app: w.app,
            generation,
        },
        ("invalidated", Some(generation)) => CoordEvent::Invalidated {
            app: w.app,
            generation,
        },
        ("unlocked", _) => CoordEvent::Unlocked { app: w.app },
        ("block", _) => CoordEvent::Block { app: w.app },
        ("pause", _) => CoordEvent::Paused { app: w.app },
        ("template", _) => CoordEvent::TemplateRejected {
            app: w.app,
            template: w.template?,
        },
        _ => return None,
    })
}

/// Jittered exponential backoff: 0.1 s, 0.2 s, … capped at 5 s, plus up to half again.
fn backoff(failures: u32) -> Duration {
    let base = BACKOFF_MIN
        .saturating_mul(1u32 << failures.saturating_sub(1).min(10))
        .min(BACKOFF_MAX);
    let jitter_ms = rand::random_range(0..=base.as_millis() as u64 / 2);
    base + Duration::from_millis(jitter_ms)
}
