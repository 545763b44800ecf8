//! The delivery queue in PostgreSQL's SQL: claims lock the rows they pick `FOR UPDATE SKIP LOCKED` (workers of many instances never wait on each
//! other's rows, and never get the same row), and batches come in as typed records
//! (`jsonb_to_recordset`) built from the same JSON the SQLite backend reads.

use super::PgStore;
use crate::store::outbox::{
    Applied, ClaimArgs, ClaimRow, FinishRow, KINDS, Lease, OutboxQueue, active_apps, attempt_rows,
};
use crate::store::{Lane, StoreError};

/// For each active app not in `$5` (a text[]), its `$7` earliest due rows (pending and due, or
/// sending with an expired lease), locked and skipping rows another claim has locked; the
/// earliest `$6` of those move to `sending` under the new lease; `$only` narrows the rows
/// (see [`CLAIM_SINGLES`]). `SET` reads the row as it was before the update (see the SQLite
/// claim for every column).
///
/// The picked rows are updated through `id = ANY (ARRAY(…))`, which is always a primary-key
/// lookup. Joined as `FROM picked`, the planner hash-joined them against a sequential scan of
/// `messages` until the table (history included) held well over 100,000 rows.
macro_rules! claim {
    ($only:literal) => {
        concat!(
            active_apps!($only),
            ", picked AS ( \
         SELECT d.id FROM active a CROSS JOIN LATERAL ( \
             SELECT m.id, m.due_at_ms FROM messages m \
             WHERE m.state IN ('pending', 'sending') ",
            $only,
            "AND m.app = a.app AND m.due_at_ms <= $4 \
             ORDER BY m.due_at_ms LIMIT $7 FOR UPDATE SKIP LOCKED) d \
         WHERE a.app IS NOT NULL AND NOT (a.app = ANY($5)) \
         ORDER BY d.due_at_ms LIMIT $6) \
     UPDATE messages SET \
         state = 'sending', \
         claims = messages.claims + 1, \
         lease_owner = $1, \
         lease_token = (messages.claims + 1)::text || '.' || $2, \
         lease_until_ms = $3, \
         due_at_ms = $3, \
         first_claimed_at_ms = COALESCE(messages.first_claimed_at_ms, $4), \
         takeover_claim = CASE WHEN messages.state = 'sending' THEN messages.claims + 1 \
                          ELSE messages.takeover_claim END, \
         updated_at_ms = $4 \
     WHERE messages.id = ANY (ARRAY(SELECT id FROM picked)) \
     RETURNING messages.id, messages.app, messages.kind, messages.campaign_id, \
         messages.recipient, messages.template, messages.body, messages.attempts, \
         messages.claims, messages.first_claimed_at_ms, messages.created_at_ms, \
         messages.lease_token, messages.lease_until_ms, messages.takeover_claim"
        )
    };
}

/// Every due row.
pub(super) const CLAIM: &str = claim!("");

/// Single messages only (no campaign), from their own index (`messages_due_single`): claimed
/// first, so they do not wait behind the campaigns of their app queued before them.
pub(super) const CLAIM_SINGLES: &str = claim!("AND campaign_id IS NULL ");

/// The earliest time anything of the apps not in `$1` becomes claimable, a lease end included.
pub(super) const NEXT_DUE: &str = concat!(
    active_apps!(""),
    "SELECT MIN((SELECT MIN(d.due_at_ms) FROM messages d \
                 WHERE d.state IN ('pending', 'sending') AND d.app = a.app)) \
     FROM active a WHERE a.app IS NOT NULL AND NOT (a.app = ANY($1))"
);

const EXTEND_LEASES: &str = "UPDATE messages SET lease_until_ms = $4, due_at_ms = $4 \
     FROM UNNEST($1::text[], $2::text[]) AS l(id, token) \
     WHERE messages.id = l.id AND messages.lease_token = l.token \
     AND messages.lease_owner = $3 AND messages.state = 'sending' \
     RETURNING messages.id, messages.lease_token";

/// One statement per kind of finish over the batch `$1` (a JSON array of `FinishRow`), for the
/// messages whose lease is still the caller's; returns the leases it applied. `$2` is "now".
macro_rules! fenced_batch_update {
    ($($set:tt)+) => {
        concat!(
            "UPDATE messages SET ",
            $($set)+,
            ", lease_until_ms = NULL \
             FROM jsonb_to_recordset($1::jsonb) AS f(id text, token text, add bigint, \
                 msgid text, errcode bigint, reason text, due bigint) \
             WHERE messages.id = f.id AND messages.lease_token = f.token \
             AND messages.state = 'sending' \
             RETURNING messages.id, messages.lease_token"
        )
    };
}

/// Back to pending, or to cancelled when its campaign was cancelled meanwhile.
macro_rules! requeue_state {
    () => {
        "state = CASE WHEN EXISTS (SELECT 1 FROM campaigns c \
         WHERE c.id = messages.campaign_id AND c.status = 'cancelled') \
         THEN 'cancelled' ELSE 'pending' END"
    };
}

/// The finish statements, in `KINDS` order: sent, failed, unknown, retry, release.
const FINISH: [&str; KINDS] = [
    fenced_batch_update!(
        "state = 'sent', msgid = f.msgid, errcode = NULL, reason = NULL, \
         attempts = messages.attempts + f.add, updated_at_ms = $2"
    ),
    fenced_batch_update!(
        "state = 'failed', errcode = f.errcode, reason = f.reason, \
         attempts = messages.attempts + f.add, updated_at_ms = $2"
    ),
    fenced_batch_update!(
        "state = 'unknown', errcode = NULL, reason = f.reason, \
         attempts = messages.attempts + f.add, updated_at_ms = $2"
    ),
    fenced_batch_update!(
        requeue_state!(),
        ", due_at_ms = f.due, attempts = messages.attempts + f.add, errcode = f.errcode, \
         reason = f.reason, updated_at_ms = $2"
    ),
    fenced_batch_update!(requeue_state!(), ", due_at_ms = $2, updated_at_ms = $2"),
];

/// The batch's attempts (`$1`, a JSON array of `AttemptRow`), in order; the attempt of a
/// message that no longer exists is dropped instead of failing the batch.
const INSERT_ATTEMPTS: &str = "INSERT INTO attempts (message_id, at_ms, instance, latency_ms, \
     errcode, errmsg, msgid, outcome, detail, fenced) \
     SELECT a.id, a.at_ms, a.instance, a.latency_ms, a.errcode, a.errmsg, a.msgid, a.outcome, \
         a.detail, a.fenced \
     FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (id text, at_ms bigint, instance text, \
         latency_ms bigint, errcode bigint, errmsg text, msgid text, outcome text, \
         detail text, fenced boolean)) WITH ORDINALITY \
         AS a(id, at_ms, instance, latency_ms, errcode, errmsg, msgid, outcome, detail, \
              fenced, ord) \
     WHERE EXISTS (SELECT 1 FROM messages m WHERE m.id = a.id) \
     ORDER BY a.ord";

fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data always serializes")
}

impl OutboxQueue for PgStore {
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
            .bind(c.skip_apps)
            .bind(i64::from(c.limit))
            .bind(i64::from(c.per_app))
            .fetch_all(self.pool())
            .await?;
        Ok(rows)
    }

    async fn next_due(&self, skip_apps: &[String]) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(NEXT_DUE)
            .bind(skip_apps)
            .fetch_one(self.pool())
            .await?)
    }

    async fn extend_leases(
        &self,
        owner: &str,
        leases: &[Lease],
        until: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let ids: Vec<&str> = leases.iter().map(|l| l.id.as_str()).collect();
        let tokens: Vec<&str> = leases.iter().map(|l| l.token.as_str()).collect();
        let done: Vec<(String, String)> = sqlx::query_as(EXTEND_LEASES)
            .bind(&ids)
            .bind(&tokens)
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
        let attempts = attempt_rows(batch, &applied);
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
