//! What can go wrong in the store. Messages say what to do and never carry a database URL, a
//! password, a secret or a sealed value.

/// An error from the durable store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The configured database is one this build cannot use.
    #[error("{0}")]
    Unsupported(String),
    /// The database cannot be reached or is not answering right now (refused, dropped,
    /// shutting down, pool exhausted, statement timed out). Nothing is known to be stored:
    /// retry later (with the same Idempotency-Key, in case the write did commit).
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The database failed; sqlx's message, without the URL.
    #[error("database error: {0}")]
    Database(String),
    /// An app's stored secret does not open with the current master key.
    #[error(
        "cannot decrypt the stored secret of app {app:?}: the master key probably changed since \
         it was stored (check WXGATE_MASTER_KEY / WXGATE_MASTER_KEY_FILE and restore the \
         original key), or the row was tampered with"
    )]
    Secret { app: String },
    /// A unique key is taken: a campaign listing one recipient twice, an id used again.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A row holds a value wxgate never writes (unknown kind, bad JSON, …).
    #[error("corrupt data in the database: {0}")]
    Corrupt(String),
}

/// PostgreSQL SQLSTATEs that mean "not now" rather than "wrong": connection exceptions (class
/// 08), the server shutting down or starting (57P01–57P03), too many connections (53300),
/// out of memory or disk (53xxx), a cancelled statement (57014: `statement_timeout`).
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57")
}

impl From<sqlx::Error> for StoreError {
    /// sqlx renders errors from the message the database or the OS gave it, never from the
    /// connection URL, so this keeps the URL and its password out.
    fn from(err: sqlx::Error) -> Self {
        let unavailable = match &err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                db.code().is_some_and(|c| transient_sqlstate(&c))
                    // SQLite: another process holds the write lock past busy_timeout.
                    || db.message().contains("database is locked")
            }
            _ => false,
        };
        if unavailable {
            StoreError::Unavailable(err.to_string())
        } else {
            StoreError::Database(err.to_string())
        }
    }
}

impl StoreError {
    /// Whether waiting and retrying may help (the database is away or busy).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}
