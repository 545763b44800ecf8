//! Configuration: defaults → `wxgate.toml` → `WXGATE_*` environment, validated at start-up.
//!
//! Every key has a default, so `wxgate serve` runs with no file and no variables. Errors name
//! the key and where its value came from (`WXGATE_LISTEN / key `listen`: ...`). Secrets are
//! `SecretString`s: `Debug` hides them and `Serialize` writes `"[redacted]"`, so the serialized
//! form of a `Config` is the `check-config` output and can never leak a secret.

mod env;
mod roles;
mod serde_util;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Data, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use env::EnvVars;
pub use roles::Roles;
use serde_util::{redact_url, redacted, redacted_opt, redacted_url_opt};

/// Config file read when `--config` / `WXGATE_CONFIG` is not given (skipped if missing).
pub const DEFAULT_CONFIG_FILE: &str = "wxgate.toml";

/// The gateway's configuration. Unknown keys in the file are errors (typos fail loudly).
///
/// `Serialize` produces the redacted view (it only feeds the defaults layer and
/// `check-config`), so serializing a `Config` to hand it elsewhere would lose its secrets.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    /// The WeChat-compatible listener for existing SDKs (proxy mode); unset = off.
    pub proxy_listen: Option<SocketAddr>,
    pub proxy: ProxyConfig,
    #[serde(serialize_with = "redact_url")]
    pub database_url: String,
    /// Connections per instance to a PostgreSQL store (SQLite keeps one).
    pub database_pool_size: u32,
    /// A PostgreSQL statement running longer than this is cancelled by the server.
    #[serde(with = "serde_util::duration")]
    pub database_statement_timeout: Duration,
    #[serde(serialize_with = "redacted_url_opt")]
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key and of the events channel. Instances that share tokens must
    /// use the same prefix; environments that must not (test and prod on one Redis) must not.
    pub redis_prefix: String,
    pub wechat_api_base: ApiBase,
    pub wecom_api_base: ApiBase,
    #[serde(serialize_with = "redacted_opt")]
    pub admin_token: Option<SecretString>,
    #[serde(serialize_with = "redacted_opt")]
    pub master_key: Option<SecretString>,
    pub master_key_file: PathBuf,
    pub log_format: LogFormat,
    /// What this instance runs: the API, delivery workers, token refreshers (default all).
    pub roles: Roles,
    pub token: TokenSettings,
    pub push: PushConfig,
    pub apps: Vec<AppConfig>,
}

/// How messages are delivered (see `push::PushSettings` for what each does).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// A claimed message not finished within this is claimed again (after a crash, say).
    #[serde(with = "serde_util::duration")]
    pub lease: Duration,
    /// Sends at once per app.
    pub per_app_concurrency: usize,
    /// Sends per second per app; 0 = no limit.
    pub per_app_rate: u32,
    /// Attempts at a transient failure before the message fails.
    pub max_attempts: u32,
    /// Per call to WeChat.
    #[serde(with = "serde_util::duration")]
    pub send_timeout: Duration,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            lease: Duration::from_secs(60),
            per_app_concurrency: 256,
            per_app_rate: 0,
            max_attempts: 5,
            send_timeout: Duration::from_secs(10),
        }
    }
}

/// Proxy mode (`proxy_listen`): how calls from SDKs are forwarded to WeChat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Request bodies up to this many bytes are kept, so that a call whose token WeChat
    /// refused can be replayed with the new one; larger bodies are streamed through once.
    pub replay_body_limit: usize,
    /// Per forwarded call, from the request to the end of WeChat's answer (media can be big).
    #[serde(with = "serde_util::duration")]
    pub timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            replay_body_limit: 2 * 1024 * 1024,
            timeout: Duration::from_secs(60),
        }
    }
}

/// How tokens are refreshed and how much upstream quota each app may spend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSettings {
    /// Refresh this long before expiry.
    #[serde(with = "serde_util::duration")]
    pub refresh_ahead: Duration,
    /// Random extra added to `refresh_ahead` so instances and apps do not refresh in lockstep.
    #[serde(with = "serde_util::duration")]
    pub refresh_jitter: Duration,
    /// Never hand out a token with less than this to live.
    #[serde(with = "serde_util::duration")]
    pub min_ttl: Duration,
    /// Upstream token fetches allowed per app per day (WeChat's limit is 2000).
    pub daily_fetch_budget: u32,
    #[serde(with = "serde_util::duration")]
    pub fetch_timeout: Duration,
    /// Retries of a fetch that failed with errcode -1 or a transport error.
    pub fetch_retries: u32,
    /// Fleet mode: how long one instance holds an app's fetch lock before another may take
    /// over. A holder that dies costs at most this long; a live holder extends it per retry.
    #[serde(with = "serde_util::duration")]
    pub lock_lease: Duration,
    /// Fleet mode: how long a caller waits for another instance's fetch before it gets a
    /// `wechat_unavailable` error.
    #[serde(with = "serde_util::duration")]
    pub lock_wait: Duration,
}

/// One WeChat account: an Official Account, a Mini Program or a WeCom application.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Our name for the app, used in URLs: `[a-z0-9_-]{1,64}`.
    pub id: String,
    pub kind: AppKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpid: Option<String>,
    #[serde(serialize_with = "redacted")]
    pub secret: SecretString,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agentid: Option<i64>,
    #[serde(default)]
    pub token_api: TokenApi,
    /// Overrides `token.daily_fetch_budget` for this app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_fetch_budget: Option<u32>,
    /// Proxy mode: the token endpoints also take this app's real secret in the secret slot,
    /// not only a wxgate key (a first migration step; off by default, see the README).
    #[serde(default)]
    pub proxy_accepts_secret: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    OfficialAccount,
    MiniProgram,
    Wecom,
}

/// Which OA/MP token endpoint to use. `stable` (`/cgi-bin/stable_token`) does not invalidate
/// tokens fetched elsewhere; `classic` (`/cgi-bin/token`) does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenApi {
    #[default]
    Stable,
    Classic,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Base URL of an upstream API: `http(s)://host[:port]`, no path, no trailing slash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ApiBase(String);

/// A configuration value that is wrong, where it came from, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where the value came from: `WXGATE_LISTEN`, a file path, or `None` for a default.
    pub origin: Option<String>,
    /// Key path, e.g. `listen`, `token.min_ttl`, `apps[0].agentid`.
    pub key: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "config file {} does not exist (given by --config or WXGATE_CONFIG); create it, or leave \
         the option out to run on defaults and WXGATE_* variables",
        .0.display()
    )]
    MissingFile(PathBuf),
    #[error("invalid configuration{}", list(.0))]
    Invalid(Vec<Problem>),
}

/// Loads the configuration from `path` (or `wxgate.toml` if present) and the process
/// environment, then validates it.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    load_from(figment(path, EnvVars::from_process())?)
}

/// Builds the layered figment: defaults, then the TOML file, then `env`.
///
/// An explicitly given `path` must exist; the default `wxgate.toml` is skipped when missing.
/// The file is looked up exactly where given, never in parent directories.
pub fn figment(path: Option<&Path>, env: EnvVars) -> Result<Figment, ConfigError> {
    let file = match path {
        Some(p) if !p.exists() => return Err(ConfigError::MissingFile(p.to_path_buf())),
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
    };
    Ok(layers(file.map(Toml::file_exact), env))
}

/// Defaults, then `file` if any, then `env`: later layers win.
fn layers(file: Option<Data<Toml>>, env: EnvVars) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(file) = file {
        figment = figment.merge(file);
    }
    figment.merge(env)
}

/// Extracts and validates a `Config`; problems name the key and the source of its value.
pub fn load_from(figment: Figment) -> Result<Config, ConfigError> {
    // Lossy: env values arrive as strings, so "1800" must still fill a `u32`.
    let config: Config = figment.extract_lossy().map_err(|err| {
        ConfigError::Invalid(err.into_iter().map(serde_util::problem_from).collect())
    })?;
    match config.validate() {
        Ok(()) => Ok(config),
        Err(ConfigError::Invalid(mut problems)) => {
            for p in &mut problems {
                p.origin = serde_util::origin_of(&figment, &p.key);
            }
            Err(ConfigError::Invalid(problems))
        }
        Err(other) => Err(other),
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            proxy_listen: None,
            proxy: ProxyConfig::default(),
            database_url: "sqlite://wxgate.db".into(),
            database_pool_size: 16,
            database_statement_timeout: Duration::from_secs(30),
            redis_url: None,
            redis_prefix: "wxgate".into(),
            wechat_api_base: ApiBase("https://api.weixin.qq.com".into()),
            wecom_api_base: ApiBase("https://qyapi.weixin.qq.com".into()),
            admin_token: None,
            master_key: None,
            master_key_file: PathBuf::from("wxgate.key"),
            log_format: LogFormat::Text,
            roles: Roles::default(),
            token: TokenSettings::default(),
            push: PushConfig::default(),
            apps: Vec::new(),
        }
    }
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            refresh_ahead: Duration::from_secs(600),
            refresh_jitter: Duration::from_secs(60),
            min_ttl: Duration::from_secs(60),
            daily_fetch_budget: 1800,
            fetch_timeout: Duration::from_secs(10),
            fetch_retries: 3,
            lock_lease: Duration::from_secs(15),
            lock_wait: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Fleet mode: several instances coordinate through Redis.
    pub fn is_fleet(&self) -> bool {
        self.redis_url.is_some()
    }

    /// How the store connects.
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            pool_size: self.database_pool_size,
            statement_timeout: self.database_statement_timeout,
            ..crate::store::StoreOptions::default()
        }
    }

    /// The merged configuration with every secret replaced by `"[redacted]"`.
    pub fn redacted(&self) -> serde_json::Value {
        serde_json::to_value(self)
            .unwrap_or_else(|e| serde_json::json!({ "error": format!("cannot render: {e}") }))
    }
}

impl AppConfig {
    /// The daily upstream fetch budget for this app.
    pub fn fetch_budget(&self, defaults: &TokenSettings) -> u32 {
        self.daily_fetch_budget
            .unwrap_or(defaults.daily_fetch_budget)
    }
}

impl ApiBase {
    /// `self` followed by `path`, e.g. `url("/cgi-bin/token")`.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{path}", self.0)
        } else {
            format!("{}/{path}", self.0)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ApiBase {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        const HINT: &str = "give only scheme, host and optional port, e.g. http://127.0.0.1:9000";
        let trimmed = value.trim().strip_suffix('/').unwrap_or(value.trim());
        let lower = trimmed.to_ascii_lowercase();
        let Some((scheme, rest)) = lower.split_once("://") else {
            return Err(format!("{value:?} is not a URL; {HINT}"));
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "scheme {scheme:?} is not supported, use http or https; {HINT}"
            ));
        }
        if rest.contains('@') {
            return Err(format!("must not contain user:password@; {HINT}"));
        }
        if let Some(i) = rest.find(['/', '?', '#']) {
            return Err(format!(
                "must not contain a path or query (found {:?}); {HINT}",
                &rest[i..]
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.starts_with('[') || h.ends_with(']') => (h, Some(p)),
            _ => (rest, None),
        };
        let host_ok = !host.is_empty()
            && (host.starts_with('[') && host.ends_with(']')
                || host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
        if !host_ok {
            return Err(format!("host {host:?} is not valid; {HINT}"));
        }
        if let Some(p) = port
            && !matches!(p.parse::<u16>(), Ok(n) if n > 0)
        {
            return Err(format!("port {p:?} is not a number in 1..=65535; {HINT}"));
        }
        Ok(ApiBase(format!("{scheme}://{rest}")))
    }
}

impl From<ApiBase> for String {
    fn from(value: ApiBase) -> String {
        value.0
    }
}

impl fmt::Display for ApiBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for AppKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AppKind::OfficialAccount => "official_account",
            AppKind::MiniProgram => "mini_program",
            AppKind::Wecom => "wecom",
        })
    }
}

impl fmt::Display for TokenApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenApi::Stable => "stable",
            TokenApi::Classic => "classic",
        })
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Shows the redacted form, so a `{:?}` in a log line cannot leak a password.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Config {}", self.redacted())
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.origin, self.key.is_empty()) {
            (Some(origin), true) => write!(f, "{origin}: {}", self.message),
            (Some(origin), false) => write!(f, "{origin} / key `{}`: {}", self.key, self.message),
            (None, _) => write!(f, "key `{}`: {}", self.key, self.message),
        }
    }
}

fn list(problems: &[Problem]) -> String {
    match problems {
        [one] => format!(": {one}"),
        many => {
            let items: String = many.iter().map(|p| format!("\n  - {p}")).collect();
            format!(" ({} problems):{items}", many.len())
        }
    }
}
