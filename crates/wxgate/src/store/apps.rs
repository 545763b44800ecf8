//! Apps: the WeChat accounts wxgate holds tokens for, with their secrets sealed at rest.
//!
//! A secret is sealed with the master key and the associated data `"apps:secret:{id}"`, so a
//! sealed value copied to another row does not open. Errors name the app, never the secret or
//! its sealed form.

use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::IntoDeserializer;
use serde::de::value::{Error as ValueError, StrDeserializer};

use crate::config::{AppConfig, AppKind, TokenApi};
use crate::crypto::{CryptoError, MasterKey};

use super::{Change, Store, StoreError, now_ms, on_backend, portable};

const SELECT_APPS: &str = "SELECT id, kind, appid, corpid, agentid, token_api, \
                           daily_fetch_budget, proxy_accepts_secret, secret_sealed FROM apps \
                           ORDER BY id";

const SELECT_APP: &str = "SELECT id, kind, appid, corpid, agentid, token_api, \
                          daily_fetch_budget, proxy_accepts_secret, secret_sealed FROM apps \
                          WHERE id = $1";

/// Insert, or replace every field but `created_at_ms` (`$9` is "now" for both timestamps).
const UPSERT_APP: &str = "INSERT INTO apps (id, kind, appid, corpid, agentid, token_api, \
     daily_fetch_budget, secret_sealed, created_at_ms, updated_at_ms, proxy_accepts_secret) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) \
     ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, appid = excluded.appid, \
     corpid = excluded.corpid, agentid = excluded.agentid, token_api = excluded.token_api, \
     daily_fetch_budget = excluded.daily_fetch_budget, secret_sealed = excluded.secret_sealed, \
     updated_at_ms = excluded.updated_at_ms, \
     proxy_accepts_secret = excluded.proxy_accepts_secret";

const DELETE_APP: &str = "DELETE FROM apps WHERE id = $1";

/// One `apps` row as stored (timestamps left out: `AppConfig` has none).
#[derive(sqlx::FromRow)]
pub(crate) struct AppRow {
    id: String,
    kind: String,
    appid: Option<String>,
    corpid: Option<String>,
    agentid: Option<i64>,
    token_api: String,
    daily_fetch_budget: Option<i64>,
    proxy_accepts_secret: bool,
    secret_sealed: String,
}

/// What a backend does for apps.
pub(crate) trait AppsBackend {
    async fn app_rows(&self) -> Result<Vec<AppRow>, StoreError>;
    async fn app_row(&self, id: &str) -> Result<Option<AppRow>, StoreError>;
    async fn upsert_app(&self, app: &AppConfig, sealed: &str, now: i64) -> Result<(), StoreError>;
    async fn delete_app(&self, id: &str) -> Result<bool, StoreError>;
}

impl Store {
    /// Every app, ordered by id, with secrets opened. Fails if any secret does not open.
    pub async fn list_apps(&self, key: &MasterKey) -> Result<Vec<AppConfig>, StoreError> {
        let rows = on_backend!(self, b => b.app_rows().await?);
        rows.into_iter().map(|row| row.open(key)).collect()
    }

    /// The app with this id, if any, with its secret opened.
    pub async fn get_app(
        &self,
        id: &str,
        key: &MasterKey,
    ) -> Result<Option<AppConfig>, StoreError> {
        let row = on_backend!(self, b => b.app_row(id).await?);
        row.map(|row| row.open(key)).transpose()
    }

    /// Inserts the app, or replaces the one with the same id (keeping its `created_at_ms`).
    /// The secret is sealed with `key`; the caller validates the app beforehand. Every
    /// instance on the store hears of it ([`Change::App`]).
    pub async fn put_app(&self, app: &AppConfig, key: &MasterKey) -> Result<(), StoreError> {
        let sealed = key.seal(app.secret.expose_secret().as_bytes(), &secret_aad(&app.id));
        on_backend!(self, b => b.upsert_app(app, &sealed, now_ms()).await)?;
        self.announce(Change::App(app.id.clone())).await;
        Ok(())
    }

    /// Deletes the app; `false` if there was none with this id. Every instance on the store
    /// hears of it.
    pub async fn delete_app(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = on_backend!(self, b => b.delete_app(id).await)?;
        if deleted {
            self.announce(Change::App(id.to_owned())).await;
        }
        Ok(deleted)
    }
}

portable! { impl AppsBackend {
    async fn app_rows(&self) -> Result<Vec<AppRow>, StoreError> {
        Ok(sqlx::query_as(SELECT_APPS).fetch_all(self.pool()).await?)
    }

    async fn app_row(&self, id: &str) -> Result<Option<AppRow>, StoreError> {
        let query = sqlx::query_as(SELECT_APP).bind(id);
        Ok(query.fetch_optional(self.pool()).await?)
    }

    async fn upsert_app(&self, app: &AppConfig, sealed: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(UPSERT_APP)
            .bind(&app.id)
            .bind(app.kind.to_string())
            .bind(&app.appid)
            .bind(&app.corpid)
            .bind(app.agentid)
            .bind(app.token_api.to_string())
            .bind(app.daily_fetch_budget.map(i64::from))
            .bind(sealed)
            .bind(now)
            .bind(app.proxy_accepts_secret)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn delete_app(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(DELETE_APP)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}}

impl AppRow {
    /// Turns the row into an `AppConfig`, opening the secret with `key`.
    fn open(self, key: &MasterKey) -> Result<AppConfig, StoreError> {
        let id = self.id;
        let corrupt = |what: String| StoreError::Corrupt(format!("app {id:?}: {what}"));
        let kind: AppKind = parse_snake_case(&self.kind)
            .ok_or_else(|| corrupt(format!("unknown kind {:?}", self.kind)))?;
        let token_api: TokenApi = parse_snake_case(&self.token_api)
            .ok_or_else(|| corrupt(format!("unknown token_api {:?}", self.token_api)))?;
        let daily_fetch_budget = self
            .daily_fetch_budget
            .map(u32::try_from)
            .transpose()
            .map_err(|_| corrupt("daily_fetch_budget is out of range".into()))?;
        let secret = open_secret(&id, &self.secret_sealed, key)?;
        Ok(AppConfig {
            id,
            kind,
            appid: self.appid,
            corpid: self.corpid,
            secret,
            agentid: self.agentid,
            token_api,
            daily_fetch_budget,
            proxy_accepts_secret: self.proxy_accepts_secret,
        })
    }
}

/// The associated data that binds a sealed secret to its app.
fn secret_aad(id: &str) -> String {
    format!("apps:secret:{id}")
}

fn open_secret(id: &str, sealed: &str, key: &MasterKey) -> Result<SecretString, StoreError> {
    let bytes = key.open(sealed, &secret_aad(id)).map_err(|e| match e {
        CryptoError::Malformed(why) => {
            StoreError::Corrupt(format!("app {id:?}: the sealed secret is malformed: {why}"))
        }
        _ => StoreError::Secret { app: id.to_owned() },
    })?;
    String::from_utf8(bytes)
        .map(SecretString::from)
        .map_err(|e| {
            e.into_bytes().zeroize();
            StoreError::Corrupt(format!("app {id:?}: the secret is not UTF-8"))
        })
}

/// Parses `"official_account"` etc. through the type's own serde names, the same names its
/// `Display` writes.
fn parse_snake_case<T: for<'de> Deserialize<'de>>(text: &str) -> Option<T> {
    let de: StrDeserializer<'_, ValueError> = text.into_deserializer();
    T::deserialize(de).ok()
}
