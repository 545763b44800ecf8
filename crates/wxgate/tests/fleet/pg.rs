//! PostgreSQL for fleet tests: a fresh database per test on the shared test server
//! (`WXGATE_TEST_DATABASE_URL`, as CI sets it; the tests fail, never skip, without it), and a
//! private `postgres` server of a test's own that it may stop and start.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sqlx::Connection;
use tokio::process::Command;

use crate::procs::{free_port, temp_dir};

pub fn test_database_url() -> String {
    std::env::var("WXGATE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database of its own, dropped (with its connections) when this is.
pub struct TestDatabase {
    pub url: String,
    name: String,
    admin: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        Self::create_on(&test_database_url()).await
    }

    /// A new database on the server `admin` points at.
    pub async fn create_on(admin: &str) -> TestDatabase {
        let name = format!(
            "wxgate_fleet_{}_{}",
            std::process::id(),
            wxgate::crypto::random_token("")[..8].to_ascii_lowercase()
        )
        .replace('-', "_");
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .unwrap_or_else(|e| {
                panic!("fleet tests need PostgreSQL at WXGATE_TEST_DATABASE_URL ({admin}): {e}")
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
        TestDatabase {
            url: format!("{base}/{name}"),
            name,
            admin: admin.to_owned(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Its own runtime on another thread, so it runs inside a test's runtime and on panic.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A `postgres` server of this test's own (Debian's binaries), on a free port, trust auth.
/// Run as the `postgres` user when the test runs as root (PostgreSQL refuses root).
pub struct PrivatePg {
    pub port: u16,
    data: PathBuf,
    bin: PathBuf,
}

impl PrivatePg {
    pub async fn start() -> PrivatePg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries in /usr/lib/postgresql (CI installs them)")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("postgres").exists())
            .expect("a /usr/lib/postgresql/*/bin/postgres");
        let dir = temp_dir("pg");
        let data = dir.join("data");
        if is_root() {
            std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
        }
        let pg = PrivatePg {
            port: free_port(),
            data,
            bin,
        };
        let out = pg
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&pg.data)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.resume().await;
        pg
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Start (again) on the same data directory and wait until it accepts connections.
    pub async fn resume(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off",
            self.port
        );
        let out = self
            .command("pg_ctl")
            .args(["-w", "-t", "30", "-o", &opts, "-l"])
            .arg(self.data.with_file_name("pg.log"))
            .arg("-D")
            .arg(&self.data)
            .arg("start")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while sqlx::PgConnection::connect(&self.admin_url())
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "private PostgreSQL did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stop at once (`immediate`: connections cut, no checkpoint), as a crash would.
    pub async fn stop(&self) {
        let out = self
            .command("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let mut cmd = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            std::process::Command::new(pg_ctl)
        };
        let _ = cmd
            .args(["-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}
