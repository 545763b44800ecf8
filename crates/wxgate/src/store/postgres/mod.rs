//! The PostgreSQL backend: one database shared by every instance of a fleet.
//!
//! Migrations (`migrations/postgres/`, embedded at compile time) run at start under sqlx's
//! advisory lock, so instances starting together apply them one at a time. Changes are
//! announced with `NOTIFY` and heard by every instance's listener (`listen.rs`). Its own SQL
//! (the queue: `COPY`, `FOR UPDATE SKIP LOCKED` claims, batched finishes) is in `queue.rs`;
//! the portable SQL lives beside each concern's trait.

mod listen;
mod queue;
mod upload;

pub(crate) use upload::PgUpload;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::changes::{CAPACITY, CHANNEL, Change};
use super::{StoreError, StoreOptions};

/// How long `connect` waits for the change listener to be in place.
const LISTEN_READY: Duration = Duration::from_secs(5);

/// A pool of PostgreSQL connections with migrations applied, and the change listener.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// Changes heard on the database's channel (from every instance, this one included).
    changes: broadcast::Sender<Change>,
    /// Stops the listener task when the last clone of this store is dropped.
    _listener: Arc<DropGuard>,
}

impl PgStore {
    pub(super) async fn connect(url: &str, options: &StoreOptions) -> Result<PgStore, StoreError> {
        let (connect, name) = connect_options(url, options)?;
        probe(&connect, &name, options.acquire_timeout).await?;
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| unreachable(&name, e))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| {
                StoreError::Database(format!("cannot migrate PostgreSQL database {name}: {e}"))
            })?;
        // Every message is updated twice on its way out; without autovacuum the dead row
        // versions pile up in the queue index and each claim walks them (seen: a 100k campaign
        // 7x slower). Worth a warning, not a refusal: some test servers run without it.
        let autovacuum: Option<String> = sqlx::query_scalar("SELECT current_setting('autovacuum')")
            .fetch_optional(&pool)
            .await
            .unwrap_or(None);
        if autovacuum.as_deref() == Some("off") {
            tracing::warn!(database = %name, "PostgreSQL runs with autovacuum = off: the outbox slows down as sent messages leave dead rows behind; turn it on for production");
        }
        let (changes, _) = broadcast::channel(CAPACITY);
        let stop = CancellationToken::new();
        let (ready, listening) = oneshot::channel();
        // Forwards NOTIFYs into `changes` until every clone of this store is gone.
        tokio::spawn(listen::run(
            pool.clone(),
            changes.clone(),
            stop.clone(),
            ready,
        ));
        // So that a change made right after `connect` returns is heard. The listener keeps
        // trying on its own if it cannot listen yet.
        if tokio::time::timeout(LISTEN_READY, listening).await.is_err() {
            tracing::warn!(
                "store change listener is not listening yet; changes made meanwhile are caught by the next resync"
            );
        }
        Ok(PgStore {
            pool,
            changes,
            _listener: Arc::new(stop.drop_guard()),
        })
    }

    /// The connection pool, for statements outside the store's methods (tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction for writes (PostgreSQL's default isolation, READ COMMITTED: row locks
    /// and unique indexes do the serialising).
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    pub(super) fn changes(&self) -> &broadcast::Sender<Change> {
        &self.changes
    }

    /// `NOTIFY` every instance on this database; this one hears it through its own listener.
    pub(super) async fn announce(&self, change: Change) {
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(change.to_payload())
            .execute(&self.pool)
            .await;
        if let Err(e) = sent {
            tracing::debug!(error = %StoreError::from(e), ?change, "could not announce a change; listeners catch up at their next resync");
        }
    }
}

#[cfg(test)]
mod perf;
#[cfg(test)]
mod tests;

/// The connect options for `url` with wxgate's session settings, and where it points for
/// messages (host:port/database: never the URL, which may hold a password).
fn connect_options(
    url: &str,
    options: &StoreOptions,
) -> Result<(PgConnectOptions, String), StoreError> {
    let connect = PgConnectOptions::from_str(url)
        .map_err(|e| {
            StoreError::Unsupported(format!(
                "invalid PostgreSQL URL ({e}); expected \
                 postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
            ))
        })?
        .application_name("wxgate")
        .options([(
            "statement_timeout",
            format!("{}ms", options.statement_timeout.as_millis()),
        )]);
    let name = format!(
        "{}:{}/{}",
        connect.get_host(),
        connect.get_port(),
        connect.get_database().unwrap_or("")
    );
    Ok((connect, name))
}

fn unreachable(name: &str, e: sqlx::Error) -> StoreError {
    match StoreError::from(e) {
        StoreError::Unavailable(why) | StoreError::Database(why) => {
            StoreError::Unavailable(format!("cannot connect to PostgreSQL at {name}: {why}"))
        }
        other => other,
    }
}

/// One direct connection, closed again. The pool retries until its timeout and then reports
/// only "pool timed out", where an operator needs "connection refused" or "role does not exist".
async fn probe(connect: &PgConnectOptions, name: &str, wait: Duration) -> Result<(), StoreError> {
    let conn = tokio::time::timeout(wait, PgConnection::connect_with(connect))
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "cannot connect to PostgreSQL at {name}: no answer within {wait:?}"
            ))
        })?
        .map_err(|e| unreachable(name, e))?;
    let _ = conn.close().await;
    Ok(())
}

/// Whether `url` names a PostgreSQL server that accepts wxgate's login (`check-config --connect`).
pub(super) async fn check(url: &str, options: &StoreOptions) -> Result<(), StoreError> {
    let (connect, name) = connect_options(url, options)?;
    probe(&connect, &name, options.acquire_timeout).await
}
