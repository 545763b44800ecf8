//! One send: the app's token, the call to WeChat, and what its answer means for the message
//! (invariant 10), as a `Finish` for the store. The only call made again in place is one whose
//! token WeChat refused (`Client::with_token`: once, with the new token, at the app's pace, and
//! not if the lease was lost meanwhile); every other retry is a new claim later, so a process
//! that dies loses no decision.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Deserialize;

use super::Inner;
use crate::clock::next_shanghai_midnight_ms;
use crate::config::AppKind;
use crate::store::{AttemptOutcome, AttemptRecord, Claimed, Finish, MessageKind, Next};
use crate::token::{Token, TokenError};
use crate::wechat::{Answer, Called, Client, ErrClass, classify_call};

/// WeCom forgets a body for duplicate checking after this (we send 1800 s).
const WECOM_DUPLICATE_WINDOW_MS: i64 = 1_800_000;
/// A token refresh does not spend an attempt, but a message is not re-queued for it forever.
const FREE_REFRESHES: i64 = 5;
/// How long a configuration error pauses the app's sends before one more try.
const CONFIG_PAUSE_MS: i64 = 60_000;
/// Errcodes that condemn a template, not the app: 40037 invalid template_id; 40036 invalid
/// template_id size. Its other messages fail without a call for this long.
const TEMPLATE_ERRORS: [i64; 2] = [40037, 40036];
const TEMPLATE_REJECT_MS: i64 = 10 * 60_000;
/// A message of an app this instance does not know is retried (by any instance) this often…
const UNKNOWN_APP_RETRY_MS: i64 = 10_000;
/// …for this long after its first claim, then it fails: the app was deleted. An app created on
/// another instance is known here within a second, so this only outlasts stray config drift.
const UNKNOWN_APP_GRACE_MS: i64 = 5 * 60_000;

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    /// u64 for OA template sends, a string for WeCom, absent for MP subscribe.
    #[serde(default)]
    msgid: Option<serde_json::Value>,
    #[serde(default)]
    invaliduser: Option<String>,
}

/// One call's answer, and when it came.
struct Sent {
    reply: Result<Reply, SendError>,
    at_ms: i64,
    latency_ms: i64,
}

impl Answer for Sent {
    fn errcode(&self) -> Option<i64> {
        self.reply.as_ref().ok().map(|r| r.errcode)
    }
}

impl Sent {
    fn record(
        &self,
        inner: &Inner,
        outcome: AttemptOutcome,
        errcode: Option<i64>,
        errmsg: Option<String>,
        msgid: Option<String>,
        detail: Option<String>,
    ) -> AttemptRecord {
        AttemptRecord {
            at_ms: self.at_ms,
            instance: inner.settings.instance.clone(),
            latency_ms: self.latency_ms,
            errcode,
            errmsg,
            msgid,
            outcome,
            detail,
        }
    }
}

/// Where a message of `kind` is sent.
fn endpoint(client: &Client, kind: MessageKind) -> String {
    match kind {
        MessageKind::Template => {
            client.url(AppKind::OfficialAccount, "/cgi-bin/message/template/send")
        }
        MessageKind::Subscribe => {
            client.url(AppKind::MiniProgram, "/cgi-bin/message/subscribe/send")
        }
        MessageKind::Wecom => client.url(AppKind::Wecom, "/cgi-bin/message/send"),
    }
}

/// Send one claimed message and say what becomes of it; `None` when its lease was found taken
/// over while it waited (another worker has it now, and it is not sent from here).
pub(crate) async fn deliver(inner: &Inner, c: Claimed, lost: &AtomicBool) -> Option<Finish> {
    let now = inner.clock.now_ms();
    if let Some(unknown) = unknown_app(inner, &c, now).await {
        return Some(unknown);
    }
    let next = |next: Next, attempt: Option<AttemptRecord>| Finish {
        id: c.id.clone(),
        lease_token: c.lease_token.clone(),
        next,
        attempt,
        before: None,
    };
    if let Some(reason) = unsafe_to_send(inner, &c, now) {
        count(&c, "unknown", None);
        return Some(next(Next::Unknown { reason }, None));
    }
    let gate = inner.gate(&c.app);
    let _permit = gate.enter().await;
    if lost.load(Ordering::Acquire) {
        return None;
    }
    Some(call(inner, c, &gate, lost).await)
}

/// Whether `c`'s app is unknown here. The registry is asked to re-read it from the store
/// first (it may have been created on another instance a moment ago). Unknown, the message
/// waits without spending an attempt — claimed again, by any instance, every
/// `UNKNOWN_APP_RETRY_MS` — and fails once `UNKNOWN_APP_GRACE_MS` have passed since its first
/// claim: the app was deleted.
async fn unknown_app(inner: &Inner, c: &Claimed, now: i64) -> Option<Finish> {
    if inner.apps.get(&c.app).is_some() {
        return None;
    }
    if let Ok(Some(_)) = inner.apps.refresh(&c.app).await {
        return None;
    }
    let finish = |next| Finish {
        id: c.id.clone(),
        lease_token: c.lease_token.clone(),
        next,
        attempt: None,
        before: None,
    };
    if now - c.first_claimed_at_ms >= UNKNOWN_APP_GRACE_MS {
        count(c, "failed", None);
        return Some(finish(Next::Failed {
            errcode: None,
            reason: format!("app {:?} no longer exists", c.app),
        }));
    }
    // This instance stops claiming the app's messages for a while (others may know it).
    inner.gate(&c.app).hold_off(now + UNKNOWN_APP_RETRY_MS);
    let reason = format!(
        "app {:?} is not known to this instance; waiting for it (it fails {} s after its first \
         claim if it does not appear)",
        c.app,
        UNKNOWN_APP_GRACE_MS / 1000
    );
    Some(finish(retry(
        now + UNKNOWN_APP_RETRY_MS,
        false,
        None,
        reason,
    )))
}

/// The call to WeChat, once the gate let it through.
async fn call(
    inner: &Inner,
    mut c: Claimed,
    gate: &super::gate::AppGate,
    lost: &AtomicBool,
) -> Finish {
    let now = inner.clock.now_ms();
    let next = |next: Next, attempt: Option<AttemptRecord>| Finish {
        id: c.id.clone(),
        lease_token: c.lease_token.clone(),
        next,
        attempt,
        before: None,
    };
    // Checked after the wait for a slot, when sends ahead of this one have had their answer.
    if let Some((code, why)) = gate.template_rejected(&c.template, inner.clock.now_ms()) {
        count(&c, "failed", Some(code));
        let reason = format!("not sent: {why}");
        return next(
            Next::Failed {
                errcode: Some(code),
                reason,
            },
            None,
        );
    }
    let kind = c.kind;
    // Moved into the first request and shared by the replay, never copied per send.
    let body = bytes::Bytes::from(std::mem::take(&mut c.body));
    let mut sends = 0;
    let called = inner
        .client
        .with_token(
            &inner.tokens,
            &c.app,
            || !lost.load(Ordering::Acquire),
            |token: Token| {
                sends += 1;
                let replay = sends > 1;
                let secret = token.value.expose();
                let endpoint = || endpoint(&inner.client, kind);
                let request = match gate.send_url(kind, token.generation, secret, endpoint) {
                    Some(url) => inner.client.http().post(url),
                    // Not a URL (the config check makes this unreachable): reqwest reports it.
                    None => inner
                        .client
                        .http()
                        .post(endpoint())
                        .query(&[("access_token", secret)]),
                };
                let request = request
                    .timeout(inner.settings.send_timeout)
                    .header("content-type", "application/json")
                    .body(body.clone());
                async move {
                    if replay {
                        gate.pace().await;
                    }
                    let started = Instant::now();
                    let reply = match request.send().await {
                        Ok(resp) if resp.status().is_success() => {
                            resp.json::<Reply>().await.map_err(Into::into)
                        }
                        Ok(resp) => Err(SendError::Http(resp.status().as_u16())),
                        Err(e) => Err(SendError::Transport(e.without_url())),
                    };
                    gate.record_send_seconds(started.elapsed().as_secs_f64());
                    Sent {
                        reply,
                        at_ms: inner.clock.now_ms(),
                        latency_ms: started.elapsed().as_millis() as i64,
                    }
                }
            },
        )
        .await;
    let Called {
        answer, refused, ..
    } = match called {
        Ok(called) => called,
        Err(TokenError::UnknownApp(app)) => {
            let reason = format!("app {app:?} no longer exists");
            return next(
                Next::Failed {
                    errcode: None,
                    reason,
                },
                None,
            );
        }
        Err(e) => {
            // No token, no call: wait for the token manager's breaker without an attempt.
            let due = e.retry_at_ms().unwrap_or(now + 5_000).max(now + 1_000);
            let reason = format!("no access token: {e}");
            return next(retry(due, false, e.wechat_errcode(), reason), None);
        }
    };
    // A token refused and replaced in place: on record, not counted as an attempt.
    let before = refused.map(|r| {
        let code = r.errcode();
        count(&c, "refresh", code);
        let errmsg = r
            .reply
            .as_ref()
            .ok()
            .map(|r| r.errmsg.clone())
            .filter(|m| !m.is_empty());
        r.record(inner, AttemptOutcome::Refresh, code, errmsg, None, None)
    });
    let next = |next: Next, attempt: Option<AttemptRecord>| Finish {
        id: c.id.clone(),
        lease_token: c.lease_token.clone(),
        next,
        attempt,
        before: before.clone(),
    };
    let record = |outcome, errcode, errmsg: Option<String>, msgid, detail| {
        answer.record(inner, outcome, errcode, errmsg, msgid, detail)
    };
    let at_ms = answer.at_ms;
    let reply = match &answer.reply {
        Ok(r) => r,
        Err(e) => {
            let (n, outcome) = after_no_answer(inner, &c, e, at_ms);
            count(&c, outcome.as_str(), None);
            return next(
                n,
                Some(record(outcome, None, None, None, Some(e.to_string()))),
            );
        }
    };
    let msgid = reply.msgid.as_ref().map(|v| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let code = reply.errcode;
    let errmsg = Some(reply.errmsg.clone()).filter(|m| !m.is_empty());
    if code == 0 {
        // WeCom answers 0 with the ids it could not reach: a message to one user failed; one to
        // several was delivered to the others, and the log says to whom it was not.
        let bad = reply.invaliduser.clone().filter(|u| !u.is_empty());
        let single = !c.recipient.contains('|') && c.recipient != crate::message::ALL;
        if let Some(bad) = bad.as_ref().filter(|_| !single) {
            gate.count_sent(c.kind);
            let detail = Some(format!("WeCom could not deliver to: {bad}"));
            let attempt = record(AttemptOutcome::Sent, Some(0), errmsg, msgid.clone(), detail);
            return next(Next::Sent { msgid }, Some(attempt));
        }
        if let Some(bad) = bad {
            let reason = format!("WeCom could not deliver to: {bad}");
            let outcome = AttemptOutcome::Failed;
            count(&c, "failed", Some(81013));
            let attempt = record(outcome, Some(0), errmsg, msgid, Some(reason.clone()));
            let failed = Next::Failed {
                errcode: Some(81013),
                reason,
            };
            return next(failed, Some(attempt));
        }
        gate.count_sent(c.kind);
        let attempt = record(AttemptOutcome::Sent, Some(0), errmsg, msgid.clone(), None);
        return next(Next::Sent { msgid }, Some(attempt));
    }
    let reason = format!("WeChat errcode {code}: {}", reply.errmsg);
    let (n, outcome) = match classify_call(code) {
        ErrClass::Refresh => {
            // Refused again after `with_token`'s one refresh and replay (both reported): try
            // again later rather than loop here.
            let n = retry(at_ms, c.claims > FREE_REFRESHES, Some(code), reason);
            (n, AttemptOutcome::Refresh)
        }
        ErrClass::Backoff => (
            backoff_next(inner, &c, at_ms, Some(code), reason),
            AttemptOutcome::Retry,
        ),
        ErrClass::Window => {
            let until = match code {
                45009 => next_shanghai_midnight_ms(at_ms),
                _ => (at_ms.div_euclid(60_000) + 1) * 60_000,
            };
            gate.pause(until, &reason);
            (
                retry(until, false, Some(code), reason),
                AttemptOutcome::Window,
            )
        }
        ErrClass::Config if TEMPLATE_ERRORS.contains(&code) => {
            let reason = format!(
                "{reason} — template {:?} is wrong for this app: fix template_id, then retry \
                 the failed messages",
                c.template
            );
            gate.reject_template(&c.template, code, &reason, at_ms + TEMPLATE_REJECT_MS);
            (
                Next::Failed {
                    errcode: Some(code),
                    reason,
                },
                AttemptOutcome::Failed,
            )
        }
        ErrClass::Config => {
            let hint = crate::wechat::fetch_hint(code);
            gate.pause(at_ms + CONFIG_PAUSE_MS, &reason);
            let reason = format!("{reason} — the app or template is misconfigured ({hint})");
            let n = Next::Failed {
                errcode: Some(code),
                reason,
            };
            (n, AttemptOutcome::Failed)
        }
        ErrClass::Recipient | ErrClass::Request => (
            Next::Failed {
                errcode: Some(code),
                reason,
            },
            AttemptOutcome::Failed,
        ),
    };
    count(&c, outcome.as_str(), Some(code));
    next(n, Some(record(outcome, Some(code), errmsg, None, None)))
}

/// Why sending `c` again could deliver it twice, if it could: its last worker died mid-send
/// (`was_sending`), and WeChat cannot deduplicate the retry.
fn unsafe_to_send(inner: &Inner, c: &Claimed, now: i64) -> Option<String> {
    if !c.was_sending {
        return None;
    }
    match c.kind {
        MessageKind::Subscribe => Some(
            "the worker sending it stopped mid-send; WeChat may have delivered it and a \
             subscribe message cannot be sent idempotently"
                .into(),
        ),
        kind => dedupe_expired(inner, kind, c.first_claimed_at_ms, now),
    }
}

/// Whether a retry at `now` is past WeChat's deduplication of the first try (OA template:
/// `client_msg_id`, 10 minutes; WeCom: `enable_duplicate_check`, 30 minutes).
fn dedupe_expired(inner: &Inner, kind: MessageKind, first_ms: i64, now: i64) -> Option<String> {
    let age = now - first_ms;
    let (window, what) = match kind {
        MessageKind::Template => (
            inner.settings.template_retry_window.as_millis() as i64,
            "WeChat's client_msg_id window",
        ),
        MessageKind::Wecom => (WECOM_DUPLICATE_WINDOW_MS, "WeCom's duplicate check"),
        MessageKind::Subscribe => return Some("subscribe messages have no deduplication".into()),
    };
    (age > window).then(|| {
        format!(
            "a retry {} s after the first try is past {what} and could deliver it twice",
            age / 1000
        )
    })
}

/// No answer from WeChat: the request may or may not have been processed.
fn after_no_answer(inner: &Inner, c: &Claimed, e: &SendError, now: i64) -> (Next, AttemptOutcome) {
    let reason = format!("no answer from WeChat: {e}");
    if e.never_sent() {
        return (
            backoff_next(inner, c, now, None, reason),
            AttemptOutcome::Retry,
        );
    }
    // WeChat may have delivered it: a retry is safe only while WeChat deduplicates it (the
    // retry comes up to a minute later), and giving up is `unknown`, never `failed`.
    if c.attempts + 1 >= inner.settings.max_attempts {
        let reason = format!("{reason}; gave up after {} attempts", c.attempts + 1);
        return (Next::Unknown { reason }, AttemptOutcome::Unknown);
    }
    match dedupe_expired(inner, c.kind, c.first_claimed_at_ms, now + 60_000) {
        None => (
            backoff_next(inner, c, now, None, reason),
            AttemptOutcome::Retry,
        ),
        Some(why) => {
            let reason = format!("{reason}; not retried: {why}");
            (Next::Unknown { reason }, AttemptOutcome::Unknown)
        }
    }
}

/// Retry later, with jittered exponential backoff, or fail after `max_attempts`.
fn backoff_next(inner: &Inner, c: &Claimed, now: i64, code: Option<i64>, reason: String) -> Next {
    if c.attempts + 1 >= inner.settings.max_attempts {
        let reason = format!("gave up after {} attempts; last: {reason}", c.attempts + 1);
        return Next::Failed {
            errcode: code,
            reason,
        };
    }
    let base = 500i64 << c.attempts.clamp(0, 7);
    let delay = base + rand::random_range(0..=base / 2);
    retry(now + delay.min(60_000), true, code, reason)
}

fn retry(due_at_ms: i64, count_attempt: bool, errcode: Option<i64>, reason: String) -> Next {
    Next::Retry {
        due_at_ms,
        count_attempt,
        errcode,
        reason,
    }
}

fn count(c: &Claimed, outcome: &'static str, errcode: Option<i64>) {
    let errcode = errcode.map_or_else(|| "none".to_string(), |e| e.to_string());
    metrics::counter!("wxgate_push_sends_total", "app" => c.app.clone(), "type" => c.kind.as_str(), "outcome" => outcome, "errcode" => errcode).increment(1);
}

/// A call that got no usable answer. Messages never contain the URL (it holds the token).
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    Transport(reqwest::Error),
    #[error("HTTP {0}")]
    Http(u16),
}

impl From<reqwest::Error> for SendError {
    fn from(e: reqwest::Error) -> Self {
        SendError::Transport(e.without_url())
    }
}

impl SendError {
    /// The request certainly did not reach WeChat (the connection was never made).
    fn never_sent(&self) -> bool {
        matches!(self, SendError::Transport(e) if e.is_connect())
    }
}
