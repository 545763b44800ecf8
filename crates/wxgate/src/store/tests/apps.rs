//! Apps: round trips with the secret sealed, a wrong master key, moved secrets, upserts,
//! deletes, corrupt rows, and the change each write announces.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::{TestDb, contract};
use crate::config::{AppConfig, TokenApi};
use crate::store::testutil::{master_key, oa_app, wecom_app};
use crate::store::{Change, StoreError};

/// Every field equal, the secret included (`AppConfig` has no `PartialEq`: secrets).
fn assert_same(actual: &AppConfig, expected: &AppConfig) {
    let json = |a: &AppConfig| serde_json::to_value(a).unwrap();
    assert_eq!(json(actual), json(expected));
    assert_eq!(
        actual.secret.expose_secret(),
        expected.secret.expose_secret()
    );
}

async fn timestamps(db: &TestDb, id: &str) -> (i64, i64) {
    let at = |col: &str| format!("SELECT {col} FROM apps WHERE id = '{id}'");
    (
        db.int(&at("created_at_ms")).await,
        db.int(&at("updated_at_ms")).await,
    )
}

async fn sealed_secret(db: &TestDb, id: &str) -> String {
    db.text(&format!("SELECT secret_sealed FROM apps WHERE id = '{id}'"))
        .await
}

async fn apps_round_trip_with_secret_sealed(db: TestDb) {
    let store = &db.store;
    let key = master_key(1);
    let (oa, wecom) = (oa_app("oa-main"), wecom_app("crm"));
    store.put_app(&oa, &key).await.unwrap();
    store.put_app(&wecom, &key).await.unwrap();

    let apps = store.list_apps(&key).await.unwrap();
    assert_eq!(apps.len(), 2);
    assert_same(&apps[0], &wecom); // ordered by id: "crm" < "oa-main"
    assert_same(&apps[1], &oa);
    assert_same(&store.get_app("oa-main", &key).await.unwrap().unwrap(), &oa);
    assert!(store.get_app("missing", &key).await.unwrap().is_none());

    for app in [&oa, &wecom] {
        let sealed = sealed_secret(&db, &app.id).await;
        assert!(sealed.starts_with("v1:"), "{sealed}");
        assert!(!sealed.contains(app.secret.expose_secret()));
    }
}

async fn another_master_key_fails_naming_the_app(db: TestDb) {
    let store = &db.store;
    let app = oa_app("main");
    store.put_app(&app, &master_key(1)).await.unwrap();
    let sealed = sealed_secret(&db, "main").await;

    let other = master_key(2);
    let err = store.list_apps(&other).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Secret { app } if app == "main"),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("\"main\"") && msg.contains("master key"),
        "{msg}"
    );
    assert!(!msg.contains(app.secret.expose_secret()) && !msg.contains(&sealed[3..]));
    let err = store.get_app("main", &other).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Secret { app } if app == "main"),
        "{err}"
    );
}

async fn a_sealed_secret_moved_to_another_app_does_not_open(db: TestDb) {
    let store = &db.store;
    let key = master_key(1);
    store.put_app(&oa_app("a"), &key).await.unwrap();
    store.put_app(&wecom_app("b"), &key).await.unwrap();
    db.exec(
        "UPDATE apps SET secret_sealed = (SELECT secret_sealed FROM apps WHERE id = 'a') \
         WHERE id = 'b'",
    )
    .await;
    assert!(store.get_app("a", &key).await.unwrap().is_some());
    let err = store.get_app("b", &key).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Secret { app } if app == "b"),
        "{err}"
    );
}

async fn put_twice_keeps_created_at_and_updates_the_rest(db: TestDb) {
    let store = &db.store;
    let key = master_key(1);
    store.put_app(&oa_app("main"), &key).await.unwrap();
    let (created, updated) = timestamps(&db, "main").await;
    assert_eq!(created, updated);
    let first_sealed = sealed_secret(&db, "main").await;

    tokio::time::sleep(Duration::from_millis(5)).await;
    let changed = AppConfig {
        appid: Some("wxfedcba9876543210".into()),
        secret: "rotated-secret".into(),
        token_api: TokenApi::Classic,
        daily_fetch_budget: Some(100),
        proxy_accepts_secret: false,
        ..oa_app("main")
    };
    store.put_app(&changed, &key).await.unwrap();

    let (created2, updated2) = timestamps(&db, "main").await;
    assert_eq!(created2, created, "created_at must not change");
    assert!(updated2 > updated, "{updated2} should be after {updated}");
    assert_ne!(sealed_secret(&db, "main").await, first_sealed);
    let apps = store.list_apps(&key).await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_same(&apps[0], &changed);
}

async fn delete_removes_the_app(db: TestDb) {
    let store = &db.store;
    let key = master_key(1);
    store.put_app(&oa_app("a"), &key).await.unwrap();
    store.put_app(&oa_app("b"), &key).await.unwrap();
    assert!(store.delete_app("a").await.unwrap());
    assert!(!store.delete_app("a").await.unwrap(), "already gone");
    assert!(store.get_app("a", &key).await.unwrap().is_none());
    let ids: Vec<_> = store
        .list_apps(&key)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["b"]);
}

async fn an_unknown_kind_is_reported_as_corrupt(db: TestDb) {
    let store = &db.store;
    let key = master_key(1);
    store.put_app(&oa_app("main"), &key).await.unwrap();
    db.exec("UPDATE apps SET kind = 'fax' WHERE id = 'main'")
        .await;
    let err = store.list_apps(&key).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("\"main\"") && m.contains("fax")),
        "{err}"
    );
}

/// Writes are announced to every store on the database: a second store (another instance)
/// hears the app's id when it is put and when it is deleted.
async fn app_changes_reach_another_store_on_the_database(db: TestDb) {
    let other = db.connect().await;
    // SQLite: one process per file, so changes are heard in process, by the store that made
    // them. PostgreSQL: every store on the database hears them through its listener, which
    // is listening once `connect` returns.
    let listener = if db.kind() == "sqlite" {
        &db.store
    } else {
        &other
    };
    let mut heard = listener.changes();
    let key = master_key(1);
    db.store.put_app(&oa_app("shop"), &key).await.unwrap();
    db.store.delete_app("shop").await.unwrap();
    for _ in 0..2 {
        let change = tokio::time::timeout(Duration::from_secs(5), heard.recv())
            .await
            .expect("a change within 5 s")
            .unwrap();
        assert_eq!(change, Change::App("shop".into()));
    }
}

contract!(
    apps_round_trip_with_secret_sealed,
    another_master_key_fails_naming_the_app,
    a_sealed_secret_moved_to_another_app_does_not_open,
    put_twice_keeps_created_at_and_updates_the_rest,
    delete_removes_the_app,
    an_unknown_kind_is_reported_as_corrupt,
    app_changes_reach_another_store_on_the_database,
);
