//! Builders and raw reads shared by the outbox tests.

use crate::store::outbox::*;
use crate::store::{Store, new_ids};

/// The virtual "now" the tests start from (2026-01-01T00:00Z, in ms).
pub const T0: i64 = 1_767_225_600_000;

/// A lease long enough never to expire within a test unless the clock is moved past it.
pub const LEASE: i64 = 30_000;

pub fn message(id: &str, app: &str, due_at_ms: i64) -> NewMessage {
    NewMessage {
        id: id.into(),
        app: app.into(),
        kind: MessageKind::Template,
        recipient: format!("openid-{id}"),
        template: "tpl-1".into(),
        body: format!(r#"{{"touser":"openid-{id}","template_id":"tpl-1","data":{{}}}}"#),
        due_at_ms,
        idempotency: None,
    }
}

pub fn campaign(id: &str, app: &str, due_at_ms: i64) -> NewCampaign {
    NewCampaign {
        id: id.into(),
        app: app.into(),
        kind: MessageKind::Template,
        template: "tpl-1".into(),
        due_at_ms,
        idempotency: None,
    }
}

/// `n` recipients with time-ordered ids and openid-like recipients in scrambled order (as a
/// real list would come), each with a ~150-byte body.
pub fn recipients(tag: &str, n: usize) -> Vec<CampaignMessage> {
    new_ids("msg_", T0)
        .take(n)
        .enumerate()
        .map(|(i, id)| {
            let recipient = format!("o{tag}{:016x}{:010x}", mix(i as u64), i);
            let body = format!(
                r#"{{"touser":"{recipient}","template_id":"tpl-1","data":{{"thing1":{{"value":"Order {i} shipped"}}}}}}"#
            );
            CampaignMessage {
                id,
                recipient,
                body,
            }
        })
        .collect()
}

/// splitmix64: a bijection, so distinct inputs give distinct recipients.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn counts_pending(n: u64) -> StateCounts {
    StateCounts {
        pending: n,
        ..StateCounts::default()
    }
}

/// The message's state, read raw.
pub async fn state_of(store: &Store, id: &str) -> MessageState {
    store.get_message(id).await.unwrap().unwrap().summary.state
}

pub fn attempt(outcome: AttemptOutcome, errcode: Option<i64>) -> AttemptRecord {
    AttemptRecord {
        at_ms: T0,
        instance: "w1".into(),
        latency_ms: 12,
        errcode,
        errmsg: errcode.map(|c| {
            if c == 0 {
                "ok".into()
            } else {
                format!("err {c}")
            }
        }),
        msgid: None,
        outcome,
        detail: None,
    }
}

/// A finish for `claimed` going to `next`, with an attempt record.
pub fn finish(claimed: &Claimed, next: Next) -> Finish {
    let outcome = match &next {
        Next::Sent { .. } => AttemptOutcome::Sent,
        Next::Failed { .. } => AttemptOutcome::Failed,
        Next::Unknown { .. } => AttemptOutcome::Unknown,
        Next::Retry { .. } | Next::Release => AttemptOutcome::Retry,
    };
    Finish {
        id: claimed.id.clone(),
        lease_token: claimed.lease_token.clone(),
        next,
        attempt: Some(attempt(outcome, Some(0))),
        before: None,
    }
}

pub fn sent() -> Next {
    Next::Sent {
        msgid: Some("200228332".into()),
    }
}

pub fn ids(claimed: &[Claimed]) -> Vec<String> {
    let mut ids: Vec<String> = claimed.iter().map(|c| c.id.clone()).collect();
    ids.sort();
    ids
}
