//! Campaigns stored as they arrive, in bounded memory: [`Store::begin_campaign`] opens an
//! upload, [`CampaignUpload::add`] stores each chunk of checked messages as soon as it is
//! ready, and [`CampaignUpload::seal`] is the commit point — before it nothing of the campaign
//! is visible or claimable, after it the whole campaign is. [`CampaignUpload::abort`] (or a
//! dropped upload) leaves nothing behind.
//!
//! A recipient listed again is dropped by the `messages_campaign_recipient` unique index
//! (`INSERT … ON CONFLICT DO NOTHING`, the first one kept) and counted, so no process holds a
//! set the size of the campaign.
//!
//! How each backend keeps the upload invisible while other work goes on:
//! - **SQLite** (one writer): every chunk is its own short transaction, so claims, finishes and
//!   single messages wait for one chunk at most, never for the whole upload. Chunks go in
//!   under a *staging* campaign (`uploading_at_ms` set, hidden from reads) with their due time
//!   shifted by [`STAGED_OFFSET`], far past any claim's "now"; the seal clears
//!   `uploading_at_ms`, then [`release`](SqliteStore) shifts the rows back in chunks — before
//!   [`CampaignUpload::seal`] returns, or after [`CampaignUpload::seal_releasing_later`] has
//!   (the upload API's way: its 202 does not wait for a million rows to move). A process
//!   that dies half-way leaves a staging campaign that the janitor deletes once its upload has
//!   not moved for [`ABANDONED_AFTER_MS`], or a sealed one whose rows it releases.
//! - **PostgreSQL** (MVCC): one transaction per upload; chunks are `COPY`'d into a temporary
//!   table and inserted at the seal, which nobody waits for (readers see the old snapshot,
//!   claims lock only rows they can see).

use crate::store::{Backend, Change, PgStore, SqliteStore, Store, StoreError};

use super::{CampaignInserted, CampaignMessage, Idempotency, NewCampaign};

/// Added to a staged row's `due_at_ms` (2⁶² ms: 146 million years), so no claim reaches it
/// and the `messages_due` index keeps staged rows behind every real one; subtracted again when
/// the campaign is released. Only SQLite stages rows.
pub(crate) const STAGED_OFFSET: i64 = 1 << 62;

/// A staging campaign whose upload committed nothing for this long belongs to a process that
/// died (a live upload commits a chunk every few milliseconds, and gives up on a client that
/// sends nothing for `api::campaign_upload::BODY_IDLE`, well under this).
pub const ABANDONED_AFTER_MS: i64 = 5 * 60 * 1000;

/// A campaign being stored. Dropping it without [`seal`](Self::seal) is an abort: on
/// PostgreSQL the transaction rolls back at once; on SQLite the staged rows stay hidden until
/// the janitor deletes them (call [`abort`](Self::abort) to delete them now).
pub struct CampaignUpload {
    store: Store,
    campaign: NewCampaign,
    /// Recipients handed to `add`, duplicates included.
    offered: u64,
    /// Of those, stored so far (SQLite knows per chunk; PostgreSQL only at the seal).
    stored: u64,
    backend: UploadBackend,
}

enum UploadBackend {
    /// Rows are committed chunk by chunk under the staging campaign.
    Sqlite(SqliteStore),
    /// The upload's transaction, holding one pooled connection until the seal or the drop.
    Postgres(Box<crate::store::postgres::PgUpload>),
}

impl Store {
    /// Opens the upload of `campaign` (its `idempotency` is applied at the seal, when the
    /// request's hash is known). Fails with [`StoreError::Conflict`] if its id is taken.
    pub async fn begin_campaign(
        &self,
        campaign: &NewCampaign,
        now_ms: i64,
    ) -> Result<CampaignUpload, StoreError> {
        let backend = match &self.backend {
            Backend::Sqlite(b) => {
                b.begin_upload(campaign, now_ms).await?;
                UploadBackend::Sqlite(b.clone())
            }
            Backend::Postgres(b) => {
                UploadBackend::Postgres(Box::new(PgStore::begin_upload(b).await?))
            }
        };
        Ok(CampaignUpload {
            store: self.clone(),
            campaign: campaign.clone(),
            offered: 0,
            stored: 0,
            backend,
        })
    }

    /// Stores the campaign and one pending message per distinct recipient — all of it or,
    /// should anything fail, none — unless the app already has a campaign under the same
    /// idempotency key: then nothing is stored and that campaign is returned. A recipient
    /// listed again (WeCom userids compare case-insensitively) is dropped and counted; a
    /// message id already used fails the whole campaign with [`StoreError::Conflict`].
    ///
    /// Fastest when the message ids are drawn from one [`super::IdSeq`] in order: every id
    /// index then grows at its end. For campaigns too big to hold, use
    /// [`begin_campaign`](Self::begin_campaign).
    pub async fn create_campaign(
        &self,
        campaign: &NewCampaign,
        recipients: &[CampaignMessage],
        now_ms: i64,
    ) -> Result<CampaignInserted, StoreError> {
        let mut upload = self.begin_campaign(campaign, now_ms).await?;
        for chunk in recipients.chunks(UPLOAD_CHUNK) {
            if let Err(e) = upload.add(chunk, now_ms).await {
                upload.abort().await;
                return Err(e);
            }
        }
        upload.seal(campaign.idempotency.as_ref(), now_ms).await
    }

    /// Deletes what uploads of dead processes left (staging campaigns whose upload has not
    /// moved since `now_ms - ABANDONED_AFTER_MS`) and releases sealed campaigns whose rows a
    /// crash left staged. Returns (campaigns deleted, messages released). Run at start and
    /// periodically by the janitor; a no-op on PostgreSQL, whose uploads are transactions.
    pub async fn recover_uploads(&self, now_ms: i64) -> Result<(u64, u64), StoreError> {
        let recovered = match &self.backend {
            Backend::Sqlite(b) => b.recover_uploads(now_ms - ABANDONED_AFTER_MS).await?,
            Backend::Postgres(_) => (0, 0),
        };
        if recovered.1 > 0 {
            self.announce(Change::Due).await;
        }
        Ok(recovered)
    }
}

/// Messages per [`CampaignUpload::add`] from [`Store::create_campaign`], and what callers
/// streaming a campaign should aim for: a SQLite chunk transaction of this size holds the
/// writer for ~10-20 ms.
pub const UPLOAD_CHUNK: usize = 2_000;

impl CampaignUpload {
    /// The campaign's id.
    pub fn id(&self) -> &str {
        &self.campaign.id
    }

    /// Recipients added so far, duplicates included.
    pub fn offered(&self) -> u64 {
        self.offered
    }

    /// Stores a chunk of the campaign's messages (ids unique, recipients possibly repeated).
    /// On SQLite the chunk is committed (hidden until the seal); on PostgreSQL it is copied
    /// into the upload's transaction.
    pub async fn add(&mut self, rows: &[CampaignMessage], now_ms: i64) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let stored = match &mut self.backend {
            UploadBackend::Sqlite(b) => b.stage(&self.campaign, rows, now_ms).await?,
            UploadBackend::Postgres(up) => up.stage(rows).await.map(|()| 0)?,
        };
        self.offered += rows.len() as u64;
        self.stored += stored;
        Ok(())
    }

    /// The commit point: the campaign becomes visible and its messages claimable, with
    /// `idempotency` (key and request hash) recorded. If the app meanwhile got a campaign
    /// under the same key (a racing request sealed first), this one is discarded and that one
    /// returned as [`CampaignInserted::Existing`].
    pub async fn seal(
        self,
        idempotency: Option<&Idempotency>,
        now_ms: i64,
    ) -> Result<CampaignInserted, StoreError> {
        self.seal_with(idempotency, now_ms, false).await
    }

    /// [`seal`](Self::seal), except that on SQLite the messages become claimable after this
    /// returns, in chunks, in the background (a million rows take seconds): the campaign is
    /// committed and visible at once, with every recipient counted `pending`. What the
    /// upload API answers with, so its 202 does not wait for the release.
    pub async fn seal_releasing_later(
        self,
        idempotency: Option<&Idempotency>,
        now_ms: i64,
    ) -> Result<CampaignInserted, StoreError> {
        self.seal_with(idempotency, now_ms, true).await
    }

    async fn seal_with(
        self,
        idempotency: Option<&Idempotency>,
        now_ms: i64,
        later: bool,
    ) -> Result<CampaignInserted, StoreError> {
        let CampaignUpload {
            store,
            campaign,
            offered,
            stored,
            backend,
        } = self;
        let sealed = match backend {
            UploadBackend::Sqlite(b) => {
                let sealed = b
                    .seal_upload(&campaign, idempotency, (stored, offered), now_ms, later)
                    .await;
                match sealed {
                    Ok(true) => Some(stored),
                    Ok(false) => {
                        b.discard_upload(&campaign.id).await?;
                        None
                    }
                    Err(e) => {
                        // The staging rows stay hidden; the janitor deletes them.
                        let _ = b.discard_upload(&campaign.id).await;
                        return Err(e);
                    }
                }
            }
            UploadBackend::Postgres(up) => up.seal(&campaign, idempotency, offered, now_ms).await?,
        };
        let Some(total) = sealed else {
            let existing = match idempotency {
                Some(key) => store.campaign_by_key(&campaign.app, key).await?,
                None => None,
            };
            return existing.map(CampaignInserted::Existing).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "campaign {:?} was neither sealed nor a duplicate",
                    campaign.id
                ))
            });
        };
        store.announce(Change::Due).await;
        Ok(CampaignInserted::Created {
            total: total as i64,
            duplicates_skipped: (offered - total) as i64,
        })
    }

    /// Discards everything stored so far. Best effort on SQLite: what a failure leaves is
    /// deleted by the janitor.
    pub async fn abort(self) {
        if let UploadBackend::Sqlite(b) = &self.backend
            && let Err(e) = b.discard_upload(&self.campaign.id).await
        {
            tracing::warn!(campaign = %self.campaign.id, error = %e,
                "cannot delete an aborted upload now; the janitor will");
        }
    }
}
