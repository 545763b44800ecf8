//! Checks that types alone cannot express: URL schemes, ranges, fields that belong together,
//! duplicate apps. Every message names the key and says how to fix it, and never quotes a
//! secret. `AppConfig::validate` is shared with the HTTP API.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::{AppConfig, AppKind, Config, ConfigError, Problem, TokenSettings};

/// WeChat lets an account fetch about 2000 tokens a day; this is the most we allow per app.
const MAX_DAILY_FETCH_BUDGET: u32 = 100_000;
/// A WeChat / WeCom access token lives 7200 s.
const TOKEN_LIFETIME: Duration = Duration::from_secs(7200);

const DATABASE_SCHEMES: &[&str] = &["sqlite:", "postgres://", "postgresql://"];
const DATABASE_HELP: &str =
    "unsupported URL; use sqlite://PATH (embedded) or postgres://USER:PASSWORD@HOST/DB (fleet)";
const REDIS_SCHEMES: &[&str] = &["redis://", "rediss://", "redis+unix://", "unix://"];
const REDIS_HELP: &str = "unsupported URL; use redis://[:PASSWORD@]HOST[:PORT][/DB], rediss:// \
                          for TLS, or leave it unset to run embedded";
const ADMIN_TOKEN_HELP: &str =
    "must be non-empty and contain no whitespace; unset it to disable the admin token";
const APPID_HELP: &str =
    "the AppID, like wx0123456789abcdef, from the Basic configuration page of the WeChat platform";
const CORPID_HELP: &str =
    "the CorpID, like ww0123456789abcdef, from My Company > Company Information in the WeCom admin";
const AGENTID_HELP: &str = "the integer AgentId shown on the app's page in the WeCom admin";

/// (field, message) pairs; the caller adds the path prefix.
type Problems = Vec<(&'static str, String)>;

impl Config {
    /// Checks the whole configuration and reports every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut out: Vec<Problem> = Vec::new();
        let mut bad = |key: String, message: String| {
            let origin = None;
            out.push(Problem {
                origin,
                key,
                message,
            });
        };
        if !has_scheme(&self.database_url, DATABASE_SCHEMES) {
            bad("database_url".into(), DATABASE_HELP.into());
        }
        if !(1..=1000).contains(&self.database_pool_size) {
            let message = "use 1..=1000 connections per instance; the default is 16";
            bad("database_pool_size".into(), message.into());
        }
        if self.database_statement_timeout < Duration::from_secs(1) {
            let message = "must be at least 1s (a big campaign's insert runs as one statement                            per 2,000 rows); the default is 30s";
            bad("database_statement_timeout".into(), message.into());
        }
        if !is_prefix(&self.redis_prefix) {
            let message = "use 1 to 64 of [A-Za-z0-9_.-], e.g. \"wxgate\" or \"wxgate-staging\"";
            bad("redis_prefix".into(), message.into());
        }
        let redis = self.redis_url.as_ref().map(|u| u.expose_secret());
        if redis.is_some_and(|url| !has_scheme(url, REDIS_SCHEMES)) {
            bad("redis_url".into(), REDIS_HELP.into());
        }
        let admin = self.admin_token.as_ref().map(|t| t.expose_secret());
        if admin.is_some_and(|t| t.is_empty() || t.chars().any(char::is_whitespace)) {
            bad("admin_token".into(), ADMIN_TOKEN_HELP.into());
        }
        if self.push.lease < Duration::from_secs(5) {
            bad(
                "push.lease".into(),
                "must be at least 5s (longer than a send); the default is 60s".into(),
            );
        }
        if self.push.per_app_concurrency == 0 || self.push.per_app_concurrency > 4096 {
            bad(
                "push.per_app_concurrency".into(),
                "use 1..=4096; the default is 256".into(),
            );
        }
        if self.push.max_attempts == 0 || self.push.max_attempts > 50 {
            bad(
                "push.max_attempts".into(),
                "use 1..=50; the default is 5".into(),
            );
        }
        if self.push.send_timeout.is_zero() || self.push.send_timeout >= self.push.lease {
            bad(
                "push.send_timeout".into(),
                "must be more than 0 and less than push.lease".into(),
            );
        }
        for (field, message) in self.token.problems() {
            bad(format!("token.{field}"), message);
        }
        for (i, app) in self.apps.iter().enumerate() {
            for (field, message) in app.problems() {
                bad(format!("apps[{i}].{field}"), message);
            }
            let earlier = &self.apps[..i];
            if let Some(j) = earlier.iter().position(|a| a.id == app.id) {
                let id = &app.id;
                let message = format!("{id:?} is already used by apps[{j}]; ids must be unique");
                bad(format!("apps[{i}].id"), message);
            } else if let Some(j) = earlier.iter().position(|a| same_account(a, app)) {
                let field = match app.kind {
                    AppKind::Wecom => "agentid",
                    _ => "appid",
                };
                let other = &self.apps[j].id;
                let message = format!(
                    "same account as apps[{j}] ({other:?}); two entries would fetch competing \
                     tokens, keep one"
                );
                bad(format!("apps[{i}].{field}"), message);
            }
        }
        if out.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(out))
        }
    }
}

impl TokenSettings {
    fn problems(&self) -> Problems {
        let show = |d: Duration| humantime::format_duration(d).to_string();
        let (ahead, jitter) = (show(self.refresh_ahead), show(self.refresh_jitter));
        let mut out = Problems::new();
        if self.min_ttl >= self.refresh_ahead {
            let message = format!(
                "must be less than token.refresh_ahead ({ahead}), or tokens would be withheld \
                 before they are refreshed"
            );
            out.push(("min_ttl", message));
        }
        if self.refresh_ahead + self.refresh_jitter >= TOKEN_LIFETIME {
            let message = format!(
                "refresh_ahead + refresh_jitter ({ahead} + {jitter}) must be under the 2h a \
                 token lives; the default is 10m"
            );
            out.push(("refresh_ahead", message));
        }
        if let Some(message) = budget_problem(self.daily_fetch_budget) {
            out.push(("daily_fetch_budget", message));
        }
        if self.fetch_timeout.is_zero() {
            out.push(("fetch_timeout", "must be more than 0, e.g. \"10s\"".into()));
        }
        if self.fetch_retries > 10 {
            let n = self.fetch_retries;
            let message = format!("{n} is too many (at most 10); retries spend the token quota");
            out.push(("fetch_retries", message));
        }
        if self.lock_lease < Duration::from_secs(1) {
            let message = "must be at least 1s; the default is 15s".to_string();
            out.push(("lock_lease", message));
        }
        if self.lock_wait < self.lock_lease {
            let lease = show(self.lock_lease);
            let message = format!(
                "must be at least token.lock_lease ({lease}), so a caller outlives a crashed \
                 lock holder; the default is 30s"
            );
            out.push(("lock_wait", message));
        }
        out
    }
}

impl AppConfig {
    /// Checks the fields that belong together. The error lists every problem as
    /// `field: what is wrong (how to fix it)`, separated by `; `.
    pub fn validate(&self) -> Result<(), String> {
        let problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        let parts: Vec<String> = problems.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        Err(parts.join("; "))
    }

    pub(crate) fn problems(&self) -> Problems {
        let mut out = Problems::new();
        let kind = self.kind;
        if !valid_id(&self.id) {
            let shown: String = self.id.chars().take(80).collect();
            let message = format!(
                "must be 1-64 characters from a-z, 0-9, '_' and '-' (got {shown:?}); it appears \
                 in URLs like /v1/apps/ID/token"
            );
            out.push(("id", message));
        }
        // OA/MP are identified by appid, WeCom apps by corpid (+ agentid).
        let (needed, help, have, unused, other) = match kind {
            AppKind::Wecom => ("corpid", CORPID_HELP, &self.corpid, "appid", &self.appid),
            _ => ("appid", APPID_HELP, &self.appid, "corpid", &self.corpid),
        };
        match have.as_deref() {
            None => out.push((needed, format!("required for kind \"{kind}\" ({help})"))),
            Some(v) if !is_token(v) => {
                out.push((
                    needed,
                    format!("{v:?} is empty or contains whitespace ({help})"),
                ));
            }
            Some(_) => {}
        }
        if other.is_some() {
            let message =
                format!("not used by kind \"{kind}\"; remove it (this kind uses {needed})");
            out.push((unused, message));
        }
        match (kind, self.agentid) {
            (AppKind::Wecom, None) => {
                out.push((
                    "agentid",
                    format!("required for kind \"{kind}\" ({AGENTID_HELP})"),
                ));
            }
            (AppKind::Wecom, Some(a)) if a <= 0 => {
                out.push((
                    "agentid",
                    format!("{a} is not an AgentId; use {AGENTID_HELP}"),
                ));
            }
            (AppKind::Wecom, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                let message = format!("not used by kind \"{kind}\"; remove it (WeCom apps only)");
                out.push(("agentid", message));
            }
        }
        let secret = self.secret.expose_secret();
        if secret.is_empty() {
            let message = "must not be empty (the AppSecret / app Secret from the admin console)";
            out.push(("secret", message.into()));
        } else if !is_token(secret) {
            let message = "contains whitespace; check for a stray space or newline when pasting it";
            out.push(("secret", message.into()));
        }
        if let Some(message) = self.daily_fetch_budget.and_then(budget_problem) {
            out.push(("daily_fetch_budget", message));
        }
        out
    }
}

fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    schemes.iter().any(|s| url.starts_with(s))
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// Non-empty, without whitespace or control characters.
/// A Redis key prefix: no braces (they would break the per-app hash tag), spaces or colons.
fn is_prefix(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn budget_problem(budget: u32) -> Option<String> {
    let max = MAX_DAILY_FETCH_BUDGET;
    (!(1..=max).contains(&budget)).then(|| {
        format!(
            "{budget} is out of range; use 1..={max} (WeChat allows about 2000 token fetches a \
             day; the default 1800 stays below that)"
        )
    })
}

/// Two entries that would fetch tokens for the same upstream account.
fn same_account(a: &AppConfig, b: &AppConfig) -> bool {
    match (a.kind, b.kind) {
        (AppKind::Wecom, AppKind::Wecom) => {
            a.corpid.is_some() && a.corpid == b.corpid && a.agentid == b.agentid
        }
        (AppKind::Wecom, _) | (_, AppKind::Wecom) => false,
        _ => a.appid.is_some() && a.appid == b.appid,
    }
}
