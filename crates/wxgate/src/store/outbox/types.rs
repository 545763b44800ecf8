//! The outbox's public vocabulary: what callers hand in (new messages, campaigns, finishes) and
//! what they get back (claims, records, counts). No SQL here.

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// Declares a string-valued enum stored as TEXT: `as_str` writes the column, `parse` reads it,
/// and serde uses the same names.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// The name stored in the database and used in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value named `text`, if it is one.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// Like `parse`, for a column read back: anything else is corrupt data.
            pub(super) fn from_column(column: &str, text: &str) -> Result<Self, StoreError> {
                Self::parse(text).ok_or_else(|| {
                    StoreError::Corrupt(format!("unknown {column} {text:?}"))
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Which WeChat send API a message goes through: the message module's type, stored as its
/// `as_str()` text.
pub use crate::message::MessageType as MessageKind;

impl MessageKind {
    pub(super) fn from_column(column: &str, text: &str) -> Result<Self, StoreError> {
        match text {
            "template" => Ok(MessageKind::Template),
            "subscribe" => Ok(MessageKind::Subscribe),
            "wecom" => Ok(MessageKind::Wecom),
            _ => Err(StoreError::Corrupt(format!("unknown {column} {text:?}"))),
        }
    }
}

text_enum! {
    /// Where a message is in its life. `Sent`, `Failed`, `Unknown` and `Cancelled` are final
    /// (only `retry_failed` moves `Failed` back to `Pending`).
    MessageState {
        Pending = "pending",
        Sending = "sending",
        Sent = "sent",
        Failed = "failed",
        /// WeChat may have delivered it and retrying is not safe.
        Unknown = "unknown",
        Cancelled = "cancelled",
    }
}

text_enum! {
    /// A campaign's own status. "Done" is not stored: see [`CampaignRecord::is_done`].
    CampaignStatus {
        Running = "running",
        Cancelled = "cancelled",
    }
}

text_enum! {
    /// What one attempt led to (the errcode class decides it).
    AttemptOutcome {
        Sent = "sent",
        /// Transient error: retried after a backoff.
        Retry = "retry",
        /// The token was rejected: refreshed, then retried.
        Refresh = "refresh",
        /// Quota window: retried when it reopens, without spending an attempt.
        Window = "window",
        Failed = "failed",
        Unknown = "unknown",
    }
}

/// A single message to store (`POST /v1/messages`).
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// Unique; see [`super::new_ids`].
    pub id: String,
    pub app: String,
    pub kind: MessageKind,
    pub recipient: String,
    /// template_id, or the WeCom msgtype.
    pub template: String,
    /// The full WeChat JSON body, stored as given.
    pub body: String,
    /// Not sent before this time (`send_at`, or "now").
    pub due_at_ms: i64,
    /// The `Idempotency-Key` (unique per app) and a hash of the request that carried it.
    pub idempotency: Option<Idempotency>,
}

/// An `Idempotency-Key` and the hash of the request it came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

/// What `insert_message` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// The message is stored (committed).
    Created,
    /// The app already has a message with this idempotency key; nothing was stored.
    /// `same_request` is whether it came with the same request hash (a replay, answer with the
    /// first message) or another one (a conflicting reuse of the key).
    Existing { id: String, same_request: bool },
}

/// A campaign to create: one template, many recipients.
#[derive(Clone, Debug)]
pub struct NewCampaign {
    pub id: String,
    pub app: String,
    pub kind: MessageKind,
    pub template: String,
    /// When its messages become due (`send_at`, or "now").
    pub due_at_ms: i64,
    /// The `Idempotency-Key` (unique per app among campaigns) and a hash of the request, for
    /// [`Store::create_campaign`](crate::store::Store::create_campaign); an upload takes them
    /// at its seal instead, when the hash of a streamed request is known.
    pub idempotency: Option<Idempotency>,
}

/// What `create_campaign` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CampaignInserted {
    /// The campaign and all its messages are stored (committed): `total` messages, and
    /// `duplicates_skipped` recipients dropped because they were listed before.
    Created { total: i64, duplicates_skipped: i64 },
    /// The app already has a campaign with this idempotency key; nothing was stored.
    Existing(ExistingCampaign),
}

/// The campaign an app already holds under an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingCampaign {
    pub id: String,
    /// Whether it came with the same request hash: a replay (answer with it) or a conflicting
    /// reuse of the key.
    pub same_request: bool,
    pub total: i64,
    pub duplicates_skipped: i64,
}

/// One recipient of a new campaign: its message id and its own body.
#[derive(Clone, Debug)]
pub struct CampaignMessage {
    pub id: String,
    pub recipient: String,
    pub body: String,
}

/// A message handed to a worker by `claim_due`, leased until `lease_until_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    pub id: String,
    pub app: String,
    pub kind: MessageKind,
    pub campaign_id: Option<String>,
    pub recipient: String,
    pub template: String,
    pub body: String,
    /// Attempts spent so far against the retry budget.
    pub attempts: i64,
    /// Times claimed, this claim included.
    pub claims: i64,
    pub first_claimed_at_ms: i64,
    pub created_at_ms: i64,
    /// The fencing value `finish` and `extend_leases` must present.
    pub lease_token: String,
    pub lease_until_ms: i64,
    /// This claim took over the expired lease of a worker that vanished mid-send: WeChat may
    /// already have this message.
    pub was_sending: bool,
    /// This claim or an earlier one took over an expired lease. Stays true after a `Release`
    /// or `Retry`, when `was_sending` of the next claim is false again.
    pub ever_abandoned: bool,
}

impl Claimed {
    /// The lease, for `extend_leases`.
    pub fn lease(&self) -> Lease {
        Lease {
            id: self.id.clone(),
            token: self.lease_token.clone(),
        }
    }
}

/// A message id and the lease token of a claim of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: String,
    pub token: String,
}

/// The result of working on one claimed message.
#[derive(Clone, Debug)]
pub struct Finish {
    pub id: String,
    pub lease_token: String,
    pub next: Next,
    /// The call made to WeChat, if one was: appended to the delivery log even when the lease
    /// turns out to be lost (then marked `fenced`). For `Sent`, `Failed` and `Unknown` its
    /// presence also counts one attempt.
    pub attempt: Option<AttemptRecord>,
    /// A call made before `attempt` whose token WeChat refused, replayed in place with a new
    /// token: on the delivery log before `attempt`, never counted as an attempt.
    pub before: Option<AttemptRecord>,
}

/// Where a finished message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Delivered. Clears errcode and reason.
    Sent { msgid: Option<String> },
    /// Will never be delivered.
    Failed {
        errcode: Option<i64>,
        reason: String,
    },
    /// May have been delivered; retrying is not safe. Clears errcode.
    Unknown { reason: String },
    /// Back to pending, due at `due_at_ms`; `count_attempt` is false for waits that must not
    /// spend the retry budget (quota windows, token refresh).
    Retry {
        due_at_ms: i64,
        count_attempt: bool,
        errcode: Option<i64>,
        reason: String,
    },
    /// Back to pending, due now, nothing else changed (e.g. its app was paused after the claim).
    Release,
}

/// One call to WeChat, for the delivery log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    pub at_ms: i64,
    /// The instance that made the call.
    pub instance: String,
    pub latency_ms: i64,
    /// None when WeChat gave no answer (transport error, timeout).
    pub errcode: Option<i64>,
    pub errmsg: Option<String>,
    pub msgid: Option<String>,
    pub outcome: AttemptOutcome,
    pub detail: Option<String>,
}

/// An attempt as logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoggedAttempt {
    #[serde(flatten)]
    pub attempt: AttemptRecord,
    /// The worker had lost its lease: the call happened but its result was not applied.
    pub fenced: bool,
}

/// A message with everything known about it (`GET /v1/messages/{id}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MessageRecord {
    #[serde(flatten)]
    pub summary: MessageSummary,
    pub body: String,
    pub first_claimed_at_ms: Option<i64>,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub idempotency_key: Option<String>,
    /// Every attempt, oldest first.
    pub log: Vec<LoggedAttempt>,
}

/// A message as listed: no body, no lease details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MessageSummary {
    pub id: String,
    pub app: String,
    pub kind: MessageKind,
    pub campaign_id: Option<String>,
    pub recipient: String,
    pub template: String,
    pub state: MessageState,
    pub due_at_ms: i64,
    pub attempts: i64,
    pub claims: i64,
    pub errcode: Option<i64>,
    pub reason: Option<String>,
    pub msgid: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Which messages `list_messages` returns; every field set narrows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageFilter {
    pub app: Option<String>,
    pub campaign: Option<String>,
    pub state: Option<MessageState>,
    pub errcode: Option<i64>,
}

/// A campaign and how many of its messages are in each state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CampaignRecord {
    pub id: String,
    pub app: String,
    pub kind: MessageKind,
    pub template: String,
    pub total: i64,
    pub status: CampaignStatus,
    pub created_at_ms: i64,
    pub counts: StateCounts,
}

impl CampaignRecord {
    /// Nothing left to send: no message pending or sending.
    pub fn is_done(&self) -> bool {
        self.counts.pending == 0 && self.counts.sending == 0
    }
}

/// Messages per state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StateCounts {
    pub pending: u64,
    pub sending: u64,
    pub sent: u64,
    pub failed: u64,
    pub unknown: u64,
    pub cancelled: u64,
}

impl StateCounts {
    pub(super) fn add(&mut self, state: MessageState, n: u64) {
        let slot = match state {
            MessageState::Pending => &mut self.pending,
            MessageState::Sending => &mut self.sending,
            MessageState::Sent => &mut self.sent,
            MessageState::Failed => &mut self.failed,
            MessageState::Unknown => &mut self.unknown,
            MessageState::Cancelled => &mut self.cancelled,
        };
        *slot += n;
    }
}

/// One line of a campaign export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExportRow {
    pub id: String,
    pub recipient: String,
    /// Where the next page starts (`after`): the recipient, in lower case for a WeCom userid.
    pub key: String,
    pub state: MessageState,
    pub errcode: Option<i64>,
    pub reason: Option<String>,
    pub msgid: Option<String>,
    pub attempts: i64,
    pub updated_at_ms: i64,
}

/// The active queue, for metrics. Final states are not counted here: their totals grow with
/// history, so the push layer exports them as counters of transitions instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    /// Pending and due now (the backlog).
    pub due: u64,
    /// Pending, due now or later (scheduled sends and retries waiting for their time included).
    pub pending: u64,
    /// Claimed by a worker (leases of dead workers included until they are taken over).
    pub sending: u64,
}

/// What `cancel_message` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancel {
    Cancelled,
    NotFound,
    /// The message is no longer pending: being sent, or already final.
    TooLate(MessageState),
}
