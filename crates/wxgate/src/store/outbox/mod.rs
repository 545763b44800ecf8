//! The durable outbox: messages waiting to be pushed, campaigns (one template, many
//! recipients) and the delivery log (every call made to WeChat).
//!
//! A message's life:
//!
//! ```text
//!            claim_due                     finish
//! pending ─────────────▶ sending ─────────────────────────▶ sent | failed | unknown
//!    ▲  ▲                 │   │
//!    │  └─────────────────┘   └─ lease expires: claimable again (was_sending = true)
//!    │   finish: Retry / Release (→ cancelled instead if its campaign was cancelled)
//!    └── retry_failed (failed)          cancel_*: pending → cancelled
//! ```
//!
//! **Fencing.** Each claim sets a new `lease_token`, `"{claims}.{nonce}"`: `claims` is the
//! row's claim counter, bumped by the same atomic statement that hands out the lease and never
//! decreased, so two claims of one row never share it; `nonce` is 64 random bits drawn per
//! `claim_due` call, so even a counter rolled back (a database restored from a backup while old
//! workers still run) does not hand out a token again. `finish` and `extend_leases` act only
//! `WHERE id = … AND lease_token = … AND state = 'sending'`: a worker whose lease was taken
//! over changes nothing. A late finish whose lease expired but was not taken over still
//! applies: nobody else is working on the message.
//!
//! **Time** is always passed in (`now_ms`) so tests can drive a virtual clock; nothing here
//! reads the system clock.
//!
//! **Transactions** never span a call to WeChat: a worker claims (one statement), sends with no
//! transaction open, then finishes a whole batch in one transaction. SQLite write transactions
//! start with `BEGIN IMMEDIATE`, which takes the write lock up front (waiting up to
//! `busy_timeout` for it), so even two processes on one file never see SQLITE_BUSY half-way
//! through a transaction; PostgreSQL claims lock the rows they pick `FOR UPDATE SKIP LOCKED`,
//! so workers of many instances never wait on each other's rows.

/// What makes two recipients of one campaign the same: the recipient, compared
/// case-insensitively for WeCom userids (as WeCom treats them). The SQL expression of the
/// `messages_campaign_recipient` unique index, verbatim: statements that name it as their
/// conflict target or page by it must spell it exactly so.
macro_rules! recipient_key {
    () => {
        "(CASE WHEN kind = 'wecom' THEN lower(recipient) ELSE recipient END)"
    };
}
pub(crate) use recipient_key;

/// `active(app)`: the apps that have pending or sending messages (narrowed by `$only`, a
/// condition on the row's columns, unqualified), one index seek each (a "loose index scan"),
/// ending with a NULL row. The same SQL for both backends.
macro_rules! active_apps {
    ($only:literal) => {
        concat!(
            "WITH RECURSIVE active(app) AS ( \
                 SELECT MIN(app) FROM messages WHERE state IN ('pending', 'sending') ",
            $only,
            " UNION ALL \
                 SELECT (SELECT MIN(m.app) FROM messages m \
                         WHERE m.state IN ('pending', 'sending') AND m.app > active.app ",
            $only,
            ") FROM active WHERE active.app IS NOT NULL) "
        )
    };
}
pub(crate) use active_apps;

mod queue;
mod reads;
mod types;
mod upload;
mod writes;

pub use queue::Lane;
pub(crate) use queue::{
    Applied, AttemptRow, ClaimArgs, ClaimRow, FinishRow, INSERT_CAMPAIGN, KINDS, OutboxQueue,
    attempt_rows, bind_campaign,
};
#[cfg(test)]
pub(crate) use reads::{EXPORT_AFTER, Param, list_sql};
pub(crate) use upload::STAGED_OFFSET;
pub use upload::{ABANDONED_AFTER_MS, CampaignUpload, UPLOAD_CHUNK};
pub(crate) use writes::conflict;

pub use types::{
    AttemptOutcome, AttemptRecord, CampaignInserted, CampaignMessage, CampaignRecord,
    CampaignStatus, Cancel, Claimed, ExistingCampaign, ExportRow, Finish, Idempotency, Inserted,
    Lease, LoggedAttempt, MessageFilter, MessageKind, MessageRecord, MessageState, MessageSummary,
    NewCampaign, NewMessage, Next, QueueDepth, StateCounts,
};

/// Ids that sort in creation order: `prefix`, the creation time in ms as 11 hex digits, then a
/// counter started at a random 63-bit value, as 16 hex digits.
///
/// Ids of one sequence increase, so a campaign's messages go into the id indexes in order
/// (appends, not random inserts: this matters for a million rows), and listing by id lists by
/// creation time. Two sequences started in the same millisecond collide only if their random
/// starts fall within the number of ids drawn of each other (1M ids: odds ~2⁻⁴²).
#[derive(Clone, Debug)]
pub struct IdSeq {
    prefix: String,
    time: u64,
    next: u64,
}

impl Iterator for IdSeq {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let id = format!("{}{:011x}{:016x}", self.prefix, self.time, self.next);
        self.next = self.next.wrapping_add(1);
        Some(id)
    }
}

/// A fresh [`IdSeq`], e.g. `new_ids("msg_", now_ms)` for a campaign's messages.
pub fn new_ids(prefix: &str, now_ms: i64) -> IdSeq {
    IdSeq {
        prefix: prefix.to_owned(),
        time: u64::try_from(now_ms).unwrap_or(0),
        next: rand::random::<u64>() >> 1,
    }
}

/// One id, e.g. `new_id("msg_", now_ms)` → `msg_0194f3a2b1c4d2e8a91f03b6c5d7`.
pub fn new_id(prefix: &str, now_ms: i64) -> String {
    new_ids(prefix, now_ms).next().expect("an IdSeq never ends")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_then_sequence_and_do_not_repeat() {
        let ids: Vec<String> = new_ids("msg_", 1_767_196_000_000).take(1000).collect();
        assert!(ids.iter().all(|id| id.len() == 4 + 11 + 16), "{}", ids[0]);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing");
        let later = new_id("msg_", 1_767_196_000_001);
        assert!(later > ids[999], "{later} sorts after {}", ids[999]);
        let other = new_id("msg_", 1_767_196_000_000);
        assert!(!ids.contains(&other));
        assert!(new_id("cmp_", 0).starts_with("cmp_00000000000"));
    }
}
