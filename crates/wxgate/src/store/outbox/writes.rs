//! New work and operator actions in portable SQL: one message with its idempotency key,
//! campaign idempotency lookups, cancelling a campaign or a message, retrying a campaign's
//! failures. Every method returns after the commit: a 202 means committed (invariant 7).

use crate::store::{Change, Store, StoreError, on_backend, portable};

use super::{Cancel, ExistingCampaign, Idempotency, Inserted, MessageState, NewMessage};

/// Inserts a message unless its app already has one with this idempotency key: the check and
/// the insert are one statement, so two requests racing with one key store one message (on
/// PostgreSQL the second waits for the first's commit on the unique index, then does nothing).
const INSERT_MESSAGE: &str = "INSERT INTO messages (id, app, kind, recipient, template, body, \
     state, due_at_ms, idempotency_key, request_hash, created_at_ms, updated_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, $10) \
     ON CONFLICT (app, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING";

const SELECT_BY_KEY: &str =
    "SELECT id, request_hash FROM messages WHERE app = $1 AND idempotency_key = $2";

pub(crate) const SELECT_CAMPAIGN_BY_KEY: &str = "SELECT id, request_hash, total, \
     duplicates_skipped FROM campaigns WHERE app = $1 AND idempotency_key = $2";

const SET_CAMPAIGN_STATUS: &str =
    "UPDATE campaigns SET status = $2, updated_at_ms = $3 WHERE id = $1";

/// Only pending messages: sending ones finish normally (a `Retry` or `Release` of them then
/// lands in `cancelled`, see the queue's finish), final ones stay as they are.
const CANCEL_CAMPAIGN_MESSAGES: &str = "UPDATE messages SET state = 'cancelled', \
     updated_at_ms = $2 WHERE campaign_id = $1 AND state = 'pending'";

const CANCEL_MESSAGE: &str = "UPDATE messages SET state = 'cancelled', updated_at_ms = $2 \
     WHERE id = $1 AND state = 'pending'";

const STATE_OF: &str = "SELECT state FROM messages WHERE id = $1";

/// Failed → pending, due now, with a fresh retry budget. The last errcode and reason stay until
/// the next attempt replaces them.
const RETRY_FAILED: &str = "UPDATE messages SET state = 'pending', due_at_ms = $2, \
     attempts = 0, updated_at_ms = $2 WHERE campaign_id = $1 AND state = 'failed'";

/// What a backend does to store new work and apply operator actions.
pub(crate) trait OutboxWrites {
    async fn insert_message(&self, msg: &NewMessage, now: i64) -> Result<Inserted, StoreError>;
    async fn campaign_by_key(
        &self,
        app: &str,
        idempotency: &Idempotency,
    ) -> Result<Option<ExistingCampaign>, StoreError>;
    /// Sets the campaign's status and runs `messages_sql` (`$1` campaign, `$2` now) over its
    /// messages in one transaction; `None` if the campaign does not exist.
    async fn campaign_update(
        &self,
        id: &str,
        status: &str,
        messages_sql: &'static str,
        now: i64,
    ) -> Result<Option<u64>, StoreError>;
    async fn cancel_message(&self, id: &str, now: i64) -> Result<Cancel, StoreError>;
}

impl Store {
    /// Stores a pending message due at `msg.due_at_ms`, or finds the one its app already holds
    /// under the same idempotency key (keys are scoped per app, and kept as long as the message).
    pub async fn insert_message(
        &self,
        msg: &NewMessage,
        now_ms: i64,
    ) -> Result<Inserted, StoreError> {
        let inserted = on_backend!(self, b => b.insert_message(msg, now_ms).await)?;
        if inserted == Inserted::Created {
            self.announce(Change::Due).await;
        }
        Ok(inserted)
    }

    /// The campaign `app` already holds under this idempotency key, if any, and whether it
    /// came with the same request hash. A cheap look before validating a big request that may
    /// be a replay; `create_campaign` makes the same check atomically.
    pub async fn campaign_by_key(
        &self,
        app: &str,
        idempotency: &Idempotency,
    ) -> Result<Option<ExistingCampaign>, StoreError> {
        on_backend!(self, b => b.campaign_by_key(app, idempotency).await)
    }

    /// Marks the campaign cancelled and cancels its pending messages, in one transaction.
    /// Returns how many messages it cancelled, or `None` if there is no such campaign.
    pub async fn cancel_campaign(&self, id: &str, now_ms: i64) -> Result<Option<u64>, StoreError> {
        let sql = CANCEL_CAMPAIGN_MESSAGES;
        on_backend!(self, b => b.campaign_update(id, "cancelled", sql, now_ms).await)
    }

    /// Cancels the message if it is still pending.
    pub async fn cancel_message(&self, id: &str, now_ms: i64) -> Result<Cancel, StoreError> {
        on_backend!(self, b => b.cancel_message(id, now_ms).await)
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
        let sql = RETRY_FAILED;
        let n =
            on_backend!(self, b => b.campaign_update(campaign_id, "running", sql, now_ms).await)?;
        if n.is_some_and(|n| n > 0) {
            self.announce(Change::Due).await;
        }
        Ok(n)
    }
}

/// The existing campaign a `SELECT_CAMPAIGN_BY_KEY` row describes.
pub(crate) fn existing_campaign(
    row: (String, Option<String>, i64, i64),
    idempotency: &Idempotency,
) -> ExistingCampaign {
    let (id, hash, total, duplicates_skipped) = row;
    ExistingCampaign {
        id,
        same_request: hash.as_deref() == Some(idempotency.request_hash.as_str()),
        total,
        duplicates_skipped,
    }
}

portable! { impl OutboxWrites {
    async fn insert_message(&self, msg: &NewMessage, now: i64) -> Result<Inserted, StoreError> {
        let (key, hash) = match &msg.idempotency {
            Some(i) => (Some(i.key.as_str()), Some(i.request_hash.as_str())),
            None => (None, None),
        };
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(INSERT_MESSAGE)
            .bind(&msg.id)
            .bind(&msg.app)
            .bind(msg.kind.as_str())
            .bind(&msg.recipient)
            .bind(&msg.template)
            .bind(&msg.body)
            .bind(msg.due_at_ms)
            .bind(key)
            .bind(hash)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(conflict)?;
        let inserted = match (done.rows_affected(), key) {
            (1, _) => Inserted::Created,
            (_, Some(key)) => {
                let (id, stored): (String, Option<String>) = sqlx::query_as(SELECT_BY_KEY)
                    .bind(&msg.app)
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
                Inserted::Existing {
                    id,
                    same_request: stored.as_deref() == hash,
                }
            }
            (_, None) => {
                return Err(StoreError::Corrupt(format!(
                    "message {:?} was neither inserted nor a duplicate",
                    msg.id
                )));
            }
        };
        tx.commit().await?;
        Ok(inserted)
    }

    async fn campaign_by_key(
        &self,
        app: &str,
        idempotency: &Idempotency,
    ) -> Result<Option<ExistingCampaign>, StoreError> {
        let row = sqlx::query_as(SELECT_CAMPAIGN_BY_KEY)
            .bind(app)
            .bind(&idempotency.key)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|row| existing_campaign(row, idempotency)))
    }

    async fn campaign_update(
        &self,
        id: &str,
        status: &str,
        messages_sql: &'static str,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let mut tx = self.begin_write().await?;
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
}}

/// A unique-key violation as [`StoreError::Conflict`] with the database's words; anything else
/// as a database error.
pub(crate) fn conflict(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        _ => err.into(),
    }
}
