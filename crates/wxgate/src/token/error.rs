//! Why a token could not be had, in terms a caller can act on.

use serde::Serialize;

/// Every variant says what happened and what to do; none carries a secret or a token.
#[derive(Clone, Debug, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenError {
    #[error("no app with id {0:?}")]
    UnknownApp(String),
    /// WeChat refused the app's credentials or this host; an operator must act.
    #[error("WeChat rejected the app's credentials (errcode {errcode}): {hint}")]
    Misconfigured {
        errcode: i64,
        errmsg: String,
        hint: &'static str,
        retry_at_ms: i64,
    },
    /// WeChat's own token quota window is closed (45009 daily, 45011 per minute).
    #[error("WeChat's token quota is used up (errcode {errcode}); it reopens at {retry_at_ms} ms")]
    QuotaWindow { errcode: i64, retry_at_ms: i64 },
    /// wxgate's daily fetch budget for this app, kept below WeChat's limit, is spent.
    #[error(
        "the daily token-fetch budget of this app is spent ({used}/{budget}); it resets at 00:00 Asia/Shanghai — raise token.daily_fetch_budget only if WeChat's quota allows"
    )]
    BudgetExhausted {
        used: u32,
        budget: u32,
        retry_at_ms: i64,
    },
    /// WeChat did not answer usefully after bounded retries.
    #[error("WeChat is unavailable: {detail}")]
    Unavailable {
        detail: String,
        wechat_errcode: Option<i64>,
        retry_at_ms: i64,
    },
    /// A rejected stable token can only be replaced by `force_refresh`, whose budget
    /// (20 a day, 30 s apart) is spent for now.
    #[error(
        "the token was rejected and WeChat still returns it; a forced refresh is possible again at {retry_at_ms} ms"
    )]
    ForceRefreshUnavailable { retry_at_ms: i64 },
}

impl TokenError {
    pub fn wechat_errcode(&self) -> Option<i64> {
        match self {
            TokenError::Misconfigured { errcode, .. } | TokenError::QuotaWindow { errcode, .. } => {
                Some(*errcode)
            }
            TokenError::Unavailable { wechat_errcode, .. } => *wechat_errcode,
            _ => None,
        }
    }

    pub fn retry_at_ms(&self) -> Option<i64> {
        match self {
            TokenError::Misconfigured { retry_at_ms, .. }
            | TokenError::QuotaWindow { retry_at_ms, .. }
            | TokenError::BudgetExhausted { retry_at_ms, .. }
            | TokenError::Unavailable { retry_at_ms, .. }
            | TokenError::ForceRefreshUnavailable { retry_at_ms } => Some(*retry_at_ms),
            TokenError::UnknownApp(_) => None,
        }
    }

    /// A stable snake_case code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::UnknownApp(_) => "app_not_found",
            TokenError::Misconfigured { .. } => "app_misconfigured",
            TokenError::QuotaWindow { .. } => "wechat_quota_exhausted",
            TokenError::BudgetExhausted { .. } => "fetch_budget_exhausted",
            TokenError::Unavailable { .. } => "wechat_unavailable",
            TokenError::ForceRefreshUnavailable { .. } => "force_refresh_unavailable",
        }
    }
}
