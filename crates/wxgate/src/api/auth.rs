//! Who is calling: the admin (`WXGATE_ADMIN_TOKEN`, may do everything) or an API key (scoped to
//! the apps it may use). Keys are stored hashed; presented keys are hashed and compared in
//! constant time. No `Authorization` → 401; a key used for another app → 403.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{ApiError, AppState};
use crate::crypto::hash_api_key;
use crate::store::{ApiKeyRecord, Change, Store, StoreError};

/// How long a key looked up in the store is trusted from memory. A key deleted through another
/// instance is forgotten here as soon as its change is heard (`KeyCache::spawn_follower`);
/// should that notification be lost, it keeps working here for at most this long.
const KEY_CACHE_TTL: Duration = Duration::from_secs(60);

pub enum Caller {
    Admin,
    Key(ApiKeyRecord),
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Key(k) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "API key {} may use tokens but not manage apps or keys; use the admin token",
                    k.id
                ),
            )),
        }
    }

    pub fn may_use(&self, app_id: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Key(k) => k.apps.allows(app_id),
        }
    }

    pub fn require_app(&self, app_id: &str) -> Result<(), ApiError> {
        if self.may_use(app_id) {
            return Ok(());
        }
        let id = match self {
            Caller::Key(k) => k.id.as_str(),
            Caller::Admin => "admin",
        };
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "API key {id} is not allowed to use app {app_id:?}; ask the admin to create a key for it"
            ),
        ))
    }

    pub fn label(&self) -> String {
        match self {
            Caller::Admin => "admin".into(),
            Caller::Key(k) => k.id.clone(),
        }
    }
}

/// Recently seen keys by hash. Lock held only to read or insert one entry.
#[derive(Default)]
pub struct KeyCache {
    keys: RwLock<HashMap<[u8; 32], (ApiKeyRecord, Instant)>>,
    /// Bumped by every forget: a store read that started before a key was deleted does not
    /// put it back (it would work here for a minute more).
    forgotten: AtomicU64,
}

impl KeyCache {
    fn get(&self, hash: &[u8; 32]) -> Option<ApiKeyRecord> {
        let map = self.keys.read().unwrap_or_else(|p| p.into_inner());
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < KEY_CACHE_TTL)
            .map(|(k, _)| k.clone())
    }
    /// Remembers `k` unless a key was forgotten since `seen` (a read of `forgotten` made
    /// before the store was asked).
    fn put(&self, hash: [u8; 32], k: ApiKeyRecord, seen: u64) {
        let mut map = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if self.forgotten.load(Ordering::Acquire) != seen {
            return;
        }
        map.retain(|_, (_, at)| at.elapsed() < KEY_CACHE_TTL);
        map.insert(hash, (k, Instant::now()));
    }
    /// The key `presented` by a caller, from memory or the store.
    pub async fn find(
        &self,
        store: &Store,
        presented: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let hash = hash_api_key(presented);
        self.cached(hash, store.find_api_key(presented)).await
    }

    /// The key with id `key_id` if it still exists, from memory or the store; remembered under
    /// a slot no real key hash can take (the id's digest under a domain prefix).
    pub async fn by_id(
        &self,
        store: &Store,
        key_id: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let slot = crate::crypto::hmac_sha256(b"wxgate key-by-id", &[key_id.as_bytes()]);
        self.cached(slot, store.api_key_by_id(key_id)).await
    }

    /// The key remembered under `slot`, else what `load` finds (remembered unless a key was
    /// forgotten while it looked).
    async fn cached(
        &self,
        slot: [u8; 32],
        load: impl std::future::Future<Output = Result<Option<ApiKeyRecord>, StoreError>>,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        if let Some(k) = self.get(&slot) {
            return Ok(Some(k));
        }
        let seen = self.forgotten.load(Ordering::Acquire);
        let found = load.await?;
        if let Some(k) = &found {
            self.put(slot, k.clone(), seen);
        }
        Ok(found)
    }

    pub fn forget(&self, key_id: &str) {
        let mut map = self.keys.write().unwrap_or_else(|p| p.into_inner());
        self.forgotten.fetch_add(1, Ordering::AcqRel);
        map.retain(|_, (k, _)| k.id != key_id);
    }

    fn clear(&self) {
        let mut map = self.keys.write().unwrap_or_else(|p| p.into_inner());
        self.forgotten.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }

    /// Forgets keys as any instance on the store deletes them, and everything when changes may
    /// have been missed, until `stop`.
    pub fn spawn_follower(self: &Arc<Self>, store: &Store, stop: CancellationToken) {
        let cache = self.clone();
        let mut changes = store.changes();
        // Ends with `stop` (gateway shutdown) or when the store is gone.
        tokio::spawn(async move {
            loop {
                let change = tokio::select! {
                    _ = stop.cancelled() => return,
                    c = changes.recv() => c,
                };
                match change {
                    Ok(Change::Key(id)) => cache.forget(&id),
                    Ok(Change::Resync) | Err(RecvError::Lagged(_)) => cache.clear(),
                    Ok(_) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }
}

fn unauthorized(msg: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("send `Authorization: Bearer <admin token or API key>`"))?;
        let presented = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        if let Some(admin) = &state.admin_token {
            let a = admin.expose_secret().as_bytes();
            if a.len() == presented.len() && bool::from(a.ct_eq(presented.as_bytes())) {
                return Ok(Caller::Admin);
            }
        }
        match state.keys.find(&state.store, presented).await? {
            Some(k) => Ok(Caller::Key(k)),
            None => Err(unauthorized("unknown admin token or API key")),
        }
    }
}
