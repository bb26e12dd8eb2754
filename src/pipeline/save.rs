//! Save: mounts → scan → segments → chunks → upload what is missing → manifest (last).
//!
//! Read top to bottom, [`save`] is the pipeline. CPU work (reading, chunking, hashing,
//! compressing) runs on rayon, one segment per task; uploads run on tokio with bounded
//! concurrency, fed through a bounded channel, so memory is bounded by
//! `(queue + concurrency) × max chunk size`, not by the size of the cache. The manifest is
//! uploaded only after every chunk it names is in the store: it is the commit point, so a
//! save that fails or is killed leaves no manifest behind.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use rayon::prelude::*;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::core::chunker::ChunkerParams;
use crate::core::codec;
use crate::core::id::ChunkId;
use crate::core::manifest::{ChunkRef, Entry, EntryKind, Manifest, ManifestSummary, Mount, validate_mounts};
use crate::core::time::now_ms;
use crate::fs::walk::{self, ScannedEntry, ScannedKind, WalkError, WalkOptions};
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
    /// True if the key existed and `skip_if_exists` was set: nothing was done.
    pub skipped_existing: bool,
    /// What was saved: files, directories, symlinks, bytes, chunks (zero when skipped).
    #[serde(flatten)]
    pub saved: ManifestSummary,
    /// Chunks the store did not have before (as far as this save knew).
    pub new_chunks: u64,
    /// Raw bytes of the new chunks.
    pub new_bytes: u64,
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
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
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
    /// A file changed size while it was being saved.
    #[error("{path} changed while it was being saved; save again once nothing writes to it")]
    FileChanged {
        /// The file.
        path: PathBuf,
    },
}

/// Saves `options.mounts` under `options.key`.
///
/// Must run on a multi-threaded tokio runtime (chunking blocks a worker while uploads go on).
///
/// # Errors
/// [`SaveError`]; in every case no manifest was written.
pub async fn save(store: &Store, options: &SaveOptions, progress: &dyn Progress) -> Result<SaveReport, SaveError> {
    let clock = Instant::now();
    let started_at_ms = now_ms();
    keyed_path("manifests", &options.key)?;
    let recorded: Vec<Mount> = options.mounts.iter().map(|m| Mount::from_path(m)).collect();
    validate_mounts(&recorded).map_err(|reason| SaveError::BadMounts { reason })?;
    if options.skip_if_exists && store.has_manifest(&options.key).await? {
        return Ok(SaveReport {
            key: options.key.clone(),
            skipped_existing: true,
            requests: store.requests(),
            elapsed_ms: clock.elapsed().as_millis() as u64,
            ..SaveReport::default()
        });
    }
    let params = store.config_or_init(options.chunker).await?.chunker;

    let mounts: Vec<PathBuf> = options.mounts.iter().map(|m| options.root.join(m)).collect();
    let walk_options = options.walk.clone();
    let scan = tokio::task::spawn_blocking(move || walk::scan(&mounts, &walk_options));
    let mut known = known_chunks(store, &options.key).await?;
    // Chunks a restore found missing or corrupt are uploaded again, replacing what is there.
    let damaged: Arc<HashSet<ChunkId>> = Arc::new(store.damaged_chunks().await?.into_iter().collect());
    known.retain(|id, _| !damaged.contains(id));
    let scan = scan.await.expect("scan task panicked")?;

    let files: Vec<&ScannedEntry> =
        scan.entries.iter().filter(|e| matches!(e.kind, ScannedKind::File(s) if s > 0)).collect();
    let total_bytes = files.iter().map(|e| file_size(e)).sum();
    let segments = params.segments(files.iter().map(|e| (e.path.as_slice(), file_size(e))));

    let (sender, receiver) = mpsc::channel(options.concurrency.max(1) * 2);
    let uploader = tokio::spawn(upload_all(store.clone(), receiver, options.concurrency.max(1), damaged.clone()));
    let claims = Mutex::new(known);
    progress.phase("saving", total_bytes);
    let chunked = tokio::task::block_in_place(|| {
        segments
            .par_iter()
            .map(|range| {
                chunk_segment(&files[range.clone()], &params, options.compression_level, &claims, &sender, progress)
            })
            .collect::<Result<Vec<_>, _>>()
    });
    drop(sender);
    let uploaded = uploader.await.expect("upload task panicked");
    uploaded?;
    let segments_chunks = chunked?;

    let stored_lengths = claims.into_inner().unwrap();
    // Each id is claimed by one segment only, so these count distinct uploads.
    let new_chunks = segments_chunks.iter().map(|segment| segment.new.len() as u64).sum();
    let new_bytes = segments_chunks.iter().flat_map(|segment| &segment.new).map(|&(_, len)| u64::from(len)).sum();
    let repaired: HashSet<ChunkId> =
        segments_chunks.iter().flat_map(|segment| &segment.new).map(|&(id, _)| id).collect();
    let chunks: Vec<ChunkRef> = segments_chunks
        .into_iter()
        .flat_map(|segment| segment.chunks)
        .map(|(id, len)| ChunkRef { id, len, stored_len: stored_lengths.get(&id).copied().unwrap_or(0) })
        .collect();
    let manifest = build_manifest(options, recorded, started_at_ms, params, &scan.entries, chunks);
    // What restores will check, checked before committing: a manifest no restore accepts must
    // never become the key's latest.
    manifest.validate().map_err(|reason| SaveError::Invalid { reason })?;
    let summary = manifest.summary();
    store.put_manifest(&options.key, manifest.encode()).await?;
    for &id in damaged.iter().filter(|id| repaired.contains(id)) {
        // Best effort: a marker left behind only costs the next save one more upload.
        let _ = store.clear_damaged(id).await;
    }

    Ok(SaveReport {
        key: options.key.clone(),
        skipped_existing: false,
        saved: summary,
        new_chunks,
        new_bytes,
        dedup_percent: if summary.bytes == 0 { 100.0 } else { 100.0 * (1.0 - new_bytes as f64 / summary.bytes as f64) },
        skipped_special: scan.skipped.iter().map(|p| p.display().to_string()).collect(),
        requests: store.requests(),
        elapsed_ms: clock.elapsed().as_millis() as u64,
    })
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

/// The chunks of one segment, in order, and which of them this save uploads.
struct SegmentChunks {
    chunks: Vec<(ChunkId, u32)>,
    new: Vec<(ChunkId, u32)>,
}

fn chunk_segment(
    files: &[&ScannedEntry],
    params: &ChunkerParams,
    level: i32,
    claims: &Mutex<HashMap<ChunkId, u32>>,
    sender: &mpsc::Sender<(ChunkId, Bytes)>,
    progress: &dyn Progress,
) -> Result<SegmentChunks, SaveError> {
    let mut reader = SegmentReader { files: files.iter(), current: None, failure: None };
    let mut out = SegmentChunks { chunks: Vec::new(), new: Vec::new() };
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let chunked = BUFFER.with_borrow_mut(|buffer| {
        params.for_segment(files.len()).for_each_chunk(&mut reader, buffer, |data| {
            let id = ChunkId::of(data);
            let len = data.len() as u32;
            if claims.lock().unwrap().try_insert_claim(id) {
                let object = codec::encode(data, level);
                claims.lock().unwrap().insert(id, object.len() as u32);
                out.new.push((id, len));
                if sender.blocking_send((id, Bytes::from(object))).is_err() {
                    // The uploader stopped; its error is the one reported.
                    return Err(ChunkingStopped::UploaderGone);
                }
            }
            out.chunks.push((id, len));
            progress.advance(u64::from(len));
            Ok(())
        })
    });
    match chunked {
        Ok(()) | Err(ChunkingStopped::UploaderGone) => Ok(out),
        Err(ChunkingStopped::Io(source)) => {
            Err(reader.failure.take().unwrap_or(SaveError::Read { path: PathBuf::from("(segment)"), source }))
        }
    }
}

/// Why chunking a segment stopped early.
enum ChunkingStopped {
    Io(std::io::Error),
    UploaderGone,
}

impl From<std::io::Error> for ChunkingStopped {
    fn from(err: std::io::Error) -> Self {
        Self::Io(err)
    }
}

trait Claim {
    /// Claims `id` for upload by this task; false if it is known or claimed already.
    fn try_insert_claim(&mut self, id: ChunkId) -> bool;
}

impl Claim for HashMap<ChunkId, u32> {
    fn try_insert_claim(&mut self, id: ChunkId) -> bool {
        match self.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(0);
                true
            }
        }
    }
}

/// Reads the files of a segment back to back, exactly their scanned sizes.
struct SegmentReader<'a> {
    files: std::slice::Iter<'a, &'a ScannedEntry>,
    current: Option<(&'a ScannedEntry, std::io::Take<File>)>,
    failure: Option<SaveError>,
}

impl Read for SegmentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let Some((entry, file)) = &mut self.current else {
                let Some(entry) = self.files.next() else {
                    return Ok(0);
                };
                let file = File::open(&entry.absolute)
                    .map_err(|source| self.fail(SaveError::Read { path: entry.absolute.clone(), source }))?;
                self.current = Some((entry, file.take(file_size(entry))));
                continue;
            };
            let read = file.read(buf).map_err(|source| SaveError::Read { path: entry.absolute.clone(), source });
            match read {
                Ok(0) => {
                    let path = entry.absolute.clone();
                    let grew = file.limit() == 0 && file.get_mut().read(&mut [0u8; 1]).map_or(true, |n| n > 0);
                    if file.limit() > 0 || grew {
                        return Err(self.fail(SaveError::FileChanged { path }));
                    }
                    self.current = None;
                }
                Ok(n) => return Ok(n),
                Err(err) => return Err(self.fail(err)),
            }
        }
    }
}

impl SegmentReader<'_> {
    fn fail(&mut self, err: SaveError) -> std::io::Error {
        let io = std::io::Error::other(err.to_string());
        self.failure = Some(err);
        io
    }
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

fn build_manifest(
    options: &SaveOptions,
    mounts: Vec<Mount>,
    started_at_ms: u64,
    chunker: ChunkerParams,
    scanned: &[ScannedEntry],
    chunks: Vec<ChunkRef>,
) -> Manifest {
    let mut offset = 0u64;
    let entries = scanned
        .iter()
        .map(|e| Entry {
            mount: e.mount,
            path: e.path.clone(),
            mode: e.mode,
            mtime: e.mtime,
            kind: match &e.kind {
                ScannedKind::Dir => EntryKind::Dir,
                ScannedKind::Symlink(target) => EntryKind::Symlink { target: target.clone() },
                ScannedKind::File(size) => {
                    let start = offset;
                    offset += size;
                    EntryKind::File { size: *size, offset: start }
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

fn file_size(entry: &ScannedEntry) -> u64 {
    match entry.kind {
        ScannedKind::File(size) => size,
        _ => 0,
    }
}
