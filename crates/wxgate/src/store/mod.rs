//! The durable store: apps (with sealed secrets), API keys and the outbox (messages, campaigns,
//! the delivery log), in SQLite today and PostgreSQL when fleet mode arrives.
//!
//! Callers only ever see [`Store`]. It wraps a [`Backend`] enum, and each public method is
//! written once on `Store`, where backend-neutral work happens (sealing and opening secrets,
//! scope JSON, timestamps), and then `match`es on the backend for the SQL. Adding PostgreSQL
//! means adding `Backend::Postgres(PgStore)` and one arm per method: the compiler lists every
//! `match` that needs one, and no caller changes. An enum rather than a `dyn` trait because
//! there are exactly two backends, known at compile time, and async methods stay plain.
//!
//! The SQL is written once per statement as a `const` with `$1, $2, …` placeholders, which
//! sqlx-sqlite binds by position just as PostgreSQL does, so both backends can share it. Queries
//! are runtime `sqlx::query` / `query_as` (the compile-time macros would need a database at build
//! time, and can check against only one database type). Timestamps are integer epoch
//! milliseconds and ids are text, which both databases store the same way.

mod apps;
mod error;
mod keys;
mod outbox;
mod sqlite;
#[cfg(test)]
mod testutil;

use std::time::{SystemTime, UNIX_EPOCH};

pub use error::StoreError;
pub use keys::{ApiKeyRecord, AppScope};
pub use outbox::{
    AttemptOutcome, AttemptRecord, CampaignInserted, CampaignMessage, CampaignRecord,
    CampaignStatus, Cancel, Claimed, ExistingCampaign, ExportRow, Finish, IdSeq, Idempotency,
    Inserted, Lease, LoggedAttempt, MessageFilter, MessageKind, MessageRecord, MessageState,
    MessageSummary, NewCampaign, NewMessage, Next, QueueDepth, StateCounts, new_id, new_ids,
};
pub use sqlite::SqliteStore;

/// What `WXGATE_DATABASE_URL` defaults to: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://wxgate.db";

/// The durable store. Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

/// The database behind a [`Store`]. PostgreSQL (`Postgres(PgStore)`) joins with fleet mode.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite(SqliteStore),
}

impl Store {
    /// Opens the database named by `database_url` and applies any pending migrations.
    ///
    /// Accepts `sqlite://PATH` (relative to the working directory, or absolute as
    /// `sqlite:///var/lib/wxgate.db`; the file is created if missing) and `sqlite::memory:`
    /// (gone when the process exits). Error messages never repeat the URL, which may hold a
    /// password.
    pub async fn connect(database_url: &str) -> Result<Store, StoreError> {
        let url = database_url.trim();
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Err(StoreError::Unsupported(
                "PostgreSQL arrives with fleet mode; use sqlite://… for now".into(),
            ));
        }
        if !lower.starts_with("sqlite:") {
            return Err(StoreError::Unsupported(
                "unsupported database URL; use sqlite://PATH (e.g. sqlite://wxgate.db) or \
                 sqlite::memory:"
                    .into(),
            ));
        }
        let path = url["sqlite:".len()..].trim_start_matches("//");
        if path.is_empty() || path.starts_with('?') {
            return Err(StoreError::Unsupported(
                "the SQLite URL names no file; use sqlite://PATH (e.g. sqlite://wxgate.db) or \
                 sqlite::memory:"
                    .into(),
            ));
        }
        let backend = Backend::Sqlite(SqliteStore::connect(url).await?);
        Ok(Store { backend })
    }

    /// The backend, for code that needs database-specific access (e.g. health checks).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Succeeds when the database answers a trivial query (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => sqlx::query("SELECT 1").execute(s.pool()).await?,
        };
        Ok(())
    }

    /// Closes the pool, waiting for in-flight queries. Later calls fail with `Database`.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.pool().close().await,
        }
    }
}

/// Wall-clock time as epoch milliseconds, for `created_at_ms` / `updated_at_ms` columns.
pub(crate) fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::testutil::TempDb;
    use super::*;

    #[tokio::test]
    async fn postgres_urls_are_unsupported_for_now() {
        for url in [
            "postgres://u:hunter2@db/wxgate",
            "postgresql://u:hunter2@db/wxgate",
        ] {
            let err = Store::connect(url).await.unwrap_err();
            assert!(matches!(err, StoreError::Unsupported(_)), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains("PostgreSQL arrives with fleet mode; use sqlite://… for now"),
                "{msg}"
            );
            assert!(!msg.contains("hunter2"), "must not echo the URL: {msg}");
        }
    }

    #[tokio::test]
    async fn other_urls_are_unsupported_without_echoing_them() {
        for url in ["mysql://u:hunter2@db/x", "sqlite://", "hunter2"] {
            let err = Store::connect(url).await.unwrap_err();
            assert!(matches!(err, StoreError::Unsupported(_)), "{url}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[tokio::test]
    async fn in_memory_database_works() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        assert!(store.list_api_keys().await.unwrap().is_empty());
        let (record, _) = store.create_api_key("ci", AppScope::All).await.unwrap();
        assert_eq!(store.list_api_keys().await.unwrap(), vec![record]);
    }

    #[tokio::test]
    async fn creates_the_file_with_wal_and_settings() {
        let db = TempDb::new("settings");
        assert!(!db.path.exists());
        let store = db.connect().await;
        assert!(db.path.exists(), "database file should be created");
        let Backend::Sqlite(sqlite) = store.backend();
        let pool = sqlite.pool();
        let text = |sql: &'static str| sqlx::query_scalar::<_, String>(sql).fetch_one(pool);
        let int = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).fetch_one(pool);
        assert_eq!(text("PRAGMA journal_mode").await.unwrap(), "wal");
        assert_eq!(int("PRAGMA synchronous").await.unwrap(), 1, "NORMAL is 1");
        assert_eq!(int("PRAGMA foreign_keys").await.unwrap(), 1);
        assert_eq!(int("PRAGMA busy_timeout").await.unwrap(), 5000);
        assert_eq!(
            int("PRAGMA cache_size").await.unwrap(),
            -2000,
            "SQLite's default"
        );
    }

    #[tokio::test]
    async fn reopening_the_file_sees_the_data() {
        let db = TempDb::new("reopen");
        let key = testutil::master_key(1);
        let store = db.connect().await;
        store
            .put_app(&testutil::oa_app("main"), &key)
            .await
            .unwrap();
        let (record, plaintext) = store.create_api_key("ops", AppScope::All).await.unwrap();
        store.close().await;

        // Connecting again re-runs the embedded migrations: already applied, so a no-op.
        let store = db.connect().await;
        let apps = store.list_apps(&key).await.unwrap();
        assert_eq!(apps.len(), 1);
        assert_eq!(apps[0].id, "main");
        assert_eq!(store.find_api_key(&plaintext).await.unwrap(), Some(record));
        // A third pool on the same file while the second is open also works.
        let third = db.connect().await;
        assert_eq!(third.list_api_keys().await.unwrap().len(), 1);
    }
}
