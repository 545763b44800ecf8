//! What a simulated WeChat looks like: its apps, their secrets, limits and templates, and the
//! faults it injects. Everything has a default so `SimConfig::default()` is a working demo world.
//!
//! Conventions a test can rely on without any set-up (each can be overridden per openid or user
//! through the control API):
//! - **OA followers / MP users.** An openid is known when it starts with `o` and is at least 6
//!   characters of `[A-Za-z0-9_-]`; anything else answers 40003. Known openids follow the account,
//!   except `o-unfollowed-*` (43004), `o-refused-*` (48002 on OA, 43101 on MP) and
//!   `o-restricted-*` (50002).
//! - **MP one-time credits.** Each (openid, one-time template) starts with `default_credits`
//!   (default 1); each accepted send uses one; none left answers 43101.
//! - **WeCom directory.** Every userid is a member except those starting with `invalid`
//!   (reported in `invaliduser`) and those starting with `unlicensed` (reported in
//!   `unlicenseduser`, not delivered). Party and tag ids 1..=9999 exist; others are invalid.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// The whole simulated world.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Where the binary listens; `start` binds it (port 0 = any free port).
    pub listen: SocketAddr,
    pub apps: Vec<AppSpec>,
    pub faults: Faults,
    /// Lifetime of every token, seconds (WeChat: 7200).
    pub token_ttl_secs: i64,
    /// How long a superseded classic token keeps working, seconds (WeChat: 300).
    pub overlap_secs: i64,
    /// `client_msg_id` dedupe window for OA template sends, seconds (WeChat: 600).
    pub dedupe_window_secs: i64,
    /// How many deliveries the in-memory log keeps (oldest dropped first; counters stay exact).
    pub delivery_log_capacity: usize,
    /// Take the client IP from `X-Forwarded-For` instead of the socket (for allowlist tests).
    pub trust_forwarded_for: bool,
    /// WeCom `gettoken` repeat fetches: `remaining` lifetime (default) or a fixed 7200.
    pub wecom_expires_in: WecomExpiresIn,
    /// A stable-token `force_refresh` within 30 s of the last one: return the current token
    /// unchanged (default, WeChat's likely behaviour) or refresh anyway.
    pub force_refresh_within_30s: ForceWithin30s,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            apps: demo_apps(),
            faults: Faults::default(),
            token_ttl_secs: 7200,
            overlap_secs: 300,
            dedupe_window_secs: 600,
            delivery_log_capacity: 200_000,
            trust_forwarded_for: false,
            wecom_expires_in: WecomExpiresIn::Remaining,
            force_refresh_within_30s: ForceWithin30s::Unchanged,
        }
    }
}

impl SimConfig {
    /// A world with no apps, for tests that register exactly what they need.
    pub fn empty() -> Self {
        SimConfig {
            apps: Vec::new(),
            ..SimConfig::default()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WecomExpiresIn {
    Remaining,
    Fixed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForceWithin30s {
    Unchanged,
    Refresh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    OfficialAccount,
    MiniProgram,
    Wecom,
}

/// One simulated app. For WeCom, `appid` is the corpid and `agentid` is required.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppSpec {
    pub kind: AppKind,
    pub appid: String,
    pub secret: String,
    pub agentid: Option<i64>,
    /// The owner froze the AppSecret: token fetches answer 40243.
    pub frozen: bool,
    /// When set, only these client IPs may fetch tokens (OA/MP: 40164) or call business APIs
    /// (WeCom: 60020).
    pub ip_whitelist: Option<Vec<IpAddr>>,
    /// `GET /cgi-bin/token` calls per day (WeChat OA: 2000) → 45009.
    pub token_daily_limit: u32,
    /// Optional per-minute cap on `GET /cgi-bin/token` → 45011.
    pub token_minute_limit: Option<u32>,
    /// `stable_token` caps: 10,000 a minute and 500,000 a day → 45009.
    pub stable_minute_limit: u32,
    pub stable_daily_limit: u32,
    /// `force_refresh:true` calls per day (WeChat: 20) → 45009.
    pub force_daily_limit: u32,
    /// Sends per day: OA template 100,000; MP subscribe 10,000,000; WeCom person-times
    /// (seats × 200) 100,000. `None` uses the kind's default.
    pub send_daily_limit: Option<u64>,
    /// Optional per-app send rate (per second) → 45011 on OA/MP, 45009 on WeCom.
    pub send_rate_per_sec: Option<u32>,
    /// Optional cap on sends in flight at once for this app → 45033 (WeCom) / -1 (OA/MP).
    pub max_concurrent_sends: Option<u32>,
    pub templates: Vec<TemplateSpec>,
    /// MP pages of the released version; when set, a `page` outside it answers 41030.
    pub pages: Option<Vec<String>>,
    /// Credits each (openid, one-time template) starts with (MP).
    pub default_credits: u32,
    /// WeCom per-member limits: beyond them a send is accepted but not delivered.
    pub member_minute_limit: u32,
    pub member_hour_limit: u32,
}

impl Default for AppSpec {
    fn default() -> Self {
        AppSpec {
            kind: AppKind::OfficialAccount,
            appid: String::new(),
            secret: String::new(),
            agentid: None,
            frozen: false,
            ip_whitelist: None,
            token_daily_limit: 2000,
            token_minute_limit: None,
            stable_minute_limit: 10_000,
            stable_daily_limit: 500_000,
            force_daily_limit: 20,
            send_daily_limit: None,
            send_rate_per_sec: None,
            max_concurrent_sends: None,
            templates: Vec::new(),
            pages: None,
            default_credits: 1,
            member_minute_limit: 30,
            member_hour_limit: 1000,
        }
    }
}

impl AppSpec {
    /// The key the simulator files this app under: the appid, or `corpid:agentid` for WeCom.
    pub fn key(&self) -> String {
        match (self.kind, self.agentid) {
            (AppKind::Wecom, Some(agent)) => format!("{}:{}", self.appid, agent),
            _ => self.appid.clone(),
        }
    }

    pub fn daily_send_limit(&self) -> u64 {
        self.send_daily_limit.unwrap_or(match self.kind {
            AppKind::OfficialAccount => 100_000,
            AppKind::MiniProgram => 10_000_000,
            AppKind::Wecom => 100_000,
        })
    }

    /// An OA with the given credentials and the demo templates.
    pub fn official_account(appid: &str, secret: &str) -> Self {
        AppSpec {
            kind: AppKind::OfficialAccount,
            appid: appid.into(),
            secret: secret.into(),
            templates: vec![
                TemplateSpec::legacy("TPL_LEGACY", &["keyword1", "keyword2", "keyword3"]),
                TemplateSpec::typed(
                    "TPL_ORDER",
                    &["thing1", "amount2", "time3", "character_string4"],
                ),
            ],
            ..AppSpec::default()
        }
    }

    /// A Mini Program with the given credentials and the demo templates.
    pub fn mini_program(appid: &str, secret: &str) -> Self {
        AppSpec {
            kind: AppKind::MiniProgram,
            appid: appid.into(),
            secret: secret.into(),
            templates: vec![
                TemplateSpec::typed("TPL_SUB", &["thing1", "time2", "phrase3", "amount4"]),
                TemplateSpec {
                    subscription: Subscription::LongTerm,
                    ..TemplateSpec::typed("TPL_LONG", &["thing1", "date2"])
                },
            ],
            ..AppSpec::default()
        }
    }

    /// A WeCom self-built app.
    pub fn wecom(corpid: &str, agentid: i64, secret: &str) -> Self {
        AppSpec {
            kind: AppKind::Wecom,
            appid: corpid.into(),
            secret: secret.into(),
            agentid: Some(agentid),
            ..AppSpec::default()
        }
    }
}

/// The demo world: one OA, one MP, one WeCom app. `wxgate serve --demo` registers the same.
pub fn demo_apps() -> Vec<AppSpec> {
    vec![
        AppSpec::official_account("wxdemo_oa", "demo-oa-secret"),
        AppSpec::mini_program("wxdemo_mp", "demo-mp-secret"),
        AppSpec::wecom("wwdemo_corp", 1_000_002, "demo-wecom-secret"),
    ]
}

/// How a template's data is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateStyle {
    /// OA legacy template: values over 20 characters are cut with "…"; `first`/`remark` dropped.
    Legacy,
    /// Category / subscribe template: every keyword is checked by its type (47003 on a breach).
    Typed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subscription {
    OneTime,
    LongTerm,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    pub id: String,
    #[serde(default = "typed")]
    pub style: TemplateStyle,
    #[serde(default = "one_time")]
    pub subscription: Subscription,
    /// The keyword names (`thing1`, `time2`…); each one must be present and non-empty.
    #[serde(default)]
    pub keywords: Vec<String>,
}

fn typed() -> TemplateStyle {
    TemplateStyle::Typed
}
fn one_time() -> Subscription {
    Subscription::OneTime
}

impl TemplateSpec {
    pub fn typed(id: &str, keywords: &[&str]) -> Self {
        TemplateSpec {
            id: id.into(),
            style: TemplateStyle::Typed,
            subscription: Subscription::OneTime,
            keywords: keywords.iter().map(|k| k.to_string()).collect(),
        }
    }
    pub fn legacy(id: &str, keywords: &[&str]) -> Self {
        TemplateSpec {
            style: TemplateStyle::Legacy,
            ..TemplateSpec::typed(id, keywords)
        }
    }
}

/// Which endpoints a fault applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultScope {
    #[default]
    All,
    Token,
    Send,
}

/// Injected faults. Rates are probabilities in 0..=1 applied per request, in this order:
/// latency, hang, drop, 502, busy; then the request runs; then lost reply.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every reply, plus up to `jitter_ms` more.
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// Answer `{"errcode":-1,"errmsg":"system error"}` without doing anything.
    pub busy_rate: f64,
    /// Answer HTTP 502 without doing anything.
    pub http_502_rate: f64,
    /// Close the connection before doing anything.
    pub drop_rate: f64,
    /// Do the work (a send is delivered), then close the connection instead of replying.
    pub lost_reply_rate: f64,
    /// Hold the request for `hang_ms`, then close the connection without doing anything.
    pub hang_rate: f64,
    pub hang_ms: u64,
    pub scope: FaultScope,
}

impl Faults {
    pub fn is_quiet(&self) -> bool {
        self.latency_ms == 0
            && self.jitter_ms == 0
            && self.busy_rate == 0.0
            && self.http_502_rate == 0.0
            && self.drop_rate == 0.0
            && self.lost_reply_rate == 0.0
            && self.hang_rate == 0.0
    }
}
