//! Fleet-wide push pacing: the building blocks that let every instance sending for one app
//! respect ONE send rate, ONE concurrency limit, and share "this app is paused" and "this
//! template is rejected" (invariants 10 and 12).
//!
//! Rate and concurrency are measured on Redis' own clock (`TIME` inside the scripts), unlike
//! the rest of coordination: they compare instants written by different instances, and a few
//! milliseconds of clock skew between hosts would break a 2 ms send interval. Pauses and
//! template rejections are long windows that callers decide on with their own `Clock`, like the
//! breaker.

use std::collections::HashMap;
use std::time::Duration;

use ::redis::cmd;

use super::{RedisCoord, SCRIPTS, parse};
use crate::coord::CoordError;

/// Idle apps' rate keys outlive the horizon by this much, then Redis drops them.
const RATE_TTL_SLACK_MS: u64 = 10_000;
/// Longest template (or message type) name a rejection may carry.
const MAX_TEMPLATE_LEN: usize = 128;

/// A batch of send slots reserved for one app, fleet-wide. Send `i` (0-based, `i < granted`)
/// may start `first_in + i * every` after the reply arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendSlots {
    pub granted: u32,
    /// From the reply to the first granted slot; at most the horizon.
    pub first_in: Duration,
    /// The app's send interval: `1 s / per_sec`, rounded up to whole microseconds.
    pub every: Duration,
    /// With nothing granted: when to ask again (at least 1 ms) for one slot to be free.
    /// Zero when something was granted.
    pub retry_in: Duration,
}

/// What `hold_concurrency` left an instance with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holding {
    /// Concurrent sends this instance may run now.
    pub granted: u32,
    /// Instances that want some of the app's sends (this one included when it does): how
    /// many share the app's limits, for an instance that has to fall back on its own share.
    pub holders: u32,
    /// This instance's fair share: start no more sends than `min(granted, share)`. Above it
    /// (held because sends were running), the instance drains to it and holds less next time.
    pub share: u32,
}

/// A template WeChat rejected for the whole fleet, until `until_ms` (the caller's clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedTemplate {
    pub template: String,
    pub errcode: i64,
    pub reason: String,
    pub until_ms: i64,
}

/// A rejection as stored: the JSON value of the template's hash field.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    errcode: i64,
    reason: String,
    until_ms: i64,
}

impl RedisCoord {
    /// Reserve up to `want` consecutive send slots of `app` at `per_sec` fleet-wide, no further
    /// ahead than `horizon`, in one call. Slots handed to different callers never overlap.
    ///
    /// - `want == 0`: nothing is asked, nothing reserved: `granted == 0` and `retry_in` zero,
    ///   without a call to Redis.
    /// - `per_sec == 0`: a [`CoordError::Protocol`] error (a rate of zero is a configuration
    ///   mistake; pausing an app is [`set_pause`](Self::set_pause)).
    /// - `per_sec` above 1 000 000 is capped there (the interval is one microsecond).
    /// - a horizon shorter than one interval counts as one interval, so a slow app still gets
    ///   its next slot.
    pub async fn reserve_send_slots(
        &self,
        app: &str,
        want: u32,
        per_sec: u32,
        horizon: Duration,
    ) -> Result<SendSlots, CoordError> {
        let key = self.key(app, "rate")?;
        if per_sec == 0 {
            return Err(CoordError::Protocol(format!(
                "send rate of app {app:?} is 0 per second: use a positive rate (pause the app \
                 to stop it)"
            )));
        }
        let interval_us = 1_000_000u64.div_ceil(u64::from(per_sec));
        let every = Duration::from_micros(interval_us);
        if want == 0 {
            let zero = Duration::ZERO;
            return Ok(SendSlots {
                granted: 0,
                first_in: zero,
                every,
                retry_in: zero,
            });
        }
        let horizon_us = u64::try_from(horizon.as_micros())
            .unwrap_or(u64::MAX)
            .max(interval_us);
        let ttl_ms = horizon_us.div_ceil(1000).saturating_add(RATE_TTL_SLACK_MS);
        let mut inv = SCRIPTS.reserve_send_slots.prepare_invoke();
        inv.key(&key)
            .arg(want)
            .arg(interval_us)
            .arg(horizon_us)
            .arg(ttl_ms);
        let (granted, first_in_us, retry_in_us): (u32, u64, u64) = self
            .op("reserve_send_slots", inv.invoke_async(&mut self.conn()))
            .await?;
        let retry_in = if granted == 0 {
            Duration::from_micros(retry_in_us).max(Duration::from_millis(1))
        } else {
            Duration::ZERO
        };
        let first_in = Duration::from_micros(first_in_us);
        Ok(SendSlots {
            granted,
            first_in,
            every,
            retry_in,
        })
    }

    /// Declare that `instance` wants to hold `want` of `app`'s concurrent sends (its running
    /// plus waiting ones) and must hold at least `floor` (what runs or may start there now);
    /// returns what it holds now, never letting the live holdings of the fleet add up to more
    /// than `limit`.
    ///
    /// Fair (max-min, by what each instance last declared it wants): an instance wanting less
    /// than an even split gets all it wants, the rest is split evenly among the others. One
    /// holding more than its share is told its `share`, should start no more than that, and
    /// holds less at its next call (never below its `floor`: those sends were granted), so a
    /// newcomer gets its share within a heartbeat or two.
    ///
    /// A holding lives `ttl` (at least 1 ms) after the instance's last call: call again every
    /// `ttl / 3` as a heartbeat and whenever demand changes, so a crashed instance's share
    /// frees itself. `want == 0` with nothing running releases; `limit == 0` grants nothing.
    /// Every instance must pass the same `limit` for the bound to hold.
    pub async fn hold_concurrency(
        &self,
        app: &str,
        instance: &str,
        want: u32,
        floor: u32,
        limit: u32,
        ttl: Duration,
    ) -> Result<Holding, CoordError> {
        super::check_name("instance id", instance)?;
        let want = want.max(floor);
        let mut inv = SCRIPTS.hold_concurrency.prepare_invoke();
        inv.key(self.key(app, "conc")?)
            .key(self.key(app, "conc:alive")?)
            .key(self.key(app, "conc:want")?)
            .arg(instance)
            .arg(want)
            .arg(limit)
            .arg(super::lease_ms(ttl))
            .arg(floor);
        let (granted, holders, share): (u32, u32, u32) = self
            .op("hold_concurrency", inv.invoke_async(&mut self.conn()))
            .await?;
        Ok(Holding {
            granted,
            holders,
            share,
        })
    }

    /// Pause `app`'s sends for the fleet until `until_ms` (the caller's clock), with a reason
    /// for other instances to report. The later pause wins: an earlier `until_ms` changes
    /// nothing, and a `pause` event is published only when the pause moved later. A time
    /// already past pauses nothing.
    pub async fn set_pause(
        &self,
        app: &str,
        until_ms: i64,
        reason: &str,
    ) -> Result<(), CoordError> {
        let key = self.key(app, "pause")?;
        let ttl_ms = until_ms - self.clock.now_ms();
        if ttl_ms <= 0 {
            return Ok(());
        }
        let mut inv = SCRIPTS.set_pause.prepare_invoke();
        inv.key(&key)
            .arg(until_ms)
            .arg(reason)
            .arg(ttl_ms)
            .arg(self.channel())
            .arg(app);
        let _: i64 = self
            .op("set_pause", inv.invoke_async(&mut self.conn()))
            .await?;
        Ok(())
    }

    /// `(until_ms, reason)` while the app is paused by this clock.
    pub async fn get_pause(&self, app: &str) -> Result<Option<(i64, String)>, CoordError> {
        let key = self.key(app, "pause")?;
        let (until, reason): (Option<String>, Option<String>) = self
            .op(
                "get_pause",
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

    /// Remember for the fleet that WeChat rejected `template` (a template id, or a WeCom
    /// message type) of `app` with `errcode` until `until_ms` (the caller's clock). A later
    /// rejection of the same template wins; an earlier one changes nothing. Publishes a
    /// `template` event when written. A time already past records nothing; a template name
    /// that is empty or longer than 128 bytes is a [`CoordError::Protocol`] error.
    pub async fn reject_template(
        &self,
        app: &str,
        template: &str,
        errcode: i64,
        reason: &str,
        until_ms: i64,
    ) -> Result<(), CoordError> {
        let key = self.key(app, "templates")?;
        if template.is_empty() || template.len() > MAX_TEMPLATE_LEN {
            return Err(CoordError::Protocol(format!(
                "template name of {} bytes for app {app:?}: use 1-{MAX_TEMPLATE_LEN} bytes",
                template.len()
            )));
        }
        let now = self.clock.now_ms();
        if until_ms <= now {
            return Ok(());
        }
        let record = Record {
            errcode,
            reason: reason.to_string(),
            until_ms,
        };
        let json = serde_json::to_string(&record)
            .map_err(|e| CoordError::Protocol(format!("template rejection record: {e}")))?;
        let mut inv = SCRIPTS.reject_template.prepare_invoke();
        inv.key(&key)
            .arg(template)
            .arg(json)
            .arg(until_ms)
            .arg(until_ms - now)
            .arg(self.channel())
            .arg(app)
            .arg(now);
        let _: i64 = self
            .op("reject_template", inv.invoke_async(&mut self.conn()))
            .await?;
        Ok(())
    }

    /// The app's templates still rejected by this clock, sorted by name.
    pub async fn rejected_templates(&self, app: &str) -> Result<Vec<RejectedTemplate>, CoordError> {
        let key = self.key(app, "templates")?;
        let all: HashMap<String, String> = self
            .op(
                "rejected_templates",
                cmd("HGETALL").arg(&key).query_async(&mut self.conn()),
            )
            .await?;
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        for (template, json) in all {
            let rec: Record = serde_json::from_str(&json).map_err(|_| {
                CoordError::Protocol(format!(
                    "{key}: field {template:?} is not a rejection record"
                ))
            })?;
            if rec.until_ms > now {
                out.push(RejectedTemplate {
                    template,
                    errcode: rec.errcode,
                    reason: rec.reason,
                    until_ms: rec.until_ms,
                });
            }
        }
        out.sort_by(|a, b| a.template.cmp(&b.template));
        Ok(out)
    }
}

#[cfg(test)]
mod pause_tests;
#[cfg(test)]
mod tests;
