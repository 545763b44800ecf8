//! What only PostgreSQL has: several instances on one database (claims that never overlap,
//! migrations run by instances starting at once), the claim's plan on the `messages_due`
//! index, a big campaign streamed with `COPY` in one transaction, and connection errors that
//! never echo the URL. Everything else is in the contract suite.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, PgConnection};

use super::queue::{CLAIM, NEXT_DUE};
use crate::store::tests::testkit::*;
use crate::store::tests::{PgDatabase, TestDb};
use crate::store::{Backend, Store, StoreError, StoreOptions};

/// Two stores on one database (two instances), 12 tasks each claiming 5 at a time (at most 3
/// per app) from four apps, never finishing: the leases do not expire, so a message claimed
/// twice can only come from two claims picking the same row. `FOR UPDATE SKIP LOCKED` in the
/// claim statement is what makes every message go to exactly one claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_claims_never_overlap() {
    const APPS: usize = 4;
    const PER_APP: usize = 500;
    const N: usize = APPS * PER_APP;
    let db = TestDb::postgres("claims-overlap").await;
    let (a, b) = (db.store.clone(), db.connect().await);
    for app in 0..APPS {
        let id = format!("c{app}");
        let c = campaign(&id, &format!("app{app}"), T0 - app as i64);
        a.create_campaign(&c, &recipients(&id, PER_APP), T0)
            .await
            .unwrap();
    }
    let claimed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..24 {
        let (store, owner) = if worker % 2 == 0 {
            (a.clone(), format!("a{worker}"))
        } else {
            (b.clone(), format!("b{worker}"))
        };
        let claimed = claimed.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim_due_per_app(&owner, T0, LEASE, 5, 3, &[])
                    .await
                    .unwrap();
                if got.is_empty() {
                    // Empty also while other claims hold the last rows locked: look again
                    // until every message went to someone.
                    if claimed.load(Ordering::SeqCst) >= N {
                        return mine;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                claimed.fetch_add(got.len(), Ordering::SeqCst);
                mine.extend(got.into_iter().map(|c| c.id));
            }
        }));
    }
    let mut all = Vec::new();
    let mut busy = HashSet::new();
    let joined = async {
        for (worker, task) in tasks.into_iter().enumerate() {
            let mine = task.await.unwrap();
            if !mine.is_empty() {
                busy.insert(worker % 2);
            }
            all.extend(mine);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), joined)
        .await
        .expect("every message claimed within 60 s");
    assert_eq!(all.len(), N, "claims in total");
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), N, "no message claimed twice");
    assert_eq!(busy.len(), 2, "both instances claimed");
    let sending = "SELECT COUNT(*) FROM messages WHERE state = 'sending' AND claims = 1";
    assert_eq!(db.int(sending).await, N as i64);
    assert_eq!(db.int("SELECT MAX(claims) FROM messages").await, 1);
    for owner in ["a%", "b%"] {
        let sql = format!("SELECT COUNT(*) FROM messages WHERE lease_owner LIKE '{owner}'");
        assert!(db.int(&sql).await > 0, "{owner}");
    }
}

/// Four instances starting at once on an empty database: every one connects, and the schema
/// is applied once (sqlx migrates under an advisory lock; without it the instances would race
/// on creating the same tables).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_at_once_migrate_once() {
    let pg = PgDatabase::create("migrate-at-once").await;
    let start = Arc::new(tokio::sync::Barrier::new(4));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (url, start) = (pg.url.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                Store::connect(&url).await
            })
        })
        .collect();
    let mut stores = Vec::new();
    for task in tasks {
        let store = task.await.unwrap();
        stores.push(store.unwrap_or_else(|e| panic!("an instance failed to start: {e}")));
    }
    let db = TestDb::on_postgres(stores[0].clone(), pg);
    let migrations = sqlx::migrate!("./migrations/postgres").iter().count() as i64;
    assert_eq!(db.count("_sqlx_migrations").await, migrations);
    let applied = "SELECT COUNT(*) FROM _sqlx_migrations WHERE success";
    assert_eq!(db.int(applied).await, migrations);
    let tables = "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public' \
                  AND tablename IN ('apps', 'api_keys', 'campaigns', 'messages', 'attempts')";
    assert_eq!(db.int(tables).await, 5);
    let due_index = "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'messages_due'";
    assert_eq!(db.int(due_index).await, 1);
    for (i, store) in stores.iter().enumerate() {
        let msg = message(&format!("m{i}"), "oa", T0);
        store.insert_message(&msg, T0).await.unwrap();
    }
    assert_eq!(db.count("messages").await, 4, "every instance can write");
}

/// The plan of the claim as PostgreSQL runs it: `EXPLAIN` with the values bound.
async fn explain_claim(conn: &mut PgConnection, skip: &[String]) -> String {
    let lines: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!("EXPLAIN {CLAIM}")))
        .bind("w")
        .bind("0123456789abcdef")
        .bind(T0 + LEASE)
        .bind(T0)
        .bind(skip)
        .bind(100_i64)
        .bind(100_i64)
        .fetch_all(conn)
        .await
        .unwrap();
    lines.join("\n")
}

async fn explain_next_due(conn: &mut PgConnection, skip: &[String]) -> String {
    let lines: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!("EXPLAIN {NEXT_DUE}")))
        .bind(skip)
        .fetch_all(conn)
        .await
        .unwrap();
    lines.join("\n")
}

/// On 5,000 messages of which 1,500 are active (three apps), after `ANALYZE`: the claim and
/// next_due find the active apps and their due rows in `messages_due`, and never read the
/// table in full (no `Seq Scan on messages`, so no sort of the whole table either). Checked
/// for the plan with the values bound and for the generic plan PostgreSQL switches a
/// prepared statement to after a few runs.
#[tokio::test]
async fn the_claim_uses_the_due_index() {
    let db = TestDb::postgres("claim-plan").await;
    let history = campaign("old", "oa", T0 - 86_400_000);
    db.store
        .create_campaign(&history, &recipients("old", 3_500), T0)
        .await
        .unwrap();
    db.exec("UPDATE messages SET state = 'sent' WHERE campaign_id = 'old'")
        .await;
    for app in ["oa", "crm", "shop"] {
        let id = format!("now-{app}");
        db.store
            .create_campaign(&campaign(&id, app, T0), &recipients(&id, 500), T0)
            .await
            .unwrap();
    }
    db.exec("ANALYZE messages").await;
    let Backend::Postgres(pg) = db.store.backend() else {
        panic!("a PostgreSQL store")
    };
    let mut conn = pg.pool().acquire().await.unwrap();
    let skip = ["crm".to_string()];
    for mode in ["auto", "force_generic_plan"] {
        let set = format!("SET plan_cache_mode = {mode}");
        sqlx::query(AssertSqlSafe(set))
            .execute(&mut *conn)
            .await
            .unwrap();
        for plan in [
            explain_claim(&mut conn, &[]).await,
            explain_claim(&mut conn, &skip).await,
            explain_next_due(&mut conn, &skip).await,
        ] {
            assert!(
                plan.contains("using messages_due on messages"),
                "{mode}\n{plan}"
            );
            assert!(!plan.contains("Seq Scan on messages"), "{mode}\n{plan}");
        }
        // The claimed rows are found again (to update them) through the primary key (an index
        // scan, or a bitmap one: either way no row of the history is read).
        let claim = explain_claim(&mut conn, &skip).await;
        assert!(claim.contains("messages_pkey"), "{mode}\n{claim}");
    }
    // What the plan promises: the claim takes the due rows of the apps not skipped.
    let got = db
        .store
        .claim_due("w", T0, LEASE, 100, &skip)
        .await
        .unwrap();
    assert_eq!(got.len(), 100);
    assert!(got.iter().all(|c| c.app != "crm"));
}

/// 100,000 recipients go in with `COPY`, in one transaction: a message id used twice at the
/// very end (after every row before it was streamed) leaves nothing behind; without it, every
/// row is there. The time is printed, not asserted (a debug build takes a few seconds).
#[tokio::test]
async fn a_100k_campaign_is_copied_in_one_transaction() {
    const N: usize = 100_000;
    let db = TestDb::postgres("copy-100k").await;
    let mut rows = recipients("big", N);
    let last = rows[N - 1].id.clone();
    rows[N - 1].id = rows[0].id.clone();
    let started = Instant::now();
    let err = db
        .store
        .create_campaign(&campaign("big", "oa", T0), &rows, T0)
        .await
        .unwrap_err();
    println!(
        "a campaign of {N} failing at its last row: {:.2?}",
        started.elapsed()
    );
    assert!(matches!(&err, StoreError::Conflict(_)), "{err}");
    assert_eq!(db.count("messages").await, 0, "no row left behind");
    assert_eq!(db.count("campaigns").await, 0);

    rows[N - 1].id = last;
    let started = Instant::now();
    db.store
        .create_campaign(&campaign("big", "oa", T0), &rows, T0)
        .await
        .unwrap();
    println!("a campaign of {N}: {:.2?}", started.elapsed());
    assert_eq!(db.count("messages").await, N as i64);
    let rec = db.store.campaign("big").await.unwrap().unwrap();
    assert_eq!(
        (rec.total, rec.counts),
        (N as i64, counts_pending(N as u64))
    );
    let end = db
        .store
        .get_message(&rows[N - 1].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (end.summary.recipient, end.body),
        (rows[N - 1].recipient.clone(), rows[N - 1].body.clone())
    );
}

/// A server that does not answer and a malformed URL both fail without repeating the URL or
/// its password.
#[tokio::test]
async fn connection_errors_never_echo_the_url() {
    let options = StoreOptions {
        acquire_timeout: Duration::from_secs(1),
        ..StoreOptions::default()
    };
    let refused = "postgres://wx:hunter2@127.0.0.1:1/wxgate";
    let err = Store::connect_with(refused, &options).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("127.0.0.1:1/wxgate"), "says where: {msg}");
    assert!(!msg.contains("hunter2") && !msg.contains("wx:"), "{msg}");

    for url in [
        "postgres://wx:hunter2@db:notaport/wxgate",
        "postgresql://wx:hunter2@db/wxgate?sslmode=sometimes",
    ] {
        let err = Store::connect_with(url, &options).await.unwrap_err();
        assert!(matches!(err, StoreError::Unsupported(_)), "{url}: {err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
