//! One app's send gate: its limits (how many at once, how fast), whether it is paused (a quota
//! window or a configuration error), and which of its templates WeChat rejected (invariant
//! 10). In a fleet, pauses and rejections are published through Redis and applied from every
//! other instance's (see `fleet_sync`), so one 45009 or 40037 stops the whole fleet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

use super::PushSettings;
use super::limits::{Limits, Permit};
use crate::coord::RedisCoord;
use crate::store::MessageKind;

/// Message kinds, indexed as in the per-kind caches below.
const KINDS: [MessageKind; 3] = [
    MessageKind::Template,
    MessageKind::Subscribe,
    MessageKind::Wecom,
];

fn kind_index(kind: MessageKind) -> usize {
    KINDS
        .iter()
        .position(|k| *k == kind)
        .expect("every kind is listed")
}

pub(crate) struct AppGate {
    app: String,
    limits: Limits,
    /// Epoch ms (the gateway's clock) until which the app's messages are not claimed.
    paused_until_ms: AtomicI64,
    /// Why the app is paused, for logs and message reasons.
    pause_reason: Mutex<String>,
    /// Templates WeChat rejected (errcode, reason, until epoch ms): their messages fail without
    /// a call until then, so a campaign on a wrong template costs one call, not one per
    /// recipient. Held only to read or write an entry.
    bad_templates: Mutex<HashMap<String, (i64, String, i64)>>,
    /// Where pauses and rejections are published for the fleet (`None`: this instance only).
    coord: Option<RedisCoord>,
    /// Per kind, the send URL with the token of a generation, parsed once per token rather than
    /// per send (building and parsing it was ~3 % of the send path's CPU). Held only to read or
    /// replace an entry. Holds the token as the token manager does: never logged.
    send_urls: Mutex<[Option<(u64, reqwest::Url)>; 3]>,
    /// The handles of the per-send metrics, looked up once instead of on every send.
    send_seconds: metrics::Histogram,
    sent: [OnceLock<metrics::Counter>; 3],
}

impl AppGate {
    pub fn new(
        app: &str,
        s: &PushSettings,
        coord: Option<&RedisCoord>,
        stop: &CancellationToken,
    ) -> AppGate {
        AppGate {
            app: app.to_owned(),
            limits: Limits::new(app, s, coord, stop),
            paused_until_ms: AtomicI64::new(0),
            pause_reason: Mutex::new(String::new()),
            bad_templates: Mutex::new(HashMap::new()),
            coord: coord.cloned(),
            send_urls: Mutex::new([None, None, None]),
            send_seconds: metrics::histogram!("wxgate_push_send_seconds", "app" => app.to_owned()),
            sent: Default::default(),
        }
    }

    /// The URL a `kind` message is posted to with token `generation`: `endpoint` (without the
    /// token) and `token` are used only when the generation changed. `None` if `endpoint` is
    /// not a URL.
    pub fn send_url(
        &self,
        kind: MessageKind,
        generation: u64,
        token: &str,
        endpoint: impl FnOnce() -> String,
    ) -> Option<reqwest::Url> {
        let mut urls = self.send_urls.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut urls[kind_index(kind)];
        match slot {
            Some((g, url)) if *g == generation => Some(url.clone()),
            _ => {
                let mut url = reqwest::Url::parse(&endpoint()).ok()?;
                url.query_pairs_mut().append_pair("access_token", token);
                *slot = Some((generation, url.clone()));
                Some(url)
            }
        }
    }

    /// A send's time, in `wxgate_push_send_seconds`.
    pub fn record_send_seconds(&self, seconds: f64) {
        self.send_seconds.record(seconds);
    }

    /// One more `kind` message sent (outcome `sent`, errcode 0), in `wxgate_push_sends_total`.
    pub fn count_sent(&self, kind: MessageKind) {
        self.sent[kind_index(kind)]
            .get_or_init(|| {
                metrics::counter!("wxgate_push_sends_total", "app" => self.app.clone(), "type" => kind.as_str(), "outcome" => "sent", "errcode" => "0")
            })
            .increment(1);
    }

    /// Wait for a concurrency slot and the pacer; the permit is the slot.
    pub async fn enter(&self) -> Permit {
        self.limits.enter().await
    }

    /// One more turn at the app's rate for a send already entered (see `Limits::pace`).
    pub async fn pace(&self) {
        self.limits.pace().await
    }

    pub fn paused_until_ms(&self) -> i64 {
        self.paused_until_ms.load(Ordering::Relaxed)
    }

    /// Mark a template rejected until `until_ms`, here and for the fleet.
    pub fn reject_template(&self, template: &str, errcode: i64, reason: &str, until_ms: i64) {
        self.note_rejected(template, errcode, reason, until_ms);
        if let Some(coord) = self.coord.clone() {
            let (app, template, reason) =
                (self.app.clone(), template.to_owned(), reason.to_owned());
            // Best effort: the others then fail the template's messages without a call too.
            tokio::spawn(async move {
                if let Err(e) = coord
                    .reject_template(&app, &template, errcode, &reason, until_ms)
                    .await
                {
                    tracing::debug!(%app, error = %e, "could not share a template rejection");
                }
            });
        }
    }

    /// A rejection heard from the fleet (or made here): the later until wins.
    pub fn note_rejected(&self, template: &str, errcode: i64, reason: &str, until_ms: i64) {
        let mut bad = self.bad_templates.lock().unwrap_or_else(|p| p.into_inner());
        let entry = bad
            .entry(template.to_owned())
            .or_insert((errcode, String::new(), 0));
        if until_ms > entry.2 {
            *entry = (errcode, reason.to_owned(), until_ms);
        }
    }

    /// (errcode, reason) while `template` is marked rejected.
    pub fn template_rejected(&self, template: &str, now_ms: i64) -> Option<(i64, String)> {
        let bad = self.bad_templates.lock().unwrap_or_else(|p| p.into_inner());
        bad.get(template)
            .filter(|(_, _, until)| *until > now_ms)
            .map(|(code, reason, _)| (*code, reason.clone()))
    }

    /// Stop claiming the app's messages until `until_ms` (a later pause wins), here and for
    /// the fleet.
    pub fn pause(&self, until_ms: i64, reason: &str) {
        if !self.note_pause(until_ms, reason) {
            return;
        }
        if let Some(coord) = self.coord.clone() {
            let (app, reason) = (self.app.clone(), reason.to_owned());
            tokio::spawn(async move {
                if let Err(e) = coord.set_pause(&app, until_ms, &reason).await {
                    tracing::debug!(%app, error = %e, "could not share a pause");
                }
            });
        }
    }

    /// Stop claiming the app's messages here, quietly, until `until_ms` (its messages wait for
    /// an instance that knows the app).
    pub fn hold_off(&self, until_ms: i64) {
        self.paused_until_ms.fetch_max(until_ms, Ordering::Relaxed);
    }

    /// A pause heard from the fleet (or made here); whether it extended the pause.
    pub fn note_pause(&self, until_ms: i64, reason: &str) -> bool {
        let before = self.paused_until_ms.fetch_max(until_ms, Ordering::Relaxed);
        if until_ms <= before {
            return false;
        }
        *self.pause_reason.lock().unwrap_or_else(|p| p.into_inner()) = reason.to_string();
        tracing::warn!(app = %self.app, until_ms, reason, "sending paused for this app");
        metrics::counter!("wxgate_push_app_paused_total", "app" => self.app.clone()).increment(1);
        true
    }
}
