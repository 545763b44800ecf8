//! Push pacing's shared memory against the real test Redis (see the coordination tests for the
//! set-up): app pauses and template rejections on a clock the tests move, and their events.

use std::time::Duration;

use ::redis::cmd;
use tokio::sync::broadcast::Receiver;
use tokio_util::sync::CancellationToken;

use super::super::events::parse_event;
use super::super::tests::{Ctx, next_event};
use crate::clock::Clock;
use crate::coord::{CoordError, CoordEvent, RedisCoord, RejectedTemplate};

const HOUR_MS: i64 = 3_600_000;
const FAST: Duration = Duration::from_millis(500);

// ---- pause and template rejections ----

/// A coordinator on a clock the test moves, with its event stream (already live).
async fn with_events(ctx: &Ctx) -> (RedisCoord, Clock, CancellationToken, Receiver<CoordEvent>) {
    let clock = Clock::new();
    let c = ctx.coord.clone().with_clock(clock.clone());
    let cancel = CancellationToken::new();
    let mut rx = c.spawn_events(cancel.clone()).subscribe();
    assert_eq!(
        next_event(&mut rx, Duration::from_secs(3)).await,
        CoordEvent::Reconnected
    );
    (c, clock, cancel, rx)
}

/// Proves no other event came first: publishes a marker and expects it next.
async fn nothing_else_published(c: &RedisCoord, rx: &mut Receiver<CoordEvent>) {
    c.set_block("marker", c.clock.now_ms() + HOUR_MS, "{}")
        .await
        .unwrap();
    assert_eq!(
        next_event(rx, FAST).await,
        CoordEvent::Block {
            app: "marker".into()
        }
    );
}

#[tokio::test]
async fn the_later_pause_wins_and_is_announced_once_per_extension() {
    let ctx = Ctx::new().await;
    let (c, clock, cancel, mut rx) = with_events(&ctx).await;
    let paused = CoordEvent::Paused { app: "oa".into() };
    assert_eq!(c.get_pause("oa").await.unwrap(), None);

    let now = clock.now_ms();
    c.set_pause("oa", now + HOUR_MS, "45009 daily quota")
        .await
        .unwrap();
    assert_eq!(next_event(&mut rx, FAST).await, paused);
    let first = Some((now + HOUR_MS, "45009 daily quota".to_string()));
    assert_eq!(c.get_pause("oa").await.unwrap(), first);
    let ttl = ctx.pttl("oa", "pause").await;
    assert!((HOUR_MS - 10_000..=HOUR_MS).contains(&ttl), "ttl {ttl}");

    // An earlier or equal pause neither shortens it nor tells anybody.
    c.set_pause("oa", now + 60_000, "45011 minute")
        .await
        .unwrap();
    c.set_pause("oa", now + HOUR_MS, "again").await.unwrap();
    assert_eq!(c.get_pause("oa").await.unwrap(), first);
    nothing_else_published(&c, &mut rx).await;

    // A later one wins, announced once.
    c.set_pause("oa", now + 2 * HOUR_MS, "45011").await.unwrap();
    assert_eq!(next_event(&mut rx, FAST).await, paused);
    nothing_else_published(&c, &mut rx).await;
    assert_eq!(
        c.get_pause("oa").await.unwrap(),
        Some((now + 2 * HOUR_MS, "45011".into()))
    );
    assert!(
        ctx.pttl("oa", "pause").await > HOUR_MS,
        "the TTL follows the later pause"
    );

    // Over by the caller's clock, although Redis still holds it; a past time pauses nothing.
    clock.advance(Duration::from_secs(3 * 3600));
    assert_eq!(c.get_pause("oa").await.unwrap(), None);
    c.set_pause("mp", clock.now_ms() - 1, "late").await.unwrap();
    assert_eq!(ctx.pttl("mp", "pause").await, -2);
    cancel.cancel();
}

#[tokio::test]
async fn rejected_templates_are_shared_until_their_time_is_over() {
    let ctx = Ctx::new().await;
    let (c, clock, cancel, mut rx) = with_events(&ctx).await;
    let now = clock.now_ms();
    let rejected = |t: &str| CoordEvent::TemplateRejected {
        app: "oa".into(),
        template: t.into(),
    };
    assert_eq!(c.rejected_templates("oa").await.unwrap(), []);

    c.reject_template("oa", "tpl/A", 40037, "invalid template_id", now + HOUR_MS)
        .await
        .unwrap();
    assert_eq!(next_event(&mut rx, FAST).await, rejected("tpl/A"));
    c.reject_template(
        "oa",
        "模板-B",
        40037,
        "invalid template_id",
        now + 2 * HOUR_MS,
    )
    .await
    .unwrap();
    assert_eq!(next_event(&mut rx, FAST).await, rejected("模板-B"));
    let record = |t: &str, until_ms| RejectedTemplate {
        template: t.into(),
        errcode: 40037,
        reason: "invalid template_id".into(),
        until_ms,
    };
    let both = [
        record("tpl/A", now + HOUR_MS),
        record("模板-B", now + 2 * HOUR_MS),
    ];
    assert_eq!(c.rejected_templates("oa").await.unwrap(), both);
    let ttl = ctx.pttl("oa", "templates").await;
    assert!(
        (2 * HOUR_MS - 10_000..=2 * HOUR_MS).contains(&ttl),
        "the latest until: {ttl}"
    );

    // An earlier rejection of the same template changes nothing and tells nobody.
    c.reject_template("oa", "tpl/A", 40037, "shorter", now + 60_000)
        .await
        .unwrap();
    assert_eq!(c.rejected_templates("oa").await.unwrap(), both);
    nothing_else_published(&c, &mut rx).await;

    // Over by the caller's clock: filtered, and dropped at the next write.
    clock.advance(Duration::from_secs(90 * 60));
    assert_eq!(c.rejected_templates("oa").await.unwrap(), [both[1].clone()]);
    let later = clock.now_ms() + HOUR_MS;
    c.reject_template("oa", "text", 40008, "msgtype", later)
        .await
        .unwrap();
    assert_eq!(next_event(&mut rx, FAST).await, rejected("text"));
    let key = ctx.coord.key("oa", "templates").unwrap();
    let mut fields: Vec<String> = cmd("HKEYS")
        .arg(&key)
        .query_async(&mut ctx.coord.conn())
        .await
        .unwrap();
    fields.sort();
    assert_eq!(fields, ["text", "模板-B"]);

    for bad in ["", &"t".repeat(129)] {
        let err = c
            .reject_template("oa", bad, 40037, "", later)
            .await
            .unwrap_err();
        assert!(matches!(err, CoordError::Protocol(_)), "{err:?}");
    }
    c.reject_template("oa", &"t".repeat(128), 40037, "", later)
        .await
        .unwrap();
    cancel.cancel();
}

// ---- events and keys ----

#[test]
fn pacing_events_parse_from_the_wire() {
    let paused = parse_event(br#"{"app":"oa","kind":"pause"}"#).unwrap();
    assert_eq!(paused, CoordEvent::Paused { app: "oa".into() });
    assert_eq!(paused.app(), Some("oa"));
    let rejected = parse_event(br#"{"app":"oa","kind":"template","template":"tpl\/1"}"#).unwrap();
    assert_eq!(
        rejected,
        CoordEvent::TemplateRejected {
            app: "oa".into(),
            template: "tpl/1".into()
        }
    );
    assert_eq!(rejected.app(), Some("oa"));
    assert_eq!(
        parse_event(br#"{"app":"oa","kind":"template"}"#),
        None,
        "names no template"
    );
}
