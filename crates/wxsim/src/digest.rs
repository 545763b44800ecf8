//! The digests and encodings the simulator's answers need (echo body hashes, login ids),
//! over the workspace's `sha2`, `hex` and `base64` crates.

use base64::Engine;
use sha2::{Digest, Sha256};

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

pub(crate) fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
