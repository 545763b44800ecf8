//! PostgreSQL outbox measurements, `#[ignore]`d (the bodies are in `store/tests/perfkit.rs`). Run
//! them in release mode (the server at `WXGATE_TEST_DATABASE_URL`):
//!
//! ```text
//! cargo test -p wxgate --release --lib store::postgres::perf -- --ignored --nocapture --test-threads 1
//! ```

use crate::store::tests::{TestDb, perfkit};

#[tokio::test]
#[ignore = "measurement: run with --release --ignored --nocapture"]
async fn campaign_insert_100k_and_1m() {
    perfkit::campaign_insert_100k_and_1m(|| TestDb::postgres("perf-campaign")).await;
}

#[tokio::test]
#[ignore = "measurement: run with --release --ignored --nocapture"]
async fn claim_and_finish_throughput() {
    perfkit::claim_and_finish_throughput(TestDb::postgres("perf-drain").await).await;
}

#[tokio::test]
#[ignore = "measurement: run with --release --ignored --nocapture"]
async fn claims_behind_a_paused_backlog() {
    perfkit::claims_behind_a_paused_backlog(TestDb::postgres("perf-paused").await).await;
}
