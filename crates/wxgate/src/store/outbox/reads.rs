//! Reading the outbox, in portable SQL: one message with its delivery log, listings, campaign
//! counts, exports and the queue depth. Listings and exports are keyset-paged: each page is
//! one short statement, because SQLite mode runs every statement on ONE connection, and a
//! cursor held open across a million-row export would stall every claim and finish until it
//! was done (and on PostgreSQL would hold a pooled connection as long).

use sqlx::AssertSqlSafe;

use crate::store::{Store, StoreError, on_backend, portable};

use super::{
    AttemptOutcome, AttemptRecord, CampaignRecord, CampaignStatus, ExportRow, LoggedAttempt,
    MessageFilter, MessageKind, MessageRecord, MessageState, MessageSummary, QueueDepth,
    StateCounts,
};

/// The columns of [`MessageSummary`], in `SummaryRow` order.
const SUMMARY_COLUMNS: &str = "id, app, kind, campaign_id, recipient, template, state, \
     due_at_ms, attempts, claims, errcode, reason, msgid, created_at_ms, updated_at_ms";

const SELECT_MESSAGE: &str = "SELECT id, app, kind, campaign_id, recipient, template, state, \
     due_at_ms, attempts, claims, errcode, reason, msgid, created_at_ms, updated_at_ms, \
     body, first_claimed_at_ms, lease_owner, lease_until_ms, idempotency_key \
     FROM messages WHERE id = $1";

const SELECT_ATTEMPTS: &str = "SELECT at_ms, instance, latency_ms, errcode, errmsg, msgid, \
     outcome, detail, fenced FROM attempts WHERE message_id = $1 ORDER BY id";

/// A campaign still being uploaded (`uploading_at_ms` set) is not there yet.
const SELECT_CAMPAIGN: &str = "SELECT id, app, kind, template, total, status, created_at_ms \
     FROM campaigns WHERE id = $1 AND uploading_at_ms IS NULL";

/// Read from the `messages_campaign_state` index alone.
const CAMPAIGN_COUNTS: &str =
    "SELECT state, COUNT(*) FROM messages WHERE campaign_id = $1 GROUP BY state";

/// Export pages follow the `messages_campaign_recipient` index: ordered by the recipient key
/// (the recipient; a WeCom userid in lower case), each recipient once, no sort.
const EXPORT_FIRST: &str = concat!(
    "SELECT id, recipient, ",
    recipient_key!(),
    " AS rkey, state, errcode, reason, msgid, attempts, updated_at_ms FROM messages \
     WHERE campaign_id = $1 ORDER BY ",
    recipient_key!(),
    " LIMIT $2"
);

pub(crate) const EXPORT_AFTER: &str = concat!(
    "SELECT id, recipient, ",
    recipient_key!(),
    " AS rkey, state, errcode, reason, msgid, attempts, updated_at_ms FROM messages \
     WHERE campaign_id = $1 AND ",
    recipient_key!(),
    " > $2 ORDER BY ",
    recipient_key!(),
    " LIMIT $3"
);

/// One pass over the `messages_due` index: its size is the queue, not the history. Rows of an
/// upload not yet sealed (due ≥ `$2`, `STAGED_OFFSET`) are not counted.
const QUEUE_DEPTH: &str = "SELECT \
     COALESCE(SUM(CASE WHEN state = 'pending' AND due_at_ms <= $1 THEN 1 ELSE 0 END), 0), \
     COALESCE(SUM(CASE WHEN state = 'pending' AND due_at_ms < $2 THEN 1 ELSE 0 END), 0), \
     COALESCE(SUM(CASE WHEN state = 'sending' THEN 1 ELSE 0 END), 0) \
     FROM messages WHERE state IN ('pending', 'sending')";

#[derive(sqlx::FromRow)]
pub(crate) struct SummaryRow {
    id: String,
    app: String,
    kind: String,
    campaign_id: Option<String>,
    recipient: String,
    template: String,
    state: String,
    due_at_ms: i64,
    attempts: i64,
    claims: i64,
    errcode: Option<i64>,
    reason: Option<String>,
    msgid: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    #[sqlx(flatten)]
    summary: SummaryRow,
    body: String,
    first_claimed_at_ms: Option<i64>,
    lease_owner: Option<String>,
    lease_until_ms: Option<i64>,
    idempotency_key: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct AttemptRow {
    at_ms: i64,
    instance: String,
    latency_ms: i64,
    errcode: Option<i64>,
    errmsg: Option<String>,
    msgid: Option<String>,
    outcome: String,
    detail: Option<String>,
    fenced: bool,
}

#[derive(sqlx::FromRow)]
pub(crate) struct CampaignRow {
    id: String,
    app: String,
    kind: String,
    template: String,
    total: i64,
    status: String,
    created_at_ms: i64,
}

#[derive(sqlx::FromRow)]
pub(crate) struct ExportDbRow {
    id: String,
    recipient: String,
    rkey: String,
    state: String,
    errcode: Option<i64>,
    reason: Option<String>,
    msgid: Option<String>,
    attempts: i64,
    updated_at_ms: i64,
}

impl SummaryRow {
    fn into_summary(self) -> Result<MessageSummary, StoreError> {
        Ok(MessageSummary {
            kind: MessageKind::from_column("message kind", &self.kind)?,
            state: MessageState::from_column("message state", &self.state)?,
            id: self.id,
            app: self.app,
            campaign_id: self.campaign_id,
            recipient: self.recipient,
            template: self.template,
            due_at_ms: self.due_at_ms,
            attempts: self.attempts,
            claims: self.claims,
            errcode: self.errcode,
            reason: self.reason,
            msgid: self.msgid,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        })
    }
}

impl AttemptRow {
    fn into_logged(self) -> Result<LoggedAttempt, StoreError> {
        Ok(LoggedAttempt {
            attempt: AttemptRecord {
                outcome: AttemptOutcome::from_column("attempt outcome", &self.outcome)?,
                at_ms: self.at_ms,
                instance: self.instance,
                latency_ms: self.latency_ms,
                errcode: self.errcode,
                errmsg: self.errmsg,
                msgid: self.msgid,
                detail: self.detail,
            },
            fenced: self.fenced,
        })
    }
}

impl Store {
    /// The message and every attempt at sending it, oldest first.
    pub async fn get_message(&self, id: &str) -> Result<Option<MessageRecord>, StoreError> {
        let found = on_backend!(self, b => b.message(id).await?);
        let Some((row, attempts)) = found else {
            return Ok(None);
        };
        Ok(Some(MessageRecord {
            summary: row.summary.into_summary()?,
            body: row.body,
            first_claimed_at_ms: row.first_claimed_at_ms,
            lease_owner: row.lease_owner,
            lease_until_ms: row.lease_until_ms,
            idempotency_key: row.idempotency_key,
            log: attempts
                .into_iter()
                .map(AttemptRow::into_logged)
                .collect::<Result<_, _>>()?,
        }))
    }

    /// Up to `limit` messages matching `filter`, in id order (creation order for ids from
    /// [`super::new_ids`]), starting after the id `after` (the last id of the previous page).
    ///
    /// Served by an index when the filter names an app, a campaign or an errcode, with or
    /// without a state; a filter on the state alone scans the table.
    pub async fn list_messages(
        &self,
        filter: &MessageFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MessageSummary>, StoreError> {
        let rows = on_backend!(self, b => b.list_messages(filter, after, limit).await?);
        rows.into_iter().map(SummaryRow::into_summary).collect()
    }

    /// The campaign with the number of its messages in each state.
    ///
    /// Cost: one index range over the campaign's messages (~0.1 s for a million).
    pub async fn campaign(&self, id: &str) -> Result<Option<CampaignRecord>, StoreError> {
        let found = on_backend!(self, b => b.campaign(id).await?);
        let Some((row, state_counts)) = found else {
            return Ok(None);
        };
        let mut counts = StateCounts::default();
        for (state, n) in state_counts {
            let state = MessageState::from_column("message state", &state)?;
            counts.add(state, u64::try_from(n).unwrap_or(0));
        }
        Ok(Some(CampaignRecord {
            kind: MessageKind::from_column("campaign kind", &row.kind)?,
            status: CampaignStatus::from_column("campaign status", &row.status)?,
            id: row.id,
            app: row.app,
            template: row.template,
            total: row.total,
            created_at_ms: row.created_at_ms,
            counts,
        }))
    }

    /// One page of the campaign's export, ordered by recipient: up to `limit` rows after the
    /// key `after` (the [`ExportRow::key`] of the last row of the previous page). Pages are read one statement at
    /// a time, so a row finishing between two pages shows its newer state; each recipient
    /// appears exactly once. Empty for an unknown campaign.
    pub async fn export_campaign(
        &self,
        id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ExportRow>, StoreError> {
        let rows = on_backend!(self, b => b.export(id, after, limit).await?);
        rows.into_iter()
            .map(|r| {
                Ok(ExportRow {
                    state: MessageState::from_column("message state", &r.state)?,
                    id: r.id,
                    recipient: r.recipient,
                    key: r.rkey,
                    errcode: r.errcode,
                    reason: r.reason,
                    msgid: r.msgid,
                    attempts: r.attempts,
                    updated_at_ms: r.updated_at_ms,
                })
            })
            .collect()
    }

    /// How many messages are pending (and of those, due by `now_ms`) and sending, for
    /// metrics. Cost proportional to the queue (pending + sending), not the history: ~0.2 s
    /// per million queued messages, so the metrics layer should refresh it every few seconds
    /// at most rather than per scrape of a busy system.
    pub async fn queue_depth(&self, now_ms: i64) -> Result<QueueDepth, StoreError> {
        let (due, pending, sending) = on_backend!(self, b => b.queue_depth(now_ms).await?);
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(QueueDepth {
            due: n(due),
            pending: n(pending),
            sending: n(sending),
        })
    }
}

/// A value bound to a listing's dynamic SQL.
pub(crate) enum Param<'a> {
    Text(&'a str),
    Int(i64),
}

/// The listing statement for `filter` and its parameters, numbered `$1…` in order. Only the
/// shape of the filter goes into the SQL (at most 32 statements), never its values.
pub(crate) fn list_sql<'a>(
    filter: &'a MessageFilter,
    after: Option<&'a str>,
) -> (String, Vec<Param<'a>>) {
    let mut terms = Vec::new();
    let mut params = Vec::new();
    let mut push = |column: &str, op: &str, param: Param<'a>| {
        params.push(param);
        terms.push(format!("{column} {op} ${}", params.len()));
    };
    if let Some(app) = &filter.app {
        push("app", "=", Param::Text(app));
    }
    if let Some(campaign) = &filter.campaign {
        push("campaign_id", "=", Param::Text(campaign));
    }
    if let Some(state) = filter.state {
        push("state", "=", Param::Text(state.as_str()));
    }
    if let Some(errcode) = filter.errcode {
        push("errcode", "=", Param::Int(errcode));
    }
    if let Some(after) = after {
        push("id", ">", Param::Text(after));
    }
    // Not the rows of an upload still staging, nor those of a sealed one not yet released (a
    // million-row campaign takes seconds after its 202; its counts include them meanwhile).
    push("due_at_ms", "<", Param::Int(super::STAGED_OFFSET));
    let mut sql = format!("SELECT {SUMMARY_COLUMNS} FROM messages");
    if !terms.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&terms.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY id LIMIT ${}", params.len() + 1));
    (sql, params)
}

/// What a backend does to read the outbox.
pub(crate) trait OutboxReads {
    async fn message(&self, id: &str) -> Result<Option<(MessageRow, Vec<AttemptRow>)>, StoreError>;
    async fn list_messages(
        &self,
        filter: &MessageFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SummaryRow>, StoreError>;
    async fn campaign(
        &self,
        id: &str,
    ) -> Result<Option<(CampaignRow, Vec<(String, i64)>)>, StoreError>;
    async fn export(
        &self,
        id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ExportDbRow>, StoreError>;
    /// (due, pending, sending).
    async fn queue_depth(&self, now_ms: i64) -> Result<(i64, i64, i64), StoreError>;
}

portable! { impl OutboxReads {
    async fn message(&self, id: &str) -> Result<Option<(MessageRow, Vec<AttemptRow>)>, StoreError> {
        // A read transaction: the row and its log from one snapshot.
        let mut tx = self.pool().begin().await?;
        let row: Option<MessageRow> = sqlx::query_as(SELECT_MESSAGE)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let attempts = sqlx::query_as(SELECT_ATTEMPTS)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some((row, attempts)))
    }

    async fn list_messages(
        &self,
        filter: &MessageFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SummaryRow>, StoreError> {
        let (sql, params) = list_sql(filter, after);
        // Built from fixed column names and placeholder numbers only.
        let mut query = sqlx::query_as(AssertSqlSafe(sql));
        for param in params {
            query = match param {
                Param::Text(v) => query.bind(v),
                Param::Int(v) => query.bind(v),
            };
        }
        Ok(query.bind(i64::from(limit)).fetch_all(self.pool()).await?)
    }

    async fn campaign(
        &self,
        id: &str,
    ) -> Result<Option<(CampaignRow, Vec<(String, i64)>)>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let row: Option<CampaignRow> = sqlx::query_as(SELECT_CAMPAIGN)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let counts = sqlx::query_as(CAMPAIGN_COUNTS)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some((row, counts)))
    }

    async fn export(
        &self,
        id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ExportDbRow>, StoreError> {
        let limit = i64::from(limit);
        let query = match after {
            None => sqlx::query_as(EXPORT_FIRST).bind(id).bind(limit),
            Some(after) => sqlx::query_as(EXPORT_AFTER)
                .bind(id)
                .bind(after)
                .bind(limit),
        };
        Ok(query.fetch_all(self.pool()).await?)
    }

    async fn queue_depth(&self, now_ms: i64) -> Result<(i64, i64, i64), StoreError> {
        Ok(sqlx::query_as(QUEUE_DEPTH)
            .bind(now_ms)
            .bind(super::STAGED_OFFSET)
            .fetch_one(self.pool())
            .await?)
    }
}}
