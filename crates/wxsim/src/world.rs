//! The simulated WeChat's state: registered apps, every token ever minted, per-app quota windows,
//! follower and credit overrides, dedupe windows, the delivery log, uploaded media, used login
//! codes and the users' OAuth tokens.
//!
//! Locking: `apps` and `tokens` are read-mostly maps behind `RwLock`s (written only when an app is
//! added or a token minted or superseded). Each app's mutable state sits behind its own `Mutex`,
//! held only for the few bookkeeping steps of one request and never across an `.await`, so
//! different apps never contend and one app's requests serialise only on bookkeeping.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{AppKind, AppSpec, Faults, SimConfig, TemplateSpec};
use crate::stats::{Counters, FaultCounters};
use wxclock::{Clock, day_index, year_month};

/// `n` random characters of `[A-Za-z0-9_-]`, as WeChat's tokens, msgids and media_ids use.
pub(crate) fn random_chars(n: usize) -> String {
    use rand::RngExt;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Locks that can only be poisoned by a panic in our own short critical sections; keep serving.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) struct Sim {
    pub clock: Clock,
    pub settings: RwLock<SimConfig>,
    pub faults: RwLock<Faults>,
    pub fault_counters: FaultCounters,
    pub apps: RwLock<HashMap<String, Arc<App>>>,
    /// Every token minted, by its string. Read on every business call.
    pub tokens: RwLock<HashMap<Arc<str>, TokenRecord>>,
    /// Users' web-login tokens (`/sns/oauth2/access_token`), by their string.
    pub oauth_tokens: RwLock<HashMap<Arc<str>, OauthGrant>>,
    pub log: Mutex<DeliveryLog>,
    next_msgid: AtomicU64,
    next_generation: AtomicU64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Classic,
    Stable,
    Wecom,
}

pub(crate) struct TokenRecord {
    pub app: Arc<App>,
    pub kind: TokenKind,
    pub expires_ms: i64,
    /// When superseded: the moment it stops working (after the overlap, or at once).
    pub dies_ms: Option<i64>,
    pub revoked: bool,
}

/// A user's web-login token: whose it is and until when it works.
pub(crate) struct OauthGrant {
    pub app: Arc<App>,
    pub openid: String,
    pub expires_ms: i64,
}

/// A temporary media file (`/cgi-bin/media/upload`), kept as it was uploaded.
#[derive(Clone)]
pub(crate) struct Media {
    pub bytes: Bytes,
    pub content_type: String,
    pub filename: String,
    pub created_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenStatus {
    Valid,
    Overlap,
    Expired,
    Superseded,
    Revoked,
}

impl TokenRecord {
    pub fn status(&self, now_ms: i64) -> TokenStatus {
        if self.revoked {
            TokenStatus::Revoked
        } else if now_ms >= self.expires_ms {
            TokenStatus::Expired
        } else {
            match self.dies_ms {
                Some(d) if now_ms >= d => TokenStatus::Superseded,
                Some(_) => TokenStatus::Overlap,
                None => TokenStatus::Valid,
            }
        }
    }
}

pub(crate) struct App {
    pub key: String,
    pub kind: AppKind,
    pub counters: Counters,
    /// Sends being processed right now, for `max_concurrent_sends`.
    pub in_flight: AtomicU32,
    pub state: Mutex<AppState>,
}

/// What a follower can be, as seen by OA template sends (and MP subscribe sends).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Follow {
    Follower,
    Unfollowed,
    Refused,
    Restricted,
    Unknown,
}

#[derive(Default)]
pub(crate) struct TokenState {
    pub classic: Option<Arc<str>>,
    pub stable: Option<(Arc<str>, i64)>,
    pub wecom: Option<(Arc<str>, i64)>,
    pub last_force_ms: Option<i64>,
}

#[derive(Default)]
pub(crate) struct DayCounts {
    pub token: u32,
    pub stable: u32,
    pub force: u32,
    pub sends: u64,
}

#[derive(Default)]
pub(crate) struct MinuteCounts {
    pub token: u32,
    pub stable: u32,
}

#[derive(Default)]
pub(crate) struct MemberWindow {
    pub minute: i64,
    pub in_minute: u32,
    pub hour: i64,
    pub in_hour: u32,
}

pub(crate) struct AppState {
    pub spec: AppSpec,
    pub templates: HashMap<String, TemplateSpec>,
    pub tok: TokenState,
    day: i64,
    pub daily: DayCounts,
    minute: i64,
    pub per_minute: MinuteCounts,
    second: i64,
    pub sends_this_second: u32,
    month: (i64, u32),
    pub clears_this_month: u32,
    pub follow: HashMap<String, Follow>,
    pub credits: HashMap<(String, String), u32>,
    /// (openid, client_msg_id) → (msgid, expires_ms).
    pub dedupe: HashMap<(String, String), (u64, i64)>,
    /// Fingerprints of every delivery, to count duplicates.
    pub fingerprints: HashSet<u64>,
    pub members: HashMap<String, MemberWindow>,
    /// WeCom `enable_duplicate_check`: body hash → (expires_ms, msgid).
    pub wecom_dups: HashMap<u64, (i64, String)>,
    /// Uploaded temporary media by media_id.
    pub media: HashMap<String, Media>,
    /// Login codes (`js_code`, OAuth `code`) already exchanged: a second use answers 40163.
    pub used_codes: HashSet<String>,
}

impl AppState {
    fn new(spec: AppSpec, now_ms: i64) -> Self {
        let templates = spec
            .templates
            .iter()
            .map(|t| (t.id.clone(), t.clone()))
            .collect();
        let day = day_index(now_ms);
        AppState {
            spec,
            templates,
            tok: TokenState::default(),
            day,
            daily: DayCounts::default(),
            minute: now_ms.div_euclid(60_000),
            per_minute: MinuteCounts::default(),
            second: now_ms.div_euclid(1000),
            sends_this_second: 0,
            month: year_month(day),
            clears_this_month: 0,
            follow: HashMap::new(),
            credits: HashMap::new(),
            dedupe: HashMap::new(),
            fingerprints: HashSet::new(),
            members: HashMap::new(),
            wecom_dups: HashMap::new(),
            media: HashMap::new(),
            used_codes: HashSet::new(),
        }
    }

    /// Start new day / minute / second / month windows when the clock has moved into them.
    pub fn roll(&mut self, now_ms: i64) {
        let day = day_index(now_ms);
        if day != self.day {
            self.day = day;
            self.daily = DayCounts::default();
            let month = year_month(day);
            if month != self.month {
                self.month = month;
                self.clears_this_month = 0;
            }
        }
        let minute = now_ms.div_euclid(60_000);
        if minute != self.minute {
            self.minute = minute;
            self.per_minute = MinuteCounts::default();
            // Expired dedupe entries are dropped once a minute so the maps stay small.
            self.dedupe.retain(|_, (_, exp)| *exp > now_ms);
            self.wecom_dups.retain(|_, (exp, _)| *exp > now_ms);
        }
        let second = now_ms.div_euclid(1000);
        if second != self.second {
            self.second = second;
            self.sends_this_second = 0;
        }
    }

    /// Counts a send against `send_rate_per_sec`; false when over the rate.
    pub fn take_rate(&mut self) -> bool {
        match self.spec.send_rate_per_sec {
            Some(limit) if self.sends_this_second >= limit => false,
            _ => {
                self.sends_this_second += 1;
                true
            }
        }
    }

    /// Records a delivery's fingerprint; true when an identical delivery happened before.
    pub fn is_duplicate(&mut self, fingerprint: u64) -> bool {
        !self.fingerprints.insert(fingerprint)
    }

    /// The follower state of an openid: an override, else the naming convention.
    pub fn follow_state(&self, openid: &str) -> Follow {
        if let Some(f) = self.follow.get(openid) {
            return *f;
        }
        follow_by_convention(openid)
    }
}

/// See the module docs of `config`: `o…` openids follow; `o-unfollowed-`, `o-refused-`,
/// `o-restricted-` say otherwise.
pub fn follow_by_convention(openid: &str) -> Follow {
    let well_formed = openid.len() >= 6
        && openid.starts_with('o')
        && openid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !well_formed {
        Follow::Unknown
    } else if openid.starts_with("o-unfollowed-") {
        Follow::Unfollowed
    } else if openid.starts_with("o-refused-") {
        Follow::Refused
    } else if openid.starts_with("o-restricted-") {
        Follow::Restricted
    } else {
        Follow::Follower
    }
}

/// One message handed to one recipient (or one WeCom send to its recipient list).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Delivery {
    pub seq: u64,
    pub at_ms: i64,
    /// The app key (appid, or `corpid:agentid`).
    pub app: String,
    /// `template`, `subscribe` or `wecom`.
    pub api: String,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgtype: Option<String>,
    pub msgid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// What the recipient sees (after any truncation WeChat applies).
    pub content: Value,
    /// An identical delivery happened before.
    pub duplicate: bool,
}

pub(crate) struct DeliveryLog {
    pub entries: VecDeque<Delivery>,
    pub next_seq: u64,
    pub evicted: u64,
}

impl Sim {
    pub fn new(config: SimConfig, clock: Clock) -> Result<Sim, String> {
        let sim = Sim {
            clock,
            faults: RwLock::new(config.faults.clone()),
            fault_counters: FaultCounters::default(),
            apps: RwLock::new(HashMap::new()),
            tokens: RwLock::new(HashMap::new()),
            oauth_tokens: RwLock::new(HashMap::new()),
            log: Mutex::new(DeliveryLog {
                entries: VecDeque::new(),
                next_seq: 1,
                evicted: 0,
            }),
            // Real msgids exceed 2^53; start above it so float parsing is caught.
            next_msgid: AtomicU64::new(3_428_411_849_815_982_087),
            next_generation: AtomicU64::new(80),
            settings: RwLock::new(SimConfig {
                apps: Vec::new(),
                ..config.clone()
            }),
        };
        for spec in config.apps {
            sim.add_app(spec)?;
        }
        Ok(sim)
    }

    pub fn settings(&self) -> std::sync::RwLockReadGuard<'_, SimConfig> {
        self.settings.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_app(&self, spec: AppSpec) -> Result<String, String> {
        if spec.appid.is_empty() || spec.secret.is_empty() {
            return Err("appid (corpid for WeCom) and secret are required".into());
        }
        if spec.kind == AppKind::Wecom && spec.agentid.is_none() {
            return Err("agentid is required for a WeCom app".into());
        }
        let key = spec.key();
        let mut apps = self.apps.write().unwrap_or_else(|p| p.into_inner());
        if apps.contains_key(&key) {
            return Err(format!("app {key} already exists"));
        }
        let app = App {
            key: key.clone(),
            kind: spec.kind,
            counters: Counters::default(),
            in_flight: AtomicU32::new(0),
            state: Mutex::new(AppState::new(spec, self.clock.now_ms())),
        };
        apps.insert(key.clone(), Arc::new(app));
        Ok(key)
    }

    pub fn app(&self, key: &str) -> Option<Arc<App>> {
        self.apps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// The OA/MP app with this appid.
    pub fn app_by_appid(&self, appid: &str) -> Option<Arc<App>> {
        self.app(appid).filter(|a| a.kind != AppKind::Wecom)
    }

    /// All WeCom apps of a corp.
    pub fn wecom_apps(&self, corpid: &str) -> Vec<Arc<App>> {
        let prefix = format!("{corpid}:");
        self.apps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|a| a.kind == AppKind::Wecom && a.key.starts_with(&prefix))
            .cloned()
            .collect()
    }

    pub fn all_apps(&self) -> Vec<Arc<App>> {
        let mut v: Vec<_> = self
            .apps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    pub fn next_msgid(&self) -> u64 {
        self.next_msgid.fetch_add(1, Relaxed)
    }

    /// Mints a token string with a numeric generation prefix, as WeChat's look (`83_…`).
    pub fn mint_token_string(&self) -> Arc<str> {
        let generation = self.next_generation.fetch_add(1, Relaxed);
        Arc::from(format!("{generation}_{}", random_chars(120)))
    }

    pub fn record_delivery(&self, mut d: Delivery) {
        let cap = self.settings().delivery_log_capacity;
        let mut log = lock(&self.log);
        d.seq = log.next_seq;
        log.next_seq += 1;
        if cap == 0 {
            log.evicted += 1;
            return;
        }
        while log.entries.len() >= cap {
            log.entries.pop_front();
            log.evicted += 1;
        }
        log.entries.push_back(d);
    }

    /// Forget tokens, counters (fault counters too), windows, overrides, deliveries, media, used
    /// codes and users' OAuth tokens; keep apps and settings.
    pub fn reset(&self) {
        let apps = self.all_apps();
        let now = self.clock.now_ms();
        let mut fresh = HashMap::new();
        for app in apps {
            let spec = lock(&app.state).spec.clone();
            let a = App {
                key: app.key.clone(),
                kind: app.kind,
                counters: Counters::default(),
                in_flight: AtomicU32::new(0),
                state: Mutex::new(AppState::new(spec, now)),
            };
            fresh.insert(app.key.clone(), Arc::new(a));
        }
        *self.apps.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        self.fault_counters.reset();
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.oauth_tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let mut log = lock(&self.log);
        log.entries.clear();
        log.evicted = 0;
    }
}

/// A stable hash of a delivery's identity: api, recipient, template or msgtype, and content.
pub(crate) fn fingerprint(api: &str, to: &str, kind: &str, content: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(api.as_bytes());
    h.write_u8(0);
    h.write(to.as_bytes());
    h.write_u8(0);
    h.write(kind.as_bytes());
    h.write_u8(0);
    // serde_json maps are sorted (no preserve_order), so equal content hashes equally. The JSON
    // is written to a buffer and hashed in one call rather than fed to the hasher token by token
    // (dozens of tiny writes); the hasher sees the same byte stream either way.
    let mut json = Vec::with_capacity(256);
    let _ = serde_json::to_writer(&mut json, content);
    h.write(&json);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follower_conventions() {
        assert_eq!(follow_by_convention("oUser_0001"), Follow::Follower);
        assert_eq!(follow_by_convention("o-unfollowed-1"), Follow::Unfollowed);
        assert_eq!(follow_by_convention("o-refused-1"), Follow::Refused);
        assert_eq!(follow_by_convention("o-restricted-1"), Follow::Restricted);
        assert_eq!(follow_by_convention("user1"), Follow::Unknown);
        assert_eq!(follow_by_convention("o1"), Follow::Unknown);
        assert_eq!(follow_by_convention("oUser 01"), Follow::Unknown);
    }

    #[test]
    fn fingerprint_ignores_key_order_but_not_content() {
        let a: Value = serde_json::from_str(r#"{"a":{"value":"1"},"b":{"value":"2"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":{"value":"2"},"a":{"value":"1"}}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"b":{"value":"3"},"a":{"value":"1"}}"#).unwrap();
        assert_eq!(
            fingerprint("t", "o1", "T", &a),
            fingerprint("t", "o1", "T", &b)
        );
        assert_ne!(
            fingerprint("t", "o1", "T", &a),
            fingerprint("t", "o1", "T", &c)
        );
        assert_ne!(
            fingerprint("t", "o1", "T", &a),
            fingerprint("t", "o2", "T", &a)
        );
    }
}
