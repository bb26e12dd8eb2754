//! Save: mounts → scan → segments → chunks → upload what is missing → manifest (last).
//!
//! Read top to bottom, [`save`] is the pipeline. CPU work (reading, chunking, hashing,
//! compressing) is the chunk stage ([`crate::pipeline::chunk`]), on rayon, one segment per task; uploads run on tokio with bounded
//! concurrency, fed through a bounded channel, so memory is bounded by
//! `(queue + concurrency) × max chunk size`, not by the size of the cache. The manifest is
//! uploaded only after every chunk it names is in the store: it is the commit point, so a
//! save that fails or is killed leaves no manifest behind. [`save_dry_run`] runs the same
//! pipeline with a sink that uploads nothing and stops before the manifest.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::core::chunker::ChunkerParams;
use crate::core::id::ChunkId;
use crate::core::manifest::{ChunkRef, Entry, EntryKind, Manifest, ManifestSummary, Mount, validate_mounts};
use crate::core::time::now_ms;
use crate::fs::walk::{self, ScannedEntry, ScannedKind, WalkError, WalkOptions};
use crate::pipeline::chunk::{self, ChunkError, ChunkStageOptions, NewChunk};
use crate::pipeline::progress::Progress;
use crate::store::{ChunkReadError, RequestSnapshot, Store, StoreError, keyed_path};

/// What the user asked to save.
#[derive(Clone, Debug)]
pub struct SaveOptions {
    /// The cache key to save under.
    pub key: String,
    /// Roots to save, recorded as given.
    pub mounts: Vec<PathBuf>,
    /// The directory relative mounts are read from (the working directory for the CLI,
    /// `local_root` for the plugin).
    pub root: PathBuf,
    /// Excludes and symlink handling.
    pub walk: WalkOptions,
    /// zstd level for compressible chunks.
    pub compression_level: i32,
    /// Uploads in flight at once.
    pub concurrency: usize,
    /// Chunker parameters to require (or to initialise a new store with).
    pub chunker: Option<ChunkerParams>,
    /// Do nothing if the key already has a manifest (drone-cache's `override: false`).
    pub skip_if_exists: bool,
}

/// What a save did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SaveReport {
    /// The key saved.
    pub key: String,
    /// True for a dry run: nothing was uploaded or written, the counts are what a save would do.
    pub dry_run: bool,
    /// True if the key existed and `skip_if_exists` was set: nothing was done.
    pub skipped_existing: bool,
    /// What was saved: files, directories, symlinks, bytes, chunks (zero when skipped).
    #[serde(flatten)]
    pub saved: ManifestSummary,
    /// Chunks the store did not have before (as far as this save knew).
    pub new_chunks: u64,
    /// Raw bytes of the new chunks.
    pub new_bytes: u64,
    /// Stored (compressed) bytes of the new chunks.
    pub new_stored_bytes: u64,
    /// Bytes of content that did not need uploading, as a percentage of all content.
    pub dedup_percent: f64,
    /// Special files (sockets, FIFOs, devices) left out.
    pub skipped_special: Vec<String>,
    /// Store requests made.
    pub requests: RequestSnapshot,
    /// Wall time.
    pub elapsed_ms: u64,
}

/// Why a save failed. Nothing was committed: no manifest was written.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The scan failed.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// Reading or chunking the files failed.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// The tree cannot be represented (a bug, or a tree changing under the save).
    #[error("the saved tree would not restore ({reason}); nothing was committed")]
    Invalid {
        /// The rule the manifest would break.
        reason: String,
    },
    /// The paths to save cannot be recorded; refused before any work.
    #[error(
        "cannot save these paths: {reason}; name each folder once, without `..` (use an absolute path \
         instead) and without one inside another"
    )]
    BadMounts {
        /// The rule the paths break.
        reason: String,
    },
}

/// Saves `options.mounts` under `options.key`.
///
/// Must run on a multi-threaded tokio runtime (chunking blocks a worker while uploads go on).
///
/// # Errors
/// [`SaveError`]; in every case no manifest was written.
pub async fn save(store: &Store, options: &SaveOptions, progress: &dyn Progress) -> Result<SaveReport, SaveError> {
    run(store, options, progress, Mode::Upload).await
}

/// Does everything [`save`] does but write: reports what a save would upload now (new chunks,
/// their raw and stored bytes). Only reads the store (its config, the key's manifest, the chunk
/// and damaged-marker listings); a store nothing was saved to yet reads as empty.
///
/// Must run on a multi-threaded tokio runtime.
///
/// # Errors
/// [`SaveError`], as the save would fail before uploading (a bad key or paths, unreadable
/// files, chunker parameters the store does not use).
pub async fn save_dry_run(
    store: &Store,
    options: &SaveOptions,
    progress: &dyn Progress,
) -> Result<SaveReport, SaveError> {
    run(store, options, progress, Mode::DryRun).await
}

/// Whether a save uploads and commits, or only counts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Upload,
    DryRun,
}

async fn run(
    store: &Store,
    options: &SaveOptions,
    progress: &dyn Progress,
    mode: Mode,
) -> Result<SaveReport, SaveError> {
    let clock = Instant::now();
    let started_at_ms = now_ms();
    let dry_run = mode == Mode::DryRun;
    keyed_path("manifests", &options.key)?;
    let recorded: Vec<Mount> = options.mounts.iter().map(|m| Mount::from_path(m)).collect();
    validate_mounts(&recorded).map_err(|reason| SaveError::BadMounts { reason })?;
    if options.skip_if_exists && store.has_manifest(&options.key).await? {
        return Ok(SaveReport {
            key: options.key.clone(),
            dry_run,
            skipped_existing: true,
            requests: store.requests(),
            elapsed_ms: clock.elapsed().as_millis() as u64,
            ..SaveReport::default()
        });
    }
    // A store without a config was never saved to: it holds no chunks and no damaged markers (a
    // dry run then lists nothing, so a container no save created yet is no error).
    let (params, never_saved_to) = match mode {
        Mode::Upload => (store.config_or_init(options.chunker).await?.chunker, false),
        Mode::DryRun => chunker_without_init(store, options.chunker).await?,
    };

    let mounts: Vec<PathBuf> = options.mounts.iter().map(|m| options.root.join(m)).collect();
    let walk_options = options.walk.clone();
    let scan = tokio::task::spawn_blocking(move || walk::scan(&mounts, &walk_options));
    let mut known = if never_saved_to { HashMap::new() } else { known_chunks(store, &options.key).await? };
    // Chunks a restore found missing or corrupt are uploaded again, replacing what is there.
    let damaged: Arc<HashSet<ChunkId>> =
        Arc::new(if never_saved_to { HashSet::new() } else { store.damaged_chunks().await?.into_iter().collect() });
    known.retain(|id, _| !damaged.contains(id));
    let scan = scan.await.expect("scan task panicked")?;

    let stage = ChunkStageOptions { encode_level: Some(options.compression_level) };
    progress.phase("saving", chunk::content_bytes(&scan.entries));
    let chunked = match mode {
        Mode::Upload => {
            let (sender, receiver) = mpsc::channel(options.concurrency.max(1) * 2);
            let uploader =
                tokio::spawn(upload_all(store.clone(), receiver, options.concurrency.max(1), damaged.clone()));
            let upload = |chunk: NewChunk<'_>| {
                let object = chunk.object.expect("the stage encodes when asked to");
                // A failed send means the uploader stopped; its error is the one reported.
                sender.blocking_send((chunk.id, Bytes::from(object))).is_ok()
            };
            let chunked =
                tokio::task::block_in_place(|| chunk::chunk_files(&scan, &params, known, stage, &upload, progress));
            drop(sender);
            uploader.await.expect("upload task panicked")?;
            chunked?
        }
        // Encoding still runs: it is what tells the stored sizes.
        Mode::DryRun => tokio::task::block_in_place(|| {
            chunk::chunk_files(&scan, &params, known, stage, &|_: NewChunk<'_>| true, progress)
        })?,
    };

    let (new_chunks, new_bytes, new_stored_bytes) =
        (chunked.new.len() as u64, chunked.new_bytes(), chunked.new_stored_bytes());
    let repaired: HashSet<ChunkId> = chunked.new.iter().map(|c| c.id).collect();
    let skipped_special = scan.skipped.iter().map(|p| p.display().to_string()).collect();
    let manifest = build_manifest(options, recorded, started_at_ms, params, scan.entries, chunked.chunks);
    // What restores will check, checked before committing: a manifest no restore accepts must
    // never become the key's latest.
    manifest.validate().map_err(|reason| SaveError::Invalid { reason })?;
    let summary = manifest.summary();
    if mode == Mode::Upload {
        store.put_manifest(&options.key, manifest.encode()).await?;
        for &id in damaged.iter().filter(|id| repaired.contains(id)) {
            // Best effort: a marker left behind only costs the next save one more upload.
            let _ = store.clear_damaged(id).await;
        }
    }

    Ok(SaveReport {
        key: options.key.clone(),
        dry_run,
        skipped_existing: false,
        saved: summary,
        new_chunks,
        new_bytes,
        new_stored_bytes,
        dedup_percent: if summary.bytes == 0 { 100.0 } else { 100.0 * (1.0 - new_bytes as f64 / summary.bytes as f64) },
        skipped_special,
        requests: store.requests(),
        elapsed_ms: clock.elapsed().as_millis() as u64,
    })
}

/// The chunker parameters a save would use, without creating the store config: the store's,
/// else `requested`, else the defaults; refused as [`Store::config_or_init`] refuses them. True
/// with them when the store has no config (nothing was ever saved to it).
async fn chunker_without_init(
    store: &Store,
    requested: Option<ChunkerParams>,
) -> Result<(ChunkerParams, bool), SaveError> {
    match (store.config().await?, requested) {
        (Some(config), Some(requested)) if config.chunker != requested => Err(StoreError::ParamsMismatch {
            store: store.description().to_string(),
            store_params: config.chunker,
            requested,
        }
        .into()),
        (Some(config), _) => Ok((config.chunker, false)),
        (None, requested) => Ok((requested.unwrap_or_default(), true)),
    }
}

/// Chunks the store is known to hold, with their stored sizes: those of the key's previous
/// manifest when there is one (no request per chunk), else one listing of the store.
async fn known_chunks(store: &Store, key: &str) -> Result<HashMap<ChunkId, u32>, SaveError> {
    if let Some(bytes) = store.get_manifest(key).await? {
        // A damaged previous manifest is no reason to fail a save: fall back to the listing.
        if let Ok(parent) = Manifest::decode(key, &bytes) {
            return Ok(parent.chunks.iter().map(|c| (c.id, c.stored_len)).collect());
        }
    }
    Ok(store.list_chunks().await?)
}

async fn upload_all(
    store: Store,
    mut receiver: mpsc::Receiver<(ChunkId, Bytes)>,
    concurrency: usize,
    damaged: Arc<HashSet<ChunkId>>,
) -> Result<(), StoreError> {
    let mut in_flight = JoinSet::new();
    while let Some((id, object)) = receiver.recv().await {
        while in_flight.len() >= concurrency {
            in_flight.join_next().await.expect("set is not empty").expect("upload task panicked")?;
        }
        let (store, replace) = (store.clone(), damaged.contains(&id));
        in_flight.spawn(async move { upload_chunk(&store, id, object, replace).await });
    }
    while let Some(done) = in_flight.join_next().await {
        done.expect("upload task panicked")?;
    }
    Ok(())
}

/// Uploads one chunk: create-if-absent, or a replacement of an object known to be damaged.
async fn upload_chunk(store: &Store, id: ChunkId, object: Bytes, replace: bool) -> Result<(), StoreError> {
    if replace {
        return store.replace_chunk(id, object).await;
    }
    if store.put_chunk(id, object.clone()).await? {
        return Ok(());
    }
    // Already there (a concurrent save, or a chunk this save did not know of). Create-if-absent
    // keeps whatever is there, so check it is sound before the manifest relies on it.
    let sound = match store.get_chunk_verified(id).await {
        Ok(found) => found.is_some(),
        Err(ChunkReadError::Corrupt(_)) => false,
        Err(ChunkReadError::Store(err)) => return Err(err),
    };
    if sound { Ok(()) } else { store.replace_chunk(id, object).await }
}

/// The manifest of the scanned entries, which it takes over: each path moves into the manifest
/// instead of being copied, so a save holds every path once.
fn build_manifest(
    options: &SaveOptions,
    mounts: Vec<Mount>,
    started_at_ms: u64,
    chunker: ChunkerParams,
    scanned: Vec<ScannedEntry>,
    chunks: Vec<ChunkRef>,
) -> Manifest {
    let mut offset = 0u64;
    let entries = scanned
        .into_iter()
        .map(|e| Entry {
            mount: e.mount,
            path: e.path,
            mode: e.mode,
            mtime: e.mtime,
            kind: match e.kind {
                ScannedKind::Dir => EntryKind::Dir,
                ScannedKind::Symlink(target) => EntryKind::Symlink { target },
                ScannedKind::File(size) => {
                    let start = offset;
                    offset += size;
                    EntryKind::File { size, offset: start }
                }
            },
        })
        .collect();
    Manifest {
        key: options.key.clone(),
        started_at_ms,
        finished_at_ms: now_ms(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        chunker,
        mounts,
        chunks,
        entries,
    }
}
