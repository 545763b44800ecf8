//! The durable store: apps (with sealed secrets), API keys and the outbox (messages, campaigns,
//! the delivery log), in SQLite (embedded, one host) or PostgreSQL (a fleet sharing one store).
//!
//! Callers only ever see [`Store`]. Its public methods, one per operation, do the
//! backend-neutral work (sealing and opening secrets, scope JSON, grouping a batch, turning rows
//! into records, announcing changes) and hand the SQL to the [`Backend`] through one trait per
//! concern:
//!
//! | trait | what | SQL |
//! |---|---|---|
//! | [`AppsBackend`](apps::AppsBackend) | apps | portable |
//! | [`KeysBackend`](keys::KeysBackend) | API keys | portable |
//! | [`OutboxWrites`](outbox::OutboxWrites) | new messages, idempotency, cancel, retry | portable |
//! | [`OutboxReads`](outbox::OutboxReads) | messages, listings, counts, exports | portable |
//! | [`OutboxQueue`](outbox::OutboxQueue) | bulk insert, claims, leases, batched finishes | per backend |
//!
//! Portable SQL is written once, beside the trait, and implemented for both backends by
//! [`portable!`]: the same method body compiled against each driver. The hot path differs
//! where the databases do (SQLite: `json_each`, one writer, `rowid`; PostgreSQL: `COPY`,
//! `FOR UPDATE SKIP LOCKED`, typed records), so `OutboxQueue` is written in `sqlite/` and
//! `postgres/`. Every backend passes one contract test suite (`tests/`).
//!
//! SQL uses `$1, $2, …` placeholders (sqlx-sqlite binds them by position, as PostgreSQL does).
//! Queries are runtime `sqlx::query` / `query_as`: the compile-time macros would need a
//! database at build time and check against one database type. Timestamps are integer epoch
//! milliseconds and ids are text, which both databases store the same way.
//!
//! Changes other instances must hear about (an app or key changed, new work due) are
//! announced through [`Store::changes`]: in process for SQLite, `LISTEN`/`NOTIFY` for
//! PostgreSQL, so every instance on one database hears every change.

mod apps;
mod changes;
mod error;
mod keys;
mod options;
mod outbox;
mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;

pub use changes::Change;
pub use error::StoreError;
pub use keys::{ApiKeyRecord, AppScope};
pub use options::StoreOptions;
pub use outbox::{
    ABANDONED_AFTER_MS, AttemptOutcome, AttemptRecord, CampaignInserted, CampaignMessage,
    CampaignRecord, CampaignStatus, CampaignUpload, Cancel, Claimed, ExistingCampaign, ExportRow,
    Finish, IdSeq, Idempotency, Inserted, Lane, Lease, LoggedAttempt, MessageFilter, MessageKind,
    MessageRecord, MessageState, MessageSummary, NewCampaign, NewMessage, Next, QueueDepth,
    StateCounts, UPLOAD_CHUNK, new_id, new_ids,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// What `WXGATE_DATABASE_URL` defaults to: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://wxgate.db";

/// The durable store. Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

/// The database behind a [`Store`].
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Runs `$body` with `$b` bound to the backend, whichever it is. The body is compiled once per
/// backend, so trait methods resolve to each backend's implementation.
macro_rules! on_backend {
    ($store:expr, $b:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite($b) => $body,
            $crate::store::Backend::Postgres($b) => $body,
        }
    };
}
pub(crate) use on_backend;

/// Implements a trait whose SQL is portable for both backends from ONE body: `self.pool()`
/// and `self.begin_write()` resolve to each backend's own.
macro_rules! portable {
    (impl $trait:path { $($body:tt)* }) => {
        impl $trait for $crate::store::SqliteStore { $($body)* }
        impl $trait for $crate::store::PgStore { $($body)* }
    };
}
pub(crate) use portable;

impl Store {
    /// Opens the database named by `database_url` with default options; see
    /// [`Store::connect_with`].
    pub async fn connect(database_url: &str) -> Result<Store, StoreError> {
        Self::connect_with(database_url, &StoreOptions::default()).await
    }

    /// Opens the database named by `database_url` and applies any pending migrations.
    ///
    /// Accepts `sqlite://PATH` (relative to the working directory, or absolute as
    /// `sqlite:///var/lib/wxgate.db`; the file is created if missing), `sqlite::memory:`
    /// (gone when the process exits) and `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?…]`
    /// (`postgresql://` too). Error messages never repeat the URL, which may hold a password.
    pub async fn connect_with(
        database_url: &str,
        options: &StoreOptions,
    ) -> Result<Store, StoreError> {
        let url = database_url.trim();
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            let backend = Backend::Postgres(PgStore::connect(url, options).await?);
            return Ok(Store { backend });
        }
        if !lower.starts_with("sqlite:") {
            return Err(StoreError::Unsupported(
                "unsupported database URL; use sqlite://PATH (e.g. sqlite://wxgate.db), \
                 sqlite::memory: or postgres://USER:PASSWORD@HOST/DB"
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

    /// Whether the database `database_url` names can be opened, without migrating anything
    /// (`check-config --connect`): PostgreSQL is asked for one connection; an SQLite file is
    /// created by `serve`, so only its URL is checked.
    pub async fn check(database_url: &str, options: &StoreOptions) -> Result<(), StoreError> {
        let url = database_url.trim();
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return postgres::check(url, options).await;
        }
        Ok(())
    }

    /// The backend, for code that needs database-specific access (e.g. tests).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// `sqlite` or `postgres`, for logs and `/readyz`.
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Whether several instances may share this store (PostgreSQL), or it is one host's own
    /// (SQLite).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Succeeds when the database answers a trivial query (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(self, b => sqlx::query("SELECT 1").execute(b.pool()).await.map(|_| ()))?;
        Ok(())
    }

    /// Closes the pool, waiting for in-flight queries. Later calls fail with `Database`.
    pub async fn close(&self) {
        on_backend!(self, b => b.pool().close().await)
    }

    /// Every change from now on, made by this instance or (PostgreSQL) any other on the same
    /// database. A receiver that falls behind gets `Lagged`: treat it as [`Change::Resync`].
    pub fn changes(&self) -> broadcast::Receiver<Change> {
        on_backend!(self, b => b.changes().subscribe())
    }

    /// Tells every instance (this one included) about `change`. Best effort: a change that is
    /// not heard is caught by the periodic resync of whoever listens.
    pub(crate) async fn announce(&self, change: Change) {
        on_backend!(self, b => b.announce(change).await)
    }
}

/// Wall-clock time as epoch milliseconds, for `created_at_ms` / `updated_at_ms` columns.
pub(crate) fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
