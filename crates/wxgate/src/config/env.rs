//! The `WXGATE_*` environment as a figment provider.
//!
//! Unlike `figment::providers::Env`, values are kept as the exact strings given (a numeric
//! admin token stays a string; `load_from` extracts lossily so "1800" still fills a number);
//! only values that parse as a TOML array or table (`WXGATE_APPS=[{...}]`) are parsed.
//! `__` separates nested keys (`WXGATE_TOKEN__MIN_TTL`). Variables whose first key is not a
//! config key (`WXGATE_CONFIG`, `WXGATE_TEST_REDIS_URL`) are ignored. Tests build one from
//! pairs instead of the process environment, so they never mutate it.

use std::sync::Arc;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

const PREFIX: &str = "WXGATE_";
pub(super) const NAME: &str = "environment";

/// Top-level keys of `Config` (checked against `Config` by a test).
pub(super) const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "proxy_listen",
    "proxy",
    "database_url",
    "database_pool_size",
    "database_statement_timeout",
    "redis_url",
    "redis_prefix",
    "wechat_api_base",
    "wecom_api_base",
    "admin_token",
    "master_key",
    "master_key_file",
    "log_format",
    "roles",
    "token",
    "push",
    "apps",
];

/// `WXGATE_*` variables as (key path, raw value), e.g. (["token", "min_ttl"], "30s").
#[derive(Clone, Debug, Default)]
pub struct EnvVars {
    vars: Vec<(Vec<String>, Result<String, String>)>,
}

impl EnvVars {
    pub fn from_process() -> Self {
        Self::collect(std::env::vars_os().filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            let v = v
                .into_string()
                .map_err(|_| format!("{k} is not valid UTF-8"));
            Some((k, v))
        }))
    }

    /// From (name, value) pairs with the full names, e.g. `("WXGATE_LISTEN", "0.0.0.0:80")`.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self::collect(pairs.into_iter().map(|(k, v)| (k.into(), Ok(v.into()))))
    }

    fn collect(pairs: impl Iterator<Item = (String, Result<String, String>)>) -> Self {
        let mut vars: Vec<_> = pairs
            .filter_map(|(name, value)| {
                let rest = name
                    .get(..PREFIX.len())?
                    .eq_ignore_ascii_case(PREFIX)
                    .then(|| name[PREFIX.len()..].to_ascii_lowercase())?;
                let path: Vec<String> = rest.split("__").map(str::to_owned).collect();
                let known = TOP_LEVEL_KEYS.contains(&path[0].as_str());
                (known && path.iter().all(|s| !s.is_empty())).then_some((path, value))
            })
            .collect();
        // Deterministic: a parent key (WXGATE_TOKEN) is applied before its children.
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        EnvVars { vars }
    }
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        let defined: Arc<Vec<Vec<String>>> =
            Arc::new(self.vars.iter().map(|(p, _)| p.clone()).collect());
        Metadata::named(NAME).interpolater(move |_: &Profile, keys: &[&str]| {
            // Name the variable that set this key (or its parent, e.g. WXGATE_APPS).
            let n = defined
                .iter()
                .filter(|d| d.len() <= keys.len() && d.iter().zip(keys).all(|(a, b)| a == b))
                .map(Vec::len)
                .max()
                .unwrap_or(keys.len());
            format!("{PREFIX}{}", keys[..n].join("__").to_ascii_uppercase())
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (path, value) in &self.vars {
            let raw = value
                .as_ref()
                .map_err(|e| figment::Error::from(e.clone()))?;
            let value = match raw.parse::<Value>() {
                Ok(v @ (Value::Array(..) | Value::Dict(..))) => v,
                _ => Value::from(raw.clone()),
            };
            insert(&mut dict, path, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn insert(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Dict::new().into());
            if entry.as_dict().is_none() {
                *entry = Dict::new().into();
            }
            if let Value::Dict(_, child) = entry {
                insert(child, rest, value);
            }
        }
    }
}
