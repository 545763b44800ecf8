//! Recording what happened to claimed messages: a whole batch in ONE transaction (the new
//! states and the delivery log together), fenced by the lease token.
//!
//! A batch costs a handful of statements, not two per message: the finishes are grouped by
//! where they go, each group is one `UPDATE … FROM json_each($1)` over all its messages, and
//! the attempts are one `INSERT … SELECT FROM json_each($1)`. Statements are what costs in
//! SQLite mode (each one is a round trip to the connection's thread), and the batch shape stays
//! fixed, so every statement is prepared once. PostgreSQL will read the same JSON with
//! `jsonb_to_recordset($1)`.

use std::collections::HashSet;

use serde::Serialize;

use crate::store::{Backend, SqliteStore, Store, StoreError};

use super::{AttemptRecord, BEGIN_WRITE, Finish, Next};

/// One statement per kind of finish: applies `SET …` to every message of the batch `$1` (a
/// JSON array of [`Row`]) whose lease is still the caller's, and returns the leases it applied.
/// `$2` is "now". `SET` reads the row as it was before the update.
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

const FINISH_SENT: &str = fenced_batch_update!(
    "state = 'sent', msgid = f.value ->> 'msgid', errcode = NULL, reason = NULL, \
     attempts = attempts + (f.value ->> 'add'), updated_at_ms = $2"
);

const FINISH_FAILED: &str = fenced_batch_update!(
    "state = 'failed', errcode = f.value ->> 'errcode', reason = f.value ->> 'reason', \
     attempts = attempts + (f.value ->> 'add'), updated_at_ms = $2"
);

const FINISH_UNKNOWN: &str = fenced_batch_update!(
    "state = 'unknown', errcode = NULL, reason = f.value ->> 'reason', \
     attempts = attempts + (f.value ->> 'add'), updated_at_ms = $2"
);

const FINISH_RETRY: &str = fenced_batch_update!(
    requeue_state!(),
    ", due_at_ms = f.value ->> 'due', attempts = attempts + (f.value ->> 'add'), \
     errcode = f.value ->> 'errcode', reason = f.value ->> 'reason', updated_at_ms = $2"
);

/// Due at once ("now"), nothing else changed.
const FINISH_RELEASE: &str =
    fenced_batch_update!(requeue_state!(), ", due_at_ms = $2, updated_at_ms = $2");

/// Appends the batch's attempts (`$1`, a JSON array of [`AttemptRow`]) to the delivery log, in
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

/// The statements, in the order they run; a batch runs only those it has finishes for.
const KINDS: [&str; 5] = [
    FINISH_SENT,
    FINISH_FAILED,
    FINISH_UNKNOWN,
    FINISH_RETRY,
    FINISH_RELEASE,
];

/// One finish as the batch statements read it. Absent fields read as NULL.
#[derive(Serialize)]
struct Row<'a> {
    id: &'a str,
    token: &'a str,
    /// Attempts to add to the count.
    add: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    msgid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errcode: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    due: Option<i64>,
}

/// One attempt for the delivery log.
#[derive(Serialize)]
struct AttemptRow<'a> {
    id: &'a str,
    #[serde(flatten)]
    attempt: &'a AttemptRecord,
    fenced: bool,
}

impl<'a> Row<'a> {
    /// The statement (index into [`KINDS`]) and row for `f`.
    fn of(f: &'a Finish) -> (usize, Row<'a>) {
        let call = i64::from(f.attempt.is_some());
        let row = Row {
            id: &f.id,
            token: &f.lease_token,
            add: call,
            msgid: None,
            errcode: None,
            reason: None,
            due: None,
        };
        match &f.next {
            Next::Sent { msgid } => (
                0,
                Row {
                    msgid: msgid.as_deref(),
                    ..row
                },
            ),
            Next::Failed { errcode, reason } => (
                1,
                Row {
                    errcode: *errcode,
                    reason: Some(reason),
                    ..row
                },
            ),
            Next::Unknown { reason } => (
                2,
                Row {
                    reason: Some(reason),
                    ..row
                },
            ),
            Next::Retry {
                due_at_ms,
                count_attempt,
                errcode,
                reason,
            } => (
                3,
                Row {
                    add: i64::from(*count_attempt),
                    errcode: *errcode,
                    reason: Some(reason),
                    due: Some(*due_at_ms),
                    ..row
                },
            ),
            Next::Release => (4, Row { add: 0, ..row }),
        }
    }
}

impl Store {
    /// Applies each finish whose lease is still held, and logs every attempt, in ONE
    /// transaction. Returns, per finish, whether it was applied: `false` means the lease was
    /// taken over (or the message already finished) and nothing about the message changed.
    /// Should a batch name one lease twice, only the first is applied.
    ///
    /// The attempt of a fenced finish is still logged, marked `fenced`: the call to WeChat
    /// happened and may have delivered the message, and the delivery log is every attempt —
    /// that entry is how a duplicate would be explained.
    ///
    /// Attempts counted against the retry budget: `Retry` adds one when `count_attempt`;
    /// `Sent`, `Failed` and `Unknown` add one when an attempt record comes with them (a
    /// message failed before any call, or given up as unknown after a takeover, adds none);
    /// `Release` never.
    pub async fn finish(&self, batch: &[Finish], now_ms: i64) -> Result<Vec<bool>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        match &self.backend {
            Backend::Sqlite(s) => s.finish(batch, now_ms).await,
        }
    }
}

impl SqliteStore {
    async fn finish(&self, batch: &[Finish], now: i64) -> Result<Vec<bool>, StoreError> {
        // Group by statement; a lease named twice goes in once (the first time).
        let mut groups: [Vec<Row<'_>>; 5] = Default::default();
        let mut named = HashSet::with_capacity(batch.len());
        for f in batch {
            if named.insert((f.id.as_str(), f.lease_token.as_str())) {
                let (kind, row) = Row::of(f);
                groups[kind].push(row);
            }
        }
        let mut tx = self.pool().begin_with(BEGIN_WRITE).await?;
        let mut applied: HashSet<(String, String)> = HashSet::with_capacity(batch.len());
        for (sql, rows) in KINDS.iter().zip(&groups) {
            if rows.is_empty() {
                continue;
            }
            let json = serde_json::to_string(rows).expect("finish rows serialize");
            let done: Vec<(String, String)> = sqlx::query_as(*sql)
                .bind(json)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
            applied.extend(done);
        }
        // Each applied lease answers `true` once, for its first finish in the batch.
        let held: Vec<bool> = batch
            .iter()
            .map(|f| applied.remove(&(f.id.clone(), f.lease_token.clone())))
            .collect();
        let attempts: Vec<AttemptRow<'_>> = batch
            .iter()
            .zip(&held)
            .filter_map(|(f, &held)| {
                let attempt = f.attempt.as_ref()?;
                Some(AttemptRow {
                    id: &f.id,
                    attempt,
                    fenced: !held,
                })
            })
            .collect();
        if !attempts.is_empty() {
            let json = serde_json::to_string(&attempts).expect("attempt rows serialize");
            sqlx::query(INSERT_ATTEMPTS)
                .bind(json)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(held)
    }
}

#[cfg(test)]
mod tests;
