//! SQLite outbox measurements, `#[ignore]`d (the bodies are in `store/tests/perfkit.rs`). Run
//! them in release mode:
//!
//! ```text
//! cargo test -p wxgate --release --lib store::sqlite::perf -- --ignored --nocapture --test-threads 1
//! ```

use crate::store::tests::{TestDb, perfkit};

#[tokio::test]
#[ignore = "measurement: run with --release --ignored --nocapture"]
async fn campaign_insert_100k_and_1m() {
    perfkit::campaign_insert_100k_and_1m(|| TestDb::sqlite("perf-campaign")).await;
}

#[tokio::test]
#[ignore = "measurement: run with --release --ignored --nocapture"]
async fn claim_and_finish_throughput() {
    perfkit::claim_and_finish_throughput(TestDb::sqlite("perf-drain").await).await;
}

#[tokio::test]
#[ignore = "measurement: run with --release --ignored --nocapture"]
async fn claims_behind_a_paused_backlog() {
    perfkit::claims_behind_a_paused_backlog(TestDb::sqlite("perf-paused").await).await;
}
