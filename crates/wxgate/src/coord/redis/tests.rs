//! Tests against a real Redis at `WXGATE_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`):
//! they fail, never skip, when it cannot be reached. Each test works under a random key prefix and deletes its keys when it ends, also
//! when it panics.

use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio::task::JoinSet;

use super::*;
use crate::clock::day_index;

const HOUR_MS: i64 = 3_600_000;

fn test_url() -> String {
    // Unset means the standard local server; an unreachable server fails the tests loudly.
    std::env::var("WXGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A coordinator under a fresh prefix; its keys are deleted on drop. Shared with the pacing
/// tests.
pub(super) struct Ctx {
    pub(super) coord: RedisCoord,
    pub(super) url: String,
    pub(super) prefix: String,
}

impl Ctx {
    pub(super) async fn new() -> Ctx {
        let url = test_url();
        let prefix = format!("wxgate-test-{}", hex::encode(rand::random::<[u8; 8]>()));
        let coord = RedisCoord::connect(&url, &prefix)
            .await
            .unwrap_or_else(|e| panic!("cannot use the test Redis at WXGATE_TEST_REDIS_URL: {e}"));
        Ctx { coord, url, prefix }
    }

    pub(super) fn now(&self) -> i64 {
        self.coord.clock.now_ms()
    }

    pub(super) async fn pttl(&self, app: &str, suffix: &str) -> i64 {
        let key = self.coord.key(app, suffix).unwrap();
        cmd("PTTL")
            .arg(&key)
            .query_async(&mut self.coord.conn())
            .await
            .unwrap()
    }
}

/// Every key under `prefix`, read with a plain synchronous connection.
pub(super) fn keys_under(url: &str, prefix: &str) -> RedisResult<Vec<String>> {
    let mut con = Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))?;
    let (mut cursor, mut all) = (0u64, Vec::new());
    loop {
        let (next, keys): (u64, Vec<String>) = cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut con)?;
        all.extend(keys);
        if next == 0 {
            return Ok(all);
        }
        cursor = next;
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // Synchronous, so that it also runs while a failed test unwinds.
        let Ok(keys) = keys_under(&self.url, &self.prefix) else {
            return;
        };
        if let (false, Ok(client)) = (keys.is_empty(), Client::open(self.url.as_str()))
            && let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(2))
        {
            let _: RedisResult<i64> = cmd("DEL").arg(&keys).query(&mut con);
        }
    }
}

pub(super) async fn next_event(
    rx: &mut broadcast::Receiver<CoordEvent>,
    within: Duration,
) -> CoordEvent {
    tokio::time::timeout(within, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no event within {within:?}"))
        .expect("event stream closed")
}

// ---- shared token ----

#[tokio::test]
async fn publish_assigns_generations_and_keeps_them_for_the_same_token() {
    let ctx = Ctx::new().await;
    let c = &ctx.coord;
    let now = ctx.now();
    let exp = now + 2 * HOUR_MS;

    let a = c
        .publish_token("oa", "tok-a", exp, now, None)
        .await
        .unwrap();
    assert_eq!(
        (a.token.as_str(), a.generation, a.invalid),
        ("tok-a", 1, false)
    );
    assert_eq!((a.expires_at_ms, a.fetched_at_ms), (exp, now));

    // The same token again keeps its generation; a later expiry extends it, an earlier one
    // never shortens it.
    let again = c
        .publish_token("oa", "tok-a", exp + 1000, now + 1000, Some(1))
        .await
        .unwrap();
    assert_eq!((again.generation, again.expires_at_ms), (1, exp + 1000));
    let older = c
        .publish_token("oa", "tok-a", exp - 5000, now, None)
        .await
        .unwrap();
    assert_eq!((older.generation, older.expires_at_ms), (1, exp + 1000));

    let b = c
        .publish_token("oa", "tok-b", exp, now, None)
        .await
        .unwrap();
    assert_eq!(b.generation, 2);
    let cc = c
        .publish_token("oa", "tok-c", exp, now, Some(2))
        .await
        .unwrap();
    assert_eq!(cc.generation, 3);
    assert_eq!(c.read_token("oa").await.unwrap(), Some(cc.clone()));

    // Apps are independent; an unknown app has no token.
    assert_eq!(
        c.publish_token("mp", "tok-a", exp, now, None)
            .await
            .unwrap()
            .generation,
        1
    );
    assert_eq!(c.read_token("nobody").await.unwrap(), None);

    // The value stays out of Debug output.
    let shown = format!("{cc:?}");
    assert!(
        !shown.contains("tok-c") && shown.contains("redacted"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_stale_write_never_replaces_a_newer_generation() {
    let ctx = Ctx::new().await;
    let c = &ctx.coord;
    let (now, exp) = (ctx.now(), ctx.now() + 2 * HOUR_MS);

    assert_eq!(
        c.publish_token("oa", "A", exp, now, None)
            .await
            .unwrap()
            .generation,
        1
    );
    // Two instances both saw generation 1 and fetched; the first to publish wins.
    let b = c.publish_token("oa", "B", exp, now, Some(1)).await.unwrap();
    assert_eq!((b.token.as_str(), b.generation), ("B", 2));
    let late = c
        .publish_token("oa", "C", exp + 9000, now, Some(1))
        .await
        .unwrap();
    assert_eq!(late, b, "the late writer gets the newer record back");
    assert_eq!(c.read_token("oa").await.unwrap(), Some(b));

    // Based on the current generation it does write.
    let d = c.publish_token("oa", "D", exp, now, Some(2)).await.unwrap();
    assert_eq!((d.token.as_str(), d.generation), ("D", 3));
}

#[tokio::test]
async fn generations_keep_rising_after_the_token_expired_from_redis() {
    let ctx = Ctx::new().await;
    let c = &ctx.coord;
    let now = ctx.now();

    assert_eq!(
        c.publish_token("oa", "A", now + 50, now, None)
            .await
            .unwrap()
            .generation,
        1
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        c.read_token("oa").await.unwrap(),
        None,
        "Redis dropped the dead token"
    );
    let b = c
        .publish_token("oa", "B", now + HOUR_MS, now, None)
        .await
        .unwrap();
    assert_eq!(b.generation, 2);
    // A caller that knows a higher generation (Redis lost its data) lifts the counter.
    let c3 = c
        .publish_token("oa", "C", now + HOUR_MS, now, Some(10))
        .await
        .unwrap();
    assert_eq!(c3.generation, 11);
}

#[tokio::test]
async fn the_redis_ttl_follows_expires_at_on_the_callers_clock() {
    let ctx = Ctx::new().await;
    let now = ctx.now();
    ctx.coord
        .publish_token("oa", "A", now + 2 * HOUR_MS, now, None)
        .await
        .unwrap();
    let ttl = ctx.pttl("oa", "token").await;
    assert!(
        (2 * HOUR_MS - 10_000..=2 * HOUR_MS).contains(&ttl),
        "ttl {ttl}"
    );
    assert_eq!(
        ctx.pttl("oa", "gen").await,
        -1,
        "the generation counter never expires"
    );

    // A moved clock: expiry one minute ahead of *its* now gives a one-minute TTL.
    let clock = Clock::new();
    clock.advance(Duration::from_secs(5 * 3600));
    let moved = ctx.coord.clone().with_clock(clock.clone());
    let at = clock.now_ms();
    moved
        .publish_token("mp", "M", at + 60_000, at, None)
        .await
        .unwrap();
    let ttl = ctx.pttl("mp", "token").await;
    assert!((50_000..=60_000).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn invalidate_applies_once_per_generation_and_only_to_the_named_token() {
    let ctx = Ctx::new().await;
    let c = &ctx.coord;
    let (now, exp) = (ctx.now(), ctx.now() + 2 * HOUR_MS);
    assert_eq!(
        c.invalidate("oa", "A", 1).await.unwrap(),
        InvalidateResult::Stale
    );
    c.publish_token("oa", "A", exp, now, None).await.unwrap();

    assert_eq!(
        c.invalidate("oa", "A", 2).await.unwrap(),
        InvalidateResult::Stale
    );
    assert_eq!(
        c.invalidate("oa", "X", 1).await.unwrap(),
        InvalidateResult::Stale
    );
    assert!(!c.read_token("oa").await.unwrap().unwrap().invalid);

    assert_eq!(
        c.invalidate("oa", "A", 1).await.unwrap(),
        InvalidateResult::Applied
    );
    assert_eq!(
        c.invalidate("oa", "A", 1).await.unwrap(),
        InvalidateResult::AlreadyInvalidated
    );
    assert!(c.read_token("oa").await.unwrap().unwrap().invalid);
    assert!(
        ctx.pttl("oa", "token").await > HOUR_MS,
        "marking keeps the TTL"
    );

    // The same string handed out again stays rejected; a new token is valid and makes the
    // old report stale.
    assert!(
        c.publish_token("oa", "A", exp + 1, now, Some(1))
            .await
            .unwrap()
            .invalid
    );
    // WeChat issuing the same string again (WeCom, or stable outside its rotation window)
    // vouches for it: the mark is cleared, the generation kept.
    let again = c
        .publish_fresh_token("oa", "A", exp, now, Some(1))
        .await
        .unwrap();
    assert_eq!((again.generation, again.invalid), (1, false));
    assert!(!c.read_token("oa").await.unwrap().unwrap().invalid);
    assert_eq!(
        c.invalidate("oa", "A", 1).await.unwrap(),
        InvalidateResult::Applied
    );
    let b = c.publish_token("oa", "B", exp, now, Some(1)).await.unwrap();
    assert_eq!((b.generation, b.invalid), (2, false));
    assert_eq!(
        c.invalidate("oa", "A", 1).await.unwrap(),
        InvalidateResult::Stale
    );
}

// ---- lease lock ----

#[tokio::test]
async fn the_lock_has_one_owner_until_released_or_expired() {
    let ctx = Ctx::new().await;
    let c = &ctx.coord;
    let long = Duration::from_secs(5);

    assert_eq!(
        c.lock_remaining("oa").await.unwrap(),
        None,
        "nobody holds it"
    );
    let g1 = c.try_lock("oa", long).await.unwrap().expect("free lock");
    assert!(c.try_lock("oa", long).await.unwrap().is_none(), "held");
    let left = c.lock_remaining("oa").await.unwrap().expect("held");
    assert!(left > Duration::from_secs(4) && left <= long, "{left:?}");
    assert!(
        c.try_lock("mp", long).await.unwrap().is_some(),
        "other apps are independent"
    );

    let intruder = LockGuard {
        app: "oa".into(),
        owner: "someone-else".into(),
    };
    assert!(!c.unlock(&intruder).await.unwrap());
    assert!(!c.extend(&intruder, long).await.unwrap());
    assert!(
        c.try_lock("oa", long).await.unwrap().is_none(),
        "still held"
    );

    assert!(c.unlock(&g1).await.unwrap());
    assert!(!c.unlock(&g1).await.unwrap(), "released once");

    // A lease runs out by itself; the late holder can neither extend nor release it then.
    let g2 = c
        .try_lock("oa", Duration::from_millis(100))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let g3 = c
        .try_lock("oa", Duration::from_millis(300))
        .await
        .unwrap()
        .expect("expired");
    assert_ne!(g2.owner(), g3.owner());
    assert!(!c.extend(&g2, long).await.unwrap());
    assert!(!c.unlock(&g2).await.unwrap());
    assert!(c.extend(&g3, long).await.unwrap());
    assert!(ctx.pttl("oa", "lock").await > 4000, "extended");
    assert!(c.unlock(&g3).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_lockers_get_one_lock() {
    let ctx = Ctx::new().await;
    let mut set = JoinSet::new();
    for _ in 0..50 {
        let c = ctx.coord.clone();
        set.spawn(async move { c.try_lock("oa", Duration::from_secs(5)).await.unwrap() });
    }
    let won = set.join_all().await.into_iter().flatten().count();
    assert_eq!(won, 1);
}

// ---- counters and breaker ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_counters_are_atomic_and_expire() {
    let ctx = Ctx::new().await;
    let day = day_index(ctx.now());
    let mut set = JoinSet::new();
    for _ in 0..100 {
        let c = ctx.coord.clone();
        set.spawn(async move { c.incr_daily("oa", "fetches", day).await.unwrap() });
    }
    let mut seen = set.join_all().await;
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=100).collect::<Vec<u64>>(),
        "each increment saw its own count"
    );

    let c = &ctx.coord;
    assert_eq!(c.get_daily("oa", "fetches", day).await.unwrap(), 100);
    assert_eq!(c.get_daily("oa", "fetches", day + 1).await.unwrap(), 0);
    assert_eq!(c.get_daily("oa", "forces", day).await.unwrap(), 0);
    assert_eq!(c.incr_daily("oa", "forces", day).await.unwrap(), 1);
    let ttl = ctx.pttl("oa", &format!("fetches:{day}")).await;
    assert!(
        (DAILY_TTL_MS - 60_000..=DAILY_TTL_MS).contains(&ttl),
        "ttl {ttl}"
    );
    assert!(matches!(
        c.incr_daily("oa", "sends", day).await,
        Err(CoordError::Protocol(_))
    ));
}

#[tokio::test]
async fn the_shared_breaker_opens_expires_and_clears() {
    let ctx = Ctx::new().await;
    let c = &ctx.coord;
    let reason = r#"{"code":"quota","wechat_errcode":45009}"#;
    assert_eq!(c.get_block("oa").await.unwrap(), None);

    let until = ctx.now() + 300;
    c.set_block("oa", until, reason).await.unwrap();
    assert_eq!(
        c.get_block("oa").await.unwrap(),
        Some((until, reason.to_string()))
    );
    assert!((1..=300).contains(&ctx.pttl("oa", "block").await));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(c.get_block("oa").await.unwrap(), None, "expired");

    let until = ctx.now() + HOUR_MS;
    c.set_block("oa", until, reason).await.unwrap();
    // A moved clock past `until` sees no block even though Redis still holds it.
    let clock = Clock::new();
    clock.advance(Duration::from_secs(7200));
    assert_eq!(
        c.clone().with_clock(clock).get_block("oa").await.unwrap(),
        None
    );
    c.clear_block("oa").await.unwrap();
    assert_eq!(c.get_block("oa").await.unwrap(), None, "cleared");

    c.set_block("oa", ctx.now() - 1, reason).await.unwrap();
    assert_eq!(
        c.get_block("oa").await.unwrap(),
        None,
        "a past time opens nothing"
    );
}

// ---- events ----

#[tokio::test]
async fn events_reach_a_subscriber_quickly_and_stop_on_cancel() {
    let ctx = Ctx::new().await;
    let c = &ctx.coord;
    let cancel = CancellationToken::new();
    let tx = c.spawn_events(cancel.clone());
    let mut rx = tx.subscribe();
    assert_eq!(
        next_event(&mut rx, Duration::from_secs(3)).await,
        CoordEvent::Reconnected
    );

    let fast = Duration::from_millis(500);
    let now = ctx.now();
    c.publish_token("oa", "A", now + HOUR_MS, now, None)
        .await
        .unwrap();
    let token = CoordEvent::Token {
        app: "oa".into(),
        generation: 1,
    };
    assert_eq!(next_event(&mut rx, fast).await, token);

    c.invalidate("oa", "A", 1).await.unwrap();
    let invalidated = CoordEvent::Invalidated {
        app: "oa".into(),
        generation: 1,
    };
    assert_eq!(next_event(&mut rx, fast).await, invalidated);

    let guard = c
        .try_lock("oa", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    c.unlock(&guard).await.unwrap();
    let unlocked = CoordEvent::Unlocked { app: "oa".into() };
    assert_eq!(next_event(&mut rx, fast).await, unlocked);

    c.set_block("oa", ctx.now() + HOUR_MS, "{}").await.unwrap();
    let block = CoordEvent::Block { app: "oa".into() };
    assert_eq!(next_event(&mut rx, fast).await, block);
    c.clear_block("oa").await.unwrap();
    assert_eq!(next_event(&mut rx, fast).await, block);

    // Cancelling stops the task: its connection goes away.
    assert!(subscriber_id(c).await.is_some());
    cancel.cancel();
    let deadline = Instant::now() + Duration::from_secs(2);
    while subscriber_id(c).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "subscriber still connected after cancel"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_event_stream_reconnects_after_its_connection_is_killed() {
    let ctx = Ctx::new().await;
    let c = &ctx.coord;
    let cancel = CancellationToken::new();
    let tx = c.spawn_events(cancel.clone());
    let mut rx = tx.subscribe();
    assert_eq!(
        next_event(&mut rx, Duration::from_secs(3)).await,
        CoordEvent::Reconnected
    );

    let id = subscriber_id(c).await.expect("subscriber connection");
    let _: () = cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut c.conn())
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut rx, Duration::from_secs(3)).await,
        CoordEvent::Disconnected
    );
    assert_eq!(
        next_event(&mut rx, Duration::from_secs(3)).await,
        CoordEvent::Reconnected
    );

    let now = ctx.now();
    c.publish_token("oa", "A", now + HOUR_MS, now, None)
        .await
        .unwrap();
    let token = CoordEvent::Token {
        app: "oa".into(),
        generation: 1,
    };
    assert_eq!(next_event(&mut rx, Duration::from_millis(500)).await, token);
    cancel.cancel();
}

/// The id of this prefix's subscriber connection (named after its channel), if connected.
async fn subscriber_id(c: &RedisCoord) -> Option<u64> {
    let list: String = cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut c.conn())
        .await
        .unwrap();
    let name = format!(" name={} ", c.channel());
    let line = list.lines().find(|l| l.contains(&name))?;
    line.strip_prefix("id=")?.split(' ').next()?.parse().ok()
}

// ---- connection failures and names (no Redis needed) ----

#[tokio::test]
async fn connecting_to_a_closed_port_fails_fast_without_echoing_the_password() {
    let started = Instant::now();
    let err = RedisCoord::connect("redis://:hunter2@127.0.0.1:1", "wxgate")
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, CoordError::Unavailable(_)), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("127.0.0.1:1"), "{shown}");
}

#[tokio::test]
async fn connecting_to_a_server_that_never_answers_fails_fast() {
    // Accepts connections and never says a word, like a hung Redis.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            open.push(sock);
        }
    });
    let started = Instant::now();
    let err = RedisCoord::connect(&format!("redis://:hunter2@127.0.0.1:{port}"), "wxgate")
        .await
        .expect_err("no answer");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, CoordError::Unavailable(_)), "{err:?}");
    assert!(!format!("{err:?}").contains("hunter2"));
    hold.abort();
}

#[tokio::test]
async fn bad_urls_prefixes_and_app_ids_are_refused_clearly() {
    let err = RedisCoord::connect("http://:hunter2@127.0.0.1:6379", "wxgate")
        .await
        .expect_err("not a redis URL");
    assert!(matches!(err, CoordError::Protocol(_)), "{err:?}");
    assert!(!format!("{err:?}").contains("hunter2"));
    for prefix in ["", "two words", "a{b}"] {
        let err = RedisCoord::connect("redis://127.0.0.1:1", prefix)
            .await
            .unwrap_err();
        assert!(
            matches!(err, CoordError::Protocol(_)),
            "{prefix:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn app_ids_that_would_break_the_hash_tag_are_refused() {
    let ctx = Ctx::new().await;
    for app in ["", "a}b", "x{y", "sp ace"] {
        let err = ctx.coord.read_token(app).await.unwrap_err();
        assert!(matches!(err, CoordError::Protocol(_)), "{app:?}: {err:?}");
    }
}

#[tokio::test]
async fn keys_carry_the_app_hash_tag_and_are_deleted_after_a_test() {
    let ctx = Ctx::new().await;
    let now = ctx.now();
    ctx.coord
        .publish_token("oa", "A", now + HOUR_MS, now, None)
        .await
        .unwrap();
    ctx.coord
        .incr_daily("oa", "fetches", day_index(now))
        .await
        .unwrap();
    let mut keys = keys_under(&ctx.url, &ctx.prefix).unwrap();
    keys.sort();
    let p = &ctx.prefix;
    let day = day_index(now);
    assert_eq!(
        keys,
        [
            format!("{p}:{{oa}}:fetches:{day}"),
            format!("{p}:{{oa}}:gen"),
            format!("{p}:{{oa}}:token")
        ]
    );
    let (url, prefix) = (ctx.url.clone(), ctx.prefix.clone());
    drop(ctx);
    assert_eq!(keys_under(&url, &prefix).unwrap(), Vec::<String>::new());
}
