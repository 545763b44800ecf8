//! The `Idempotency-Key` header of `POST /v1/messages` and `POST /v1/campaigns`: the key, and a
//! hash of the request it came with, so a replay (same key, same request) is told apart from a
//! conflicting reuse of the key (same key, another request → 409).

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::store::Idempotency;

/// Keys longer than this are refused (they are stored and indexed).
const MAX_KEY_LEN: usize = 255;

/// The request's idempotency key, if it sent one, with the hash of `request`: the parts that
/// make two requests the same (the body).
pub(super) fn from_headers(
    headers: &HeaderMap,
    request: &[u8],
) -> Result<Option<Idempotency>, ApiError> {
    Ok(key(headers)?.map(|key| Idempotency {
        key,
        request_hash: hex::encode(Sha256::digest(request)),
    }))
}

/// The request's idempotency key, if it sent one.
pub(super) fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN);
    let key = key.ok_or_else(|| {
        ApiError::invalid("Idempotency-Key: use 1 to 255 visible ASCII characters")
    })?;
    Ok(Some(key.to_string()))
}

/// The hash of a campaign request, taken as its body streams by: the settings that are not
/// in the body (a CSV upload's query, one `name=value` line per pair, sorted), length-prefixed
/// so that no bytes can move between them and the body, then the body.
pub(super) struct RequestHash(Sha256);

impl RequestHash {
    pub fn new(settings: &[u8]) -> Self {
        let mut hash = Sha256::new();
        hash.update((settings.len() as u64).to_be_bytes());
        hash.update(settings);
        RequestHash(hash)
    }

    pub fn update(&mut self, body: &[u8]) {
        self.0.update(body);
    }

    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// 409 for a key already used with another request.
pub(super) fn reused(what: &str, id: &str) -> ApiError {
    ApiError::conflict(format!(
        "Idempotency-Key was already used for {what} {id} with a different request; use a new \
         key for a new {what}"
    ))
}
