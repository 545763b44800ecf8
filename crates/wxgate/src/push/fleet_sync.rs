//! Fleet mode: applies the pauses and template rejections other instances publish (their
//! 45009, 45011 or 40037), so the whole fleet stops sending what one instance learnt is
//! pointless. After the event stream was lost (and at start), every app's are read again.

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::Inner;
use crate::coord::{CoordEvent, RedisCoord};

/// Runs until `stop` or the event stream closes. Starts by reading every app's pause and
/// rejected templates (the fleet may have them from before this instance started).
pub(crate) async fn run(
    inner: Arc<Inner>,
    coord: RedisCoord,
    mut events: broadcast::Receiver<CoordEvent>,
    stop: CancellationToken,
) {
    read_all(&inner, &coord).await;
    loop {
        let ev = tokio::select! {
            _ = stop.cancelled() => return,
            ev = events.recv() => ev,
        };
        match ev {
            Ok(CoordEvent::Paused { app }) => read_pause(&inner, &coord, &app).await,
            Ok(CoordEvent::TemplateRejected { app, .. }) => {
                read_templates(&inner, &coord, &app).await
            }
            Ok(CoordEvent::Reconnected) | Err(RecvError::Lagged(_)) => {
                read_all(&inner, &coord).await
            }
            Ok(_) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

async fn read_all(inner: &Inner, coord: &RedisCoord) {
    for app in inner.apps.ids() {
        read_pause(inner, coord, &app).await;
        read_templates(inner, coord, &app).await;
    }
}

async fn read_pause(inner: &Inner, coord: &RedisCoord, app: &str) {
    if let Ok(Some((until_ms, reason))) = coord.get_pause(app).await
        && inner.gate(app).note_pause(until_ms, &reason)
    {
        // The dispatcher skips paused apps from its next claim on.
        inner.wake.notify_one();
    }
}

async fn read_templates(inner: &Inner, coord: &RedisCoord, app: &str) {
    if let Ok(rejected) = coord.rejected_templates(app).await {
        let gate = inner.gate(app);
        for r in rejected {
            gate.note_rejected(&r.template, r.errcode, &r.reason, r.until_ms);
        }
    }
}
