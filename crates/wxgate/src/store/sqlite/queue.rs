//! The delivery queue in SQLite's SQL: rows go in and out as one JSON value per statement
//! (`json_each`), and claims pick rows by `rowid`.
//!
//! One JSON value per statement rather than placeholders per row: sqlx looks every placeholder
//! up by name, and SQLite's lookup walks the whole list, so a statement with n placeholders
//! costs O(n²) to bind (with 500 rows, 1,506 placeholders, a quarter of the insert time).
//! Statements are what costs in SQLite mode (each one is a round trip to the connection's
//! thread), and the batch shapes stay fixed, so every statement is prepared once.

use super::SqliteStore;
use crate::store::outbox::{
    Applied, AttemptRow, ClaimArgs, ClaimRow, FinishRow, KINDS, Lease, OutboxQueue, active_apps,
    attempt_rows,
};
use crate::store::{Lane, StoreError};

/// Moves up to `$6` rows that are due (pending and due, or sending with an expired lease: for a
/// sending row `due_at_ms` is the lease end) into `sending` under a new lease, oldest due
/// first, at most `$7` per app, skipping the apps in the JSON array `$5`; `$only` narrows the
/// rows (see [`CLAIM_SINGLES`]). `SET` expressions read the row as it was before the update,
/// so `claims + 1` is the new claim number and `state = 'sending'` tells a takeover of an
/// expired lease.
///
/// `m.rowid IN (correlated subquery … LIMIT)` is SQLite's spelling of a LATERAL join: for each
/// active app, its earliest due rows, read from the index alone.
macro_rules! claim {
    ($only:literal) => {
        concat!(
            active_apps!($only),
            "UPDATE messages SET \
                 state = 'sending', \
                 claims = claims + 1, \
                 lease_owner = $1, \
                 lease_token = (claims + 1) || '.' || $2, \
                 lease_until_ms = $3, \
                 due_at_ms = $3, \
                 first_claimed_at_ms = COALESCE(first_claimed_at_ms, $4), \
                 takeover_claim = CASE WHEN state = 'sending' THEN claims + 1 \
                     ELSE takeover_claim END, \
                 updated_at_ms = $4 \
             WHERE rowid IN ( \
                 SELECT m.rowid FROM active a JOIN messages m ON m.rowid IN ( \
                     SELECT d.rowid FROM messages d \
                     WHERE d.state IN ('pending', 'sending') ",
            $only,
            "AND d.app = a.app AND d.due_at_ms <= $4 \
                     ORDER BY d.due_at_ms LIMIT $7) \
                 WHERE a.app IS NOT NULL AND a.app NOT IN (SELECT value FROM json_each($5)) \
                 ORDER BY m.due_at_ms LIMIT $6) \
             RETURNING id, app, kind, campaign_id, recipient, template, body, attempts, claims, \
                 first_claimed_at_ms, created_at_ms, lease_token, lease_until_ms, takeover_claim"
        )
    };
}

/// Every due row.
pub(super) const CLAIM: &str = claim!("");

/// Single messages only (no campaign), from their own index (`messages_due_single`), active
/// apps included: claimed first, so they do not wait behind the campaigns of their app queued
/// before them, and ~30 µs when there are none (found through `messages_due`, the apps of a
/// million-row campaign cost ~0.5 ms a claim).
pub(super) const CLAIM_SINGLES: &str = claim!("AND campaign_id IS NULL ");

/// The earliest time anything of the apps not skipped (`$1`) becomes claimable, a lease end
/// included: one index seek per active app.
pub(super) const NEXT_DUE: &str = concat!(
    active_apps!(""),
    "SELECT MIN((SELECT MIN(d.due_at_ms) FROM messages d \
                 WHERE d.state IN ('pending', 'sending') AND d.app = a.app)) \
     FROM active a \
     WHERE a.app IS NOT NULL AND a.app NOT IN (SELECT value FROM json_each($1))"
);

/// Extends the leases in `$1` (a JSON array of `{"id","token"}`) still held by `$2` to `$3`,
/// returning those it extended.
const EXTEND_LEASES: &str = "UPDATE messages SET lease_until_ms = $3, due_at_ms = $3 \
     FROM json_each($1) AS l \
     WHERE messages.id = l.value ->> 'id' AND messages.lease_token = l.value ->> 'token' \
     AND messages.lease_owner = $2 AND messages.state = 'sending' \
     RETURNING messages.id, messages.lease_token";

/// One statement per kind of finish: applies `SET …` to every message of the batch `$1` (a
/// JSON array of `FinishRow`) whose lease is still the caller's, and returns the leases it
/// applied. `$2` is "now". `SET` reads the row as it was before the update.
macro_rules! fenced_batch_update {
    ($($set:tt)+) => {
        concat!(
            "UPDATE messages SET ",
            $($set)+,
            ", lease_until_ms = NULL FROM json_each($1) AS f \
             WHERE messages.id = f.value ->> 'id' AND messages.lease_token = f.value ->> 'token' \
             AND messages.state = 'sending' \
             RETURNING messages.id, messages.lease_token"
        )
    };
}

/// Back to pending — or to cancelled when the message's campaign was cancelled meanwhile, so a
/// cancel also stops the messages that were in flight at the time.
macro_rules! requeue_state {
    () => {
        "state = CASE WHEN EXISTS (SELECT 1 FROM campaigns c \
         WHERE c.id = messages.campaign_id AND c.status = 'cancelled') \
         THEN 'cancelled' ELSE 'pending' END"
    };
}

/// The finish statements, in `KINDS` order: sent, failed, unknown, retry, release.
pub(super) const FINISH: [&str; KINDS] = [
    fenced_batch_update!(
        "state = 'sent', msgid = f.value ->> 'msgid', errcode = NULL, reason = NULL, \
         attempts = attempts + (f.value ->> 'add'), updated_at_ms = $2"
    ),
    fenced_batch_update!(
        "state = 'failed', errcode = f.value ->> 'errcode', reason = f.value ->> 'reason', \
         attempts = attempts + (f.value ->> 'add'), updated_at_ms = $2"
    ),
    fenced_batch_update!(
        "state = 'unknown', errcode = NULL, reason = f.value ->> 'reason', \
         attempts = attempts + (f.value ->> 'add'), updated_at_ms = $2"
    ),
    fenced_batch_update!(
        requeue_state!(),
        ", due_at_ms = f.value ->> 'due', attempts = attempts + (f.value ->> 'add'), \
         errcode = f.value ->> 'errcode', reason = f.value ->> 'reason', updated_at_ms = $2"
    ),
    // Due at once ("now"), nothing else changed.
    fenced_batch_update!(requeue_state!(), ", due_at_ms = $2, updated_at_ms = $2"),
];

/// Appends the batch's attempts (`$1`, a JSON array of `AttemptRow`) to the delivery log, in
/// order. Guarded by `EXISTS` rather than left to the foreign key, so the attempt of a message
/// that no longer exists is dropped instead of failing the batch.
const INSERT_ATTEMPTS: &str = "INSERT INTO attempts (message_id, at_ms, instance, latency_ms, \
     errcode, errmsg, msgid, outcome, detail, fenced) \
     SELECT a.value ->> 'id', a.value ->> 'at_ms', a.value ->> 'instance', \
         a.value ->> 'latency_ms', a.value ->> 'errcode', a.value ->> 'errmsg', \
         a.value ->> 'msgid', a.value ->> 'outcome', a.value ->> 'detail', a.value ->> 'fenced' \
     FROM json_each($1) AS a \
     WHERE EXISTS (SELECT 1 FROM messages m WHERE m.id = a.value ->> 'id') \
     ORDER BY a.key";

/// A list of strings as a JSON array, bound once and read with `json_each` (one cached
/// statement whatever the number of apps).
fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data always serializes")
}

impl OutboxQueue for SqliteStore {
    async fn claim(&self, c: &ClaimArgs<'_>) -> Result<Vec<ClaimRow>, StoreError> {
        let sql = match c.lane {
            Lane::All => CLAIM,
            Lane::Singles => CLAIM_SINGLES,
        };
        let rows = sqlx::query_as(sql)
            .bind(c.owner)
            .bind(c.nonce)
            .bind(c.until)
            .bind(c.now)
            .bind(json(c.skip_apps))
            .bind(i64::from(c.limit))
            .bind(i64::from(c.per_app))
            .fetch_all(self.pool())
            .await?;
        Ok(rows)
    }

    async fn next_due(&self, skip_apps: &[String]) -> Result<Option<i64>, StoreError> {
        let next = sqlx::query_scalar(NEXT_DUE)
            .bind(json(skip_apps))
            .fetch_one(self.pool())
            .await?;
        Ok(next)
    }

    async fn extend_leases(
        &self,
        owner: &str,
        leases: &[Lease],
        until: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let rows: Vec<serde_json::Value> = leases
            .iter()
            .map(|l| serde_json::json!({"id": l.id, "token": l.token}))
            .collect();
        let done: Vec<(String, String)> = sqlx::query_as(EXTEND_LEASES)
            .bind(json(&rows))
            .bind(owner)
            .bind(until)
            .fetch_all(self.pool())
            .await?;
        let extended: Applied = done.into_iter().collect();
        Ok(leases
            .iter()
            .map(|l| extended.contains(&(l.id.clone(), l.token.clone())))
            .collect())
    }

    async fn finish_batch(
        &self,
        groups: &[Vec<FinishRow<'_>>; KINDS],
        batch: &[crate::store::Finish],
        now: i64,
    ) -> Result<Applied, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut applied = Applied::with_capacity(batch.len());
        for (sql, rows) in FINISH.iter().zip(groups) {
            if rows.is_empty() {
                continue;
            }
            let done: Vec<(String, String)> = sqlx::query_as(*sql)
                .bind(json(rows))
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
            applied.extend(done);
        }
        let attempts: Vec<AttemptRow<'_>> = attempt_rows(batch, &applied);
        if !attempts.is_empty() {
            sqlx::query(INSERT_ATTEMPTS)
                .bind(json(&attempts))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(applied)
    }
}
