//! Opening a store: URLs no backend takes are refused without being echoed, and a database
//! opened again (its migrations already applied) sees what was stored before.

use super::{TestDb, contract};
use crate::store::testutil::{master_key, oa_app};
use crate::store::{AppScope, Store, StoreError};

/// No database is involved: these URLs never reach one.
#[tokio::test]
async fn other_urls_are_unsupported_without_echoing_them() {
    for url in ["mysql://u:hunter2@db/x", "sqlite://", "hunter2"] {
        let err = Store::connect(url).await.unwrap_err();
        assert!(matches!(err, StoreError::Unsupported(_)), "{url}: {err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

async fn reopening_the_database_sees_the_data(db: TestDb) {
    let key = master_key(1);
    db.store.put_app(&oa_app("main"), &key).await.unwrap();
    let (record, plaintext) = db.store.create_api_key("ops", AppScope::All).await.unwrap();
    db.store.close().await;
    assert!(db.store.list_api_keys().await.is_err(), "closed");

    // Connecting again re-runs the embedded migrations: already applied, so a no-op.
    let store = db.connect().await;
    let apps = store.list_apps(&key).await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].id, "main");
    assert_eq!(store.find_api_key(&plaintext).await.unwrap(), Some(record));
    // A third pool on the same database while the second is open also works.
    let third = db.connect().await;
    assert_eq!(third.list_api_keys().await.unwrap().len(), 1);
}

contract!(reopening_the_database_sees_the_data);
