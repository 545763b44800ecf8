//! Serde helpers for `Config`: redacting serializers, humantime durations, and turning
//! figment errors into `Problem`s that name the key and the variable or file it came from.

use figment::error::{Error, Kind};
use figment::{Figment, Profile};
use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;

use super::Problem;
use super::env;

const REDACTED: &str = "[redacted]";
/// Keys whose values must never appear in an error message.
const SECRET_KEYS: &[&str] = &[
    "secret",
    "admin_token",
    "master_key",
    "redis_url",
    "database_url",
];

pub(super) fn redacted<S: Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(REDACTED)
}

pub(super) fn redacted_opt<S: Serializer>(
    v: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some(REDACTED),
        None => s.serialize_none(),
    }
}

pub(super) fn redacted_url_opt<S: Serializer>(
    v: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(url) => s.serialize_some(&redact_password(url.expose_secret())),
        None => s.serialize_none(),
    }
}

pub(super) fn redact_url<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_password(v))
}

/// Replaces the password in `scheme://user:password@host/...` and secret-looking query
/// parameters (`?password=...`) with `[redacted]`. A user part without `:` is redacted
/// whole, since some clients take `scheme://password@host`.
pub(super) fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains('@') {
            REDACTED.into()
        } else {
            url.into()
        };
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:{REDACTED}@{host}"),
            None => format!("{REDACTED}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if is_secret_param(k) => format!("{k}={REDACTED}"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "secret", "token", "key"]
        .iter()
        .any(|s| name.contains(s))
}

/// `Duration` as a humantime string ("10m", "90s"); a bare number is refused as ambiguous.
pub(super) mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration with a unit, like \"90s\", \"10m\" or \"1h\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            humantime::parse_duration(v.trim()).map_err(|e| {
                E::custom(format!(
                    "invalid duration {v:?} ({e}); write a number with a unit, like \"90s\", \
                     \"10m\" or \"1h\""
                ))
            })
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "a bare number ({v}) is ambiguous; add a unit, like \"{v}s\" or \"{v}ms\""
            )))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "a bare number ({v}) is ambiguous; add a unit, like \"{v}s\" or \"{v}ms\""
            )))
        }
    }
}

/// One figment error as a `Problem`; values of secret keys are left out of the message.
pub(super) fn problem_from(e: Error) -> Problem {
    let key = display_key(&e.path);
    let origin = e.metadata.as_ref().and_then(|md| {
        if let Some(path) = md.source.as_ref().and_then(|s| s.file_path()) {
            Some(path.display().to_string())
        } else if md.name == env::NAME {
            Some(md.interpolate(&Profile::Default, &e.path))
        } else {
            None
        }
    });
    let secret = e
        .path
        .last()
        .is_some_and(|k| SECRET_KEYS.contains(&k.as_str()));
    let message = match &e.kind {
        Kind::InvalidType(_, exp) if secret => {
            format!("invalid type (value not shown): expected {exp}; quote it in TOML")
        }
        Kind::InvalidValue(_, exp) if secret => {
            format!("invalid value (not shown): expected {exp}")
        }
        // A TOML syntax error quotes the offending line, which may hold a secret.
        Kind::Message(msg) if e.path.is_empty() => without_source_lines(msg),
        kind => kind.to_string(),
    };
    Problem {
        origin,
        key,
        message,
    }
}

/// Drops the `12 | secret = "...` excerpt lines from a parser message.
fn without_source_lines(msg: &str) -> String {
    let kept: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with('|') && !l.contains(" | ") && !l.ends_with(" |")
        })
        .collect();
    kept.join(": ")
}

/// `["apps", "0", "secret"]` → `apps[0].secret`.
fn display_key(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// Where the value at `key` (`apps[0].agentid`) came from, or `None` for a default.
pub(super) fn origin_of(figment: &Figment, key: &str) -> Option<String> {
    let dotted = key.replace('[', ".").replace(']', "");
    let mut path: Vec<&str> = dotted.split('.').collect();
    // figment cannot look inside arrays: fall back to the nearest parent it can find.
    while !path.is_empty() {
        if let Some(md) = figment.find_metadata(&path.join(".")) {
            if let Some(file) = md.source.as_ref().and_then(|s| s.file_path()) {
                return Some(file.display().to_string());
            }
            if md.name == env::NAME {
                return Some(md.interpolate(&Profile::Default, &path));
            }
            return None;
        }
        path.pop();
    }
    None
}
