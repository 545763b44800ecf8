//! `wxgate campaign send`: stream a CSV (or NDJSON, by its `.ndjson`/`.jsonl` name) campaign
//! from disk to a running server — never read whole — with upload progress, then its
//! delivery progress on stderr, and print a summary (sent, failed by errcode, unknown,
//! messages/s) on stdout.

use std::collections::BTreeMap;
use std::io::Write;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, ReadBuf};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cli::CampaignSend;

pub async fn send(a: CampaignSend) -> anyhow::Result<ExitCode> {
    crate::wechat::init_crypto();
    let file = tokio::fs::File::open(&a.csv)
        .await
        .with_context(|| format!("opening {}", a.csv.display()))?;
    let size = file.metadata().await?.len();
    let name = a.csv.to_string_lossy().to_ascii_lowercase();
    let content_type = if name.ends_with(".ndjson") || name.ends_with(".jsonl") {
        "application/x-ndjson"
    } else {
        "text/csv"
    };
    let sent = Arc::new(AtomicU64::new(0));
    let counted = Counting {
        inner: file,
        sent: Arc::clone(&sent),
    };
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        counted,
        256 * 1024,
    ));
    let http = reqwest::Client::new();
    let server = a.server.trim_end_matches('/');
    let mut query = vec![
        ("app", a.app.clone()),
        ("type", a.kind.clone()),
        ("template_id", a.template_id.clone()),
    ];
    if let Some(t) = &a.send_at {
        query.push(("send_at", t.clone()));
    }
    if a.truncate {
        query.push(("truncate", "true".into()));
    }
    let started = Instant::now();
    let request = http
        .post(format!("{server}/v1/campaigns"))
        .query(&query)
        .bearer_auth(&a.token)
        .header("content-type", content_type)
        .header("content-length", size)
        .body(body)
        .send();
    tokio::pin!(request);
    // Upload progress until the server answers (it answers once every recipient is stored).
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let resp = loop {
        tokio::select! {
            resp = &mut request => break resp.with_context(|| format!("cannot reach {server}"))?,
            _ = tick.tick() => draw_upload(sent.load(Ordering::Relaxed), size, started),
        }
    };
    draw_upload(sent.load(Ordering::Relaxed), size, started);
    eprintln!();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        eprintln!(
            "the server refused the campaign ({status}): {}",
            body["message"]
        );
        if let Some(errors) = body["errors"].as_array() {
            for e in errors {
                eprintln!(
                    "  {}: {}",
                    e["field"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("")
                );
            }
        }
        return Ok(ExitCode::FAILURE);
    }
    let id = body["id"]
        .as_str()
        .context("the answer has no campaign id")?
        .to_string();
    let total = body["total"].as_u64().unwrap_or(0);
    eprintln!(
        "campaign {id}: {total} recipients accepted in {:.1} s ({} duplicates skipped)",
        started.elapsed().as_secs_f64(),
        body["duplicates_skipped"].as_u64().unwrap_or(0)
    );
    if a.no_wait {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let sending = Instant::now();
    let campaign = loop {
        let c: Value = get(&http, &a.token, &format!("{server}/v1/campaigns/{id}")).await?;
        let n = |k: &str| c["counts"][k].as_u64().unwrap_or(0);
        let done = n("sent") + n("failed") + n("unknown") + n("cancelled");
        let rate = n("sent") as f64 / sending.elapsed().as_secs_f64().max(0.001);
        draw(done, total, n("sent"), n("failed"), n("unknown"), rate);
        if c["status"] != "running" {
            eprintln!();
            break c;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let secs = sending.elapsed().as_secs_f64();
    let n = |k: &str| campaign["counts"][k].as_u64().unwrap_or(0);
    let mut by_errcode: BTreeMap<String, u64> = BTreeMap::new();
    let mut after: Option<String> = None;
    if n("failed") > 0 {
        loop {
            let mut url = format!("{server}/v1/messages?campaign={id}&state=failed&limit=1000");
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let page = get(&http, &a.token, &url).await?;
            for m in page["messages"].as_array().into_iter().flatten() {
                let code = m["errcode"]
                    .as_i64()
                    .map_or("none".into(), |c| c.to_string());
                *by_errcode.entry(code).or_default() += 1;
            }
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => break,
            }
        }
    }
    println!(
        "campaign {id} {}",
        campaign["status"].as_str().unwrap_or("?")
    );
    println!("  sent       {}", n("sent"));
    println!("  failed     {}", n("failed"));
    for (code, count) in &by_errcode {
        println!("    errcode {code}: {count}");
    }
    println!("  unknown    {}", n("unknown"));
    println!("  cancelled  {}", n("cancelled"));
    println!(
        "  {:.0} messages/s over {secs:.1} s",
        n("sent") as f64 / secs.max(0.001)
    );
    Ok(if n("failed") + n("unknown") == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

async fn get(http: &reqwest::Client, token: &str, url: &str) -> anyhow::Result<Value> {
    let resp = http.get(url).bearer_auth(token).send().await?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{status}: {}", v["message"]);
    }
    Ok(v)
}

/// Counts the bytes read from the file (what has gone to the server, give or take a buffer).
struct Counting<R> {
    inner: R,
    sent: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.sent.fetch_add(read, Ordering::Relaxed);
        polled
    }
}

/// `uploading [##########----------]  52.0/100.0 MB  12.3 MB/s` (then the server's checks and
/// commit: the line stays at 100% until it answers).
fn draw_upload(sent: u64, size: u64, started: Instant) {
    const WIDTH: u64 = 30;
    let filled = (sent * WIDTH).checked_div(size).unwrap_or(WIDTH).min(WIDTH) as usize;
    let mb = |b: u64| b as f64 / 1e6;
    let rate = mb(sent) / started.elapsed().as_secs_f64().max(0.001);
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "\ruploading [{}{}] {:.1}/{:.1} MB  {rate:.1} MB/s ",
        "#".repeat(filled),
        "-".repeat(WIDTH as usize - filled),
        mb(sent),
        mb(size)
    );
    let _ = err.flush();
}

/// `[########------------]  4,000/10,000  sent 3,990  failed 10  unknown 0  3,210 msg/s`
fn draw(done: u64, total: u64, sent: u64, failed: u64, unknown: u64, rate: f64) {
    const WIDTH: u64 = 30;
    let filled = (done * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH)
        .min(WIDTH) as usize;
    let bar = format!(
        "{}{}",
        "#".repeat(filled),
        "-".repeat(WIDTH as usize - filled)
    );
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "\r[{bar}] {done}/{total}  sent {sent}  failed {failed}  unknown {unknown}  {rate:.0} msg/s "
    );
    let _ = err.flush();
}
