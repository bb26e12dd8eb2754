//! Restore: key → manifest → plan against the local tree → fetch missing chunks → write.
//!
//! [`restore`] reads top to bottom as the pipeline. Planning ([`plan`]) compares every entry
//! with what is on disk (size, mtime and mode for files; target for symlinks), so a restore over
//! an existing tree rewrites only what differs and fetches only the chunks those files need.
//! Chunks are fetched in stream order with bounded concurrency, verified by BLAKE3 before any
//! byte reaches the disk, and handed to writer threads; each file is written under a temporary
//! name in its final directory and renamed into place only when complete, with its mode and
//! mtime already set. A restore that fails or is killed leaves no half-written file under a
//! final name.
//!
//! Safety: the manifest was validated on decode (relative, normal paths; parents are
//! directories of the manifest). On disk, every directory of the manifest is made a real
//! directory before anything is written into it, so no write goes through a symlink.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use filetime::FileTime;
use futures::StreamExt;
use rayon::prelude::*;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::codec::{self, CorruptChunk};
use crate::id::ChunkId;
use crate::manifest::{Entry, EntryKind, Manifest, ManifestError, Mount, Timestamp, chunk_span, parent_of};
use crate::progress::Progress;
use crate::store::{RequestSnapshot, Store, StoreError};

/// Files are written by this many threads (file creation, not bandwidth, is the cost).
const WRITERS: usize = 4;
/// Pieces queued per writer. Each holds its chunk alive, so this bounds memory:
/// `WRITERS × PIECES_QUEUED + concurrency` chunks at most.
const PIECES_QUEUED: usize = 8;
/// Memory for chunks that recur later in the stream, so they are fetched once.
const KEPT_BYTES: usize = 64 << 20;

/// What the user asked to restore.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The exact key to look for first.
    pub key: String,
    /// Key prefixes to try in order when the exact key is missing; the newest match wins.
    pub fallback_prefixes: Vec<String>,
    /// Where the mounts go.
    pub target: RestoreTarget,
    /// Also remove files the manifest does not have.
    pub mirror: bool,
    /// Chunk downloads in flight at once.
    pub concurrency: usize,
    /// Restore only these mounts (as given to `save`); the cache's other mounts are skipped
    /// with a warning. `None` restores every mount. The plugin passes its `mount` setting, so a
    /// cache can never write outside the folders the step names.
    pub only_mounts: Option<Vec<PathBuf>>,
}

/// Where restored mounts land.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreTarget {
    /// Each mount at the path it was saved from; relative paths are taken against this directory.
    Original(PathBuf),
    /// Each mount below this directory, at its saved path made relative (`/a/b` → `DIR/a/b`).
    Under(PathBuf),
}

/// How the key was found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The exact key.
    Hit,
    /// A key matching a fallback prefix.
    FallbackHit,
    /// Nothing matched; nothing was written.
    #[default]
    Miss,
}

/// What a restore did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoreReport {
    /// Hit, fallback hit or miss.
    pub outcome: Outcome,
    /// The key asked for.
    pub key: String,
    /// The key restored, if any.
    pub restored_key: Option<String>,
    /// Regular files in the manifest.
    pub files: u64,
    /// Bytes of file content in the manifest.
    pub bytes: u64,
    /// Files written (new or changed).
    pub files_written: u64,
    /// Files already up to date.
    pub files_unchanged: u64,
    /// Bytes written to files.
    pub bytes_written: u64,
    /// Chunks downloaded.
    pub chunks_fetched: u64,
    /// Entries removed (type conflicts, and with `--mirror` entries not in the manifest).
    pub removed: u64,
    /// Problems that did not fail the restore.
    pub warnings: Vec<String>,
    /// Store requests made.
    pub requests: RequestSnapshot,
    /// Wall time.
    pub elapsed_ms: u64,
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The manifest is damaged, too new or unsafe.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A chunk the manifest names is not in the store.
    #[error("chunk {id} (needed for {path}) is missing from the store; save the cache again to repair it")]
    MissingChunk {
        /// The chunk.
        id: ChunkId,
        /// A file that needs it.
        path: PathBuf,
    },
    /// A chunk failed verification; nothing of it was written.
    #[error("{source} (needed for {path}); nothing of it was written")]
    Corrupt {
        /// What failed.
        source: CorruptChunk,
        /// A file that needs it.
        path: PathBuf,
    },
    /// A local file-system operation failed.
    #[error("cannot write {path}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io { path: path.to_path_buf(), source }
}

/// Restores the newest manifest for `options.key` (or a fallback prefix).
///
/// # Errors
/// [`RestoreError`]. Files already renamed into place stay; no partial file does.
pub async fn restore(
    store: &Store,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport, RestoreError> {
    let clock = Instant::now();
    let mut report = RestoreReport { key: options.key.clone(), ..RestoreReport::default() };
    let Some((outcome, key, bytes)) = find_manifest(store, options).await? else {
        report.requests = store.requests();
        report.elapsed_ms = clock.elapsed().as_millis() as u64;
        return Ok(report);
    };
    let mut manifest = Manifest::decode(&key, &bytes)?;
    if let Some(only) = &options.only_mounts {
        let allowed: Vec<Mount> = only.iter().map(|m| Mount::from_path(m)).collect();
        for skipped in manifest.retain_mounts(|mount| allowed.contains(mount)) {
            report
                .warnings
                .push(format!("skipped the cache's mount {skipped:?}: it is not one of the mounts to restore"));
        }
    }
    let manifest = Arc::new(manifest);
    let summary = manifest.summary();
    (report.outcome, report.restored_key, report.files, report.bytes) =
        (outcome, Some(key.clone()), summary.files, summary.bytes);

    let plan = {
        let (manifest, target) = (manifest.clone(), options.target.clone());
        tokio::task::spawn_blocking(move || plan(&manifest, &target)).await.expect("planning panicked")?
    };
    report.files_unchanged = summary.files - plan.files.len() as u64;
    report.files_written = plan.files.len() as u64;
    report.bytes_written = plan.files.iter().map(|f| f.size).sum();

    let plan = Arc::new(plan);
    {
        let (plan, manifest_for_prepare) = (plan.clone(), manifest.clone());
        report.removed += tokio::task::spawn_blocking(move || prepare_tree(&manifest_for_prepare, &plan))
            .await
            .expect("preparing panicked")?;
    }
    progress.phase("restoring", report.bytes_written);
    report.chunks_fetched = write_files(store, &manifest, &plan, options.concurrency.max(1), progress).await?;
    let (plan_for_finish, manifest_for_finish, mirror) = (plan.clone(), manifest.clone(), options.mirror);
    report.removed += tokio::task::spawn_blocking(move || finish_tree(&manifest_for_finish, &plan_for_finish, mirror))
        .await
        .expect("finishing panicked")?;

    if let Err(err) = store.mark_used(&key).await {
        report.warnings.push(format!("could not record that {key:?} was used (GC may expire it early): {err}"));
    }
    report.requests = store.requests();
    report.elapsed_ms = clock.elapsed().as_millis() as u64;
    Ok(report)
}

/// The exact key, else the newest manifest under each fallback prefix in turn.
async fn find_manifest(
    store: &Store,
    options: &RestoreOptions,
) -> Result<Option<(Outcome, String, bytes::Bytes)>, StoreError> {
    if let Some(bytes) = store.get_manifest(&options.key).await? {
        return Ok(Some((Outcome::Hit, options.key.clone(), bytes)));
    }
    for prefix in &options.fallback_prefixes {
        for candidate in store.list_manifests(prefix).await?.into_iter().filter(|c| at_boundary(prefix, &c.key)) {
            if let Some(bytes) = store.get_manifest(&candidate.key).await? {
                return Ok(Some((Outcome::FallbackHit, candidate.key, bytes)));
            }
        }
    }
    Ok(None)
}

/// Whether `key` matches fallback `prefix` at a separator: a prefix that ends in one of
/// `-_/.:+@` matches any continuation; otherwise the key must end there or continue with a
/// separator. So `main` matches `main-3f2a` and `main/x` but not `main2-3f2a`.
pub fn at_boundary(prefix: &str, key: &str) -> bool {
    const SEPARATORS: &[char] = &['-', '_', '/', '.', ':', '+', '@'];
    let Some(rest) = key.strip_prefix(prefix) else {
        return false;
    };
    prefix.is_empty() || prefix.ends_with(SEPARATORS) || rest.is_empty() || rest.starts_with(SEPARATORS)
}

/// Work computed against the local tree, not yet done.
#[derive(Debug)]
pub struct RestorePlan {
    /// The on-disk path of every manifest entry, by entry index.
    pub paths: Vec<PathBuf>,
    /// What to do per entry, by entry index.
    pub actions: Vec<Action>,
    /// Files to write, sorted by stream offset.
    pub files: Vec<FileJob>,
    /// Indices of the chunks those files need, ascending.
    pub chunks: Vec<usize>,
}

/// What happens to one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Already as saved.
    Keep,
    /// Already there, only mode or mtime differ (directories).
    Touch,
    /// Missing: create it.
    Create,
    /// Something else is there: remove it, then create.
    Replace,
}

/// One file to write.
#[derive(Clone, Debug)]
pub struct FileJob {
    /// Entry index.
    pub entry: usize,
    /// Final path.
    pub path: PathBuf,
    /// Stream extent start.
    pub offset: u64,
    /// Length.
    pub size: u64,
    /// Permission bits to set.
    pub mode: u32,
    /// Modification time to set.
    pub mtime: Timestamp,
}

/// Compares the manifest with the local tree.
///
/// # Errors
/// [`RestoreError::Io`] when a target cannot be inspected.
pub fn plan(manifest: &Manifest, target: &RestoreTarget) -> Result<RestorePlan, RestoreError> {
    let roots: Vec<PathBuf> = manifest
        .mounts
        .iter()
        .map(|mount| {
            let saved = Path::new(OsStr::from_bytes(&mount.path));
            match target {
                RestoreTarget::Original(base) => base.join(saved),
                RestoreTarget::Under(dir) => dir.join(saved.strip_prefix("/").unwrap_or(saved)),
            }
        })
        .collect();
    let paths: Vec<PathBuf> = manifest
        .entries
        .iter()
        .map(|e| {
            let root = &roots[e.mount as usize];
            if e.path.is_empty() { root.clone() } else { root.join(OsStr::from_bytes(&e.path)) }
        })
        .collect();
    let actions = manifest
        .entries
        .par_iter()
        .zip(paths.par_iter())
        .map(|(entry, path)| compare(entry, path))
        .collect::<Result<Vec<_>, _>>()?;
    let mut files: Vec<FileJob> = manifest
        .entries
        .iter()
        .enumerate()
        .filter(|(index, _)| matches!(actions[*index], Action::Create | Action::Replace))
        .filter_map(|(index, entry)| match entry.kind {
            EntryKind::File { size, offset } => Some(FileJob {
                entry: index,
                path: paths[index].clone(),
                offset,
                size,
                mode: entry.mode,
                mtime: entry.mtime,
            }),
            _ => None,
        })
        .collect();
    files.sort_by_key(|f| f.offset);
    let offsets = manifest.chunk_offsets();
    let mut chunks: Vec<usize> = files.iter().flat_map(|f| chunk_span(&offsets, f.offset, f.size)).collect();
    chunks.sort_unstable();
    chunks.dedup();
    Ok(RestorePlan { paths, actions, files, chunks })
}

fn compare(entry: &Entry, path: &Path) -> Result<Action, RestoreError> {
    // A mount root may be a symlink to a directory (the user's own layout); nothing below may.
    let found = if entry.path.is_empty() { fs::metadata(path) } else { fs::symlink_metadata(path) };
    let found = match found {
        Ok(found) => found,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Action::Create),
        Err(err) => return Err(io_error(path)(err)),
    };
    let same_meta = found.mode() & 0o7777 == entry.mode && mtime_of(&found) == entry.mtime;
    Ok(match &entry.kind {
        EntryKind::Dir if found.is_dir() => {
            if same_meta {
                Action::Keep
            } else {
                Action::Touch
            }
        }
        EntryKind::File { size, .. } if found.is_file() && found.len() == *size && same_meta => Action::Keep,
        EntryKind::Symlink { target } if found.file_type().is_symlink() => {
            if fs::read_link(path).map_err(io_error(path))?.as_os_str().as_bytes() == target.as_slice()
                && mtime_of(&found) == entry.mtime
            {
                Action::Keep
            } else {
                Action::Replace
            }
        }
        _ => Action::Replace,
    })
}

fn mtime_of(metadata: &fs::Metadata) -> Timestamp {
    Timestamp { secs: metadata.mtime(), nanos: metadata.mtime_nsec() as u32 }
}

fn file_time(mtime: Timestamp) -> FileTime {
    FileTime::from_unix_time(mtime.secs, mtime.nanos)
}

/// Removes what is in the way, then creates directories and symlinks, parents first.
/// Returns the number of entries removed.
fn prepare_tree(manifest: &Manifest, plan: &RestorePlan) -> Result<u64, RestoreError> {
    let mut removed = 0;
    for ((entry, path), action) in manifest.entries.iter().zip(&plan.paths).zip(&plan.actions) {
        if *action == Action::Replace {
            let existing = fs::symlink_metadata(path).map_err(io_error(path))?;
            // Files and symlinks are replaced by rename; a directory in the way must go, and a
            // non-directory where a directory belongs.
            if existing.is_dir() {
                fs::remove_dir_all(path).map_err(io_error(path))?;
                removed += 1;
            } else if matches!(entry.kind, EntryKind::Dir) {
                fs::remove_file(path).map_err(io_error(path))?;
                removed += 1;
            }
        }
        if !matches!(action, Action::Create | Action::Replace) {
            continue;
        }
        // A mount root may sit below directories that do not exist yet (DEST, or a fresh
        // machine); everything else has its parent in the manifest.
        if let Some(parent) = path.parent().filter(|p| entry.path.is_empty() && !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        match &entry.kind {
            EntryKind::Dir => match fs::create_dir(path) {
                Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists || !path.is_dir() => {
                    return Err(io_error(path)(err));
                }
                _ => {}
            },
            EntryKind::Symlink { target } => {
                let temporary = temporary_path(path);
                std::os::unix::fs::symlink(OsStr::from_bytes(target), &temporary).map_err(io_error(path))?;
                let mtime = file_time(entry.mtime);
                filetime::set_symlink_file_times(&temporary, mtime, mtime).map_err(io_error(path))?;
                fs::rename(&temporary, path).map_err(|err| {
                    let _ = fs::remove_file(&temporary);
                    io_error(path)(err)
                })?;
            }
            EntryKind::File { .. } => {}
        }
    }
    Ok(removed + remove_stale_staging_files(plan)?)
}

/// Removes staging files a killed restore left in the directories this one writes files into
/// (they never carry a final name, but they take space). Two restores into the same tree at
/// once are not supported, so any staging file found here is stale.
fn remove_stale_staging_files(plan: &RestorePlan) -> Result<u64, RestoreError> {
    let parents: HashSet<&Path> = plan.files.iter().filter_map(|f| f.path.parent()).collect();
    let mut removed = 0;
    for parent in parents {
        for child in fs::read_dir(parent).map_err(io_error(parent))? {
            let child = child.map_err(io_error(parent))?;
            if is_staging_name(child.file_name().as_bytes()) {
                fs::remove_file(child.path()).map_err(io_error(&child.path()))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

fn is_staging_name(name: &[u8]) -> bool {
    name.starts_with(b".") && name.windows(STAGING_MARK.len()).any(|w| w == STAGING_MARK)
}

const STAGING_MARK: &[u8] = b".ccpart-";

/// A sibling name for staging `path`, unique to this process.
fn temporary_path(path: &Path) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = b".".to_vec();
    name.extend_from_slice(path.file_name().map_or(&b"root"[..], OsStrExt::as_bytes));
    name.extend_from_slice(STAGING_MARK);
    name.extend_from_slice(format!("{}-{n}", std::process::id()).as_bytes());
    path.with_file_name(OsStr::from_bytes(&name))
}

/// A piece of a chunk for one file.
struct Piece {
    file: usize,
    data: Bytes,
    range: std::ops::Range<usize>,
    last: bool,
}

/// Fetches the planned chunks in stream order and feeds the writers. Returns the number of
/// chunks downloaded.
async fn write_files(
    store: &Store,
    manifest: &Manifest,
    plan: &Arc<RestorePlan>,
    concurrency: usize,
    progress: &dyn Progress,
) -> Result<u64, RestoreError> {
    let offsets = manifest.chunk_offsets();
    let mut senders = Vec::with_capacity(WRITERS);
    let mut writers = Vec::with_capacity(WRITERS);
    for _ in 0..WRITERS {
        let (sender, receiver) = mpsc::channel::<Piece>(PIECES_QUEUED);
        senders.push(sender);
        let plan = plan.clone();
        writers.push(tokio::task::spawn_blocking(move || write_pieces(&plan, receiver)));
    }
    let dispatched = dispatch(store, manifest, plan, &offsets, concurrency, &senders, progress).await;
    drop(senders);
    let mut written = Ok(());
    for writer in writers {
        let result = writer.await.expect("writer panicked");
        if written.is_ok() {
            written = result;
        }
    }
    // A fetch error stops the writers, so it comes first; else the first writer error.
    let fetched = dispatched?;
    written.map(|()| fetched)
}

async fn dispatch(
    store: &Store,
    manifest: &Manifest,
    plan: &RestorePlan,
    offsets: &[u64],
    concurrency: usize,
    senders: &[mpsc::Sender<Piece>],
    progress: &dyn Progress,
) -> Result<u64, RestoreError> {
    let files = &plan.files;
    let send = |piece: Piece| async {
        let writer = piece.file % WRITERS;
        // A closed writer has failed; its error is reported when it is joined.
        senders[writer].send(piece).await.is_ok()
    };
    for (index, file) in files.iter().enumerate() {
        if file.size == 0 && !send(Piece { file: index, data: Bytes::new(), range: 0..0, last: true }).await {
            return Ok(0);
        }
    }
    let user_of = |chunk: usize| {
        let start = offsets[chunk];
        files
            .iter()
            .find(|f| f.offset < offsets[chunk + 1] && f.offset + f.size > start)
            .map_or_else(PathBuf::new, |f| f.path.clone())
    };
    let user_of = &user_of;
    // A chunk that recurs (duplicate files, repeated content) is fetched once, at its first
    // use, and kept until its last use within a memory budget; past the budget it is fetched
    // again. First uses are fetched ahead, `concurrency` at a time, in stream order.
    let mut first_use: HashMap<ChunkId, usize> = HashMap::new();
    let mut last_use: HashMap<ChunkId, usize> = HashMap::new();
    for &chunk in &plan.chunks {
        let id = manifest.chunks[chunk].id;
        first_use.entry(id).or_insert(chunk);
        last_use.insert(id, chunk);
    }
    let fetched = std::sync::atomic::AtomicU64::new(0);
    let fetch = |chunk: usize| {
        let store = store.clone();
        let id = manifest.chunks[chunk].id;
        let fetched = &fetched;
        async move {
            fetched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(object) = store.get_chunk(id).await? else {
                return Err(RestoreError::MissingChunk { id, path: user_of(chunk) });
            };
            let decoded =
                tokio::task::spawn_blocking(move || codec::decode(id, object)).await.expect("decode panicked");
            decoded.map_err(|source| RestoreError::Corrupt { source, path: user_of(chunk) })
        }
    };
    let firsts = plan.chunks.iter().copied().filter(|&chunk| first_use[&manifest.chunks[chunk].id] == chunk);
    let mut ahead = futures::stream::iter(firsts.map(fetch)).buffered(concurrency);
    let (mut kept, mut kept_bytes) = (HashMap::<ChunkId, Bytes>::new(), 0usize);
    let mut next_file = 0;
    let mut active: Vec<usize> = Vec::new();
    for &chunk in &plan.chunks {
        let id = manifest.chunks[chunk].id;
        let data = match kept.get(&id) {
            Some(data) => data.clone(),
            None if first_use[&id] == chunk => ahead.next().await.expect("one fetch per first use")?,
            None => fetch(chunk).await?,
        };
        if last_use[&id] == chunk {
            if let Some(dropped) = kept.remove(&id) {
                kept_bytes -= dropped.len();
            }
        } else if !kept.contains_key(&id) && kept_bytes + data.len() <= KEPT_BYTES {
            kept_bytes += data.len();
            kept.insert(id, data.clone());
        }
        let (start, end) = (offsets[chunk], offsets[chunk + 1]);
        while next_file < files.len() && files[next_file].offset < end {
            if files[next_file].size > 0 {
                active.push(next_file);
            }
            next_file += 1;
        }
        let mut still_active = Vec::with_capacity(active.len());
        for &file in &active {
            let job = &files[file];
            let (from, to) = (job.offset.max(start), (job.offset + job.size).min(end));
            if from < to {
                let piece = Piece {
                    file,
                    data: data.clone(),
                    range: (from - start) as usize..(to - start) as usize,
                    last: to == job.offset + job.size,
                };
                progress.advance(to - from);
                if !send(piece).await {
                    return Ok(fetched.load(std::sync::atomic::Ordering::Relaxed));
                }
            }
            if job.offset + job.size > end {
                still_active.push(file);
            }
        }
        active = still_active;
    }
    Ok(fetched.load(std::sync::atomic::Ordering::Relaxed))
}

/// One writer thread: appends pieces to temporary files, and on a file's last piece sets its
/// mode and mtime and renames it into place. On failure, removes its temporary files.
fn write_pieces(plan: &RestorePlan, mut receiver: mpsc::Receiver<Piece>) -> Result<(), RestoreError> {
    let mut open: HashMap<usize, (File, PathBuf)> = HashMap::new();
    let result = (|| {
        while let Some(piece) = receiver.blocking_recv() {
            let job = &plan.files[piece.file];
            let (file, _) = match open.entry(piece.file) {
                std::collections::hash_map::Entry::Occupied(slot) => slot.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    let temporary = temporary_path(&job.path);
                    let file = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&temporary)
                        .map_err(io_error(&job.path))?;
                    slot.insert((file, temporary))
                }
            };
            file.write_all(&piece.data[piece.range]).map_err(io_error(&job.path))?;
            if piece.last {
                let (file, temporary) = open.remove(&piece.file).expect("opened above");
                let (mode, mtime) = (job.mode, job.mtime);
                let finish = || -> std::io::Result<()> {
                    file.set_permissions(fs::Permissions::from_mode(mode))?;
                    filetime::set_file_handle_times(&file, Some(file_time(mtime)), Some(file_time(mtime)))?;
                    drop(file);
                    fs::rename(&temporary, &job.path)
                };
                if let Err(err) = finish() {
                    let _ = fs::remove_file(&temporary);
                    return Err(io_error(&job.path)(err));
                }
            }
        }
        Ok(())
    })();
    for (_, (_, temporary)) in open.drain() {
        let _ = fs::remove_file(temporary);
    }
    result
}

/// With `mirror`, removes entries the manifest does not have; then sets directory modes and
/// mtimes, deepest first (writing into a directory changes its mtime). Returns entries removed.
fn finish_tree(manifest: &Manifest, plan: &RestorePlan, mirror: bool) -> Result<u64, RestoreError> {
    let mut removed = 0;
    let is_dir = |index: usize| matches!(manifest.entries[index].kind, EntryKind::Dir);
    let mut changed: HashSet<(u32, &[u8])> = manifest
        .entries
        .iter()
        .zip(&plan.actions)
        .filter(|(_, action)| **action != Action::Keep)
        .map(|(entry, _)| (entry.mount, parent_of(&entry.path)))
        .collect();
    if mirror {
        let known: HashSet<(u32, &[u8])> = manifest.entries.iter().map(|e| (e.mount, e.path.as_slice())).collect();
        // Listing is the cost (one per directory), so it runs in parallel; removing is rare.
        let strays = manifest
            .entries
            .par_iter()
            .zip(plan.paths.par_iter())
            .filter(|(entry, _)| matches!(entry.kind, EntryKind::Dir))
            .map(|(entry, path)| {
                let mut found = Vec::new();
                for child in fs::read_dir(path).map_err(io_error(path))? {
                    let child = child.map_err(io_error(path))?;
                    let mut relative = entry.path.clone();
                    if !relative.is_empty() {
                        relative.push(b'/');
                    }
                    relative.extend_from_slice(child.file_name().as_bytes());
                    if !known.contains(&(entry.mount, relative.as_slice())) {
                        found.push((entry, child.path()));
                    }
                }
                Ok(found)
            })
            .collect::<Result<Vec<_>, RestoreError>>()?;
        for (entry, child) in strays.into_iter().flatten() {
            let child_is_dir = fs::symlink_metadata(&child).map_err(io_error(&child))?.is_dir();
            if child_is_dir { fs::remove_dir_all(&child) } else { fs::remove_file(&child) }
                .map_err(io_error(&child))?;
            removed += 1;
            changed.insert((entry.mount, entry.path.as_slice()));
        }
    }
    for (index, (entry, path)) in manifest.entries.iter().zip(&plan.paths).enumerate().rev() {
        if !is_dir(index)
            || (plan.actions[index] == Action::Keep && !changed.contains(&(entry.mount, entry.path.as_slice())))
        {
            continue;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(entry.mode)).map_err(io_error(path))?;
        filetime::set_file_times(path, file_time(entry.mtime), file_time(entry.mtime)).map_err(io_error(path))?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_prefixes_match_at_separators_only() {
        assert!(at_boundary("main", "main-3f2a"));
        assert!(at_boundary("main", "main/linux"));
        assert!(at_boundary("main", "main"));
        assert!(!at_boundary("main", "main2-3f2a"));
        assert!(at_boundary("repo/main-", "repo/main-abc"));
        assert!(!at_boundary("repo/main-", "repo/other"));
    }
}
