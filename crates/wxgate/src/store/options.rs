//! How the store connects: pool size and timeouts (PostgreSQL; SQLite keeps one connection).

use std::time::Duration;

/// Connection settings from the configuration (`database_pool_size`,
/// `database_statement_timeout`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Connections per instance (PostgreSQL). A fleet of N instances opens up to N × this.
    pub pool_size: u32,
    /// A statement running longer than this is cancelled by the server (PostgreSQL
    /// `statement_timeout`), so a stuck query cannot hold a connection forever.
    pub statement_timeout: Duration,
    /// How long a request waits for a free connection (or for the server to accept one)
    /// before it fails with [`StoreError::Unavailable`](super::StoreError::Unavailable).
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            pool_size: 16,
            statement_timeout: Duration::from_secs(30),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}
