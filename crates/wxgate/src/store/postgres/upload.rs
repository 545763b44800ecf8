//! Campaign uploads in PostgreSQL: one transaction per upload. Chunks are `COPY`'d into a
//! temporary table as they arrive; the seal inserts the campaign row and every distinct
//! recipient in two statements and commits. Until then nothing is visible to any other
//! connection, and a dropped upload rolls back (see `outbox/upload.rs` for the protocol).

use sqlx::{PgPool, Postgres, Transaction};

use super::PgStore;
use crate::store::StoreError;
use crate::store::outbox::{
    CampaignMessage, INSERT_CAMPAIGN, Idempotency, NewCampaign, bind_campaign, conflict,
    recipient_key,
};

/// The upload's rows in arrival order (`seq`), gone with the transaction.
const CREATE_ROWS: &str = "CREATE TEMPORARY TABLE upload_rows (seq bigint GENERATED ALWAYS AS \
     IDENTITY, id text NOT NULL, recipient text NOT NULL, body text NOT NULL) ON COMMIT DROP";

const COPY_ROWS: &str = "COPY upload_rows (id, recipient, body) FROM STDIN WITH (FORMAT csv)";

/// Every distinct recipient, the first one listed kept (rows go in `seq` order, and `DO
/// NOTHING` skips a row whose key an earlier row of the same statement took).
const INSERT_ROWS: &str = concat!(
    "INSERT INTO messages (id, app, kind, campaign_id, recipient, template, body, state, \
     due_at_ms, created_at_ms, updated_at_ms) \
     SELECT id, $1, $2, $3, recipient, $4, body, 'pending', $5, $6, $6 \
     FROM upload_rows ORDER BY seq \
     ON CONFLICT (campaign_id, ",
    recipient_key!(),
    ") WHERE campaign_id IS NOT NULL DO NOTHING"
);

const SET_TOTALS: &str = "UPDATE campaigns SET total = $2, duplicates_skipped = $3 WHERE id = $1";

/// Campaigns of at least this many recipients refresh the planner's statistics once inserted.
const ANALYZE_AFTER: u64 = 5_000;

/// An upload in progress: its transaction (holding one pooled connection).
pub(crate) struct PgUpload {
    tx: Transaction<'static, Postgres>,
    pool: PgPool,
}

impl PgStore {
    pub(crate) async fn begin_upload(&self) -> Result<PgUpload, StoreError> {
        let mut tx = self.begin_write().await?;
        // The seal inserts the whole campaign in one statement: a million rows may take longer
        // than `database_statement_timeout`, which is meant for the short statements.
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *tx)
            .await?;
        sqlx::query(CREATE_ROWS).execute(&mut *tx).await?;
        Ok(PgUpload {
            tx,
            pool: self.pool().clone(),
        })
    }
}

impl PgUpload {
    /// Copies one chunk into the upload's table.
    pub(crate) async fn stage(&mut self, rows: &[CampaignMessage]) -> Result<(), StoreError> {
        let csv_error =
            |e: String| StoreError::Database(format!("cannot write campaign rows: {e}"));
        // Every field quoted: in COPY's CSV an unquoted empty field is NULL, and a quoted `\.`
        // is never the end-of-data marker.
        let mut csv = csv::WriterBuilder::new()
            .has_headers(false)
            .quote_style(csv::QuoteStyle::Always)
            .from_writer(Vec::with_capacity(rows.len() * 256));
        for r in rows {
            csv.write_record([r.id.as_str(), &r.recipient, &r.body])
                .map_err(|e| csv_error(e.to_string()))?;
        }
        let bytes = csv.into_inner().map_err(|e| csv_error(e.to_string()))?;
        let mut copy = self.tx.copy_in_raw(COPY_ROWS).await?;
        copy.send(bytes).await?;
        copy.finish().await?;
        Ok(())
    }

    /// Inserts the campaign and its distinct recipients and commits; the number stored, or
    /// `None` (rolled back) when the app already has a campaign under the idempotency key.
    pub(crate) async fn seal(
        mut self,
        c: &NewCampaign,
        idempotency: Option<&Idempotency>,
        offered: u64,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let created = bind_campaign!(
            sqlx::query(INSERT_CAMPAIGN),
            c,
            idempotency,
            now,
            None::<i64>
        )
        .execute(&mut *self.tx)
        .await
        .map_err(conflict)?;
        if created.rows_affected() == 0 {
            return Ok(None);
        }
        let stored = sqlx::query(INSERT_ROWS)
            .bind(&c.app)
            .bind(c.kind.as_str())
            .bind(&c.id)
            .bind(&c.template)
            .bind(c.due_at_ms)
            .bind(now)
            .execute(&mut *self.tx)
            .await
            .map_err(conflict)?
            .rows_affected();
        sqlx::query(SET_TOTALS)
            .bind(&c.id)
            .bind(stored as i64)
            .bind((offered - stored) as i64)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        if stored >= ANALYZE_AFTER {
            // The planner's row counts come from the last ANALYZE; autovacuum's may be a minute
            // away (or off). Planned for a near-empty table, every claim and finish batch of a
            // big campaign scans the table instead of its indexes (seen: 100k recipients at a
            // quarter of the rate). Best effort: the campaign is committed either way.
            if let Err(e) = sqlx::query("ANALYZE messages").execute(&self.pool).await {
                tracing::warn!(error = %e, "ANALYZE messages after a big campaign failed");
            }
        }
        Ok(Some(stored))
    }
}
