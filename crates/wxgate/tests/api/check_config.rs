//! `wxgate check-config --connect`: each server the config names is reached, and one that
//! refuses is reported by its key, without the URL's password, with exit code 3.

use std::net::TcpListener;
use std::process::Output;

use crate::fleet::test_redis_url;

fn test_database_url() -> String {
    std::env::var("WXGATE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn check_config(database: &str, redis: &str) -> Output {
    // No wxgate.toml is read from here: only the environment configures this run.
    std::process::Command::new(env!("CARGO_BIN_EXE_wxgate"))
        .current_dir(std::env::temp_dir())
        .args(["check-config", "--connect"])
        .env("WXGATE_DATABASE_URL", database)
        .env("WXGATE_REDIS_URL", redis)
        .env("WXGATE_MASTER_KEY", "11".repeat(32))
        .output()
        .unwrap()
}

#[test]
fn reachable_servers_pass() {
    let out = check_config(&test_database_url(), &test_redis_url());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("database_url (WXGATE_DATABASE_URL): ok"),
        "{err}"
    );
    assert!(err.contains("redis_url (WXGATE_REDIS_URL): ok"), "{err}");
}

#[test]
fn a_refusing_server_is_named_by_its_key_without_its_password() {
    let db = format!(
        "postgres://wx:pg-hunter2@127.0.0.1:{}/wxgate",
        closed_port()
    );
    let out = check_config(&db, &test_redis_url());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("database_url (WXGATE_DATABASE_URL): ") && err.contains("refused"),
        "{err}"
    );
    assert!(err.contains("redis_url (WXGATE_REDIS_URL): ok"), "{err}");

    let redis = format!("redis://:redis-hunter2@127.0.0.1:{}", closed_port());
    let out = check_config(&test_database_url(), &redis);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("redis_url (WXGATE_REDIS_URL): "), "{err}");
    assert!(
        err.contains("database_url (WXGATE_DATABASE_URL): ok"),
        "{err}"
    );
    let all = format!("{err}{}", String::from_utf8_lossy(&out.stdout));
    assert!(!all.contains("hunter2"), "a password leaked: {all}");
}
