//! The Redis backend of fleet coordination.
//!
//! Keys (the prefix is [`DEFAULT_PREFIX`](super::DEFAULT_PREFIX), `wxgate`, unless the caller
//! picks another; tests use a random one). The `{<app>}` hash tag puts
//! all of an app's keys in one Cluster slot, so every script touches a single slot:
//!
//! | key | type | TTL | what |
//! |---|---|---|---|
//! | `<prefix>:{<app>}:token` | hash `token, generation, expires_at_ms, fetched_at_ms, invalid` | until the token expires | the shared token |
//! | `<prefix>:{<app>}:gen` | integer | none | highest generation ever stored, so generations keep rising after the token hash expired |
//! | `<prefix>:{<app>}:lock` | string (random owner) | the lease | the one fetch across the fleet |
//! | `<prefix>:{<app>}:fetches:<day>` / `:forces:<day>` | integer | 2 days | fetches and forced refreshes per Shanghai day |
//! | `<prefix>:{<app>}:block` | hash `until_ms, reason` | until `until_ms` | the fleet-wide breaker |
//! | `<prefix>:{<app>}:rate` | integer (µs, Redis time) | horizon + 10 s | next free send slot ([`pacing`]) |
//! | `<prefix>:{<app>}:conc` / `:conc:alive` | hash instance → count / zset instance → expiry (ms, Redis time) | until the last holding expires | concurrent sends held per instance |
//! | `<prefix>:{<app>}:pause` | hash `until_ms, reason` | until `until_ms` | the fleet-wide pause of an app's sends |
//! | `<prefix>:{<app>}:templates` | hash template → JSON `{errcode, reason, until_ms}` | until the latest `until_ms` | templates WeChat rejected |
//!
//! Events go to ONE channel, `<prefix>:events`, whose JSON payload names the app
//! (`{"app","kind","generation"?,"template"?}`). One channel because a subscriber need not know
//! the apps in advance (apps added on another instance are covered without a new SUBSCRIBE), and
//! because classic pub/sub is broadcast to every Cluster node anyway, so per-app channels would
//! buy no locality; every instance serves every app, so it wants every event.
//!
//! Every call is bounded by [`OP_TIMEOUT`]; the `ConnectionManager` reconnects by itself.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{
    Client, ErrorKind, ProtocolVersion, RedisError, RedisResult, Script, ServerErrorKind, cmd,
};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use self::events::{EVENTS_CAPACITY, Subscriber};
pub use self::pacing::{Holding, RejectedTemplate, SendSlots};
use super::{CoordError, CoordEvent, InvalidateResult, SharedToken};
use crate::clock::Clock;

/// The whole of `connect`, retries included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// One TCP connect plus handshake.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// One command's answer, once connected.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Any one call, including waiting for a reconnect: a hung Redis never hangs a caller longer.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Daily counters outlive their day, so yesterday's can still be read around midnight.
const DAILY_TTL_MS: i64 = 2 * 86_400_000;

/// Every Lua script, hashed once; `Script` sends EVALSHA and falls back to loading the script
/// when Redis does not know it (after a restart or `SCRIPT FLUSH`). Semantics are documented
/// at the top of each file.
struct Scripts {
    publish_token: Script,
    invalidate: Script,
    unlock: Script,
    extend: Script,
    incr_daily: Script,
    set_block: Script,
    clear_block: Script,
    reserve_send_slots: Script,
    hold_concurrency: Script,
    set_pause: Script,
    reject_template: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    publish_token: Script::new(include_str!("scripts/publish_token.lua")),
    invalidate: Script::new(include_str!("scripts/invalidate.lua")),
    unlock: Script::new(include_str!("scripts/unlock.lua")),
    extend: Script::new(include_str!("scripts/extend.lua")),
    incr_daily: Script::new(include_str!("scripts/incr_daily.lua")),
    set_block: Script::new(include_str!("scripts/set_block.lua")),
    clear_block: Script::new(include_str!("scripts/clear_block.lua")),
    reserve_send_slots: Script::new(include_str!("scripts/reserve_send_slots.lua")),
    hold_concurrency: Script::new(include_str!("scripts/hold_concurrency.lua")),
    set_pause: Script::new(include_str!("scripts/set_pause.lua")),
    reject_template: Script::new(include_str!("scripts/reject_template.lua")),
});

/// A handle on the fleet's shared state in Redis. Cheap to clone: clones share one
/// multiplexed, self-reconnecting connection.
#[derive(Clone)]
pub struct RedisCoord {
    conn: ConnectionManager,
    /// Kept for the event subscriber's own connection (RESP3, for push messages).
    events_client: Client,
    prefix: Arc<str>,
    /// `host:port` (or socket path) for messages: never the URL, which may carry a password.
    addr: Arc<str>,
    /// The password, only to scrub it from error messages should one ever echo it.
    password: Option<Arc<str>>,
    /// Turns expiry times into TTLs and decides whether a block is over.
    clock: Clock,
}

impl std::fmt::Debug for RedisCoord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCoord")
            .field("addr", &self.addr)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Proof of holding an app's fetch lock: the random owner value that was SET. Not released on
/// drop (that would need an `.await`): call [`RedisCoord::unlock`]; if the holder dies, the
/// lease expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockGuard {
    app: String,
    owner: String,
}

impl LockGuard {
    pub fn app(&self) -> &str {
        &self.app
    }
    pub fn owner(&self) -> &str {
        &self.owner
    }
}

impl RedisCoord {
    /// Connect, failing within about 2 s (`CONNECT_TIMEOUT`) with [`CoordError::Unavailable`]
    /// when Redis cannot be reached. Uses a real-time clock; see [`RedisCoord::with_clock`].
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisCoord, CoordError> {
        Self::open(url, prefix, false).await
    }

    /// Like [`connect`](Self::connect), but without waiting for Redis: the connection is made
    /// on first use and remade as needed, so a gateway can start (degraded) while Redis is
    /// down. A bad URL is still an error.
    pub async fn connect_lazily(url: &str, prefix: &str) -> Result<RedisCoord, CoordError> {
        Self::open(url, prefix, true).await
    }

    async fn open(url: &str, prefix: &str, lazy: bool) -> Result<RedisCoord, CoordError> {
        check_name("key prefix", prefix)?;
        let client = Client::open(url).map_err(|e| {
            // The URL is not echoed: it may carry a password.
            CoordError::Protocol(format!(
                "invalid Redis URL ({}): expected redis://[[user]:password@]host[:port][/db] \
                 or redis+unix:///path",
                e.category()
            ))
        })?;
        let info = client.get_connection_info().clone();
        let addr: Arc<str> = info.addr().to_string().into();
        let password = info.redis_settings().password().map(Arc::from);
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let events_client = Client::open(info.set_redis_settings(resp3))
            .map_err(|e| CoordError::Protocol(format!("Redis events client: {}", e.category())))?;

        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(ATTEMPT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = if lazy {
            ConnectionManager::new_lazy_with_config(client, config)
                .map_err(|e| classify(&e, "connect", &addr, password.as_deref()))?
        } else {
            Self::connect_now(client, config, &addr, password.as_deref()).await?
        };
        Ok(RedisCoord {
            conn,
            events_client,
            prefix: prefix.into(),
            addr,
            password,
            clock: Clock::new(),
        })
    }

    async fn connect_now(
        client: Client,
        config: ConnectionManagerConfig,
        addr: &str,
        password: Option<&str>,
    ) -> Result<ConnectionManager, CoordError> {
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            client.get_connection_manager_with_config(config),
        )
        .await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(classify(&e, "connect", addr, password)),
            Err(_) => Err(CoordError::Unavailable(format!(
                "connect (Redis at {addr}): no answer within {CONNECT_TIMEOUT:?}"
            ))),
        }
    }

    /// Read "now" from this clock (the gateway's, which tests move) instead of real time.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// `host:port` of the Redis server, for logs (no credentials).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub async fn ping(&self) -> Result<(), CoordError> {
        let pong: String = self
            .op("PING", cmd("PING").query_async(&mut self.conn()))
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(CoordError::Protocol(format!("PING answered {pong:?}")))
        }
    }

    // ---- shared token ----

    /// The stored token, if Redis still has one (Redis drops it when it expires in real time;
    /// on a moved clock compare `expires_at_ms` yourself).
    pub async fn read_token(&self, app: &str) -> Result<Option<SharedToken>, CoordError> {
        let key = self.key(app, "token")?;
        let h: HashMap<String, String> = self
            .op(
                "read_token",
                cmd("HGETALL").arg(&key).query_async(&mut self.conn()),
            )
            .await?;
        if h.is_empty() {
            return Ok(None);
        }
        let field = |name: &str| {
            h.get(name)
                .map(String::as_str)
                .ok_or_else(|| CoordError::Protocol(format!("{key} has no field {name}")))
        };
        Ok(Some(SharedToken {
            token: field("token")?.to_string(),
            generation: parse(&key, "generation", field("generation")?)?,
            expires_at_ms: parse(&key, "expires_at_ms", field("expires_at_ms")?)?,
            fetched_at_ms: parse(&key, "fetched_at_ms", field("fetched_at_ms")?)?,
            invalid: field("invalid")? == "1",
        }))
    }

    /// Store a freshly fetched token, atomically, and return the record now stored:
    /// - the same string as stored: generation and invalid mark kept, expiry extended (never
    ///   shortened);
    /// - `based_on_generation` given and the stored generation is newer: nothing written, the
    ///   stored (newer) record is returned — someone else refreshed meanwhile;
    /// - otherwise: stored as generation `max(stored, highest ever, based_on) + 1`, so a
    ///   generation never goes back, even after the token expired or Redis lost its data
    ///   (pass the highest generation you know).
    ///
    /// The Redis TTL is `expires_at_ms - now` (at least 1 ms). Publishes a `token` event when
    /// something was written.
    pub async fn publish_token(
        &self,
        app: &str,
        token: &str,
        expires_at_ms: i64,
        fetched_at_ms: i64,
        based_on_generation: Option<u64>,
    ) -> Result<SharedToken, CoordError> {
        let t = (token, expires_at_ms, fetched_at_ms);
        self.publish(app, t, based_on_generation, false).await
    }

    /// [`publish_token`](Self::publish_token) for a token WeChat has just issued to the
    /// caller: it is current at WeChat, so an invalid mark on the same string is cleared (WeCom
    /// and a non-forced stable fetch hand out the same token until it expires).
    pub async fn publish_fresh_token(
        &self,
        app: &str,
        token: &str,
        expires_at_ms: i64,
        fetched_at_ms: i64,
        based_on_generation: Option<u64>,
    ) -> Result<SharedToken, CoordError> {
        let t = (token, expires_at_ms, fetched_at_ms);
        self.publish(app, t, based_on_generation, true).await
    }

    async fn publish(
        &self,
        app: &str,
        (token, expires_at_ms, fetched_at_ms): (&str, i64, i64),
        based_on_generation: Option<u64>,
        fresh: bool,
    ) -> Result<SharedToken, CoordError> {
        let key = self.key(app, "token")?;
        let ttl_ms = (expires_at_ms - self.clock.now_ms()).max(1);
        let mut inv = SCRIPTS.publish_token.prepare_invoke();
        inv.key(&key)
            .key(self.key(app, "gen")?)
            .arg(token)
            .arg(expires_at_ms)
            .arg(fetched_at_ms)
            .arg(
                based_on_generation
                    .map(|g| g.to_string())
                    .unwrap_or_default(),
            )
            .arg(ttl_ms)
            .arg(self.channel())
            .arg(app)
            .arg(if fresh { "1" } else { "0" });
        let r: Vec<String> = self
            .op("publish_token", inv.invoke_async(&mut self.conn()))
            .await?;
        let [
            _wrote,
            token,
            generation,
            expires_at_ms,
            fetched_at_ms,
            invalid,
        ] = <[String; 6]>::try_from(r).map_err(|r| {
            CoordError::Protocol(format!("publish_token answered {} fields", r.len()))
        })?;
        Ok(SharedToken {
            token,
            generation: parse(&key, "generation", &generation)?,
            expires_at_ms: parse(&key, "expires_at_ms", &expires_at_ms)?,
            fetched_at_ms: parse(&key, "fetched_at_ms", &fetched_at_ms)?,
            invalid: invalid == "1",
        })
    }

    /// Mark the stored token invalid if it is `token` at `generation` and not already marked.
    /// Publishes an `invalidated` event when applied.
    pub async fn invalidate(
        &self,
        app: &str,
        token: &str,
        generation: u64,
    ) -> Result<InvalidateResult, CoordError> {
        let mut inv = SCRIPTS.invalidate.prepare_invoke();
        inv.key(self.key(app, "token")?)
            .arg(token)
            .arg(generation)
            .arg(self.channel())
            .arg(app);
        let r: i64 = self
            .op("invalidate", inv.invoke_async(&mut self.conn()))
            .await?;
        match r {
            1 => Ok(InvalidateResult::Applied),
            2 => Ok(InvalidateResult::AlreadyInvalidated),
            0 => Ok(InvalidateResult::Stale),
            other => Err(CoordError::Protocol(format!("invalidate answered {other}"))),
        }
    }

    // ---- lease lock ----

    /// Take the app's fetch lock for `lease` (SET NX PX with a random owner), or `None` when
    /// another owner holds it. The lock guards the refresh, not correctness: a holder whose
    /// lease ran out still cannot overwrite a newer token (see `publish_token`).
    pub async fn try_lock(
        &self,
        app: &str,
        lease: Duration,
    ) -> Result<Option<LockGuard>, CoordError> {
        let key = self.key(app, "lock")?;
        let owner = hex::encode(rand::random::<[u8; 16]>());
        let set: Option<String> = self
            .op(
                "try_lock",
                cmd("SET")
                    .arg(&key)
                    .arg(&owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(lease_ms(lease))
                    .query_async(&mut self.conn()),
            )
            .await?;
        Ok(set.map(|_| LockGuard {
            app: app.to_string(),
            owner,
        }))
    }

    /// Release the lock if this guard still owns it; `false` when the lease had run out (and
    /// maybe someone else holds it now). Publishes an `unlocked` event when released.
    pub async fn unlock(&self, guard: &LockGuard) -> Result<bool, CoordError> {
        let mut inv = SCRIPTS.unlock.prepare_invoke();
        inv.key(self.key(&guard.app, "lock")?)
            .arg(&guard.owner)
            .arg(self.channel())
            .arg(&guard.app);
        let r: i64 = self
            .op("unlock", inv.invoke_async(&mut self.conn()))
            .await?;
        Ok(r == 1)
    }

    /// How long the app's fetch lock has left to live, or `None` when nobody holds it.
    pub async fn lock_remaining(&self, app: &str) -> Result<Option<Duration>, CoordError> {
        let key = self.key(app, "lock")?;
        let ms: i64 = self
            .op(
                "lock_remaining",
                cmd("PTTL").arg(&key).query_async(&mut self.conn()),
            )
            .await?;
        Ok((ms >= 0).then(|| Duration::from_millis(ms as u64)))
    }

    /// Restart the lease at `lease` from now if this guard still owns the lock.
    pub async fn extend(&self, guard: &LockGuard, lease: Duration) -> Result<bool, CoordError> {
        let mut inv = SCRIPTS.extend.prepare_invoke();
        inv.key(self.key(&guard.app, "lock")?)
            .arg(&guard.owner)
            .arg(lease_ms(lease));
        let r: i64 = self
            .op("extend", inv.invoke_async(&mut self.conn()))
            .await?;
        Ok(r == 1)
    }

    // ---- shared counters and breaker ----

    /// Count one more `what` ("fetches" or "forces") for the app on Shanghai day `day`
    /// (`clock::day_index`); returns the new count. The counter expires after 2 days.
    pub async fn incr_daily(&self, app: &str, what: &str, day: i64) -> Result<u64, CoordError> {
        let mut inv = SCRIPTS.incr_daily.prepare_invoke();
        inv.key(self.daily_key(app, what, day)?).arg(DAILY_TTL_MS);
        self.op("incr_daily", inv.invoke_async(&mut self.conn()))
            .await
    }

    pub async fn get_daily(&self, app: &str, what: &str, day: i64) -> Result<u64, CoordError> {
        let key = self.daily_key(app, what, day)?;
        let n: Option<u64> = self
            .op(
                "get_daily",
                cmd("GET").arg(&key).query_async(&mut self.conn()),
            )
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// Open the app's breaker for the fleet until `until_ms` (last writer wins), with a reason
    /// for other instances to report. A time already past clears it instead. Publishes a
    /// `block` event.
    pub async fn set_block(
        &self,
        app: &str,
        until_ms: i64,
        reason_json: &str,
    ) -> Result<(), CoordError> {
        let ttl_ms = until_ms - self.clock.now_ms();
        if ttl_ms <= 0 {
            return self.clear_block(app).await;
        }
        let mut inv = SCRIPTS.set_block.prepare_invoke();
        inv.key(self.key(app, "block")?)
            .arg(until_ms)
            .arg(reason_json)
            .arg(ttl_ms)
            .arg(self.channel())
            .arg(app);
        let _: i64 = self
            .op("set_block", inv.invoke_async(&mut self.conn()))
            .await?;
        Ok(())
    }

    /// `(until_ms, reason_json)` while the app's breaker is open by this clock.
    pub async fn get_block(&self, app: &str) -> Result<Option<(i64, String)>, CoordError> {
        let key = self.key(app, "block")?;
        let (until, reason): (Option<String>, Option<String>) = self
            .op(
                "get_block",
                cmd("HMGET")
                    .arg(&key)
                    .arg("until_ms")
                    .arg("reason")
                    .query_async(&mut self.conn()),
            )
            .await?;
        let Some(until) = until else { return Ok(None) };
        let until: i64 = parse(&key, "until_ms", &until)?;
        Ok((until > self.clock.now_ms()).then(|| (until, reason.unwrap_or_default())))
    }

    /// Close the app's breaker for the fleet; publishes a `block` event if it was open.
    pub async fn clear_block(&self, app: &str) -> Result<(), CoordError> {
        let mut inv = SCRIPTS.clear_block.prepare_invoke();
        inv.key(self.key(app, "block")?)
            .arg(self.channel())
            .arg(app);
        let _: i64 = self
            .op("clear_block", inv.invoke_async(&mut self.conn()))
            .await?;
        Ok(())
    }

    // ---- events ----

    /// Start the subscriber: a task with its own RESP3 connection that SUBSCRIBEs to
    /// `<prefix>:events` and forwards each event to the returned broadcast `Sender` (call
    /// `subscribe()` on it for receivers). When the connection drops or stops answering PINGs
    /// it reconnects with jittered exponential backoff (0.1 s … 5 s) and, once subscribed
    /// again, sends [`CoordEvent::Reconnected`] — also once after the first subscribe, so a
    /// receiver knows from when on it misses nothing and re-reads what it holds. A receiver
    /// that falls more than 1024 events behind gets `RecvError::Lagged`: treat it the same way.
    /// Subscribe before the first `.await` after this call, or the first `Reconnected` may be
    /// gone already.
    ///
    /// Who stops it: the owner of `cancel` (the token manager's shutdown token). The task
    /// keeps its own clone of the `Sender`, so dropping the returned one does not stop it;
    /// cancelling does, and then drops the connection.
    pub fn spawn_events(&self, cancel: CancellationToken) -> broadcast::Sender<CoordEvent> {
        let (tx, _) = broadcast::channel(EVENTS_CAPACITY);
        let task = Subscriber {
            client: self.events_client.clone(),
            channel: self.channel(),
            addr: self.addr.clone(),
            password: self.password.clone(),
            tx: tx.clone(),
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                never = task.run() => match never {},
            }
        });
        tx
    }

    // ---- helpers ----

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    fn channel(&self) -> String {
        format!("{}:events", self.prefix)
    }

    fn key(&self, app: &str, suffix: &str) -> Result<String, CoordError> {
        check_name("app id", app)?;
        Ok(format!("{}:{{{app}}}:{suffix}", self.prefix))
    }

    fn daily_key(&self, app: &str, what: &str, day: i64) -> Result<String, CoordError> {
        if !matches!(what, "fetches" | "forces") {
            return Err(CoordError::Protocol(format!(
                "daily counter {what:?}: expected \"fetches\" or \"forces\""
            )));
        }
        self.key(app, &format!("{what}:{day}"))
    }

    /// Run one call within [`OP_TIMEOUT`], mapping its error.
    async fn op<T>(
        &self,
        what: &str,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, CoordError> {
        match tokio::time::timeout(OP_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(&e, what, &self.addr, self.password.as_deref())),
            Err(_) => Err(CoordError::Unavailable(format!(
                "{what} (Redis at {}): no answer within {OP_TIMEOUT:?}",
                self.addr
            ))),
        }
    }
}

/// Unavailable when Redis is unreachable, slow, or temporarily unable to serve (the caller
/// degrades); Protocol for everything else. The password is scrubbed from the message.
fn classify(e: &RedisError, what: &str, addr: &str, password: Option<&str>) -> CoordError {
    let mut msg = format!("{what} (Redis at {addr}): {e}");
    if let Some(p) = password.filter(|p| !p.is_empty()) {
        msg = msg.replace(p, "[redacted]");
    }
    let unavailable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                )
        );
    if unavailable {
        CoordError::Unavailable(msg)
    } else {
        CoordError::Protocol(msg)
    }
}

/// App ids and the prefix go into keys between `{}` and `:`; keep them from changing the
/// hash tag or the key layout.
fn check_name(what: &str, s: &str) -> Result<(), CoordError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'{' | b'}'));
    if ok {
        Ok(())
    } else {
        Err(CoordError::Protocol(format!(
            "{what} {s:?} cannot be used in Redis keys: use 1-128 printable ASCII characters \
             without braces or spaces"
        )))
    }
}

fn parse<T: std::str::FromStr>(key: &str, field: &str, v: &str) -> Result<T, CoordError> {
    v.parse()
        .map_err(|_| CoordError::Protocol(format!("{key}: field {field} is not a number: {v:?}")))
}

fn lease_ms(lease: Duration) -> u64 {
    (lease.as_millis() as u64).max(1)
}

mod events;
mod pacing;
#[cfg(test)]
mod tests;
