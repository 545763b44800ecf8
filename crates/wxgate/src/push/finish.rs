//! The finisher: writes send results in batches (whatever arrived within a few milliseconds,
//! up to 500, in one transaction), so the store is not asked for a transaction per message.
//! While the store is unavailable the results wait in memory and are written when it is back;
//! should the process die meanwhile, their leases expire and the messages are claimed again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Inner;
use crate::store::Finish;

const BATCH: usize = 500;
/// Tries of a failing batch once the gateway is shutting down.
const SHUTDOWN_TRIES: u32 = 5;
/// Longest pause between two tries of one batch.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Ends when every sender is gone (the dispatcher and all send tasks). After `stop` (shutdown),
/// a batch the store keeps refusing is given up after a few tries: its leases expire and
/// another worker finishes the messages.
pub(crate) async fn run(
    inner: Arc<Inner>,
    mut rx: mpsc::Receiver<Finish>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(5);
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(f)) => batch.push(f),
                _ => break,
            }
        }
        write(&inner, &batch, &stop).await;
        batch.clear();
    }
}

/// Writes one batch, retrying with backoff until it is written: results are never dropped
/// while the process runs.
async fn write(inner: &Inner, batch: &[Finish], stop: &CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let mut tries = 0u32;
    loop {
        match inner.store.finish(batch, inner.clock.now_ms()).await {
            Ok(applied) => {
                let fenced = applied.iter().filter(|a| !**a).count();
                if fenced > 0 {
                    metrics::counter!("wxgate_push_fenced_total").increment(fenced as u64);
                    tracing::warn!(
                        fenced,
                        "results of sends whose lease another worker took over were not applied"
                    );
                }
                if tries > 0 {
                    tracing::info!(
                        n = batch.len(),
                        tries,
                        "send results recorded after the store came back"
                    );
                }
                return;
            }
            Err(e) if stop.is_cancelled() && tries >= SHUTDOWN_TRIES => {
                tracing::error!(error = %e, n = batch.len(), "shutting down with send results the store did not take; their leases will expire and they are claimed again");
                return;
            }
            Err(e) => {
                tries += 1;
                if tries == 1 || tries.is_multiple_of(10) {
                    tracing::warn!(error = %e, n = batch.len(), tries, "recording send results failed; they are kept and retried");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
