//! The outbox measurements, backend-neutral: `sqlite/perf.rs` and `postgres/perf.rs` run them
//! as `#[ignore]`d tests on their backend. They print numbers instead of asserting on time
//! (wall time, and the process's CPU time, which a busy machine disturbs less).

use std::future::Future;
use std::time::{Duration, Instant};

use super::TestDb;
use super::testkit::*;
use crate::store::{CampaignMessage, Finish, Store};

/// Wall and CPU time since it was started.
pub struct Timer {
    wall: Instant,
    cpu_ms: u64,
}

impl Timer {
    pub fn start() -> Timer {
        Timer {
            wall: Instant::now(),
            cpu_ms: cpu_ms(),
        }
    }

    /// "wall 1.23 s, cpu 1.10 s", and `n` per second of each when `n` is given. The CPU time
    /// is this process's: with PostgreSQL, the server's work is not in it.
    pub fn report(&self, n: Option<usize>) -> String {
        let wall = self.wall.elapsed();
        let cpu = Duration::from_millis(cpu_ms() - self.cpu_ms);
        let mut text = format!("wall {wall:.2?}, cpu {cpu:.2?}");
        if let Some(n) = n {
            let rate = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
            text.push_str(&format!(
                " → {:.0}/s wall, {:.0}/s cpu",
                rate(wall),
                rate(cpu)
            ));
        }
        text
    }
}

/// User + system CPU time of this process in ms, from /proc (clock ticks of 10 ms).
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) * 10
}

/// Claims `batch` at a time and finishes each batch in one transaction until nothing is due.
pub async fn drain(store: &Store, batch: u32, skip: &[String]) -> usize {
    let mut done = 0;
    loop {
        let got = store.claim_due("w", T0, LEASE, batch, skip).await.unwrap();
        if got.is_empty() {
            return done;
        }
        let finishes: Vec<Finish> = got.iter().map(|c| finish(c, sent())).collect();
        let applied = store.finish(&finishes, T0 + 1).await.unwrap();
        assert!(applied.iter().all(|&ok| ok));
        done += got.len();
    }
}

/// Recipients sorted, with their ids drawn in that order: every index grows at its end.
pub fn sorted(mut rows: Vec<CampaignMessage>) -> Vec<CampaignMessage> {
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    rows.sort_by(|a, b| a.recipient.cmp(&b.recipient));
    for (row, id) in rows.iter_mut().zip(ids) {
        row.id = id;
    }
    rows
}

/// Campaigns of 100k and 1M recipients (random order, then sorted), each into a `fresh`
/// database: the insert, then the reads that scale with a campaign.
pub async fn campaign_insert_100k_and_1m<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = TestDb>,
{
    let cases = [
        ("random order", recipients("p", 100_000)),
        ("random order", recipients("p", 1_000_000)),
        ("sorted", sorted(recipients("p", 1_000_000))),
    ];
    for (order, rows) in cases {
        let n = rows.len();
        let db = fresh().await;
        let store = &db.store;
        let timer = Timer::start();
        store
            .create_campaign(&campaign("p", "oa", T0), &rows, T0)
            .await
            .unwrap();
        let kind = db.kind();
        eprintln!(
            "{kind}: campaign of {n}, {order}: insert {}",
            timer.report(Some(n))
        );
        let timer = Timer::start();
        let rec = store.campaign("p").await.unwrap().unwrap();
        assert_eq!(rec.counts.pending, n as u64);
        eprintln!("  campaign counts: {}", timer.report(None));
        let timer = Timer::start();
        let depth = store.queue_depth(T0).await.unwrap();
        assert_eq!(depth.due, n as u64);
        eprintln!("  queue_depth: {}", timer.report(None));
        let timer = Timer::start();
        let page = store.export_campaign("p", Some("op8"), 1000).await.unwrap();
        assert_eq!(page.len(), 1000);
        eprintln!("  export page of 1000: {}", timer.report(None));
        let timer = Timer::start();
        let got = store.claim_due("w", T0, LEASE, 100, &[]).await.unwrap();
        assert_eq!(got.len(), 100);
        eprintln!("  claim 100: {}", timer.report(None));
    }
}

/// Claim 100 + finish 100 in one transaction over 100k messages, then claim 100 + finish one
/// per transaction over 20k.
pub async fn claim_and_finish_throughput(db: TestDb) {
    const N: usize = 100_000;
    let store = &db.store;
    let kind = db.kind();
    store
        .create_campaign(&campaign("p", "oa", T0), &recipients("p", N), T0)
        .await
        .unwrap();
    let timer = Timer::start();
    assert_eq!(drain(store, 100, &[]).await, N);
    eprintln!(
        "{kind}: claim 100 + finish 100 in one transaction, over {N} messages: {}",
        timer.report(Some(N))
    );

    const M: usize = 20_000;
    store
        .create_campaign(&campaign("q", "oa", T0), &recipients("q", M), T0)
        .await
        .unwrap();
    let timer = Timer::start();
    loop {
        let got = store.claim_due("w", T0, LEASE, 100, &[]).await.unwrap();
        if got.is_empty() {
            break;
        }
        for c in &got {
            store.finish(&[finish(c, sent())], T0 + 1).await.unwrap();
        }
    }
    eprintln!(
        "{kind}: claim 100 + finish 1 per transaction, over {M} messages: {}",
        timer.report(Some(M))
    );
}

/// Draining one app while another (paused) app's backlog of 100k is due first, so every
/// claim steps over it.
pub async fn claims_behind_a_paused_backlog(db: TestDb) {
    const PAUSED: usize = 100_000;
    const N: usize = 20_000;
    let store = &db.store;
    let paused = campaign("paused", "big", T0 - 1);
    store
        .create_campaign(&paused, &recipients("x", PAUSED), T0)
        .await
        .unwrap();
    store
        .create_campaign(&campaign("p", "oa", T0), &recipients("p", N), T0)
        .await
        .unwrap();
    let skip = ["big".to_string()];
    let timer = Timer::start();
    assert_eq!(drain(store, 100, &skip).await, N);
    eprintln!(
        "{}: claim 100 + finish 100 behind a paused backlog of {PAUSED}: {}",
        db.kind(),
        timer.report(Some(N))
    );
    let timer = Timer::start();
    assert_eq!(store.next_due_ms(&skip).await.unwrap(), None);
    eprintln!("  next_due_ms stepping over it: {}", timer.report(None));
}
