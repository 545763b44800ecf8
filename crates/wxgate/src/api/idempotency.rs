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
/// make two requests the same (the body, and for CSV uploads the settings in the query).
pub(super) fn from_headers(
    headers: &HeaderMap,
    request: &[&[u8]],
) -> Result<Option<Idempotency>, ApiError> {
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
    let hash = match request {
        // One part: its plain SHA-256, as stored for messages since keys first existed.
        [one] => Sha256::digest(one),
        parts => {
            let mut hash = Sha256::new();
            for part in parts {
                // Length-prefixed, so moving bytes from one part to the next changes the hash.
                hash.update((part.len() as u64).to_be_bytes());
                hash.update(part);
            }
            hash.finalize()
        }
    };
    Ok(Some(Idempotency {
        key: key.to_string(),
        request_hash: hex::encode(hash),
    }))
}

/// 409 for a key already used with another request.
pub(super) fn reused(what: &str, id: &str) -> ApiError {
    ApiError::conflict(format!(
        "Idempotency-Key was already used for {what} {id} with a different request; use a new \
         key for a new {what}"
    ))
}
