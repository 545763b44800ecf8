//! Campaign uploads in SQLite: chunk transactions under a staging campaign, a one-row seal,
//! then the release of the staged rows in chunks (see `outbox/upload.rs` for the protocol).
//! Every statement here is short: the single connection is never held for more than one chunk.

use super::SqliteStore;
use crate::store::outbox::{
    CampaignMessage, INSERT_CAMPAIGN, Idempotency, NewCampaign, STAGED_OFFSET, bind_campaign,
    conflict, recipient_key,
};
use crate::store::{Change, StoreError};

/// Stores one chunk of staged rows: `$1` is a JSON array of `[id, recipient, body]`, `$2`–`$7`
/// are shared by every row (app, kind, campaign, template, staged due, now). A recipient the
/// campaign already has is skipped. (`WHERE true` tells SQLite's parser that `ON CONFLICT`
/// starts the upsert, not a join constraint.)
const STAGE_ROWS: &str = concat!(
    "INSERT INTO messages (id, app, kind, campaign_id, recipient, template, body, state, \
     due_at_ms, created_at_ms, updated_at_ms) \
     SELECT r.value ->> 0, $2, $3, $4, r.value ->> 1, $5, r.value ->> 2, 'pending', $6, $7, $7 \
     FROM json_each($1) AS r WHERE true \
     ON CONFLICT (campaign_id, ",
    recipient_key!(),
    ") WHERE campaign_id IS NOT NULL DO NOTHING"
);

/// The upload's heartbeat, in the chunk's transaction. No row: the janitor already judged the
/// upload abandoned and deleted it.
const TOUCH: &str = "UPDATE campaigns SET uploading_at_ms = $2 \
     WHERE id = $1 AND uploading_at_ms IS NOT NULL";

/// The commit point. Fails on the idempotency index if a racing upload sealed the key first.
const SEAL: &str = "UPDATE campaigns SET uploading_at_ms = NULL, releasing = 1, total = $2, \
     duplicates_skipped = $3, idempotency_key = $4, request_hash = $5, updated_at_ms = $6 \
     WHERE id = $1 AND uploading_at_ms IS NOT NULL";

/// Makes up to `$4` staged rows of campaign `$2` (app `$1`) claimable. Staged rows sit at the
/// end of the app's range of `messages_due` (due ≥ `$3`), so each chunk starts where the last
/// one ended.
const RELEASE: &str = "UPDATE messages SET due_at_ms = due_at_ms - $3 WHERE rowid IN ( \
     SELECT rowid FROM messages WHERE app = $1 AND state IN ('pending', 'sending') \
     AND due_at_ms >= $3 AND campaign_id = $2 LIMIT $4)";

const RELEASED: &str = "UPDATE campaigns SET releasing = 0 WHERE id = $1";

/// Deletes up to `$2` rows of campaign `$1`, only while it is staging (never a sealed one).
const DISCARD_ROWS: &str = "DELETE FROM messages WHERE rowid IN ( \
     SELECT m.rowid FROM messages m WHERE m.campaign_id = $1 AND EXISTS ( \
         SELECT 1 FROM campaigns c WHERE c.id = $1 AND c.uploading_at_ms IS NOT NULL) \
     LIMIT $2)";

const DISCARD_CAMPAIGN: &str =
    "DELETE FROM campaigns WHERE id = $1 AND uploading_at_ms IS NOT NULL";

const ABANDONED: &str = "SELECT id FROM campaigns \
     WHERE uploading_at_ms IS NOT NULL AND uploading_at_ms < $1";

const UNRELEASED: &str = "SELECT id, app FROM campaigns WHERE releasing = 1";

/// Rows per release or discard statement: ~10 ms of the writer each.
const ROWS_PER_STATEMENT: i64 = 2_000;

fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data always serializes")
}

impl SqliteStore {
    /// The staging campaign row: hidden from reads, no idempotency key yet.
    pub(crate) async fn begin_upload(&self, c: &NewCampaign, now: i64) -> Result<(), StoreError> {
        bind_campaign!(
            sqlx::query(INSERT_CAMPAIGN),
            c,
            None::<&Idempotency>,
            now,
            Some(now)
        )
        .execute(self.pool())
        .await
        .map_err(conflict)?;
        Ok(())
    }

    /// Commits one chunk of staged rows; returns how many were new recipients.
    pub(crate) async fn stage(
        &self,
        c: &NewCampaign,
        rows: &[CampaignMessage],
        now: i64,
    ) -> Result<u64, StoreError> {
        let rows_json: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|r| (r.id.as_str(), r.recipient.as_str(), r.body.as_str()))
            .collect();
        let rows_json = json(&rows_json);
        let mut tx = self.begin_write().await?;
        let alive = sqlx::query(TOUCH)
            .bind(&c.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if alive.rows_affected() == 0 {
            return Err(gone(&c.id));
        }
        let done = sqlx::query(STAGE_ROWS)
            .bind(rows_json)
            .bind(&c.app)
            .bind(c.kind.as_str())
            .bind(&c.id)
            .bind(&c.template)
            .bind(c.due_at_ms.saturating_add(STAGED_OFFSET))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(conflict)?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Seals the campaign, then releases its rows: before returning, or (`later`) in a task of
    /// its own, so the upload's answer does not wait for it. `Ok(false)`: the idempotency key
    /// was taken by a racing upload; nothing changed (the caller discards this one).
    pub(crate) async fn seal_upload(
        &self,
        c: &NewCampaign,
        idempotency: Option<&Idempotency>,
        (stored, offered): (u64, u64),
        now: i64,
        later: bool,
    ) -> Result<bool, StoreError> {
        let (key, hash) = match idempotency {
            Some(i) => (Some(i.key.as_str()), Some(i.request_hash.as_str())),
            None => (None, None),
        };
        let sealed = sqlx::query(SEAL)
            .bind(&c.id)
            .bind(stored as i64)
            .bind((offered - stored) as i64)
            .bind(key)
            .bind(hash)
            .bind(now)
            .execute(self.pool())
            .await;
        match sealed {
            Ok(done) if done.rows_affected() == 1 => {}
            Ok(_) => return Err(gone(&c.id)),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        if !later {
            self.release(&c.id, &c.app, false).await?;
            return Ok(true);
        }
        // The campaign is committed (sealed); this makes its rows claimable chunk by chunk,
        // telling the dispatcher after each. It ends when all are released; if the process
        // stops first, the janitor (`recover_uploads`) releases the rest, at the next start
        // at the latest.
        let (store, id, app) = (self.clone(), c.id.clone(), c.app.clone());
        tokio::spawn(async move {
            if let Err(e) = store.release(&id, &app, true).await {
                tracing::warn!(campaign = %id, error = %e, "releasing a sealed campaign's messages failed; the janitor retries within a minute");
            }
        });
        Ok(true)
    }

    /// Makes a sealed campaign's staged rows claimable, a chunk per statement, telling the
    /// dispatcher after each when `tell` (a release in the background; otherwise the caller
    /// announces the whole campaign once).
    async fn release(&self, id: &str, app: &str, tell: bool) -> Result<u64, StoreError> {
        let mut released = 0;
        loop {
            let done = sqlx::query(RELEASE)
                .bind(app)
                .bind(id)
                .bind(STAGED_OFFSET)
                .bind(ROWS_PER_STATEMENT)
                .execute(self.pool())
                .await?;
            released += done.rows_affected();
            if tell && done.rows_affected() > 0 {
                self.announce(Change::Due).await;
            }
            if done.rows_affected() < ROWS_PER_STATEMENT as u64 {
                break;
            }
        }
        sqlx::query(RELEASED).bind(id).execute(self.pool()).await?;
        Ok(released)
    }

    /// Deletes a staging campaign and its rows, a chunk per statement.
    pub(crate) async fn discard_upload(&self, id: &str) -> Result<(), StoreError> {
        loop {
            let done = sqlx::query(DISCARD_ROWS)
                .bind(id)
                .bind(ROWS_PER_STATEMENT)
                .execute(self.pool())
                .await?;
            if done.rows_affected() < ROWS_PER_STATEMENT as u64 {
                break;
            }
        }
        sqlx::query(DISCARD_CAMPAIGN)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Deletes uploads that have not moved since `stale_before`, and releases sealed
    /// campaigns a crash left staged: (campaigns deleted, messages released).
    pub(crate) async fn recover_uploads(
        &self,
        stale_before: i64,
    ) -> Result<(u64, u64), StoreError> {
        let abandoned: Vec<String> = sqlx::query_scalar(ABANDONED)
            .bind(stale_before)
            .fetch_all(self.pool())
            .await?;
        for id in &abandoned {
            tracing::warn!(campaign = %id, "deleting an upload its process abandoned");
            self.discard_upload(id).await?;
        }
        let unreleased: Vec<(String, String)> =
            sqlx::query_as(UNRELEASED).fetch_all(self.pool()).await?;
        let mut released = 0;
        for (id, app) in &unreleased {
            released += self.release(id, app, false).await?;
            tracing::info!(campaign = %id, released, "released a sealed campaign's messages");
        }
        Ok((abandoned.len() as u64, released))
    }
}

/// The upload's staging campaign is no longer there.
fn gone(id: &str) -> StoreError {
    StoreError::Conflict(format!(
        "the upload of campaign {id:?} was abandoned (nothing arrived for minutes) and deleted; \
         send the campaign again"
    ))
}
