//! Operator actions: cancelling a campaign or one message, and retrying a campaign's failures.

use super::testkit::*;
use super::{TestDb, contract};
use crate::store::{CampaignStatus, Cancel, MessageState, Next, StateCounts};

async fn cancelling_a_campaign_stops_what_is_pending(db: TestDb) {
    let store = &db.store;
    store
        .create_campaign(&campaign("c", "oa", T0), &recipients("c", 10), T0)
        .await
        .unwrap();
    let got = store.claim_due("w", T0, LEASE, 3, &[]).await.unwrap();
    store.finish(&[finish(&got[0], sent())], T0).await.unwrap();

    assert_eq!(store.cancel_campaign("c", T0 + 1).await.unwrap(), Some(7));
    assert_eq!(store.cancel_campaign("c", T0 + 2).await.unwrap(), Some(0));
    assert_eq!(store.cancel_campaign("nope", T0).await.unwrap(), None);
    let rec = store.campaign("c").await.unwrap().unwrap();
    assert_eq!(rec.status, CampaignStatus::Cancelled);
    let expected = StateCounts {
        sending: 2,
        sent: 1,
        cancelled: 7,
        ..StateCounts::default()
    };
    assert_eq!(rec.counts, expected);
    assert!(!rec.is_done(), "two are still being sent");
    // In-flight ones finish normally.
    let batch = [finish(&got[1], sent()), finish(&got[2], sent())];
    assert_eq!(store.finish(&batch, T0 + 3).await.unwrap(), [true, true]);
    let rec = store.campaign("c").await.unwrap().unwrap();
    assert_eq!((rec.counts.sent, rec.counts.cancelled), (3, 7));
    assert!(rec.is_done());
    assert!(
        store
            .claim_due("w", T0 + 10, LEASE, 100, &[])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn cancelling_a_message_only_while_pending(db: TestDb) {
    let store = &db.store;
    for (id, due) in [("a", T0), ("b", T0 + 10_000)] {
        store
            .insert_message(&message(id, "oa", due), T0)
            .await
            .unwrap();
    }
    let got = store.claim_due("w", T0, LEASE, 10, &[]).await.unwrap();
    assert_eq!(ids(&got), ["a"]);
    assert_eq!(
        store.cancel_message("a", T0).await.unwrap(),
        Cancel::TooLate(MessageState::Sending)
    );
    assert_eq!(
        store.cancel_message("b", T0 + 1).await.unwrap(),
        Cancel::Cancelled
    );
    assert_eq!(
        store.cancel_message("b", T0 + 2).await.unwrap(),
        Cancel::TooLate(MessageState::Cancelled)
    );
    assert_eq!(
        store.cancel_message("zz", T0).await.unwrap(),
        Cancel::NotFound
    );
    let b = store.get_message("b").await.unwrap().unwrap();
    assert_eq!(
        (b.summary.state, b.summary.updated_at_ms),
        (MessageState::Cancelled, T0 + 1)
    );
    assert!(
        store
            .claim_due("w", T0 + 10_000, LEASE, 10, &[])
            .await
            .unwrap()
            .is_empty(),
        "a cancelled message is never claimed"
    );
}

async fn retry_failed_requeues_only_failures_with_a_fresh_budget(db: TestDb) {
    let store = &db.store;
    store
        .create_campaign(&campaign("c", "oa", T0), &recipients("c", 5), T0)
        .await
        .unwrap();
    let got = store.claim_due("w", T0, LEASE, 4, &[]).await.unwrap();
    let failed = || Next::Failed {
        errcode: Some(-1),
        reason: "gave up".into(),
    };
    let unknown = Next::Unknown {
        reason: "timeout".into(),
    };
    let batch = [
        finish(&got[0], failed()),
        finish(&got[1], failed()),
        finish(&got[2], sent()),
        finish(&got[3], unknown),
    ];
    store.finish(&batch, T0 + 1).await.unwrap();
    store.cancel_campaign("c", T0 + 2).await.unwrap();

    let later = T0 + 100_000;
    assert_eq!(store.retry_failed("c", later).await.unwrap(), Some(2));
    assert_eq!(store.retry_failed("nope", later).await.unwrap(), None);
    let rec = store.campaign("c").await.unwrap().unwrap();
    assert_eq!(rec.status, CampaignStatus::Running);
    let expected = StateCounts {
        pending: 2,
        sent: 1,
        unknown: 1,
        cancelled: 1,
        ..StateCounts::default()
    };
    assert_eq!(rec.counts, expected);
    let again = store.claim_due("w", later, LEASE, 10, &[]).await.unwrap();
    assert_eq!(ids(&again), ids(&got[..2]));
    assert!(again.iter().all(|c| c.attempts == 0 && c.claims == 2));
    assert_eq!(store.retry_failed("c", later).await.unwrap(), Some(0));
}

contract!(
    cancelling_a_campaign_stops_what_is_pending,
    cancelling_a_message_only_while_pending,
    retry_failed_requeues_only_failures_with_a_fresh_budget,
);
