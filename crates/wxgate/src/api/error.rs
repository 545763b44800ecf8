//! The one error type of the HTTP API: `{"code","message","wechat_errcode"?,"retry_after_secs"?}`
//! with the right status. Extractor rejections are turned into the same shape.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::token::TokenError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub wechat_errcode: Option<i64>,
    pub retry_after_secs: Option<i64>,
    /// Field-by-field problems of a rejected message (`{"field","rule","message"}` each).
    pub errors: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            wechat_errcode: None,
            retry_after_secs: None,
            errors: None,
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} with id {id:?}"),
        )
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(c) = self.wechat_errcode {
            body["wechat_errcode"] = c.into();
        }
        if let Some(s) = self.retry_after_secs {
            body["retry_after_secs"] = s.into();
        }
        if let Some(e) = self.errors {
            body["errors"] = e;
        }
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after_secs
            && let Ok(v) = HeaderValue::from_str(&s.max(1).to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Token errors to HTTP: an unknown app is 404; WeChat refusing the app's credentials is 502
/// (the upstream said no, and an operator must act); closed windows and spent budgets are 503
/// with `Retry-After`.
pub fn token_error(e: TokenError, now_ms: i64) -> ApiError {
    let status = match &e {
        TokenError::UnknownApp(_) => StatusCode::NOT_FOUND,
        TokenError::Misconfigured { .. } | TokenError::Unavailable { .. } => {
            StatusCode::BAD_GATEWAY
        }
        TokenError::QuotaWindow { .. }
        | TokenError::BudgetExhausted { .. }
        | TokenError::ForceRefreshUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut err = ApiError::new(status, e.code(), e.to_string());
    err.wechat_errcode = e.wechat_errcode();
    err.retry_after_secs = e
        .retry_at_ms()
        .filter(|&t| t > now_ms)
        .map(|t| (t - now_ms + 999) / 1000);
    err
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::invalid(format!("the JSON body is not valid: {}", r.body_text()))
    }
}

/// A message that breaks WeChat's field rules: 422 `invalid_message`, every problem listed.
impl From<crate::message::ValidationError> for ApiError {
    fn from(e: crate::message::ValidationError) -> Self {
        let mut err = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_message",
            e.to_string(),
        );
        err.errors = serde_json::to_value(&e.errors).ok();
        err
    }
}

/// Store errors: unreachable or overloaded is 503 `store_unavailable` (retry, with the same
/// Idempotency-Key: the write may or may not have committed); anything else is a 500.
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "store unavailable");
            let mut err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!(
                    "{e} (WXGATE_DATABASE_URL). Nothing is known to be stored: retry in a few \
                     seconds, with the same Idempotency-Key if you sent one"
                ),
            );
            err.retry_after_secs = Some(STORE_RETRY_AFTER_SECS);
            return err;
        }
        tracing::error!(error = %e, "store error");
        ApiError::internal(format!("the store failed: {e}"))
    }
}

/// What a 503 `store_unavailable` asks the caller to wait.
const STORE_RETRY_AFTER_SECS: i64 = 2;

impl From<crate::apps::RegistryError> for ApiError {
    fn from(e: crate::apps::RegistryError) -> Self {
        use crate::apps::RegistryError;
        match e {
            RegistryError::Invalid(why) => ApiError::invalid(why),
            RegistryError::Conflict(why) => ApiError::conflict(why),
            RegistryError::NotFound(id) => ApiError::not_found("app", &id),
            RegistryError::Store(e) => e.into(),
        }
    }
}
