//! Push pacing's send rate and concurrency limit against the real test Redis (see the
//! coordination tests for the set-up), with several coordinators standing for several
//! instances; and the hash tag on every pacing key.

use std::time::{Duration, Instant};

use ::redis::cmd;
use tokio::task::JoinSet;

use super::super::tests::{Ctx, keys_under};
use crate::coord::{CoordError, Holding, RedisCoord};

const HOUR_MS: i64 = 3_600_000;

/// `n` coordinators on the test prefix, each with its own connection, like `n` instances.
async fn instances(ctx: &Ctx, n: usize) -> Vec<RedisCoord> {
    let mut all = vec![ctx.coord.clone()];
    for _ in 1..n {
        all.push(RedisCoord::connect(&ctx.url, &ctx.prefix).await.unwrap());
    }
    all
}

// ---- send rate ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_senders_on_three_instances_share_one_rate_without_waste() {
    const PER_SEC: usize = 500;
    let ctx = Ctx::new().await;
    let coords = instances(&ctx, 3).await;
    let (run, horizon) = (Duration::from_secs(2), Duration::from_millis(200));
    let started = Instant::now();
    let mut set = JoinSet::new();
    for task in 0..20 {
        let c = coords[task % coords.len()].clone();
        set.spawn(async move {
            let mut starts = Vec::new();
            while started.elapsed() < run {
                let s = c
                    .reserve_send_slots("oa", 10, PER_SEC as u32, horizon)
                    .await
                    .unwrap();
                let reply = Instant::now();
                assert!(s.first_in + s.every * s.granted <= horizon, "{s:?}");
                starts.extend((0..s.granted).map(|i| reply + s.first_in + s.every * i));
                if s.granted == 0 {
                    // Like a worker: come back when a slot is free, spread out a little.
                    let spread = Duration::from_millis(rand::random_range(0..10));
                    tokio::time::sleep(s.retry_in + spread).await;
                } else {
                    // "Send" until the last slot of the batch has started.
                    let last = reply + s.first_in + s.every * (s.granted - 1);
                    tokio::time::sleep_until(last.into()).await;
                }
            }
            starts
        });
    }
    let mut starts: Vec<Instant> = set.join_all().await.into_iter().flatten().collect();
    starts.sort_unstable();

    // In any one second, sends start at most PER_SEC times, give or take the jitter of the
    // reply times the callers measured (three separate budgets would allow 3 × PER_SEC).
    let (mut busiest, mut end) = (0, 0);
    for (i, t) in starts.iter().enumerate() {
        while end < starts.len() && starts[end] < *t + Duration::from_secs(1) {
            end += 1;
        }
        busiest = busiest.max(end - i);
    }
    assert!(
        busiest <= PER_SEC + PER_SEC / 50,
        "{busiest} sends in one second"
    );
    // And the rate is used, not wasted: the run kept sending at about PER_SEC.
    let in_run = starts.iter().filter(|t| **t < started + run).count();
    assert!(
        in_run >= 2 * PER_SEC * 95 / 100,
        "{in_run} sends in {run:?}"
    );
}

#[tokio::test]
async fn slots_stay_within_the_horizon_and_a_full_horizon_says_when_to_retry() {
    let ctx = Ctx::new().await;
    let c = &ctx.coord;
    let horizon = Duration::from_secs(1);

    let s = c.reserve_send_slots("oa", 100, 10, horizon).await.unwrap();
    let every = Duration::from_millis(100);
    assert_eq!(
        (s.granted, s.first_in, s.every),
        (10, Duration::ZERO, every)
    );
    assert_eq!(s.retry_in, Duration::ZERO);
    let ttl = ctx.pttl("oa", "rate").await;
    assert!(
        (10_000..=11_000).contains(&ttl),
        "an idle app's key goes away: {ttl}"
    );

    let full = c.reserve_send_slots("oa", 5, 10, horizon).await.unwrap();
    assert_eq!(full.granted, 0);
    let ms = Duration::from_millis(1);
    assert!(full.retry_in >= ms && full.retry_in <= every, "{full:?}");
    tokio::time::sleep(full.retry_in).await;
    let next = c.reserve_send_slots("oa", 5, 10, horizon).await.unwrap();
    assert!(next.granted >= 1, "a slot is free after retry_in: {next:?}");
    assert!(
        next.first_in + next.every * next.granted <= horizon,
        "{next:?}"
    );
    assert!(
        next.first_in >= Duration::from_millis(800),
        "after the others: {next:?}"
    );

    // A horizon shorter than one interval still grants the next slot, and only that one.
    let slow = c.reserve_send_slots("slow", 3, 1, ms).await.unwrap();
    assert_eq!((slow.granted, slow.first_in), (1, Duration::ZERO));
    let again = c.reserve_send_slots("slow", 3, 1, ms).await.unwrap();
    assert_eq!(again.granted, 0);
    assert!(again.retry_in > Duration::from_millis(900), "{again:?}");

    // want = 0 asks nothing and writes nothing; per_sec = 0 is refused; the interval rounds up.
    let none = c.reserve_send_slots("idle", 0, 300, horizon).await.unwrap();
    assert_eq!((none.granted, none.retry_in), (0, Duration::ZERO));
    assert_eq!(none.every, Duration::from_micros(3334));
    assert_eq!(ctx.pttl("idle", "rate").await, -2, "no key");
    let err = c.reserve_send_slots("oa", 1, 0, horizon).await.unwrap_err();
    assert!(matches!(err, CoordError::Protocol(_)), "{err:?}");
}

// ---- concurrency ----

#[tokio::test]
async fn holdings_are_shared_fairly_and_never_cut_below_what_runs() {
    let ctx = Ctx::new().await;
    let c = instances(&ctx, 3).await;
    let ttl = Duration::from_secs(5);
    let hold = |i: usize, want: u32, running: u32| {
        c[i].hold_concurrency("oa", ["i1", "i2", "i3"][i], want, running, 10, ttl)
    };
    let granted = |h: Result<Holding, CoordError>| h.unwrap().granted;

    assert_eq!(granted(hold(0, 8, 0).await), 8, "alone, all it wants");
    assert_eq!(granted(hold(1, 8, 0).await), 2, "only what is left");
    assert_eq!(
        hold(2, 8, 0).await.unwrap(),
        Holding {
            granted: 0,
            holders: 3,
            share: 4,
        },
        "nothing left; it is counted as wanting"
    );
    let over = hold(0, 8, 8).await.unwrap();
    assert_eq!(
        (over.granted, over.share),
        (8, 4),
        "three want 8: the fair share is 4, but 8 sends are running (it drains to 4)"
    );
    assert_eq!(granted(hold(0, 8, 3).await), 4, "cut to its fair share");
    assert_eq!(
        granted(hold(2, 8, 0).await),
        4,
        "the newcomer gets its share"
    );
    assert_eq!(granted(hold(1, 8, 2).await), 2, "only what is left");
    assert_eq!(
        granted(hold(1, 1, 1).await),
        1,
        "wants less than its share: gets it"
    );
    assert_eq!(
        granted(hold(0, 8, 4).await),
        5,
        "the rest split between the two that want more: 9 / 2"
    );
    let left = ctx.pttl("oa", "conc").await;
    assert!(
        (4_000..=5_000).contains(&left),
        "keys live as long as a holding: {left}"
    );

    assert_eq!(granted(hold(0, 0, 0).await), 0, "released");
    assert_eq!(granted(hold(2, 8, 4).await), 8, "i2 wants 1: i3 may take 9");
    assert_eq!(
        granted(hold(1, 8, 1).await),
        2,
        "wants more now: what is left"
    );
    for i in 0..3 {
        assert_eq!(granted(hold(i, 0, 0).await), 0);
    }
    assert_eq!(ctx.pttl("oa", "conc").await, -2, "nothing held, no keys");
    assert_eq!(ctx.pttl("oa", "conc:alive").await, -2);
    let err = c[0]
        .hold_concurrency("oa", "a b", 1, 0, 10, ttl)
        .await
        .unwrap_err();
    assert!(matches!(err, CoordError::Protocol(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_instances_never_hold_more_than_the_limit_together() {
    let ctx = Ctx::new().await;
    let c = instances(&ctx, 3).await;
    let key = ctx.coord.key("oa", "conc").unwrap();
    let mut set = JoinSet::new();
    for (i, coord) in c.into_iter().enumerate() {
        set.spawn(async move {
            // What this instance runs is at most what it was last granted.
            let mut last = 0;
            for _ in 0..100 {
                let want = rand::random_range(0..=10);
                let running = rand::random_range(0..=last.min(want));
                let got = coord
                    .hold_concurrency(
                        "oa",
                        &format!("i{i}"),
                        want,
                        running,
                        10,
                        Duration::from_secs(5),
                    )
                    .await
                    .unwrap()
                    .granted;
                assert!(
                    got <= want && got >= running,
                    "{running} <= {got} <= {want}"
                );
                last = got;
            }
        });
    }
    let mut conn = ctx.coord.conn();
    while !set.is_empty() {
        let held: Vec<u32> = cmd("HVALS").arg(&key).query_async(&mut conn).await.unwrap();
        assert!(held.iter().sum::<u32>() <= 10, "{held:?}");
        if let Some(done) = set.try_join_next() {
            done.unwrap();
        }
    }
}

#[tokio::test]
async fn a_holding_frees_itself_when_its_instance_stops_calling() {
    let ctx = Ctx::new().await;
    let c = instances(&ctx, 3).await;
    let ttl = Duration::from_millis(300);
    let hold = |i: usize, want: u32, running: u32| {
        c[i].hold_concurrency("oa", ["i1", "i2", "i3"][i], want, running, 10, ttl)
    };
    assert_eq!(hold(0, 8, 0).await.unwrap().granted, 8);
    assert_eq!(hold(1, 2, 0).await.unwrap().granted, 2);

    // i1 falls silent; i2 heartbeats every ttl / 3 and keeps its share.
    let silent_since = Instant::now();
    for _ in 0..6 {
        tokio::time::sleep(ttl / 3).await;
        assert_eq!(hold(1, 2, 2).await.unwrap().granted, 2);
        let i3 = hold(2, 10, 0).await.unwrap().granted;
        if silent_since.elapsed() < ttl - Duration::from_millis(50) {
            assert_eq!(i3, 0, "i1 still holds 8");
        }
    }
    assert_eq!(
        hold(2, 10, 0).await.unwrap().granted,
        8,
        "i1's 8 are free again (i2 holds and wants 2)"
    );
}

// ---- keys ----

#[tokio::test]
async fn pacing_keys_carry_the_app_hash_tag() {
    let ctx = Ctx::new().await;
    let c = &ctx.coord;
    let until = ctx.now() + HOUR_MS;
    c.reserve_send_slots("oa", 1, 10, Duration::from_secs(1))
        .await
        .unwrap();
    c.hold_concurrency("oa", "i1", 1, 0, 10, Duration::from_secs(5))
        .await
        .unwrap();
    c.set_pause("oa", until, "quota").await.unwrap();
    c.reject_template("oa", "tpl", 40037, "", until)
        .await
        .unwrap();
    let mut keys = keys_under(&ctx.url, &ctx.prefix).unwrap();
    keys.sort();
    let p = &ctx.prefix;
    let want: Vec<String> = [
        "conc",
        "conc:alive",
        "conc:want",
        "pause",
        "rate",
        "templates",
    ]
    .iter()
    .map(|s| format!("{p}:{{oa}}:{s}"))
    .collect();
    assert_eq!(keys, want);
}
