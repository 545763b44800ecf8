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

use super::{Backend, SqliteStore, Store, StoreError, now_ms};

const SELECT_APPS: &str = "SELECT id, kind, appid, corpid, agentid, token_api, \
                           daily_fetch_budget, secret_sealed FROM apps ORDER BY id";

const SELECT_APP: &str = "SELECT id, kind, appid, corpid, agentid, token_api, \
                          daily_fetch_budget, secret_sealed FROM apps WHERE id = $1";

/// Insert, or replace every field but `created_at_ms` (`$9` is "now" for both timestamps).
const UPSERT_APP: &str = "INSERT INTO apps (id, kind, appid, corpid, agentid, token_api, \
     daily_fetch_budget, secret_sealed, created_at_ms, updated_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
     ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, appid = excluded.appid, \
     corpid = excluded.corpid, agentid = excluded.agentid, token_api = excluded.token_api, \
     daily_fetch_budget = excluded.daily_fetch_budget, secret_sealed = excluded.secret_sealed, \
     updated_at_ms = excluded.updated_at_ms";

const DELETE_APP: &str = "DELETE FROM apps WHERE id = $1";

/// One `apps` row as stored (timestamps left out: `AppConfig` has none).
#[derive(sqlx::FromRow)]
struct AppRow {
    id: String,
    kind: String,
    appid: Option<String>,
    corpid: Option<String>,
    agentid: Option<i64>,
    token_api: String,
    daily_fetch_budget: Option<i64>,
    secret_sealed: String,
}

impl Store {
    /// Every app, ordered by id, with secrets opened. Fails if any secret does not open.
    pub async fn list_apps(&self, key: &MasterKey) -> Result<Vec<AppConfig>, StoreError> {
        let rows = match &self.backend {
            Backend::Sqlite(s) => s.app_rows().await?,
        };
        rows.into_iter().map(|row| row.open(key)).collect()
    }

    /// The app with this id, if any, with its secret opened.
    pub async fn get_app(
        &self,
        id: &str,
        key: &MasterKey,
    ) -> Result<Option<AppConfig>, StoreError> {
        let row = match &self.backend {
            Backend::Sqlite(s) => s.app_row(id).await?,
        };
        row.map(|row| row.open(key)).transpose()
    }

    /// Inserts the app, or replaces the one with the same id (keeping its `created_at_ms`).
    /// The secret is sealed with `key`; the caller validates the app beforehand.
    pub async fn put_app(&self, app: &AppConfig, key: &MasterKey) -> Result<(), StoreError> {
        let sealed = key.seal(app.secret.expose_secret().as_bytes(), &secret_aad(&app.id));
        match &self.backend {
            Backend::Sqlite(s) => s.upsert_app(app, &sealed, now_ms()).await,
        }
    }

    /// Deletes the app; `false` if there was none with this id.
    pub async fn delete_app(&self, id: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.delete_app(id).await,
        }
    }
}

impl SqliteStore {
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
}

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testutil::{TempDb, master_key, oa_app, pool, wecom_app};
    use super::*;

    /// Every field equal, the secret included (`AppConfig` has no `PartialEq`: secrets).
    fn assert_same(actual: &AppConfig, expected: &AppConfig) {
        let json = |a: &AppConfig| serde_json::to_value(a).unwrap();
        assert_eq!(json(actual), json(expected));
        assert_eq!(
            actual.secret.expose_secret(),
            expected.secret.expose_secret()
        );
    }

    async fn timestamps(store: &Store, id: &str) -> (i64, i64) {
        sqlx::query_as("SELECT created_at_ms, updated_at_ms FROM apps WHERE id = $1")
            .bind(id)
            .fetch_one(pool(store))
            .await
            .unwrap()
    }

    async fn sealed_secret(store: &Store, id: &str) -> String {
        sqlx::query_scalar("SELECT secret_sealed FROM apps WHERE id = $1")
            .bind(id)
            .fetch_one(pool(store))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn apps_round_trip_with_secret_sealed() {
        let db = TempDb::new("apps-round-trip");
        let store = db.connect().await;
        let key = master_key(1);
        let (oa, wecom) = (oa_app("oa-main"), wecom_app("crm"));
        store.put_app(&oa, &key).await.unwrap();
        store.put_app(&wecom, &key).await.unwrap();

        let apps = store.list_apps(&key).await.unwrap();
        assert_eq!(apps.len(), 2);
        assert_same(&apps[0], &wecom); // ordered by id: "crm" < "oa-main"
        assert_same(&apps[1], &oa);
        assert_same(&store.get_app("oa-main", &key).await.unwrap().unwrap(), &oa);
        assert!(store.get_app("missing", &key).await.unwrap().is_none());

        for app in [&oa, &wecom] {
            let sealed = sealed_secret(&store, &app.id).await;
            assert!(sealed.starts_with("v1:"), "{sealed}");
            assert!(!sealed.contains(app.secret.expose_secret()));
        }
    }

    #[tokio::test]
    async fn another_master_key_fails_naming_the_app() {
        let db = TempDb::new("apps-wrong-key");
        let store = db.connect().await;
        let app = oa_app("main");
        store.put_app(&app, &master_key(1)).await.unwrap();
        let sealed = sealed_secret(&store, "main").await;

        let other = master_key(2);
        let err = store.list_apps(&other).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Secret { app } if app == "main"),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("\"main\"") && msg.contains("master key"),
            "{msg}"
        );
        assert!(!msg.contains(app.secret.expose_secret()) && !msg.contains(&sealed[3..]));
        let err = store.get_app("main", &other).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Secret { app } if app == "main"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_sealed_secret_moved_to_another_app_does_not_open() {
        let db = TempDb::new("apps-moved-secret");
        let store = db.connect().await;
        let key = master_key(1);
        store.put_app(&oa_app("a"), &key).await.unwrap();
        store.put_app(&wecom_app("b"), &key).await.unwrap();
        sqlx::query("UPDATE apps SET secret_sealed = (SELECT secret_sealed FROM apps WHERE id = 'a') WHERE id = 'b'")
            .execute(pool(&store))
            .await
            .unwrap();
        assert!(store.get_app("a", &key).await.unwrap().is_some());
        let err = store.get_app("b", &key).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Secret { app } if app == "b"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn put_twice_keeps_created_at_and_updates_the_rest() {
        let db = TempDb::new("apps-put-twice");
        let store = db.connect().await;
        let key = master_key(1);
        store.put_app(&oa_app("main"), &key).await.unwrap();
        let (created, updated) = timestamps(&store, "main").await;
        assert_eq!(created, updated);
        let first_sealed = sealed_secret(&store, "main").await;

        tokio::time::sleep(Duration::from_millis(5)).await;
        let changed = AppConfig {
            appid: Some("wxfedcba9876543210".into()),
            secret: "rotated-secret".into(),
            token_api: TokenApi::Classic,
            daily_fetch_budget: Some(100),
            ..oa_app("main")
        };
        store.put_app(&changed, &key).await.unwrap();

        let (created2, updated2) = timestamps(&store, "main").await;
        assert_eq!(created2, created, "created_at must not change");
        assert!(updated2 > updated, "{updated2} should be after {updated}");
        assert_ne!(sealed_secret(&store, "main").await, first_sealed);
        let apps = store.list_apps(&key).await.unwrap();
        assert_eq!(apps.len(), 1);
        assert_same(&apps[0], &changed);
    }

    #[tokio::test]
    async fn delete_removes_the_app() {
        let db = TempDb::new("apps-delete");
        let store = db.connect().await;
        let key = master_key(1);
        store.put_app(&oa_app("a"), &key).await.unwrap();
        store.put_app(&oa_app("b"), &key).await.unwrap();
        assert!(store.delete_app("a").await.unwrap());
        assert!(!store.delete_app("a").await.unwrap(), "already gone");
        assert!(store.get_app("a", &key).await.unwrap().is_none());
        let ids: Vec<_> = store
            .list_apps(&key)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(ids, ["b"]);
    }

    #[tokio::test]
    async fn an_unknown_kind_is_reported_as_corrupt() {
        let db = TempDb::new("apps-corrupt");
        let store = db.connect().await;
        let key = master_key(1);
        store.put_app(&oa_app("main"), &key).await.unwrap();
        sqlx::query("UPDATE apps SET kind = 'fax' WHERE id = 'main'")
            .execute(pool(&store))
            .await
            .unwrap();
        let err = store.list_apps(&key).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("\"main\"") && m.contains("fax")),
            "{err}"
        );
    }
}
