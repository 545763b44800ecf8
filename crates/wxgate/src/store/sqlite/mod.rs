//! The SQLite backend: the embedded default, one file (`wxgate.db`) on one host.
//!
//! SQLite mode is single-instance by design: several wxgate processes must not share the file
//! (changes are announced in process only). Its own SQL (the queue: bulk insert, claims,
//! batched finishes) is in `queue.rs`; the portable SQL lives beside each concern's trait.

mod queue;
mod upload;

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use tokio::sync::broadcast;

use super::StoreError;
use super::changes::{CAPACITY, Change};

/// How long a statement waits for another connection's write lock before `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// `PRAGMA cache_size` of the connection: SQLite's own default (2,000 KiB). Kept small: SQLite
/// walks its page-cache hash at the end of every transaction, so a big cache slows every claim
/// and finish (~10% with 64 MiB).
const SQLITE_CACHE_SIZE: i64 = -2000;

/// `BEGIN` for transactions that write: take the write lock now, not at the first write. A
/// deferred `BEGIN` that upgrades from reading to writing fails at once with SQLITE_BUSY when
/// another connection (or process) holds the lock; `busy_timeout` does not apply to it.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// A pool of SQLite connections with migrations applied.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Changes made through this store, for this process's listeners. No receiver is kept
    /// here, so sending never blocks or fills up; it lives as long as the store's clones.
    changes: broadcast::Sender<Change>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at a `sqlite:` URL and runs the migrations in
    /// `migrations/sqlite/`, which are embedded in the binary at compile time.
    pub(super) async fn connect(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            // WAL: readers never block the writer, and a commit is one append to the log.
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across application crashes in WAL mode; a power cut can lose
            // only the last commits, never corrupt the file.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("cache_size", SQLITE_CACHE_SIZE.to_string())
            .foreign_keys(true);
        // The file path, not the URL: a SQLite URL holds no password, but keep the habit.
        let name = options.get_filename().display().to_string();
        // One connection, kept open for the life of the pool. SQLite allows one writer at a
        // time, and a deferred `BEGIN` that later upgrades from reading to writing fails at once
        // with SQLITE_BUSY when another connection holds the write lock: the busy handler is not
        // invoked for it, so `busy_timeout` does not help. A single connection serialises every
        // statement and transaction in this process, which rules that out. Should reads ever
        // need to run in parallel, add a separate read-only pool and keep this one for writes.
        // Never closing it also keeps a `sqlite::memory:` database alive.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::Database(format!("cannot open SQLite database {name}: {e}"))
            })?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| {
                StoreError::Database(format!("cannot migrate SQLite database {name}: {e}"))
            })?;
        let (changes, _) = broadcast::channel(CAPACITY);
        Ok(SqliteStore { pool, changes })
    }

    /// The connection pool, for statements outside the store's methods (health checks, tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A transaction that holds the write lock from its first statement.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with(BEGIN_WRITE).await?)
    }

    pub(super) fn changes(&self) -> &broadcast::Sender<Change> {
        &self.changes
    }

    /// One process: the change goes straight to this process's listeners.
    pub(super) async fn announce(&self, change: Change) {
        // Err only while nobody listens; nobody to tell then.
        let _ = self.changes.send(change);
    }
}

#[cfg(test)]
mod perf;
#[cfg(test)]
mod tests;
