//! Finishing: each transition, fencing by the lease token, the delivery log, batches, late
//! finishes and in-flight messages of a cancelled campaign.

use super::testkit::*;
use super::{TestDb, contract};
use crate::store::{AttemptOutcome, Claimed, Finish, MessageState, Next, StateCounts, Store};

/// One message `m` in the store, claimed by `w1` at T0.
async fn claimed_one(store: &Store) -> Claimed {
    store
        .insert_message(&message("m", "oa", T0), T0)
        .await
        .unwrap();
    let mut got = store.claim_due("w1", T0, LEASE, 1, &[]).await.unwrap();
    got.remove(0)
}

async fn sent_records_msgid_and_the_attempt(db: TestDb) {
    let store = &db.store;
    let c = claimed_one(store).await;
    let done = store.finish(&[finish(&c, sent())], T0 + 100).await.unwrap();
    assert_eq!(done, [true]);
    let rec = store.get_message("m").await.unwrap().unwrap();
    let s = &rec.summary;
    assert_eq!(s.state, MessageState::Sent);
    assert_eq!(s.msgid.as_deref(), Some("200228332"));
    assert_eq!(
        (s.attempts, s.errcode, s.updated_at_ms),
        (1, None, T0 + 100)
    );
    assert_eq!(rec.lease_until_ms, None);
    assert_eq!(rec.log.len(), 1);
    assert_eq!(rec.log[0].attempt, attempt(AttemptOutcome::Sent, Some(0)));
    assert!(!rec.log[0].fenced);
    // Finishing again (the same lease) changes nothing: the message is no longer sending.
    let again = Finish {
        attempt: None,
        before: None,
        ..finish(&c, Next::Unknown { reason: "x".into() })
    };
    assert_eq!(store.finish(&[again], T0 + 200).await.unwrap(), [false]);
    assert_eq!(state_of(store, "m").await, MessageState::Sent);
}

/// Every field of an attempt comes back as it was logged, the optional ones included, and so
/// do the texts of a finish (both travel as JSON into the batch statements), whatever they
/// hold.
async fn an_attempt_is_logged_field_for_field(db: TestDb) {
    let store = &db.store;
    let c = claimed_one(store).await;
    let awkward = "a \"quoted\", back\\slash\nnext line\t✓ 中文";
    let reason = format!("refused: {awkward}");
    let mut f = finish(
        &c,
        Next::Failed {
            errcode: Some(i64::from(i32::MAX) + 1),
            reason: reason.clone(),
        },
    );
    let logged = crate::store::AttemptRecord {
        at_ms: T0 + 7,
        instance: "gw-2".into(),
        latency_ms: 321,
        errcode: Some(i64::from(i32::MAX) + 1),
        errmsg: Some(awkward.into()),
        msgid: Some("3158823".into()),
        outcome: AttemptOutcome::Failed,
        detail: Some(format!("after a token refresh: {awkward}")),
    };
    f.attempt = Some(logged.clone());
    assert_eq!(store.finish(&[f], T0 + 8).await.unwrap(), [true]);
    let rec = store.get_message("m").await.unwrap().unwrap();
    assert_eq!(rec.log.len(), 1);
    assert_eq!((&rec.log[0].attempt, rec.log[0].fenced), (&logged, false));
    assert_eq!(rec.summary.reason, Some(reason));
    assert_eq!(rec.summary.errcode, Some(i64::from(i32::MAX) + 1));
}

/// A call replayed in place after its token was refused: both calls on the log, the refused
/// one first, and one attempt counted.
async fn a_refused_call_replayed_in_place_is_logged_first_and_not_counted(db: TestDb) {
    let store = &db.store;
    let c = claimed_one(store).await;
    let refused = crate::store::AttemptRecord {
        at_ms: T0 + 1,
        errcode: Some(40001),
        outcome: AttemptOutcome::Refresh,
        ..attempt(AttemptOutcome::Refresh, Some(40001))
    };
    let f = Finish {
        before: Some(refused.clone()),
        ..finish(&c, sent())
    };
    assert_eq!(store.finish(&[f], T0 + 9).await.unwrap(), [true]);
    let rec = store.get_message("m").await.unwrap().unwrap();
    let outcomes: Vec<_> = rec.log.iter().map(|a| a.attempt.outcome).collect();
    assert_eq!(outcomes, [AttemptOutcome::Refresh, AttemptOutcome::Sent]);
    assert_eq!(rec.log[0].attempt, refused);
    assert_eq!(
        (rec.summary.state, rec.summary.attempts),
        (MessageState::Sent, 1)
    );
}

async fn failed_and_unknown_are_final_with_their_reason(db: TestDb) {
    let store = &db.store;
    for id in ["f", "u", "v"] {
        store
            .insert_message(&message(id, "oa", T0), T0)
            .await
            .unwrap();
    }
    let got = store.claim_due("w1", T0, LEASE, 10, &[]).await.unwrap();
    let failed = Next::Failed {
        errcode: Some(43101),
        reason: "the user refused subscribe messages".into(),
    };
    let unknown = Next::Unknown {
        reason: "timeout after the request was sent".into(),
    };
    // `v` was failed before any call: no attempt logged, none counted.
    let no_call = Finish {
        attempt: None,
        before: None,
        ..finish(
            &got[2],
            Next::Failed {
                errcode: None,
                reason: "template data breaks a rule".into(),
            },
        )
    };
    let batch = [finish(&got[0], failed), finish(&got[1], unknown), no_call];
    assert_eq!(
        store.finish(&batch, T0 + 1).await.unwrap(),
        [true, true, true]
    );
    let f = store.get_message("f").await.unwrap().unwrap();
    assert_eq!(f.summary.state, MessageState::Failed);
    assert_eq!(f.summary.errcode, Some(43101));
    assert_eq!(
        f.summary.reason.as_deref(),
        Some("the user refused subscribe messages")
    );
    assert_eq!((f.summary.attempts, f.log.len()), (1, 1));
    let u = store.get_message("u").await.unwrap().unwrap();
    assert_eq!(u.summary.state, MessageState::Unknown);
    assert_eq!(u.summary.errcode, None);
    let v = store.get_message("v").await.unwrap().unwrap();
    assert_eq!(v.summary.state, MessageState::Failed);
    assert_eq!((v.summary.attempts, v.log.len()), (0, 0));
    assert!(
        store
            .claim_due("w1", T0 + LEASE * 10, LEASE, 10, &[])
            .await
            .unwrap()
            .is_empty(),
        "final states are never claimed again"
    );
}

async fn retry_goes_back_to_pending_until_its_time(db: TestDb) {
    let store = &db.store;
    let c = claimed_one(store).await;
    let retry = |c: &Claimed, count_attempt, due_at_ms| {
        finish(
            c,
            Next::Retry {
                due_at_ms,
                count_attempt,
                errcode: Some(-1),
                reason: "system busy".into(),
            },
        )
    };
    let due = T0 + 2_000;
    assert_eq!(
        store.finish(&[retry(&c, true, due)], T0 + 1).await.unwrap(),
        [true]
    );
    let rec = store.get_message("m").await.unwrap().unwrap();
    assert_eq!(rec.summary.state, MessageState::Pending);
    assert_eq!((rec.summary.due_at_ms, rec.summary.attempts), (due, 1));
    assert_eq!(rec.summary.errcode, Some(-1));
    assert_eq!(rec.lease_until_ms, None);
    assert!(
        store
            .claim_due("w1", due - 1, LEASE, 1, &[])
            .await
            .unwrap()
            .is_empty()
    );
    let c2 = store.claim_due("w1", due, LEASE, 1, &[]).await.unwrap();
    assert_eq!((c2[0].attempts, c2[0].claims), (1, 2));
    assert!(!c2[0].was_sending);
    // A quota-window wait does not spend the budget.
    store
        .finish(&[retry(&c2[0], false, due + 5)], due)
        .await
        .unwrap();
    let c3 = store.claim_due("w1", due + 5, LEASE, 1, &[]).await.unwrap();
    assert_eq!((c3[0].attempts, c3[0].claims), (1, 3));
    // Release: due now, attempts and errcode untouched.
    store
        .finish(&[finish(&c3[0], Next::Release)], due + 7)
        .await
        .unwrap();
    let rec = store.get_message("m").await.unwrap().unwrap();
    assert_eq!(rec.summary.state, MessageState::Pending);
    assert_eq!((rec.summary.due_at_ms, rec.summary.attempts), (due + 7, 1));
    assert_eq!(rec.summary.errcode, Some(-1));
    assert_eq!(rec.log.len(), 3, "every attempt is logged");
    assert_eq!(rec.first_claimed_at_ms, Some(T0), "never changes");
}

async fn a_stale_lease_changes_nothing_but_its_attempt_is_logged(db: TestDb) {
    let store = &db.store;
    let old = claimed_one(store).await;
    // w1 stalls past its lease; w2 takes the message over.
    let new = store
        .claim_due("w2", T0 + LEASE, LEASE, 1, &[])
        .await
        .unwrap()
        .remove(0);
    assert!(new.was_sending);
    let before = store.get_message("m").await.unwrap().unwrap();

    // w1 wakes up and reports success: fenced.
    let late = finish(&old, sent());
    assert_eq!(
        store.finish(&[late], T0 + LEASE + 5).await.unwrap(),
        [false]
    );
    let after = store.get_message("m").await.unwrap().unwrap();
    assert_eq!(after.summary, before.summary, "the row did not change");
    assert_eq!(after.lease_owner.as_deref(), Some("w2"));
    assert_eq!(after.log.len(), 1);
    assert!(after.log[0].fenced, "logged, marked fenced");
    // A made-up token is fenced too.
    let forged = Finish {
        lease_token: "2.0000000000000000".into(),
        attempt: None,
        before: None,
        ..finish(&new, sent())
    };
    assert_eq!(
        store.finish(&[forged], T0 + LEASE + 6).await.unwrap(),
        [false]
    );

    // w2's result is the one that counts; a batch mixes held and lost leases.
    let failed = Next::Failed {
        errcode: Some(40003),
        reason: "invalid openid".into(),
    };
    let batch = [finish(&new, failed), finish(&old, sent())];
    assert_eq!(
        store.finish(&batch, T0 + LEASE + 7).await.unwrap(),
        [true, false]
    );
    let rec = store.get_message("m").await.unwrap().unwrap();
    assert_eq!(rec.summary.state, MessageState::Failed);
    assert_eq!(rec.summary.msgid, None);
    let fenced: Vec<bool> = rec.log.iter().map(|a| a.fenced).collect();
    assert_eq!(fenced, [true, false, true]);
}

async fn a_lease_named_twice_in_a_batch_applies_once(db: TestDb) {
    let store = &db.store;
    let c = claimed_one(store).await;
    let unknown = Next::Unknown { reason: "x".into() };
    let batch = [finish(&c, sent()), finish(&c, unknown)];
    assert_eq!(store.finish(&batch, T0 + 1).await.unwrap(), [true, false]);
    let rec = store.get_message("m").await.unwrap().unwrap();
    assert_eq!(rec.summary.state, MessageState::Sent);
    assert_eq!(rec.summary.attempts, 1);
    let fenced: Vec<bool> = rec.log.iter().map(|a| a.fenced).collect();
    assert_eq!(fenced, [false, true]);
}

async fn a_late_finish_applies_while_nobody_took_over(db: TestDb) {
    let store = &db.store;
    let c = claimed_one(store).await;
    let done = store
        .finish(&[finish(&c, sent())], T0 + LEASE * 2)
        .await
        .unwrap();
    assert_eq!(done, [true]);
    assert_eq!(state_of(store, "m").await, MessageState::Sent);
}

async fn in_flight_messages_of_a_cancelled_campaign_do_not_come_back(db: TestDb) {
    let store = &db.store;
    let rows = recipients("c", 4);
    store
        .create_campaign(&campaign("c", "oa", T0), &rows, T0)
        .await
        .unwrap();
    let got = store.claim_due("w1", T0, LEASE, 3, &[]).await.unwrap();
    assert_eq!(store.cancel_campaign("c", T0 + 1).await.unwrap(), Some(1));
    let retry = Next::Retry {
        due_at_ms: T0 + 10,
        count_attempt: true,
        errcode: Some(-1),
        reason: "busy".into(),
    };
    let batch = [
        finish(&got[0], retry),
        finish(&got[1], Next::Release),
        finish(&got[2], sent()),
    ];
    assert_eq!(
        store.finish(&batch, T0 + 2).await.unwrap(),
        [true, true, true]
    );
    let rec = store.campaign("c").await.unwrap().unwrap();
    assert_eq!(
        rec.counts,
        StateCounts {
            sent: 1,
            cancelled: 3,
            ..StateCounts::default()
        }
    );
    assert!(rec.is_done());
}

contract!(
    sent_records_msgid_and_the_attempt,
    an_attempt_is_logged_field_for_field,
    a_refused_call_replayed_in_place_is_logged_first_and_not_counted,
    failed_and_unknown_are_final_with_their_reason,
    retry_goes_back_to_pending_until_its_time,
    a_stale_lease_changes_nothing_but_its_attempt_is_logged,
    a_lease_named_twice_in_a_batch_applies_once,
    a_late_finish_applies_while_nobody_took_over,
    in_flight_messages_of_a_cancelled_campaign_do_not_come_back,
);
