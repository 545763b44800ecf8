//! Operator actions: cancelling a campaign or a message, and retrying a campaign's failures.

use crate::store::{Backend, SqliteStore, Store, StoreError};

use super::{BEGIN_WRITE, Cancel, MessageState};

const SET_CAMPAIGN_STATUS: &str =
    "UPDATE campaigns SET status = $2, updated_at_ms = $3 WHERE id = $1";

/// Only pending messages: sending ones finish normally (a `Retry` or `Release` of them then
/// lands in `cancelled`, see `finish.rs`), final ones stay as they are.
const CANCEL_CAMPAIGN_MESSAGES: &str = "UPDATE messages SET state = 'cancelled', \
     updated_at_ms = $2 WHERE campaign_id = $1 AND state = 'pending'";

const CANCEL_MESSAGE: &str = "UPDATE messages SET state = 'cancelled', updated_at_ms = $2 \
     WHERE id = $1 AND state = 'pending'";

const STATE_OF: &str = "SELECT state FROM messages WHERE id = $1";

/// Failed → pending, due now, with a fresh retry budget. The last errcode and reason stay until
/// the next attempt replaces them.
const RETRY_FAILED: &str = "UPDATE messages SET state = 'pending', due_at_ms = $2, \
     attempts = 0, updated_at_ms = $2 WHERE campaign_id = $1 AND state = 'failed'";

impl Store {
    /// Marks the campaign cancelled and cancels its pending messages, in one transaction.
    /// Returns how many messages it cancelled, or `None` if there is no such campaign.
    pub async fn cancel_campaign(&self, id: &str, now_ms: i64) -> Result<Option<u64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.cancel_campaign(id, now_ms).await,
        }
    }

    /// Cancels the message if it is still pending.
    pub async fn cancel_message(&self, id: &str, now_ms: i64) -> Result<Cancel, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.cancel_message(id, now_ms).await,
        }
    }

    /// Puts the campaign's failed messages back to pending, due at `now_ms`, with their
    /// attempts reset; sent, unknown and cancelled ones are untouched. A cancelled campaign is
    /// running again afterwards (asking to retry means "send these"). Returns how many
    /// messages it re-queued, or `None` if there is no such campaign.
    pub async fn retry_failed(
        &self,
        campaign_id: &str,
        now_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.retry_failed(campaign_id, now_ms).await,
        }
    }
}

impl SqliteStore {
    async fn cancel_campaign(&self, id: &str, now: i64) -> Result<Option<u64>, StoreError> {
        self.campaign_update(id, "cancelled", CANCEL_CAMPAIGN_MESSAGES, now)
            .await
    }

    async fn retry_failed(&self, id: &str, now: i64) -> Result<Option<u64>, StoreError> {
        self.campaign_update(id, "running", RETRY_FAILED, now).await
    }

    /// Sets the campaign's status and runs `messages_sql` (`$1` campaign, `$2` now) over its
    /// messages in one transaction; `None` if the campaign does not exist.
    async fn campaign_update(
        &self,
        id: &str,
        status: &str,
        messages_sql: &'static str,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let mut tx = self.pool().begin_with(BEGIN_WRITE).await?;
        let found = sqlx::query(SET_CAMPAIGN_STATUS)
            .bind(id)
            .bind(status)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if found.rows_affected() == 0 {
            return Ok(None);
        }
        let changed = sqlx::query(messages_sql)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(changed.rows_affected()))
    }

    async fn cancel_message(&self, id: &str, now: i64) -> Result<Cancel, StoreError> {
        let done = sqlx::query(CANCEL_MESSAGE)
            .bind(id)
            .bind(now)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 1 {
            return Ok(Cancel::Cancelled);
        }
        let state: Option<String> = sqlx::query_scalar(STATE_OF)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        match state {
            None => Ok(Cancel::NotFound),
            Some(state) => Ok(Cancel::TooLate(MessageState::from_column(
                "message state",
                &state,
            )?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use crate::store::testutil::TempDb;

    #[tokio::test]
    async fn cancelling_a_campaign_stops_what_is_pending() {
        let db = TempDb::new("outbox-cancel");
        let store = db.connect().await;
        store
            .create_campaign(&campaign("c", "oa", T0), &recipients("c", 10), T0)
            .await
            .unwrap();
        let got = store.claim_due("w", T0, LEASE, 3, &[]).await.unwrap();
        store.finish(&[finish(&got[0], sent())], T0).await.unwrap();

        assert_eq!(store.cancel_campaign("c", T0 + 1).await.unwrap(), Some(7));
        assert_eq!(store.cancel_campaign("c", T0 + 2).await.unwrap(), Some(0));
        assert_eq!(store.cancel_campaign("nope", T0).await.unwrap(), None);
        let rec = store.campaign("c").await.unwrap().unwrap();
        assert_eq!(rec.status, CampaignStatus::Cancelled);
        let expected = StateCounts {
            sending: 2,
            sent: 1,
            cancelled: 7,
            ..StateCounts::default()
        };
        assert_eq!(rec.counts, expected);
        assert!(!rec.is_done(), "two are still being sent");
        // In-flight ones finish normally.
        let batch = [finish(&got[1], sent()), finish(&got[2], sent())];
        assert_eq!(store.finish(&batch, T0 + 3).await.unwrap(), [true, true]);
        let rec = store.campaign("c").await.unwrap().unwrap();
        assert_eq!((rec.counts.sent, rec.counts.cancelled), (3, 7));
        assert!(rec.is_done());
        assert!(
            store
                .claim_due("w", T0 + 10, LEASE, 100, &[])
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn cancelling_a_message_only_while_pending() {
        let db = TempDb::new("outbox-cancel-one");
        let store = db.connect().await;
        for (id, due) in [("a", T0), ("b", T0 + 10_000)] {
            store
                .insert_message(&message(id, "oa", due), T0)
                .await
                .unwrap();
        }
        let got = store.claim_due("w", T0, LEASE, 10, &[]).await.unwrap();
        assert_eq!(ids(&got), ["a"]);
        assert_eq!(
            store.cancel_message("a", T0).await.unwrap(),
            Cancel::TooLate(MessageState::Sending)
        );
        assert_eq!(
            store.cancel_message("b", T0 + 1).await.unwrap(),
            Cancel::Cancelled
        );
        assert_eq!(
            store.cancel_message("b", T0 + 2).await.unwrap(),
            Cancel::TooLate(MessageState::Cancelled)
        );
        assert_eq!(
            store.cancel_message("zz", T0).await.unwrap(),
            Cancel::NotFound
        );
        let b = store.get_message("b").await.unwrap().unwrap();
        assert_eq!(
            (b.summary.state, b.summary.updated_at_ms),
            (MessageState::Cancelled, T0 + 1)
        );
        assert!(
            store
                .claim_due("w", T0 + 10_000, LEASE, 10, &[])
                .await
                .unwrap()
                .is_empty(),
            "a cancelled message is never claimed"
        );
    }

    #[tokio::test]
    async fn retry_failed_requeues_only_failures_with_a_fresh_budget() {
        let db = TempDb::new("outbox-retry-failed");
        let store = db.connect().await;
        store
            .create_campaign(&campaign("c", "oa", T0), &recipients("c", 5), T0)
            .await
            .unwrap();
        let got = store.claim_due("w", T0, LEASE, 4, &[]).await.unwrap();
        let failed = || Next::Failed {
            errcode: Some(-1),
            reason: "gave up".into(),
        };
        let unknown = Next::Unknown {
            reason: "timeout".into(),
        };
        let batch = [
            finish(&got[0], failed()),
            finish(&got[1], failed()),
            finish(&got[2], sent()),
            finish(&got[3], unknown),
        ];
        store.finish(&batch, T0 + 1).await.unwrap();
        store.cancel_campaign("c", T0 + 2).await.unwrap();

        let later = T0 + 100_000;
        assert_eq!(store.retry_failed("c", later).await.unwrap(), Some(2));
        assert_eq!(store.retry_failed("nope", later).await.unwrap(), None);
        let rec = store.campaign("c").await.unwrap().unwrap();
        assert_eq!(rec.status, CampaignStatus::Running);
        let expected = StateCounts {
            pending: 2,
            sent: 1,
            unknown: 1,
            cancelled: 1,
            ..StateCounts::default()
        };
        assert_eq!(rec.counts, expected);
        let again = store.claim_due("w", later, LEASE, 10, &[]).await.unwrap();
        assert_eq!(ids(&again), ids(&got[..2]));
        assert!(again.iter().all(|c| c.attempts == 0 && c.claims == 2));
        assert_eq!(store.retry_failed("c", later).await.unwrap(), Some(0));
    }
}
