//! The upload janitor: at start and every minute, deletes campaign uploads whose process died
//! half-way (nothing committed for `ABANDONED_AFTER_MS`) and makes claimable the messages of
//! campaigns sealed just before a crash (see `store/outbox/upload.rs`). Started by
//! [`Pusher::spawn`](super::Pusher::spawn) with the workers; ends with their stop token.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Inner;

/// How often the janitor looks. Abandoned uploads only cost disk meanwhile (they are hidden).
const EVERY: Duration = Duration::from_secs(60);

pub(super) async fn run(inner: Arc<Inner>, stop: CancellationToken) {
    // The first tick is immediate: a start after a crash releases a sealed campaign at once.
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match inner.store.recover_uploads(inner.clock.now_ms()).await {
            Ok((0, 0)) => {}
            // Released messages were announced as due work by the store.
            Ok((deleted, released)) => {
                tracing::info!(deleted, released, "recovered campaign uploads")
            }
            Err(e) => tracing::warn!(error = %e, "cannot recover campaign uploads"),
        }
    }
}
