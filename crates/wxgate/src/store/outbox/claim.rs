//! Handing due messages to workers under a lease, and telling them when to look again.
//!
//! A claim is ONE statement, so it is atomic however many workers and processes claim at once:
//! SQLite runs one writer at a time; PostgreSQL will lock the rows it picks `FOR UPDATE SKIP
//! LOCKED`.
//!
//! The claim walks the queue app by app, not as one global line: the `messages_due` index is
//! ordered by (app, due_at_ms), each app not paused gives its `limit` earliest due messages,
//! and the earliest `limit` of those are taken — the same rows a global "ORDER BY due LIMIT n"
//! would take, but the messages of a paused app are never stepped over. With one global index,
//! a paused app's backlog of 100,000 due messages ahead of the others cost every claim ~10 ms
//! and halved throughput. Cost now: a seek per app with active messages, plus `limit` rows per
//! app not paused.

use crate::store::{Backend, SqliteStore, Store, StoreError};

use super::{BEGIN_WRITE, Claimed, Lease, MessageKind, apps_json};

/// `active(app)`: the apps that have pending or sending messages, found with one index seek
/// each (a "loose index scan" over `messages_due`), ending with a NULL row. PostgreSQL runs the
/// same recursive CTE.
macro_rules! active_apps {
    () => {
        "WITH RECURSIVE active(app) AS ( \
             SELECT MIN(app) FROM messages WHERE state IN ('pending', 'sending') \
             UNION ALL \
             SELECT (SELECT MIN(m.app) FROM messages m \
                     WHERE m.state IN ('pending', 'sending') AND m.app > active.app) \
             FROM active WHERE active.app IS NOT NULL) "
    };
}

/// Moves up to `$6` rows that are due (pending and due, or sending with an expired lease: for a
/// sending row `due_at_ms` is the lease end) into `sending` under a new lease, oldest due
/// first, skipping the apps in the JSON array `$5`. `SET` expressions read the row as it was
/// before the update, so `claims + 1` is the new claim number and `state = 'sending'` tells a
/// takeover of an expired lease.
///
/// `m.rowid IN (correlated subquery … LIMIT)` is SQLite's spelling of a LATERAL join: for each
/// active app, its earliest due rows, read from the index alone (PostgreSQL: `CROSS JOIN
/// LATERAL (… LIMIT $6 FOR UPDATE SKIP LOCKED)`).
const CLAIM_SQLITE: &str = concat!(
    active_apps!(),
    "UPDATE messages SET \
         state = 'sending', \
         claims = claims + 1, \
         lease_owner = $1, \
         lease_token = (claims + 1) || '.' || $2, \
         lease_until_ms = $3, \
         due_at_ms = $3, \
         first_claimed_at_ms = COALESCE(first_claimed_at_ms, $4), \
         takeover_claim = CASE WHEN state = 'sending' THEN claims + 1 ELSE takeover_claim END, \
         updated_at_ms = $4 \
     WHERE rowid IN ( \
         SELECT m.rowid FROM active a JOIN messages m ON m.rowid IN ( \
             SELECT d.rowid FROM messages d \
             WHERE d.state IN ('pending', 'sending') AND d.app = a.app AND d.due_at_ms <= $4 \
             ORDER BY d.due_at_ms LIMIT $6) \
         WHERE a.app IS NOT NULL AND a.app NOT IN (SELECT value FROM json_each($5)) \
         ORDER BY m.due_at_ms LIMIT $6) \
     RETURNING id, app, kind, campaign_id, recipient, template, body, attempts, claims, \
         first_claimed_at_ms, created_at_ms, lease_token, lease_until_ms, takeover_claim"
);

/// The earliest time anything of the apps not paused (`$1`) becomes claimable, a lease end
/// included: one index seek per active app.
const NEXT_DUE_SQLITE: &str = concat!(
    active_apps!(),
    "SELECT MIN((SELECT MIN(d.due_at_ms) FROM messages d \
                 WHERE d.state IN ('pending', 'sending') AND d.app = a.app)) \
     FROM active a \
     WHERE a.app IS NOT NULL AND a.app NOT IN (SELECT value FROM json_each($1))"
);

const EXTEND_LEASE: &str = "UPDATE messages SET lease_until_ms = $4, due_at_ms = $4 \
     WHERE id = $1 AND lease_token = $2 AND lease_owner = $3 AND state = 'sending'";

/// A claimed row as `RETURNING` gives it.
#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: String,
    app: String,
    kind: String,
    campaign_id: Option<String>,
    recipient: String,
    template: String,
    body: String,
    attempts: i64,
    claims: i64,
    first_claimed_at_ms: Option<i64>,
    created_at_ms: i64,
    lease_token: String,
    lease_until_ms: i64,
    takeover_claim: Option<i64>,
}

impl ClaimRow {
    fn into_claimed(self) -> Result<Claimed, StoreError> {
        Ok(Claimed {
            kind: MessageKind::from_column("message kind", &self.kind)?,
            was_sending: self.takeover_claim == Some(self.claims),
            ever_abandoned: self.takeover_claim.is_some(),
            first_claimed_at_ms: self.first_claimed_at_ms.ok_or_else(|| {
                StoreError::Corrupt(format!("message {:?}: claimed but no first claim", self.id))
            })?,
            id: self.id,
            app: self.app,
            campaign_id: self.campaign_id,
            recipient: self.recipient,
            template: self.template,
            body: self.body,
            attempts: self.attempts,
            claims: self.claims,
            created_at_ms: self.created_at_ms,
            lease_token: self.lease_token,
            lease_until_ms: self.lease_until_ms,
        })
    }
}

impl Store {
    /// Leases up to `limit` due messages to `owner` until `now_ms + lease_ms`, oldest due
    /// first: pending ones due by `now_ms`, and sending ones whose lease expired (their worker
    /// died; `was_sending` tells). Messages of `skip_apps` (paused apps) are left alone. Each
    /// claim gets a new `lease_token`. The result is sorted by creation (the rows picked are
    /// the earliest due).
    ///
    /// Cost: an index seek per app with pending or sending messages, plus up to `limit` index
    /// entries per app not skipped; a paused app's backlog costs nothing (see `perf.rs`).
    pub async fn claim_due(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
        skip_apps: &[String],
    ) -> Result<Vec<Claimed>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let nonce = format!("{:016x}", rand::random::<u64>());
        let until = now_ms.saturating_add(lease_ms);
        let rows = match &self.backend {
            Backend::Sqlite(s) => {
                s.claim(owner, &nonce, now_ms, until, limit, skip_apps)
                    .await?
            }
        };
        let mut claimed = rows
            .into_iter()
            .map(ClaimRow::into_claimed)
            .collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Ok(claimed)
    }

    /// When the next message of an app not in `skip_apps` becomes claimable (possibly already
    /// past), counting the end of leases; `None` when nothing is pending or sending. Workers
    /// sleep until then (or until told new work arrived) instead of polling.
    pub async fn next_due_ms(&self, skip_apps: &[String]) -> Result<Option<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.next_due(skip_apps).await,
        }
    }

    /// Moves the end of `owner`'s leases to `until_ms` (for sends that take long), in one
    /// transaction. For each lease: whether it is still held (false: taken over or finished).
    pub async fn extend_leases(
        &self,
        owner: &str,
        leases: &[Lease],
        until_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        match &self.backend {
            Backend::Sqlite(s) => s.extend_leases(owner, leases, until_ms).await,
        }
    }
}

impl SqliteStore {
    async fn claim(
        &self,
        owner: &str,
        nonce: &str,
        now: i64,
        until: i64,
        limit: u32,
        skip_apps: &[String],
    ) -> Result<Vec<ClaimRow>, StoreError> {
        let rows = sqlx::query_as(CLAIM_SQLITE)
            .bind(owner)
            .bind(nonce)
            .bind(until)
            .bind(now)
            .bind(apps_json(skip_apps))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        Ok(rows)
    }

    async fn next_due(&self, skip_apps: &[String]) -> Result<Option<i64>, StoreError> {
        let next = sqlx::query_scalar(NEXT_DUE_SQLITE)
            .bind(apps_json(skip_apps))
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
        let mut tx = self.pool().begin_with(BEGIN_WRITE).await?;
        let mut held = Vec::with_capacity(leases.len());
        for lease in leases {
            let done = sqlx::query(EXTEND_LEASE)
                .bind(&lease.id)
                .bind(&lease.token)
                .bind(owner)
                .bind(until)
                .execute(&mut *tx)
                .await?;
            held.push(done.rows_affected() == 1);
        }
        tx.commit().await?;
        Ok(held)
    }
}

#[cfg(test)]
mod tests;
