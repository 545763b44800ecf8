//! The store's contract suite: every test here runs against each backend — SQLite (a fresh
//! file) and PostgreSQL (a fresh database on the server at `WXGATE_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). The PostgreSQL tests fail, never skip, when that
//! server cannot be reached: CI (`.ci/run`) makes sure it is up.
//!
//! A test is an `async fn name(db: TestDb)`; `contract!(name, …)` at the end of its file
//! declares it once per backend (`…::sqlite::name`, `…::postgres::name`); a name followed by
//! arguments, `name(flavor = "multi_thread", worker_threads = 4)`, gets them on its
//! `#[tokio::test]`. Raw reads go through [`TestDb`]'s helpers, in SQL both databases accept.
//!
//! Tests that only make sense for one database (its settings, its query plans, its own
//! concurrency machinery) are in `sqlite/tests.rs` and `postgres/tests.rs`.

mod apps;
mod campaigns;
mod claim;
mod connect;
mod finish;
mod insert;
mod keys;
mod manage;
pub mod perfkit;
mod query;
pub mod testkit;
mod upload;

use std::sync::atomic::{AtomicU64, Ordering};

use super::testutil::TempDb;
use super::{Backend, Store};

/// Where the PostgreSQL tests create their databases.
pub fn test_database_url() -> String {
    std::env::var("WXGATE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh database of one backend and a store connected to it; the database is removed when
/// this is dropped (also when the test panics).
pub struct TestDb {
    pub store: Store,
    place: Place,
}

enum Place {
    Sqlite(TempDb),
    Postgres(PgDatabase),
}

impl TestDb {
    pub async fn sqlite(tag: &str) -> TestDb {
        let file = TempDb::new(tag);
        let store = file.connect().await;
        TestDb {
            store,
            place: Place::Sqlite(file),
        }
    }

    pub async fn postgres(tag: &str) -> TestDb {
        let db = PgDatabase::create(tag).await;
        let store = Store::connect(&db.url)
            .await
            .unwrap_or_else(|e| panic!("cannot open the test database: {e}"));
        TestDb {
            store,
            place: Place::Postgres(db),
        }
    }

    /// A store someone else opened on `db` (e.g. the first of several that connected at once).
    pub fn on_postgres(store: Store, db: PgDatabase) -> TestDb {
        TestDb {
            store,
            place: Place::Postgres(db),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        self.store.kind()
    }

    /// The database's URL (to start a gateway or a second store on it).
    pub fn url(&self) -> String {
        match &self.place {
            Place::Sqlite(f) => f.url(),
            Place::Postgres(p) => p.url.clone(),
        }
    }

    /// Another store (its own pool) on the same database, as a second instance would have.
    pub async fn connect(&self) -> Store {
        Store::connect(&self.url()).await.expect("connect again")
    }

    /// Runs a statement, raw.
    pub async fn exec(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.store.backend() {
            Backend::Sqlite(s) => sqlx::query(sql).execute(s.pool()).await.map(|_| ()),
            Backend::Postgres(p) => sqlx::query(sql).execute(p.pool()).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The integer the query returns (one row, one column).
    pub async fn int(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.store.backend() {
            Backend::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await,
            Backend::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p.pool()).await,
        }
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The text the query returns (one row, one column).
    pub async fn text(&self, sql: &str) -> String {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.store.backend() {
            Backend::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await,
            Backend::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p.pool()).await,
        }
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The bytes the query returns (one row, one column).
    pub async fn bytes(&self, sql: &str) -> Vec<u8> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.store.backend() {
            Backend::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await,
            Backend::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p.pool()).await,
        }
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `SELECT COUNT(*) FROM table`.
    pub async fn count(&self, table: &str) -> i64 {
        self.int(&format!("SELECT COUNT(*) FROM {table}")).await
    }
}

/// A database of its own on the test server, dropped with this value.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
    admin: String,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl PgDatabase {
    pub async fn create(tag: &str) -> PgDatabase {
        let admin = test_database_url();
        let tag: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(20)
            .collect::<String>()
            .to_ascii_lowercase();
        let name = format!(
            "wxgate_t_{tag}_{}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            &crate::crypto::random_token("")[..6].to_ascii_lowercase()
        )
        .replace('-', "_");
        let mut conn = admin_connection(&admin).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
        PgDatabase {
            url: with_database(&admin, &name),
            name,
            admin,
        }
    }
}

async fn admin_connection(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.unwrap_or_else(|e| {
        panic!(
            "the PostgreSQL tests need the server at WXGATE_TEST_DATABASE_URL \
             (default postgres://postgres@127.0.0.1:5432/test): {e}"
        )
    })
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(i) => &base[..authority_end + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Synchronous (a runtime of its own on another thread), so it also runs while a
        // failed test unwinds; FORCE ends the connections the test's pool still holds.
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async {
                let mut conn = admin_connection(&admin).await;
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await;
            });
        })
        .join();
    }
}

/// Declares each named `async fn(TestDb)` as a test per backend; `name(args)` passes `args` to
/// its `#[tokio::test]` (e.g. a multi-threaded runtime).
macro_rules! contract {
    ($($name:ident $(($($arg:tt)*))?),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test $(($($arg)*))?]
                async fn $name() {
                    super::$name($crate::store::tests::TestDb::sqlite(stringify!($name)).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test $(($($arg)*))?]
                async fn $name() {
                    super::$name($crate::store::tests::TestDb::postgres(stringify!($name)).await).await;
                }
            )*
        }
    };
}
pub(crate) use contract;

#[test]
fn database_names_are_swapped_in_urls() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/test", "x"),
        "postgres://u:p@h:5432/x"
    );
    assert_eq!(
        with_database("postgres://u@h/test?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}
