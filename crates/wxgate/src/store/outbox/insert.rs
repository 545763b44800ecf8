//! Storing new work: one message with its idempotency key, or a whole campaign in one
//! transaction. Both return only after the commit: a 202 means committed (invariant 7).

use sqlx::{AssertSqlSafe, Connection, SqliteConnection};

use crate::store::sqlite::SQLITE_CACHE_SIZE;
use crate::store::{Backend, SqliteStore, Store, StoreError};

use super::{
    BEGIN_WRITE, CampaignInserted, CampaignMessage, ExistingCampaign, Idempotency, Inserted,
    NewCampaign, NewMessage,
};

/// Inserts a message unless its app already has one with this idempotency key: the check and
/// the insert are one statement, so two requests racing with one key store one message.
const INSERT_MESSAGE: &str = "INSERT INTO messages (id, app, kind, recipient, template, body, \
     state, due_at_ms, idempotency_key, request_hash, created_at_ms, updated_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, $10) \
     ON CONFLICT (app, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING";

const SELECT_BY_KEY: &str =
    "SELECT id, request_hash FROM messages WHERE app = $1 AND idempotency_key = $2";

/// Inserts a campaign unless its app already has one under this idempotency key (`$7`): the
/// check and the insert are one statement, so two requests racing with one key store one.
const INSERT_CAMPAIGN: &str = "INSERT INTO campaigns (id, app, kind, template, total, status, \
     created_at_ms, updated_at_ms, idempotency_key, request_hash, duplicates_skipped) \
     VALUES ($1, $2, $3, $4, $5, 'running', $6, $6, $7, $8, $9) \
     ON CONFLICT (app, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING";

const SELECT_CAMPAIGN_BY_KEY: &str = "SELECT id, request_hash, total, duplicates_skipped \
     FROM campaigns WHERE app = $1 AND idempotency_key = $2";

/// Inserts one chunk of a campaign's messages: `$1` is a JSON array of `[id, recipient, body]`,
/// `$2`–`$7` are shared by every row (app, kind, campaign, template, due, now).
///
/// One JSON value per chunk rather than three placeholders per row: sqlx looks every
/// placeholder up by name, and SQLite's lookup walks the whole list, so a statement with n
/// placeholders costs O(n²) to bind: with 500 rows (1,506 placeholders) that was a quarter of
/// the insert time. PostgreSQL will read the same rows with `jsonb_to_recordset` (or take
/// three arrays for `unnest`).
const INSERT_CAMPAIGN_ROWS: &str = "INSERT INTO messages (id, app, kind, campaign_id, recipient, \
     template, body, state, due_at_ms, created_at_ms, updated_at_ms) \
     SELECT r.value ->> 0, $2, $3, $4, r.value ->> 1, $5, r.value ->> 2, 'pending', $6, $7, $7 \
     FROM json_each($1) AS r";

/// Rows per INSERT: big enough that the statements' round trips do not matter (1,000 per
/// million rows), small enough to keep each JSON value around 200 KB.
const CAMPAIGN_CHUNK: usize = 1000;

/// From this many recipients on, the campaign's transaction gets a bigger page cache…
const BIG_CAMPAIGN: usize = 10_000;

/// …of this many KiB (memory is taken only as pages are touched).
const CAMPAIGN_CACHE_KIB: i64 = 64 * 1024;

impl Store {
    /// Stores a pending message due at `msg.due_at_ms`, or finds the one its app already holds
    /// under the same idempotency key (keys are scoped per app, and kept as long as the message).
    pub async fn insert_message(
        &self,
        msg: &NewMessage,
        now_ms: i64,
    ) -> Result<Inserted, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.insert_message(msg, now_ms).await,
        }
    }

    /// The campaign `app` already holds under idempotency key `key`, if any, and whether it
    /// came with `request_hash`. A cheap look before validating a big request that may be a
    /// replay; `create_campaign` makes the same check atomically.
    pub async fn campaign_by_key(
        &self,
        app: &str,
        idempotency: &Idempotency,
    ) -> Result<Option<ExistingCampaign>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                let mut conn = s.pool().acquire().await?;
                campaign_by_key(&mut conn, app, idempotency).await
            }
        }
    }

    /// Stores the campaign and one pending message per recipient in ONE transaction, so either
    /// all of it is committed or none — unless the app already has a campaign under the same
    /// idempotency key: then nothing is stored and that campaign is returned. A recipient
    /// listed twice (or an id already used) fails the whole campaign with
    /// [`StoreError::Conflict`]: callers deduplicate first, the database is the backstop.
    /// `total` is the number of recipients.
    ///
    /// Fastest when the recipients come sorted (deduplicating by sorting does that) and their
    /// ids are drawn from one [`super::IdSeq`] in that order: every index then grows at its
    /// end. A million rows took ~13 s that way and ~17-22 s in random order (release build,
    /// 2-core VM); the store's one connection is busy meanwhile.
    pub async fn create_campaign(
        &self,
        campaign: &NewCampaign,
        recipients: &[CampaignMessage],
        now_ms: i64,
    ) -> Result<CampaignInserted, StoreError> {
        let result = match &self.backend {
            Backend::Sqlite(s) => s.create_campaign(campaign, recipients, now_ms).await,
        };
        result.map_err(|e| match e {
            StoreError::Conflict(why) => StoreError::Conflict(format!(
                "campaign {:?} was not created: a recipient is listed twice, or an id is \
                 already used ({why})",
                campaign.id
            )),
            other => other,
        })
    }
}

impl SqliteStore {
    async fn insert_message(&self, msg: &NewMessage, now: i64) -> Result<Inserted, StoreError> {
        let (key, hash) = match &msg.idempotency {
            Some(i) => (Some(i.key.as_str()), Some(i.request_hash.as_str())),
            None => (None, None),
        };
        let mut tx = self.pool().begin_with(BEGIN_WRITE).await?;
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

    async fn create_campaign(
        &self,
        campaign: &NewCampaign,
        recipients: &[CampaignMessage],
        now: i64,
    ) -> Result<CampaignInserted, StoreError> {
        let mut conn = self.pool().acquire().await?;
        if recipients.len() < BIG_CAMPAIGN {
            return insert_campaign(&mut conn, campaign, recipients, now).await;
        }
        // The recipient index takes a big campaign's rows in random order; with SQLite's usual
        // page cache (SQLITE_CACHE_SIZE) its pages spill to the WAL and are read back at every
        // insert. A bigger cache for this one transaction halves a million-row insert. Set back
        // afterwards: kept big, it slows every later commit (SQLite walks its page-cache hash
        // when a transaction ends), ~10% on claim + finish. Should this future be dropped
        // half-way, the next big campaign sets it back.
        let sql = format!("PRAGMA cache_size = -{CAMPAIGN_CACHE_KIB}");
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await?;
        let result = insert_campaign(&mut conn, campaign, recipients, now).await;
        let sql = format!("PRAGMA cache_size = {SQLITE_CACHE_SIZE}");
        let restored = sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await;
        let inserted = result?;
        restored?;
        Ok(inserted)
    }
}

/// The campaign and its messages, in one transaction on `conn`.
async fn insert_campaign(
    conn: &mut SqliteConnection,
    campaign: &NewCampaign,
    recipients: &[CampaignMessage],
    now: i64,
) -> Result<CampaignInserted, StoreError> {
    let total = i64::try_from(recipients.len()).unwrap_or(i64::MAX);
    let (key, hash) = match &campaign.idempotency {
        Some(i) => (Some(i.key.as_str()), Some(i.request_hash.as_str())),
        None => (None, None),
    };
    // Dropped without commit on any error: the rollback leaves nothing behind.
    let mut tx = conn.begin_with(BEGIN_WRITE).await?;
    let done = sqlx::query(INSERT_CAMPAIGN)
        .bind(&campaign.id)
        .bind(&campaign.app)
        .bind(campaign.kind.as_str())
        .bind(&campaign.template)
        .bind(total)
        .bind(now)
        .bind(key)
        .bind(hash)
        .bind(i64::try_from(campaign.duplicates_skipped).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(conflict)?;
    if done.rows_affected() == 0 {
        let existing = match &campaign.idempotency {
            Some(i) => campaign_by_key(&mut tx, &campaign.app, i).await?,
            None => None,
        };
        // Nothing was written: the transaction is rolled back as it is dropped.
        return existing.map(CampaignInserted::Existing).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "campaign {:?} was neither inserted nor a duplicate",
                campaign.id
            ))
        });
    }
    for chunk in recipients.chunks(CAMPAIGN_CHUNK) {
        let rows: Vec<(&str, &str, &str)> = chunk
            .iter()
            .map(|r| (r.id.as_str(), r.recipient.as_str(), r.body.as_str()))
            .collect();
        let json = serde_json::to_string(&rows).expect("campaign rows serialize");
        sqlx::query(INSERT_CAMPAIGN_ROWS)
            .bind(json)
            .bind(&campaign.app)
            .bind(campaign.kind.as_str())
            .bind(&campaign.id)
            .bind(&campaign.template)
            .bind(campaign.due_at_ms)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(conflict)?;
    }
    tx.commit().await?;
    Ok(CampaignInserted::Created)
}

/// The campaign `app` holds under the idempotency key, read on `conn`.
async fn campaign_by_key(
    conn: &mut SqliteConnection,
    app: &str,
    idempotency: &Idempotency,
) -> Result<Option<ExistingCampaign>, StoreError> {
    let row: Option<(String, Option<String>, i64, i64)> = sqlx::query_as(SELECT_CAMPAIGN_BY_KEY)
        .bind(app)
        .bind(&idempotency.key)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(
        row.map(|(id, hash, total, duplicates_skipped)| ExistingCampaign {
            id,
            same_request: hash.as_deref() == Some(idempotency.request_hash.as_str()),
            total,
            duplicates_skipped,
        }),
    )
}

/// A unique-key violation as [`StoreError::Conflict`] with the database's words; anything else
/// as a database error.
fn conflict(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        _ => err.into(),
    }
}

#[cfg(test)]
mod tests;
