//! Campaigns stored as they arrive: nothing of an upload is visible or claimable before its
//! seal, other work goes on meanwhile, and an aborted or dropped upload leaves nothing.

use super::testkit::*;
use super::{TestDb, contract};
use crate::store::{CampaignInserted, UPLOAD_CHUNK};

async fn an_upload_is_invisible_until_sealed_and_other_work_goes_on(db: TestDb) {
    let store = &db.store;
    let rows = recipients("big", 3 * UPLOAD_CHUNK + 7);
    let mut upload = store
        .begin_campaign(&campaign("big", "oa", T0), T0)
        .await
        .unwrap();
    for chunk in rows.chunks(UPLOAD_CHUNK) {
        upload.add(chunk, T0).await.unwrap();
    }
    assert_eq!(upload.offered(), rows.len() as u64);
    // Meanwhile: the campaign is not there, its messages are not claimed, and a single
    // message of the same app is stored and claimed as usual.
    assert!(store.campaign("big").await.unwrap().is_none());
    store
        .insert_message(&message("single", "oa", T0 + 1), T0)
        .await
        .unwrap();
    let claimed = store.claim_due("w", T0 + 2, LEASE, 100, &[]).await.unwrap();
    let ids: Vec<&str> = claimed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["single"]);
    assert_eq!(store.queue_depth(T0 + 2).await.unwrap().pending, 0);

    let got = upload.seal(None, T0 + 2).await.unwrap();
    assert_eq!(
        got,
        CampaignInserted::Created {
            total: rows.len() as i64,
            duplicates_skipped: 0
        }
    );
    let rec = store.campaign("big").await.unwrap().unwrap();
    assert_eq!(rec.counts, counts_pending(rows.len() as u64));
    let claimed = store
        .claim_due("w", T0 + 3, LEASE, 10_000, &[])
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        rows.len(),
        "every message claimable once sealed"
    );
    let m = store.get_message(&rows[0].id).await.unwrap().unwrap();
    assert_eq!(m.summary.campaign_id.as_deref(), Some("big"));
}

/// The upload API's seal: the campaign is committed and counted at once, and its messages
/// become claimable in the background — each exactly once, even with the janitor releasing
/// the same campaign meanwhile.
async fn a_campaign_released_later_is_counted_at_once_and_claimed_once(db: TestDb) {
    let store = &db.store;
    let rows = recipients("later", 3 * UPLOAD_CHUNK + 7);
    let mut upload = store
        .begin_campaign(&campaign("later", "oa", T0), T0)
        .await
        .unwrap();
    for chunk in rows.chunks(UPLOAD_CHUNK) {
        upload.add(chunk, T0).await.unwrap();
    }
    let got = upload.seal_releasing_later(None, T0 + 2).await.unwrap();
    assert!(matches!(got, CampaignInserted::Created { total, .. } if total == rows.len() as i64));
    let rec = store.campaign("later").await.unwrap().unwrap();
    assert_eq!(
        rec.counts,
        counts_pending(rows.len() as u64),
        "counted at once"
    );
    store.recover_uploads(T0 + 3).await.unwrap();
    let mut claimed = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while claimed.len() < rows.len() && std::time::Instant::now() < deadline {
        for c in store
            .claim_due("w", T0 + 3, LEASE, 10_000, &[])
            .await
            .unwrap()
        {
            assert!(claimed.insert(c.id.clone()), "{} claimed twice", c.id);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        claimed.len(),
        rows.len(),
        "every message claimable soon after the seal"
    );
    assert!(
        store
            .claim_due("w", T0 + 3, LEASE, 10_000, &[])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn an_aborted_or_dropped_upload_leaves_nothing(db: TestDb) {
    let store = &db.store;
    let rows = recipients("a", UPLOAD_CHUNK + 1);
    let mut upload = store
        .begin_campaign(&campaign("a", "oa", T0), T0)
        .await
        .unwrap();
    for chunk in rows.chunks(UPLOAD_CHUNK) {
        upload.add(chunk, T0).await.unwrap();
    }
    upload.abort().await;
    assert_eq!(db.count("messages").await, 0);
    assert_eq!(db.count("campaigns").await, 0);

    // Dropped (its process died, say): hidden at once, gone once the janitor has looked
    // (SQLite: after ABANDONED_AFTER_MS without progress; PostgreSQL: rolled back at once).
    let mut upload = store
        .begin_campaign(&campaign("b", "oa", T0), T0)
        .await
        .unwrap();
    upload.add(&recipients("b", 10), T0).await.unwrap();
    drop(upload);
    assert!(store.campaign("b").await.unwrap().is_none());
    assert!(
        store
            .claim_due("w", T0, LEASE, 100, &[])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.recover_uploads(T0 + 1_000).await.unwrap().0,
        0,
        "still fresh"
    );
    let later = T0 + crate::store::ABANDONED_AFTER_MS + 1;
    store.recover_uploads(later).await.unwrap();
    assert_eq!(db.count("messages").await, 0);
    assert_eq!(db.count("campaigns").await, 0);
    // Its id is free again.
    store
        .create_campaign(&campaign("b", "oa", T0), &recipients("b", 3), later)
        .await
        .unwrap();
}

contract!(
    an_upload_is_invisible_until_sealed_and_other_work_goes_on,
    a_campaign_released_later_is_counted_at_once_and_claimed_once,
    an_aborted_or_dropped_upload_leaves_nothing,
);
