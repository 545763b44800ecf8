//! Tests of inserting: single messages, idempotency, whole campaigns and their uniqueness.

use super::super::testkit::*;
use super::super::*;
use crate::store::StoreError;
use crate::store::testutil::TempDb;

#[tokio::test]
async fn a_message_is_stored_pending_and_due_at_send_at() {
    let db = TempDb::new("outbox-insert");
    let store = db.connect().await;
    let msg = message("m1", "oa", T0 + 60_000);
    assert_eq!(
        store.insert_message(&msg, T0).await.unwrap(),
        Inserted::Created
    );
    let rec = store.get_message("m1").await.unwrap().unwrap();
    assert_eq!(rec.summary.state, MessageState::Pending);
    assert_eq!(rec.summary.due_at_ms, T0 + 60_000);
    assert_eq!(rec.summary.kind, MessageKind::Template);
    assert_eq!(rec.body, msg.body);
    assert_eq!(
        (rec.summary.created_at_ms, rec.summary.updated_at_ms),
        (T0, T0)
    );
    assert_eq!((rec.summary.attempts, rec.summary.claims), (0, 0));
    assert!(rec.log.is_empty() && rec.first_claimed_at_ms.is_none());
}

#[tokio::test]
async fn idempotency_key_returns_the_first_message_per_app() {
    let db = TempDb::new("outbox-idem");
    let store = db.connect().await;
    let keyed = |id: &str, app: &str, hash: &str| NewMessage {
        idempotency: Some(Idempotency {
            key: "order-42".into(),
            request_hash: hash.into(),
        }),
        ..message(id, app, T0)
    };
    let first = keyed("m1", "oa", "h1");
    assert_eq!(
        store.insert_message(&first, T0).await.unwrap(),
        Inserted::Created
    );
    let replay = keyed("m2", "oa", "h1");
    assert_eq!(
        store.insert_message(&replay, T0 + 1).await.unwrap(),
        Inserted::Existing {
            id: "m1".into(),
            same_request: true
        }
    );
    let reuse = keyed("m3", "oa", "h2");
    assert_eq!(
        store.insert_message(&reuse, T0 + 2).await.unwrap(),
        Inserted::Existing {
            id: "m1".into(),
            same_request: false
        }
    );
    // Another app has its own key space; messages without a key never collide.
    let other_app = keyed("m4", "crm", "h9");
    assert_eq!(
        store.insert_message(&other_app, T0).await.unwrap(),
        Inserted::Created
    );
    for id in ["m5", "m6"] {
        let plain = message(id, "oa", T0);
        assert_eq!(
            store.insert_message(&plain, T0).await.unwrap(),
            Inserted::Created
        );
    }
    assert!(store.get_message("m2").await.unwrap().is_none());
    assert!(store.get_message("m3").await.unwrap().is_none());
    assert_eq!(count_rows(&store, "messages").await, 4);
}

#[tokio::test]
async fn racing_inserts_with_one_key_store_one_message() {
    let db = TempDb::new("outbox-idem-race");
    let (a, b) = (db.connect().await, db.connect().await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let msg = NewMessage {
                idempotency: Some(Idempotency {
                    key: "k".into(),
                    request_hash: "h".into(),
                }),
                ..message(&format!("m{i}"), "oa", T0)
            };
            store.insert_message(&msg, T0).await.unwrap()
        }));
    }
    let mut created = 0;
    let mut existing = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Inserted::Created => created += 1,
            Inserted::Existing { id, same_request } => {
                assert!(same_request);
                existing.push(id);
            }
        }
    }
    assert_eq!(created, 1);
    assert_eq!(existing.len(), 19);
    assert!(existing.windows(2).all(|w| w[0] == w[1]), "{existing:?}");
    assert_eq!(count_rows(&a, "messages").await, 1);
}

#[tokio::test]
async fn racing_campaigns_with_one_key_store_one_campaign() {
    let db = TempDb::new("outbox-campaign-idem");
    let (a, b) = (db.connect().await, db.connect().await);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let id = format!("c{i}");
            let c = NewCampaign {
                idempotency: Some(Idempotency {
                    key: "cron-0800".into(),
                    request_hash: "h".into(),
                }),
                duplicates_skipped: 2,
                ..campaign(&id, "oa", T0)
            };
            store
                .create_campaign(&c, &recipients(&id, 50), T0)
                .await
                .unwrap()
        }));
    }
    let mut created = 0;
    let mut existing = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            CampaignInserted::Created => created += 1,
            CampaignInserted::Existing(e) => {
                assert!(e.same_request);
                assert_eq!((e.total, e.duplicates_skipped), (50, 2));
                existing.push(e.id);
            }
        }
    }
    assert_eq!(created, 1);
    assert!(existing.windows(2).all(|w| w[0] == w[1]), "{existing:?}");
    assert_eq!(count_rows(&a, "campaigns").await, 1);
    assert_eq!(
        count_rows(&a, "messages").await,
        50,
        "the losers stored nothing"
    );

    let key = Idempotency {
        key: "cron-0800".into(),
        request_hash: "other".into(),
    };
    let found = a.campaign_by_key("oa", &key).await.unwrap().unwrap();
    assert_eq!((found.id, found.same_request), (existing[0].clone(), false));
    assert!(
        a.campaign_by_key("crm", &key).await.unwrap().is_none(),
        "per app"
    );
}

#[tokio::test]
async fn a_campaign_is_stored_whole() {
    let db = TempDb::new("outbox-campaign");
    let store = db.connect().await;
    // 2,203 rows: two full chunks and a partial one.
    let rows = recipients("c1", 2203);
    store
        .create_campaign(&campaign("c1", "oa", T0 + 5), &rows, T0)
        .await
        .unwrap();
    let rec = store.campaign("c1").await.unwrap().unwrap();
    assert_eq!(rec.total, 2203);
    assert_eq!(rec.status, CampaignStatus::Running);
    assert_eq!(rec.counts.pending, 2203);
    assert_eq!(rec.counts, counts_pending(2203));
    assert!(!rec.is_done());
    let last = store.get_message(&rows[2202].id).await.unwrap().unwrap();
    assert_eq!(last.summary.recipient, rows[2202].recipient);
    assert_eq!(last.body, rows[2202].body);
    assert_eq!(last.summary.campaign_id.as_deref(), Some("c1"));
    assert_eq!(last.summary.template, "tpl-1");
    assert_eq!(last.summary.due_at_ms, T0 + 5);
}

#[tokio::test]
async fn a_duplicate_recipient_fails_the_whole_campaign() {
    let db = TempDb::new("outbox-campaign-dup");
    let store = db.connect().await;
    let mut rows = recipients("c1", 2100);
    // The duplicate sits in the third chunk: two chunks were already inserted.
    rows[2099].recipient = rows[3].recipient.clone();
    let err = store
        .create_campaign(&campaign("c1", "oa", T0), &rows, T0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("\"c1\"") && m.contains("twice")),
        "{err}"
    );
    assert!(store.campaign("c1").await.unwrap().is_none());
    assert_eq!(count_rows(&store, "messages").await, 0);
    assert_eq!(count_rows(&store, "campaigns").await, 0);

    // The same recipient in two different campaigns is fine.
    let rows = recipients("c2", 10);
    store
        .create_campaign(&campaign("c2", "oa", T0), &rows, T0)
        .await
        .unwrap();
    let again: Vec<_> = rows
        .iter()
        .map(|r| CampaignMessage {
            id: format!("{}-again", r.id),
            ..r.clone()
        })
        .collect();
    store
        .create_campaign(&campaign("c3", "oa", T0), &again, T0)
        .await
        .unwrap();
    assert_eq!(count_rows(&store, "messages").await, 20);
    // A campaign id used twice is a conflict too, and leaves the first one intact.
    let err = store
        .create_campaign(&campaign("c2", "oa", T0), &recipients("x", 3), T0)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(count_rows(&store, "messages").await, 20);
}

/// 20k rows: a 100k-row campaign takes ~4 s in a debug build (see `perf.rs` for 100k and
/// 1M in release), too slow for the normal suite.
#[tokio::test]
async fn a_20k_campaign_commits_in_one_transaction() {
    let db = TempDb::new("outbox-campaign-20k");
    let store = db.connect().await;
    let rows = recipients("big", 20_000);
    store
        .create_campaign(&campaign("big", "oa", T0), &rows, T0)
        .await
        .unwrap();
    let rec = store.campaign("big").await.unwrap().unwrap();
    assert_eq!(rec.counts, counts_pending(20_000));
    assert_eq!(rec.total, 20_000);
    assert_eq!(count_rows(&store, "messages").await, 20_000);
    let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
        .fetch_one(crate::store::testutil::pool(&store))
        .await
        .unwrap();
    assert_eq!(
        cache, -2000,
        "the page cache is set back after a big campaign"
    );
    let first = store.export_campaign("big", None, 1).await.unwrap();
    let mut sorted: Vec<&str> = rows.iter().map(|r| r.recipient.as_str()).collect();
    sorted.sort();
    assert_eq!(first[0].recipient, sorted[0]);
}
