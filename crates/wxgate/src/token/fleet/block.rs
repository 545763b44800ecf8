//! The fleet's breaker reason: the `TokenError` that opened it, as JSON in Redis, so every
//! instance answers callers with the same error (and hint) until it closes.

use serde::Deserialize;
use serde_json::Value;

use crate::token::error::TokenError;
use crate::wechat::fetch_hint;

/// The reason stored with a shared block.
pub(crate) fn encode_block(e: &TokenError) -> String {
    serde_json::to_string(e).unwrap_or_default()
}

/// The error another instance stored with its block (open until `until_ms`). A reason this
/// version cannot read still blocks, with a generic message.
pub(crate) fn decode_block(reason: &str, until_ms: i64) -> TokenError {
    #[derive(Deserialize)]
    struct Wire {
        kind: String,
        #[serde(default)]
        errcode: Option<i64>,
        #[serde(default)]
        errmsg: String,
        #[serde(default)]
        used: u32,
        #[serde(default)]
        budget: u32,
        #[serde(default)]
        detail: String,
        #[serde(default)]
        wechat_errcode: Option<i64>,
    }
    let wire = serde_json::from_str::<Wire>(reason).ok();
    let retry_at_ms = until_ms;
    match wire {
        Some(w) => match (w.kind.as_str(), w.errcode) {
            ("misconfigured", Some(errcode)) => TokenError::Misconfigured {
                errcode,
                errmsg: w.errmsg,
                hint: fetch_hint(errcode),
                retry_at_ms,
            },
            ("quota_window", Some(errcode)) => TokenError::QuotaWindow {
                errcode,
                retry_at_ms,
            },
            ("budget_exhausted", _) => TokenError::BudgetExhausted {
                used: w.used,
                budget: w.budget,
                retry_at_ms,
            },
            ("force_refresh_unavailable", _) => TokenError::ForceRefreshUnavailable { retry_at_ms },
            _ => TokenError::Unavailable {
                detail: if w.detail.is_empty() {
                    "another instance's token fetch failed".into()
                } else {
                    w.detail
                },
                wechat_errcode: w.wechat_errcode,
                retry_at_ms,
            },
        },
        None => TokenError::Unavailable {
            detail: format!(
                "another instance's token fetch failed: {}",
                serde_json::from_str::<Value>(reason)
                    .map(|_| "unrecognised reason")
                    .unwrap_or("unreadable reason")
            ),
            wechat_errcode: None,
            retry_at_ms,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_breaker_error_survives_the_round_trip() {
        let errors = [
            TokenError::Misconfigured {
                errcode: 40125,
                errmsg: "invalid appsecret".into(),
                hint: fetch_hint(40125),
                retry_at_ms: 5,
            },
            TokenError::QuotaWindow {
                errcode: 45009,
                retry_at_ms: 5,
            },
            TokenError::BudgetExhausted {
                used: 1800,
                budget: 1800,
                retry_at_ms: 5,
            },
            TokenError::ForceRefreshUnavailable { retry_at_ms: 5 },
            TokenError::Unavailable {
                detail: "connect timeout".into(),
                wechat_errcode: Some(-1),
                retry_at_ms: 5,
            },
        ];
        for e in errors {
            let back = decode_block(&encode_block(&e), 5);
            assert_eq!(back.to_string(), e.to_string());
            assert_eq!(back.code(), e.code());
            assert_eq!(back.wechat_errcode(), e.wechat_errcode());
            assert_eq!(back.retry_at_ms(), Some(5));
        }
    }

    #[test]
    fn an_unreadable_reason_still_blocks() {
        let e = decode_block("not json", 9);
        assert_eq!(e.code(), "wechat_unavailable");
        assert_eq!(e.retry_at_ms(), Some(9));
    }
}
