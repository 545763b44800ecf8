//! `POST /v1/campaigns`, streamed: the body is read, checked and stored as it arrives, in
//! bounded memory whatever the number of recipients, and the 202 comes once the whole
//! campaign is committed.
//!
//! Three parts run at once, joined by bounded channels (so memory is a few chunks, and a slow
//! store slows the reading of the body instead of filling memory):
//!
//! ```text
//! body ──pump──▶ frames ──parser (blocking thread)──▶ chunks of messages ──writer──▶ store
//!                         CSV / NDJSON / JSON, checks,                      CampaignUpload
//!                         ids, bodies, request hash
//! ```
//!
//! The writer opens the upload when the parser has read the settings, adds each chunk, and at
//! the end either seals the campaign (all of it valid) or aborts it (a problem anywhere: the
//! 422 lists up to `MAX_ERRORS` of them with their lines). The whole ingest runs in a task of
//! its own, so a client that goes away half-way gets its upload aborted, not left behind.

use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::idempotency::{self, RequestHash};
use super::messages::{app_for, due_at};
use super::{ApiError, AppState, auth::Caller};
use crate::message::{self, CampaignBuilder, CsvRecipients, NdjsonRecipients, Recipient};
use crate::store::{
    CampaignInserted, CampaignMessage, ExistingCampaign, Idempotency, NewCampaign, UPLOAD_CHUNK,
    new_id, new_ids,
};

/// The largest JSON campaign body: it is parsed whole, so its recipients are held in memory
/// (16 MiB is about 100,000 recipients with a keyword each). Bigger campaigns are sent as CSV
/// or NDJSON, which are streamed.
pub const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;

/// The largest streamed (CSV or NDJSON) body: about 40 million recipients.
pub const MAX_STREAM_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// A client that sends nothing for this long is given up on (408), and its upload aborted.
pub const BODY_IDLE: Duration = Duration::from_secs(60);

/// Body frames waiting for the parser. Frames are at most a few hundred KiB.
const FRAMES_IN_FLIGHT: usize = 8;

/// How the recipients come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Ndjson,
}

impl Format {
    fn of(headers: &HeaderMap) -> Format {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ct.starts_with("text/csv") {
            Format::Csv
        } else if ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl") {
            Format::Ndjson
        } else {
            Format::Json
        }
    }

    fn max_bytes(self) -> u64 {
        match self {
            Format::Json => MAX_JSON_BYTES as u64,
            Format::Csv | Format::Ndjson => MAX_STREAM_BYTES,
        }
    }
}

/// What the parser tells the writer, in this order: `Head` once, `Chunk`s, `End` once.
enum Parsed {
    /// The settings were read and checked: the campaign to open.
    Head(NewCampaign),
    Chunk(Vec<CampaignMessage>),
    /// The body was read to its end: the number of recipients (duplicates included) and the
    /// request's hash, or why the campaign is refused.
    End(Result<String, ApiError>),
}

/// Why the body could not be read to its end.
#[derive(Clone, Debug)]
enum BodyFailure {
    TooLarge(Format),
    Idle,
    Broken(String),
}

impl BodyFailure {
    fn into_error(self) -> ApiError {
        match self {
            BodyFailure::TooLarge(Format::Json) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "a JSON campaign is at most {} MiB (about 100,000 recipients); send bigger \
                     campaigns as CSV (content-type: text/csv) or NDJSON (application/x-ndjson), \
                     which are streamed",
                    MAX_JSON_BYTES >> 20
                ),
            ),
            BodyFailure::TooLarge(_) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "a campaign upload is at most {} GiB; split it into several campaigns",
                    MAX_STREAM_BYTES >> 30
                ),
            ),
            BodyFailure::Idle => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "nothing of the body arrived for {} s; nothing was stored",
                    BODY_IDLE.as_secs()
                ),
            ),
            BodyFailure::Broken(why) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                format!("the body broke off ({why}); nothing was stored"),
            ),
        }
    }
}

pub async fn create(
    s: AppState,
    caller: Caller,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let format = Format::of(&headers);
    let key = idempotency::key(&headers)?;
    // Its own task: dropped with the connection, this handler would leave the upload behind.
    tokio::spawn(ingest(s, caller, query, format, key, body))
        .await
        .map_err(|e| ApiError::internal(format!("the upload failed: {e}")))?
}

async fn ingest(
    s: AppState,
    caller: Caller,
    query: HashMap<String, String>,
    format: Format,
    key: Option<String>,
    body: Body,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let (frames_tx, frames_rx) = mpsc::channel(FRAMES_IN_FLIGHT);
    // One chunk being stored while the next is prepared.
    let (parsed_tx, mut parsed_rx) = mpsc::channel(1);
    // Set by the writer when the request is a replay: the parser then only hashes the rest.
    let replaying = Arc::new(AtomicBool::new(false));
    // The pump ends with the body (or when the parser is gone); nobody waits for it.
    tokio::spawn(pump(body, frames_tx, format));
    let parser = {
        let (s, replaying) = (s.clone(), Arc::clone(&replaying));
        let now = s.tokens.clock().now_ms();
        tokio::task::spawn_blocking(move || {
            let mut input = Frames::new(frames_rx, &settings_of(format, &query));
            let end = parse(
                &s, &caller, &query, format, &mut input, &parsed_tx, &replaying, now,
            );
            // A broken body explains any problem the parser met on the way.
            let end = match input.failure.take() {
                Some(failure) => Err(failure.into_error()),
                None => end.map(|()| input.hash.finish()),
            };
            let _ = parsed_tx.blocking_send(Parsed::End(end));
        })
    };
    let mut upload = None;
    let mut head: Option<NewCampaign> = None;
    let outcome = loop {
        let Some(parsed) = parsed_rx.recv().await else {
            break Err(ApiError::internal("the campaign parser stopped"));
        };
        match parsed {
            Parsed::Head(campaign) => {
                let now = s.tokens.clock().now_ms();
                if let Some(key) = &key
                    && is_taken(&s, &campaign.app, key).await?
                {
                    // Most likely a retry of a request that was answered: compare hashes at
                    // the end, without storing anything meanwhile.
                    replaying.store(true, Ordering::Relaxed);
                } else {
                    match s.store.begin_campaign(&campaign, now).await {
                        Ok(u) => upload = Some(u),
                        Err(e) => break Err(upload_error(e)),
                    }
                }
                head = Some(campaign);
            }
            Parsed::Chunk(rows) => {
                if let Some(u) = upload.as_mut()
                    && let Err(e) = u.add(&rows, s.tokens.clock().now_ms()).await
                {
                    break Err(upload_error(e));
                }
            }
            Parsed::End(end) => break end,
        }
    };
    // Stops the parser at its next chunk should the writer have failed first.
    drop(parsed_rx);
    let _ = parser.await;
    let hash = match outcome {
        Ok(hash) => hash,
        Err(e) => {
            if let Some(u) = upload {
                // Deleting a big staged upload takes a while: answer first.
                tokio::spawn(u.abort());
            }
            return Err(e);
        }
    };
    let head = head.ok_or_else(|| ApiError::internal("the campaign has no settings"))?;
    let idempotency = key.map(|key| Idempotency {
        key,
        request_hash: hash,
    });
    let Some(upload) = upload else {
        // A replay: nothing was stored.
        let idempotency = idempotency.ok_or_else(|| ApiError::internal("replay without a key"))?;
        let existing = s.store.campaign_by_key(&head.app, &idempotency).await?;
        return replay(existing.ok_or_else(|| {
            ApiError::conflict("the campaign under this Idempotency-Key is gone; retry")
        })?);
    };
    let id = upload.id().to_owned();
    let now = s.tokens.clock().now_ms();
    match upload
        .seal_releasing_later(idempotency.as_ref(), now)
        .await
        .map_err(upload_error)?
    {
        CampaignInserted::Created {
            total,
            duplicates_skipped,
        } => Ok((
            StatusCode::ACCEPTED,
            axum::Json(json!({
                "id": id,
                "total": total,
                "duplicates_skipped": duplicates_skipped,
            })),
        )),
        // Another request with the same key sealed first (a race): answer with its campaign.
        CampaignInserted::Existing(existing) => replay(existing),
    }
}

/// A store conflict during an upload (its staging campaign deleted as abandoned, an id taken)
/// is the client's to retry: 409 with the store's words, not a 500.
fn upload_error(e: crate::store::StoreError) -> ApiError {
    match e {
        crate::store::StoreError::Conflict(why) => ApiError::conflict(why),
        other => other.into(),
    }
}

/// Whether the app already has a campaign under `key` (whatever its request).
async fn is_taken(s: &AppState, app: &str, key: &str) -> Result<bool, ApiError> {
    let probe = Idempotency {
        key: key.to_owned(),
        request_hash: String::new(),
    };
    Ok(s.store.campaign_by_key(app, &probe).await?.is_some())
}

/// The answer to a request whose Idempotency-Key the app already used for a campaign: that
/// campaign (`"replayed": true`) when it came with the same request, else 409.
pub(super) fn replay(
    existing: ExistingCampaign,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    if !existing.same_request {
        return Err(idempotency::reused("campaign", &existing.id));
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "id": existing.id,
            "total": existing.total,
            "duplicates_skipped": existing.duplicates_skipped,
            "replayed": true,
        })),
    ))
}

/// What of the request is outside the body and makes it what it is: a streamed upload's query
/// (its settings), as sorted `name=value` lines. A JSON body holds its settings itself.
fn settings_of(format: Format, query: &HashMap<String, String>) -> Vec<u8> {
    if format == Format::Json {
        return Vec::new();
    }
    let mut pairs: Vec<_> = query.iter().collect();
    pairs.sort();
    let lines: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    lines.concat().into_bytes()
}

/// Moves the body's frames to the parser, enforcing the size limit and the idle timeout.
async fn pump(body: Body, frames: mpsc::Sender<Result<Bytes, BodyFailure>>, format: Format) {
    let mut body = body;
    let mut total: u64 = 0;
    loop {
        let frame = match tokio::time::timeout(BODY_IDLE, body.frame()).await {
            Err(_) => Err(BodyFailure::Idle),
            Ok(None) => return,
            Ok(Some(Err(e))) => Err(BodyFailure::Broken(e.to_string())),
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    total += data.len() as u64;
                    if total > format.max_bytes() {
                        Err(BodyFailure::TooLarge(format))
                    } else {
                        Ok(data)
                    }
                }
                Err(_) => continue, // trailers
            },
        };
        let failed = frame.is_err();
        if frames.send(frame).await.is_err() || failed {
            return;
        }
    }
}

/// The body as a blocking reader for the parser, hashed as it is read. A failure of the body
/// is kept in `failure` and shows to the parser as an I/O error.
struct Frames {
    rx: mpsc::Receiver<Result<Bytes, BodyFailure>>,
    current: Bytes,
    hash: RequestHash,
    failure: Option<BodyFailure>,
}

impl Frames {
    fn new(rx: mpsc::Receiver<Result<Bytes, BodyFailure>>, settings: &[u8]) -> Self {
        Frames {
            rx,
            current: Bytes::new(),
            hash: RequestHash::new(settings),
            failure: None,
        }
    }

    /// Reads (and hashes) what is left of the body.
    fn drain(&mut self) {
        let mut sink = [0u8; 64 * 1024];
        while matches!(self.read(&mut sink), Ok(n) if n > 0) {}
    }
}

impl Read for Frames {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.failure.is_some() {
                return Err(io::Error::other("the body broke off"));
            }
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(frame)) => {
                    self.hash.update(&frame);
                    self.current = frame;
                }
                Some(Err(failure)) => self.failure = Some(failure),
            }
        }
        let n = self.current.len().min(buf.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Where the recipients come from.
enum Source<'a> {
    List(std::vec::IntoIter<Recipient>),
    Csv(Box<CsvRecipients<BufReader<&'a mut Frames>>>),
    Ndjson(NdjsonRecipients<BufReader<&'a mut Frames>>),
}

/// The parser, on a blocking thread: settings, then each recipient checked and turned into
/// its message, sent to the writer a chunk at a time. Returns once the body is read to its
/// end; `Err` when the campaign is refused.
#[allow(clippy::too_many_arguments)]
fn parse(
    s: &AppState,
    caller: &Caller,
    query: &HashMap<String, String>,
    format: Format,
    input: &mut Frames,
    out: &mpsc::Sender<Parsed>,
    replaying: &AtomicBool,
    now: i64,
) -> Result<(), ApiError> {
    let (req, mut source) = match format {
        Format::Json => {
            let mut body = Vec::new();
            input
                .read_to_end(&mut body)
                .map_err(|_| ApiError::invalid("the body broke off"))?;
            let mut req: message::CampaignRequest = serde_json::from_slice(&body)
                .map_err(|e| ApiError::invalid(format!("the JSON body is not valid: {e}")))?;
            let recipients = std::mem::take(&mut req.recipients);
            (req, Source::List(recipients.into_iter()))
        }
        Format::Csv => {
            let req = settings_from_query(query)?;
            let rows = CsvRecipients::new(BufReader::with_capacity(64 * 1024, &mut *input))?;
            (req, Source::Csv(Box::new(rows)))
        }
        Format::Ndjson => {
            let mut rows = NdjsonRecipients::new(BufReader::with_capacity(64 * 1024, &mut *input));
            let req = if query.contains_key("app") {
                settings_from_query(query)?
            } else {
                rows.settings()?
            };
            (req, Source::Ndjson(rows))
        }
    };
    let app = app_for(s, caller, &req.app)?;
    let due_at_ms = due_at(req.send_at.as_deref(), now)?;
    let mut builder = CampaignBuilder::new(&app, req.content)?;
    let spec = builder.spec();
    let head = NewCampaign {
        id: new_id("cmp_", now),
        app: app.id.clone(),
        kind: spec.kind,
        template: spec.template,
        due_at_ms,
        idempotency: None,
    };
    if out.blocking_send(Parsed::Head(head)).is_err() {
        return Ok(()); // the writer failed: it has its error
    }
    let mut ids = new_ids("msg_", now);
    let mut chunk = Vec::with_capacity(UPLOAD_CHUNK);
    loop {
        if replaying.load(Ordering::Relaxed) {
            // Only the hash matters now.
            drop(source);
            input.drain();
            return Ok(());
        }
        let next = match &mut source {
            Source::List(list) => list.next(),
            Source::Csv(rows) => rows.next(builder.errors()),
            Source::Ndjson(rows) => rows.next(builder.errors()),
        };
        let Some(recipient) = next else { break };
        let id = ids.next().expect("an IdSeq never ends");
        let Some(prepared) = builder.push(recipient, Some(&id)) else {
            continue;
        };
        chunk.push(CampaignMessage {
            id,
            recipient: prepared.to,
            body: prepared.body,
        });
        if chunk.len() == UPLOAD_CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(UPLOAD_CHUNK));
            if out.blocking_send(Parsed::Chunk(full)).is_err() {
                return Ok(());
            }
        }
    }
    drop(source);
    input.drain();
    builder.finish()?;
    if !chunk.is_empty() && out.blocking_send(Parsed::Chunk(chunk)).is_err() {
        return Ok(());
    }
    Ok(())
}

/// A streamed campaign's settings from the query string (`app`, `type`, `template_id`, and
/// optionally `send_at`, `url`, `page`, `miniprogram_state`, `lang`, `truncate`, …).
fn settings_from_query(
    query: &HashMap<String, String>,
) -> Result<message::CampaignRequest, ApiError> {
    let mut settings = serde_json::Map::new();
    for (k, v) in query {
        let value = match (k.as_str(), v.as_str()) {
            ("truncate", "true" | "1") => Value::Bool(true),
            ("truncate", _) => Value::Bool(false),
            _ => Value::String(v.clone()),
        };
        settings.insert(k.clone(), value);
    }
    settings.insert("recipients".into(), json!([]));
    serde_json::from_value(Value::Object(settings)).map_err(|e| {
        ApiError::invalid(format!(
            "the settings of a CSV or NDJSON campaign go in the query string \
             (?app=…&type=…&template_id=…): {e}"
        ))
    })
}
