//! The change listener of a PostgreSQL store: one connection that `LISTEN`s on the changes
//! channel and forwards every notification into the store's broadcast. When the connection is
//! lost it reconnects with backoff and sends [`Change::Resync`], since notifications sent
//! meanwhile are gone.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

use crate::store::StoreError;
use crate::store::changes::{CHANNEL, Change};

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Runs until `stop` is cancelled (the store's last clone is dropped) or the pool is closed.
/// `ready` is told once the first `LISTEN` is in place (or failed).
pub(super) async fn run(
    pool: PgPool,
    tx: broadcast::Sender<Change>,
    stop: CancellationToken,
    ready: oneshot::Sender<()>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut lost = false;
    let mut ready = Some(ready);
    loop {
        let (live, e) = tokio::select! {
            _ = stop.cancelled() => return,
            e = session(&pool, &tx, lost, &mut ready) => e,
        };
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        if matches!(e, sqlx::Error::PoolClosed) {
            return;
        }
        if live {
            backoff = BACKOFF_MIN;
        }
        if !lost || live {
            tracing::warn!(error = %StoreError::from(e), "store change listener lost its connection; reconnecting");
        }
        lost = true;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One listening connection, until it fails: whether it had gone live, and why it ended.
/// `after_loss`: announce a resync once live, since notifications were missed meanwhile.
async fn session(
    pool: &PgPool,
    tx: &broadcast::Sender<Change>,
    after_loss: bool,
    ready: &mut Option<oneshot::Sender<()>>,
) -> (bool, sqlx::Error) {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(e) => return (false, e),
    };
    if let Err(e) = listener.listen(CHANNEL).await {
        return (false, e);
    }
    if let Some(ready) = ready.take() {
        let _ = ready.send(());
    }
    if after_loss {
        tracing::info!("store change listener is back");
        // Err only while nobody listens; nobody to tell then.
        let _ = tx.send(Change::Resync);
    }
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => match Change::from_payload(n.payload()) {
                Some(change) => {
                    let _ = tx.send(change);
                }
                None => tracing::debug!(payload = n.payload(), "ignoring an unknown change"),
            },
            // The connection dropped and was remade: what was sent meanwhile is lost.
            Ok(None) => {
                let _ = tx.send(Change::Resync);
            }
            Err(e) => return (true, e),
        }
    }
}
