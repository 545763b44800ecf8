//! The delivery queue's protocol, backend-neutral: claims under a lease, lease renewal, and batched finishes fenced by the lease token. The SQL is each
//! backend's own (`sqlite/queue.rs`, `postgres/queue.rs`); this module shapes what goes in and
//! what comes out, so both backends apply exactly the same rules.
//!
//! **Claims** are ONE statement, atomic however many workers and processes claim at once
//! (SQLite runs one writer at a time; PostgreSQL locks the rows it picks `FOR UPDATE SKIP
//! LOCKED`). The claim walks the queue app by app, not as one global line: each app not
//! skipped gives its `per_app` earliest due messages, and the earliest `limit` of those are
//! taken — the same rows a global "ORDER BY due LIMIT n" would take, but the backlog of a
//! paused app is never stepped over.
//!
//! **Finishes** of a batch are grouped by where they go; each group is one statement over all
//! its messages, and the attempts are one insert, all in one transaction.

use std::collections::HashSet;

use serde::Serialize;

use crate::store::{Store, StoreError, on_backend};

use super::{AttemptRecord, Claimed, Finish, Lease, MessageKind, Next};

/// What a backend does for the delivery queue (its hot path, in its own SQL).
pub(crate) trait OutboxQueue {
    async fn claim(&self, claim: &ClaimArgs<'_>) -> Result<Vec<ClaimRow>, StoreError>;
    async fn next_due(&self, skip_apps: &[String]) -> Result<Option<i64>, StoreError>;
    /// For each lease (same order): whether it is still held and was extended.
    async fn extend_leases(
        &self,
        owner: &str,
        leases: &[Lease],
        until: i64,
    ) -> Result<Vec<bool>, StoreError>;
    /// Applies the grouped finishes ([`KINDS`] order) whose lease is held, and logs the
    /// attempts with `fenced` set for those that were not; returns the applied leases.
    /// `batch` is what the groups were made from; its attempts are logged with
    /// [`attempt_rows`].
    async fn finish_batch(
        &self,
        groups: &[Vec<FinishRow<'_>>; KINDS],
        batch: &[Finish],
        now: i64,
    ) -> Result<Applied, StoreError>;
}

/// Inserts a campaign row (no messages yet, `total` 0) unless its app already has one under
/// this idempotency key (`$6`): the check and the insert are one statement, so two requests
/// racing with one key store one. `$8` is `uploading_at_ms` (set: a staging campaign). Bind
/// its values with [`bind_campaign!`].
pub(crate) const INSERT_CAMPAIGN: &str = "INSERT INTO campaigns (id, app, kind, template, \
     total, status, created_at_ms, updated_at_ms, idempotency_key, request_hash, \
     duplicates_skipped, uploading_at_ms) VALUES ($1, $2, $3, $4, 0, 'running', $5, $5, $6, $7, \
     0, $8) ON CONFLICT (app, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING";

/// Binds a [`NewCampaign`] with its idempotency key, "now" and `uploading_at_ms` to
/// [`INSERT_CAMPAIGN`], for either backend's query type.
macro_rules! bind_campaign {
    ($query:expr, $campaign:expr, $idempotency:expr, $now:expr, $uploading:expr) => {{
        let c: &$crate::store::NewCampaign = $campaign;
        let i: Option<&$crate::store::Idempotency> = $idempotency;
        $query
            .bind(&c.id)
            .bind(&c.app)
            .bind(c.kind.as_str())
            .bind(&c.template)
            .bind($now)
            .bind(i.map(|i| i.key.as_str()))
            .bind(i.map(|i| i.request_hash.as_str()))
            .bind($uploading)
    }};
}
pub(crate) use bind_campaign;

/// The leases (message id, lease token) a finish batch applied.
pub(crate) type Applied = HashSet<(String, String)>;

/// Which due messages a claim takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Every due message.
    All,
    /// Single messages only (not of a campaign), from their own index: a statement of its
    /// own, claimed before [`Lane::All`], so no claim statement mixes the two lanes.
    Singles,
}

/// One claim statement's inputs.
pub(crate) struct ClaimArgs<'a> {
    pub owner: &'a str,
    /// 64 random bits, hex: the second half of every lease token of this claim.
    pub nonce: &'a str,
    pub now: i64,
    pub until: i64,
    pub limit: u32,
    pub per_app: u32,
    pub skip_apps: &'a [String],
    pub lane: Lane,
}

/// A claimed row as the claim statement returns it.
#[derive(sqlx::FromRow)]
pub(crate) struct ClaimRow {
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

/// The finish groups, in the order their statements run: sent, failed, unknown, retry,
/// release.
pub(crate) const KINDS: usize = 5;

/// One finish as the batch statements read it. Absent fields read as NULL.
#[derive(Serialize)]
pub(crate) struct FinishRow<'a> {
    pub id: &'a str,
    pub token: &'a str,
    /// Attempts to add to the count.
    pub add: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due: Option<i64>,
}

/// One attempt for the delivery log.
#[derive(Serialize)]
pub(crate) struct AttemptRow<'a> {
    pub id: &'a str,
    #[serde(flatten)]
    pub attempt: &'a AttemptRecord,
    pub fenced: bool,
}

impl<'a> FinishRow<'a> {
    /// The group (index below [`KINDS`]) and row for `f`.
    fn of(f: &'a Finish) -> (usize, FinishRow<'a>) {
        let call = i64::from(f.attempt.is_some());
        let row = FinishRow {
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
                FinishRow {
                    msgid: msgid.as_deref(),
                    ..row
                },
            ),
            Next::Failed { errcode, reason } => (
                1,
                FinishRow {
                    errcode: *errcode,
                    reason: Some(reason),
                    ..row
                },
            ),
            Next::Unknown { reason } => (
                2,
                FinishRow {
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
                FinishRow {
                    add: i64::from(*count_attempt),
                    errcode: *errcode,
                    reason: Some(reason),
                    due: Some(*due_at_ms),
                    ..row
                },
            ),
            Next::Release => (4, FinishRow { add: 0, ..row }),
        }
    }
}

impl Store {
    /// Leases up to `limit` due messages to `owner` until `now_ms + lease_ms`, oldest due
    /// first: pending ones due by `now_ms`, and sending ones whose lease expired (their worker
    /// died; `was_sending` tells). Messages of `skip_apps` (paused apps) are left alone. Each
    /// claim gets a new `lease_token`. The result is sorted by creation.
    pub async fn claim_due(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
        skip_apps: &[String],
    ) -> Result<Vec<Claimed>, StoreError> {
        self.claim_due_per_app(owner, now_ms, lease_ms, limit, limit, skip_apps)
            .await
    }

    /// [`claim_due`](Self::claim_due) taking at most `per_app` messages of any one app, so a
    /// slow (rate-limited) app is not claimed further ahead than it can be sent.
    pub async fn claim_due_per_app(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
        per_app: u32,
        skip_apps: &[String],
    ) -> Result<Vec<Claimed>, StoreError> {
        let lease = (owner, now_ms, lease_ms);
        self.claim_due_in(Lane::All, lease, limit, per_app, skip_apps)
            .await
    }

    /// [`claim_due_per_app`](Self::claim_due_per_app) in `lane`, with the lease as (owner,
    /// now_ms, lease_ms). [`Lane::Singles`] is what a dispatcher claims first, so a single
    /// message does not wait behind the campaign of its app queued before it.
    pub async fn claim_due_in(
        &self,
        lane: Lane,
        (owner, now_ms, lease_ms): (&str, i64, i64),
        limit: u32,
        per_app: u32,
        skip_apps: &[String],
    ) -> Result<Vec<Claimed>, StoreError> {
        if limit == 0 || per_app == 0 {
            return Ok(Vec::new());
        }
        let nonce = format!("{:016x}", rand::random::<u64>());
        let args = ClaimArgs {
            owner,
            nonce: &nonce,
            now: now_ms,
            until: now_ms.saturating_add(lease_ms),
            limit,
            per_app: per_app.min(limit),
            skip_apps,
            lane,
        };
        let rows = on_backend!(self, b => b.claim(&args).await?);
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
        on_backend!(self, b => b.next_due(skip_apps).await)
    }

    /// Moves the end of `owner`'s leases to `until_ms` (for messages that wait long for their
    /// app's pacer, or sends that take long), in one transaction. For each lease: whether it
    /// is still held (false: taken over or finished).
    pub async fn extend_leases(
        &self,
        owner: &str,
        leases: &[Lease],
        until_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        on_backend!(self, b => b.extend_leases(owner, leases, until_ms).await)
    }

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
        // Group by statement; a lease named twice goes in once (the first time).
        let mut groups: [Vec<FinishRow<'_>>; KINDS] = Default::default();
        let mut named = HashSet::with_capacity(batch.len());
        for f in batch {
            if named.insert((f.id.as_str(), f.lease_token.as_str())) {
                let (kind, row) = FinishRow::of(f);
                groups[kind].push(row);
            }
        }
        let applied = on_backend!(self, b => b.finish_batch(&groups, batch, now_ms).await)?;
        Ok(held(batch, &applied))
    }
}

/// Per finish of `batch`: whether it was applied. Each applied lease answers `true` once, for
/// its first finish in the batch.
fn held(batch: &[Finish], applied: &Applied) -> Vec<bool> {
    let mut applied = applied.clone();
    batch
        .iter()
        .map(|f| applied.remove(&(f.id.clone(), f.lease_token.clone())))
        .collect()
}

/// The batch's attempts for the delivery log, in order, each marked `fenced` unless its
/// finish was applied.
pub(crate) fn attempt_rows<'a>(batch: &'a [Finish], applied: &Applied) -> Vec<AttemptRow<'a>> {
    batch
        .iter()
        .zip(held(batch, applied))
        .flat_map(|(f, held)| {
            [f.before.as_ref(), f.attempt.as_ref()]
                .into_iter()
                .flatten()
                .map(move |attempt| AttemptRow {
                    id: &f.id,
                    attempt,
                    fenced: !held,
                })
        })
        .collect()
}
