//! What can go wrong in the store. Messages say what to do and never carry a database URL, a
//! password, a secret or a sealed value.

/// An error from the durable store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The configured database is one this build cannot use yet.
    #[error("{0}")]
    Unsupported(String),
    /// The database failed or could not be reached; sqlx's message, without the URL.
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

impl From<sqlx::Error> for StoreError {
    /// sqlx renders errors from the message the database or the OS gave it, never from the
    /// connection URL, so this keeps the URL and its password out.
    fn from(err: sqlx::Error) -> Self {
        StoreError::Database(err.to_string())
    }
}
