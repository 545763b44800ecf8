//! API keys: who may call the HTTP API, and for which apps.
//!
//! A key is `wxg_` + 40 random URL-safe characters, shown once at creation. The store keeps
//! only its SHA-256 (unique, so a presented key is found by hash) and its last 4 characters
//! (so an operator can recognise it in a listing). Nothing read back ever carries the hash.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::crypto::{api_key_matches, hash_api_key, random_token};

use super::{Change, Store, StoreError, now_ms, on_backend, portable};

const INSERT_KEY: &str = "INSERT INTO api_keys (id, name, key_hash, apps, created_at_ms, last4) \
                          VALUES ($1, $2, $3, $4, $5, $6)";

const SELECT_KEYS: &str = "SELECT id, name, apps, created_at_ms, last4 FROM api_keys \
                           ORDER BY created_at_ms, id";

const SELECT_KEY_BY_HASH: &str = "SELECT id, name, apps, created_at_ms, last4, key_hash \
                                  FROM api_keys WHERE key_hash = $1";

const SELECT_KEY_BY_ID: &str = "SELECT id, name, apps, created_at_ms, last4 FROM api_keys \
                                WHERE id = $1";

const DELETE_KEY: &str = "DELETE FROM api_keys WHERE id = $1";

/// The scope stored for "every app", as a JSON array.
const ALL_APPS: &str = "*";

/// An API key as listed: everything but the key and its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    /// `key_` + 12 URL-safe random characters.
    pub id: String,
    pub name: String,
    pub apps: AppScope,
    pub created_at_ms: i64,
    /// The key's last 4 characters.
    pub last4: String,
}

/// Which apps a key may use. JSON: `"*"` for all, or a list of app ids.
///
/// A `"*"` inside a list also means every app (that is how the store keeps `All`: `["*"]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppScope {
    All,
    Only(Vec<String>),
}

impl AppScope {
    /// Whether a key with this scope may use `app_id`.
    pub fn allows(&self, app_id: &str) -> bool {
        match self {
            AppScope::All => true,
            AppScope::Only(ids) => ids.iter().any(|id| id == app_id || id == ALL_APPS),
        }
    }

    /// A list as given by a caller or read from the database; `"*"` in it means all apps.
    fn from_ids(ids: Vec<String>) -> AppScope {
        if ids.iter().any(|id| id == ALL_APPS) {
            AppScope::All
        } else {
            AppScope::Only(ids)
        }
    }

    /// The `apps` column: a JSON array, `["*"]` for all apps.
    fn to_column(&self) -> String {
        match self {
            AppScope::All => serde_json::to_string(&[ALL_APPS]),
            AppScope::Only(ids) => serde_json::to_string(ids),
        }
        .expect("a list of strings always serializes")
    }

    fn from_column(key_id: &str, json: &str) -> Result<AppScope, StoreError> {
        let ids = serde_json::from_str(json).map_err(|_| {
            StoreError::Corrupt(format!(
                "API key {key_id:?}: apps is not a JSON list of app ids"
            ))
        })?;
        Ok(AppScope::from_ids(ids))
    }
}

impl Serialize for AppScope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            AppScope::All => serializer.serialize_str(ALL_APPS),
            AppScope::Only(ids) => ids.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for AppScope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            One(String),
            Many(Vec<String>),
        }
        let expected = "\"*\" for every app, or a list of app ids";
        match Repr::deserialize(deserializer)
            .map_err(|_| D::Error::custom(format!("expected {expected}")))?
        {
            Repr::One(s) if s == ALL_APPS => Ok(AppScope::All),
            Repr::One(s) => Err(D::Error::custom(format!(
                "expected {expected}, got the string {s:?}"
            ))),
            Repr::Many(ids) => Ok(AppScope::from_ids(ids)),
        }
    }
}

/// One `api_keys` row without its hash.
#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    id: String,
    name: String,
    apps: String,
    created_at_ms: i64,
    last4: String,
}

/// A row with its hash, read only to authenticate a presented key.
#[derive(sqlx::FromRow)]
pub(crate) struct HashedKeyRow {
    #[sqlx(flatten)]
    row: KeyRow,
    key_hash: Vec<u8>,
}

impl KeyRow {
    fn into_record(self) -> Result<ApiKeyRecord, StoreError> {
        let apps = AppScope::from_column(&self.id, &self.apps)?;
        Ok(ApiKeyRecord {
            id: self.id,
            name: self.name,
            apps,
            created_at_ms: self.created_at_ms,
            last4: self.last4,
        })
    }
}

impl Store {
    /// Creates a key for `apps` and returns its record and the key itself. The key is not
    /// stored and cannot be shown again.
    pub async fn create_api_key(
        &self,
        name: &str,
        apps: AppScope,
    ) -> Result<(ApiKeyRecord, String), StoreError> {
        let key = random_token("wxg_");
        let last4 = key[key.len() - 4..].to_owned();
        let record = ApiKeyRecord {
            id: format!("key_{}", &random_token("")[..12]),
            name: name.to_owned(),
            apps,
            created_at_ms: now_ms(),
            last4,
        };
        let hash = hash_api_key(&key);
        on_backend!(self, b => b.insert_api_key(&record, &hash).await)?;
        Ok((record, key))
    }

    /// Every key, oldest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = on_backend!(self, b => b.api_key_rows().await?);
        rows.into_iter().map(KeyRow::into_record).collect()
    }

    /// Deletes the key; `false` if there was none with this id. Every instance on the store
    /// hears of it ([`Change::Key`]) and stops accepting the key.
    pub async fn delete_api_key(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = on_backend!(self, b => b.delete_api_key(id).await)?;
        if deleted {
            self.announce(Change::Key(id.to_owned())).await;
        }
        Ok(deleted)
    }

    /// The key `presented` by a caller, if it exists.
    ///
    /// Looked up by its SHA-256, then confirmed by comparing hashes in constant time. The index
    /// lookup itself is not constant time, but it compares hashes, so its timing says nothing
    /// usable about any key.
    pub async fn find_api_key(&self, presented: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let hash = hash_api_key(presented);
        let found = on_backend!(self, b => b.api_key_by_hash(&hash).await?);
        match found {
            Some(HashedKeyRow { row, key_hash }) if api_key_matches(presented, &key_hash) => {
                row.into_record().map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The key with this id, if it still exists (a deleted key is revoked everywhere).
    pub async fn api_key_by_id(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = on_backend!(self, b => b.api_key_row(id).await?);
        row.map(KeyRow::into_record).transpose()
    }
}

/// What a backend does for API keys.
pub(crate) trait KeysBackend {
    async fn insert_api_key(&self, record: &ApiKeyRecord, hash: &[u8]) -> Result<(), StoreError>;
    async fn api_key_rows(&self) -> Result<Vec<KeyRow>, StoreError>;
    async fn api_key_by_hash(&self, hash: &[u8]) -> Result<Option<HashedKeyRow>, StoreError>;
    async fn api_key_row(&self, id: &str) -> Result<Option<KeyRow>, StoreError>;
    async fn delete_api_key(&self, id: &str) -> Result<bool, StoreError>;
}

portable! { impl KeysBackend {
    async fn insert_api_key(&self, record: &ApiKeyRecord, hash: &[u8]) -> Result<(), StoreError> {
        sqlx::query(INSERT_KEY)
            .bind(&record.id)
            .bind(&record.name)
            .bind(hash)
            .bind(record.apps.to_column())
            .bind(record.created_at_ms)
            .bind(&record.last4)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn api_key_rows(&self) -> Result<Vec<KeyRow>, StoreError> {
        Ok(sqlx::query_as(SELECT_KEYS).fetch_all(self.pool()).await?)
    }

    async fn api_key_by_hash(&self, hash: &[u8]) -> Result<Option<HashedKeyRow>, StoreError> {
        let query = sqlx::query_as(SELECT_KEY_BY_HASH).bind(hash);
        Ok(query.fetch_optional(self.pool()).await?)
    }

    async fn api_key_row(&self, id: &str) -> Result<Option<KeyRow>, StoreError> {
        let query = sqlx::query_as(SELECT_KEY_BY_ID).bind(id);
        Ok(query.fetch_optional(self.pool()).await?)
    }

    async fn delete_api_key(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(DELETE_KEY)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}}
