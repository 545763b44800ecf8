//! API keys: creating and finding them, only the hash stored, listings without secrets, scopes,
//! revocation, and the change a deletion announces.

use std::time::Duration;

use super::{TestDb, contract};
use crate::crypto::hash_api_key;
use crate::store::{AppScope, Change};

fn only(ids: &[&str]) -> AppScope {
    AppScope::Only(ids.iter().map(|s| s.to_string()).collect())
}

async fn created_key_is_found_and_a_wrong_one_is_not(db: TestDb) {
    let store = &db.store;
    let (record, key) = store.create_api_key("ci", only(&["a", "b"])).await.unwrap();

    assert!(key.starts_with("wxg_") && key.len() == 44, "{key}");
    assert!(
        record.id.starts_with("key_") && record.id.len() == 16,
        "{}",
        record.id
    );
    assert_eq!(record.last4, key[40..]);
    assert_eq!(record.name, "ci");
    assert_eq!(record.apps, only(&["a", "b"]));

    assert_eq!(store.find_api_key(&key).await.unwrap(), Some(record));
    let mut wrong = key.clone();
    wrong.replace_range(10..11, if &key[10..11] == "x" { "y" } else { "x" });
    assert_eq!(store.find_api_key(&wrong).await.unwrap(), None);
    assert_eq!(store.find_api_key("").await.unwrap(), None);
    assert_eq!(store.find_api_key("wxg_").await.unwrap(), None);
}

async fn only_the_hash_is_stored(db: TestDb) {
    let store = &db.store;
    let (record, key) = store.create_api_key("ops", AppScope::All).await.unwrap();
    let row = |col: &str| format!("SELECT {col} FROM api_keys WHERE id = '{}'", record.id);
    let hash = db.bytes(&row("key_hash")).await;
    let apps = db.text(&row("apps")).await;
    assert_ne!(hash, key.as_bytes());
    assert_eq!(hash, hash_api_key(&key));
    assert_eq!(apps, r#"["*"]"#);
    // No column of the row holds the key. (The hash is hex-encoded here rather than in SQL:
    // SQLite spells it `hex()`, PostgreSQL `encode(…, 'hex')`.)
    let text = db
        .text(
            "SELECT id || name || apps || CAST(created_at_ms AS TEXT) || last4 \
             FROM api_keys",
        )
        .await;
    let dump = format!(
        "{text}{}",
        hex::encode(db.bytes("SELECT key_hash FROM api_keys").await)
    );
    assert!(
        dump.contains(&record.id) && dump.contains(&record.last4),
        "{dump}"
    );
    assert!(!dump.contains(&key[4..]));
}

async fn listing_never_exposes_keys_or_hashes(db: TestDb) {
    let store = &db.store;
    let (first, key1) = store.create_api_key("one", AppScope::All).await.unwrap();
    let (second, key2) = store.create_api_key("two", only(&["crm"])).await.unwrap();

    let listed = store.list_api_keys().await.unwrap();
    let mut expected = vec![first, second];
    expected.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    assert_eq!(listed, expected);

    let json = serde_json::to_value(&listed).unwrap();
    let fields: Vec<_> = json[0].as_object().unwrap().keys().cloned().collect();
    assert_eq!(fields, ["apps", "created_at_ms", "id", "last4", "name"]);
    let text = json.to_string();
    for key in [&key1, &key2] {
        assert!(!text.contains(&key[4..]));
        assert!(!text.contains(&hex::encode(hash_api_key(key))));
    }
}

async fn scopes_allow_the_right_apps_and_round_trip(db: TestDb) {
    assert!(AppScope::All.allows("anything"));
    let scope = only(&["a", "b"]);
    assert!(scope.allows("a") && scope.allows("b"));
    assert!(!scope.allows("c") && !scope.allows("") && !scope.allows("*"));
    assert!(!only(&[]).allows("a"));

    assert_eq!(serde_json::to_string(&AppScope::All).unwrap(), r#""*""#);
    assert_eq!(serde_json::to_string(&scope).unwrap(), r#"["a","b"]"#);
    let parse = |json: &str| serde_json::from_str::<AppScope>(json);
    assert_eq!(parse(r#""*""#).unwrap(), AppScope::All);
    assert_eq!(parse(r#"["*"]"#).unwrap(), AppScope::All);
    assert_eq!(parse(r#"["a","b"]"#).unwrap(), scope);
    assert!(
        parse(r#""a""#)
            .unwrap_err()
            .to_string()
            .contains("list of app ids")
    );
    assert!(parse("3").is_err());

    let store = &db.store;
    let (all, all_key) = store.create_api_key("all", AppScope::All).await.unwrap();
    let (some, some_key) = store.create_api_key("some", scope.clone()).await.unwrap();
    let found_all = store.find_api_key(&all_key).await.unwrap().unwrap();
    let found_some = store.find_api_key(&some_key).await.unwrap().unwrap();
    assert_eq!((found_all.apps, found_some.apps), (AppScope::All, scope));
    assert_eq!((found_all.id, found_some.id), (all.id, some.id));
}

async fn delete_revokes_the_key(db: TestDb) {
    let store = &db.store;
    let (gone, gone_key) = store.create_api_key("gone", AppScope::All).await.unwrap();
    let (kept, _) = store.create_api_key("kept", AppScope::All).await.unwrap();
    assert!(store.delete_api_key(&gone.id).await.unwrap());
    assert!(
        !store.delete_api_key(&gone.id).await.unwrap(),
        "already gone"
    );
    assert_eq!(store.find_api_key(&gone_key).await.unwrap(), None);
    assert_eq!(store.list_api_keys().await.unwrap(), vec![kept]);
}

/// A deletion is announced to every store on the database (so every instance stops accepting
/// the key); deleting a key that is not there announces nothing.
async fn key_deletions_reach_another_store_on_the_database(db: TestDb) {
    let other = db.connect().await;
    // SQLite hears its changes in process; PostgreSQL through every store's listener.
    let listener = if db.kind() == "sqlite" {
        &db.store
    } else {
        &other
    };
    let mut heard = listener.changes();
    let (record, _) = db.store.create_api_key("ci", AppScope::All).await.unwrap();
    assert!(db.store.delete_api_key(&record.id).await.unwrap());
    assert!(!db.store.delete_api_key(&record.id).await.unwrap());
    let change = tokio::time::timeout(Duration::from_secs(5), heard.recv())
        .await
        .expect("a change within 5 s")
        .unwrap();
    assert_eq!(change, Change::Key(record.id.clone()));
    // Nothing else: creating a key announces nothing, nor does the second (no-op) delete.
    let more = tokio::time::timeout(Duration::from_millis(300), heard.recv()).await;
    assert!(more.is_err(), "{more:?}");
}

contract!(
    created_key_is_found_and_a_wrong_one_is_not,
    only_the_hash_is_stored,
    listing_never_exposes_keys_or_hashes,
    scopes_allow_the_right_apps_and_round_trip,
    delete_revokes_the_key,
    key_deletions_reach_another_store_on_the_database,
);
