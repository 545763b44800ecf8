//! What only SQLite has: the in-memory database, the file and its connection settings (WAL,
//! pragmas), the release of staged campaign rows, and the query plans of the hot statements
//! (`EXPLAIN QUERY PLAN`). Everything else is in the contract suite.

use sqlx::SqlitePool;

use super::queue::{CLAIM, CLAIM_SINGLES, FINISH, NEXT_DUE};
use crate::store::outbox::{EXPORT_AFTER, Param, list_sql};
use crate::store::tests::TestDb;
use crate::store::tests::testkit::*;
use crate::store::testutil::TempDb;
use crate::store::{AppScope, Backend, MessageFilter, MessageState, Store};

fn pool(store: &Store) -> &SqlitePool {
    match store.backend() {
        Backend::Sqlite(s) => s.pool(),
        Backend::Postgres(_) => panic!("a SQLite store"),
    }
}

/// `EXPLAIN QUERY PLAN` of `sql` with `binds` (text, or an integer where it parses as one),
/// one line per step.
async fn plan(store: &Store, sql: &str, binds: &[&str]) -> String {
    let sql = format!("EXPLAIN QUERY PLAN {sql}");
    let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(sql));
    for b in binds {
        query = match b.parse::<i64>() {
            Ok(n) => query.bind(n),
            Err(_) => query.bind(*b),
        };
    }
    let rows = query.fetch_all(pool(store)).await.unwrap();
    rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn in_memory_database_works() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    assert_eq!(store.kind(), "sqlite");
    assert!(!store.is_shared());
    assert!(store.list_api_keys().await.unwrap().is_empty());
    let (record, _) = store.create_api_key("ci", AppScope::All).await.unwrap();
    assert_eq!(store.list_api_keys().await.unwrap(), vec![record]);
}

#[tokio::test]
async fn creates_the_file_with_wal_and_settings() {
    let file = TempDb::new("settings");
    assert!(!file.path.exists());
    let store = file.connect().await;
    assert!(file.path.exists(), "database file should be created");
    let pool = pool(&store);
    let text = |sql: &'static str| sqlx::query_scalar::<_, String>(sql).fetch_one(pool);
    let int = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).fetch_one(pool);
    assert_eq!(text("PRAGMA journal_mode").await.unwrap(), "wal");
    assert_eq!(int("PRAGMA synchronous").await.unwrap(), 1, "NORMAL is 1");
    assert_eq!(int("PRAGMA foreign_keys").await.unwrap(), 1);
    assert_eq!(int("PRAGMA busy_timeout").await.unwrap(), 5000);
    assert_eq!(
        int("PRAGMA cache_size").await.unwrap(),
        -2000,
        "SQLite's default"
    );
}

/// A campaign sealed just before its process died has its rows still staged: the janitor
/// (`recover_uploads`) releases them at the next start, and they are claimable.
#[tokio::test]
async fn a_campaign_sealed_before_a_crash_is_released_by_the_janitor() {
    let db = TestDb::sqlite("release").await;
    let rows = recipients("c", 4_500);
    let mut upload = db
        .store
        .begin_campaign(&campaign("c", "oa", T0), T0)
        .await
        .unwrap();
    upload.add(&rows, T0).await.unwrap();
    drop(upload);
    // What the seal does before it releases the rows.
    db.exec("UPDATE campaigns SET uploading_at_ms = NULL, releasing = 1, total = 4500")
        .await;
    assert!(
        db.store
            .claim_due("w", T0, LEASE, 10, &[])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(db.store.recover_uploads(T0).await.unwrap(), (0, 4_500));
    assert_eq!(db.int("SELECT releasing FROM campaigns").await, 0);
    let claimed = db
        .store
        .claim_due("w", T0, LEASE, 5_000, &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4_500);
    assert_eq!(db.store.recover_uploads(T0).await.unwrap(), (0, 0));
}

/// The claim and next_due_ms must only seek in the `messages_due` index (per app: the first
/// active app after the last one, then its earliest due rows), never scan messages; the only
/// sort is over the few candidates the apps gave.
#[tokio::test]
async fn the_claim_seeks_the_due_index_app_by_app() {
    let db = TestDb::sqlite("claim-plan").await;
    let until = (T0 + LEASE).to_string();
    let now = T0.to_string();
    let binds = ["w", "n", &until, &now, "[]", "10", "10"];
    let claim = plan(&db.store, CLAIM, &binds).await;
    for step in [
        "SEARCH m USING COVERING INDEX messages_due (app>?)",
        "SEARCH d USING COVERING INDEX messages_due (app=? AND due_at_ms<?)",
        "SEARCH m USING INTEGER PRIMARY KEY (rowid=?)",
    ] {
        assert!(claim.contains(step), "{step}\n{claim}");
    }
    assert!(
        !claim.contains("SCAN messages") && !claim.contains("SCAN m\n"),
        "{claim}"
    );
    // Singles come from their own index, active apps included: never from messages_due, where
    // a campaign's million rows are.
    let singles = plan(&db.store, CLAIM_SINGLES, &binds).await;
    for step in [
        "SEARCH m USING INDEX messages_due_single (app>?)",
        "SEARCH d USING INDEX messages_due_single (app=? AND due_at_ms<?)",
    ] {
        assert!(singles.contains(step), "{step}\n{singles}");
    }
    assert!(!singles.contains("messages_due "), "{singles}");
    let next = plan(&db.store, NEXT_DUE, &["[]"]).await;
    assert!(
        next.contains("SEARCH d USING COVERING INDEX messages_due (app=?)"),
        "{next}"
    );
    assert!(!next.contains("SCAN messages"), "{next}");
}

/// Each batch statement must find its messages through the primary key, driven by the JSON
/// rows, never scan the table.
#[tokio::test]
async fn batch_updates_look_messages_up_by_id() {
    let db = TestDb::sqlite("finish-plan").await;
    let now = T0.to_string();
    for sql in FINISH {
        let text = plan(&db.store, sql, &["[]", &now]).await;
        assert!(
            text.contains("SEARCH messages USING INDEX sqlite_autoindex_messages_1 (id=?)"),
            "{sql}\n{text}"
        );
        assert!(!text.contains("SCAN messages"), "{sql}\n{text}");
    }
}

#[tokio::test]
async fn listings_and_exports_use_their_indexes() {
    let db = TestDb::sqlite("plans").await;
    let export = plan(&db.store, EXPORT_AFTER, &["c", "r", "10"]).await;
    assert!(export.contains("messages_campaign_recipient"), "{export}");
    assert!(!export.contains("TEMP B-TREE"), "{export}");
    let cases = [
        (
            Some("oa"),
            None,
            Some(MessageState::Failed),
            "messages_app_state",
        ),
        (
            None,
            Some("c"),
            Some(MessageState::Failed),
            "messages_campaign_state",
        ),
    ];
    for (app, campaign, state, index) in cases {
        let filter = MessageFilter {
            app: app.map(Into::into),
            campaign: campaign.map(Into::into),
            state,
            errcode: None,
        };
        let (sql, params) = list_sql(&filter, Some("msg_0"));
        let binds: Vec<&str> = params
            .iter()
            .map(|p| match p {
                Param::Text(t) => *t,
                Param::Int(_) => "0",
            })
            .chain(["10"])
            .collect();
        let text = plan(&db.store, &sql, &binds).await;
        assert!(text.contains(index), "{sql}\n{text}");
        assert!(!text.contains("TEMP B-TREE"), "{sql}\n{text}");
    }
}
