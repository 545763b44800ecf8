//! Storing single messages: pending and due at send_at, idempotency keys (also racing, from
//! two stores), and the announcement new work makes.

use std::time::Duration;

use super::testkit::*;
use super::{TestDb, contract};
use crate::store::{Change, Idempotency, Inserted, MessageKind, MessageState, NewMessage};

async fn a_message_is_stored_pending_and_due_at_send_at(db: TestDb) {
    let store = &db.store;
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

async fn idempotency_key_returns_the_first_message_per_app(db: TestDb) {
    let store = &db.store;
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
    assert_eq!(db.count("messages").await, 4);
}

/// Two stores on one database (two instances), 20 inserts with one key at once: one message.
async fn racing_inserts_with_one_key_store_one_message(db: TestDb) {
    let (a, b) = (db.store.clone(), db.connect().await);
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
    assert_eq!(db.count("messages").await, 1);
}

/// New work is announced ([`Change::Due`]) to every store on the database, so idle workers of
/// every instance start at once; a replayed insert stores nothing and announces nothing.
async fn new_work_is_announced_to_another_store(db: TestDb) {
    let other = db.connect().await;
    // SQLite hears its changes in process; PostgreSQL through every store's listener.
    let listener = if db.kind() == "sqlite" {
        &db.store
    } else {
        &other
    };
    let mut heard = listener.changes();
    let keyed = NewMessage {
        idempotency: Some(Idempotency {
            key: "k".into(),
            request_hash: "h".into(),
        }),
        ..message("m1", "oa", T0)
    };
    let replay = NewMessage {
        id: "m2".into(),
        ..keyed.clone()
    };
    assert_eq!(
        db.store.insert_message(&keyed, T0).await.unwrap(),
        Inserted::Created
    );
    assert_ne!(
        db.store.insert_message(&replay, T0).await.unwrap(),
        Inserted::Created
    );
    let rows = recipients("c", 3);
    db.store
        .create_campaign(&campaign("c", "oa", T0), &rows, T0)
        .await
        .unwrap();
    for what in ["the message", "the campaign"] {
        let change = tokio::time::timeout(Duration::from_secs(5), heard.recv())
            .await
            .unwrap_or_else(|_| panic!("{what} announced within 5 s"))
            .unwrap();
        assert_eq!(change, Change::Due, "{what}");
    }
    let more = tokio::time::timeout(Duration::from_millis(300), heard.recv()).await;
    assert!(more.is_err(), "the replay announced nothing: {more:?}");
}

contract!(
    a_message_is_stored_pending_and_due_at_send_at,
    idempotency_key_returns_the_first_message_per_app,
    racing_inserts_with_one_key_store_one_message,
    new_work_is_announced_to_another_store,
);
