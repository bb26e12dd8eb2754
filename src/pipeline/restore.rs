//! Restore: key → manifest → plan against the local tree → fetch missing chunks → write.
//!
//! [`restore`] is [`prepare`], then [`execute`]. [`prepare`] finds and decodes the manifest and
//! compares every entry with what is on disk (size, mtime and mode for files; target for
//! symlinks; [`plan`]), so a restore over an existing tree rewrites only what differs and fetches
//! only the chunks those files need; it also lists what will be removed (with `--mirror`, what
//! the manifest does not have). The resulting [`RestorePlan`] knows every write, every chunk to
//! fetch and every removal, with their statistics, and changes nothing: `restore --dry-run`
//! prints it. [`execute`] only carries it out, through the tree writer ([`crate::fs::tree`]).
//!
//! Chunks are read as byte ranges of packs ([`crate::pipeline::fetch`]: neighbouring chunks of
//! a pack in one request), in the order the file stream needs them, with bounded concurrency;
//! each is verified by BLAKE3 before any byte reaches the disk, and handed to writer threads; each file is written under a temporary
//! name in its final directory and renamed into place only when complete, with its mode and
//! mtime already set. A restore that fails or is killed leaves no half-written file under a
//! final name.
//!
//! Safety: the manifest was validated on decode (relative, normal paths; parents are
//! directories of the manifest). On disk, every directory of the manifest is made a real
//! directory before anything is written into it, so no write goes through a symlink.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rayon::prelude::*;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use crate::core::codec::CorruptChunk;
use crate::core::id::{ChunkId, PackId};
use crate::core::manifest::{ChunkRef, Entry, EntryKind, Manifest, ManifestError, Mount, Timestamp, chunk_span};
pub use crate::fs::tree::RestoreTarget;
use crate::fs::tree::{
    Action, FileJob, Piece, Removal, TreeError, TreePlan, entry_path, find_removals, finish_tree, prepare_tree,
    write_pieces,
};
use crate::pipeline::fetch::{InOrder, KEPT_BYTES, Kept, READS_IN_FLIGHT, max_range, plan_ranges};
use crate::pipeline::progress::Progress;
use crate::store::{ChunkReadError, PackRange, RequestSnapshot, Store, StoreError};

/// Files are written by this many threads (file creation, not bandwidth, is the cost).
const WRITERS: usize = 4;
/// Pieces queued per writer. Each holds its chunk alive, so this bounds memory:
/// `WRITERS × PIECES_QUEUED + concurrency` chunks at most.
const PIECES_QUEUED: usize = 4;

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
    /// cache can never write outside the folders the step names. An entry with `**` in it is a
    /// glob, as drone-cache expands mounts: it keeps every mount of the cache it matches, under
    /// [`MOUNT_GLOB_OPTIONS`].
    pub only_mounts: Option<Vec<PathBuf>>,
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
    /// Bytes of the ranges read from packs (the chunks, and any gaps read through): chunk data
    /// only, unlike `requests.bytes_downloaded`, which also counts the manifest and the store's
    /// config.
    pub bytes_fetched: u64,
    /// Ranged reads of packs.
    pub ranges_fetched: u64,
    /// Entries removed (type conflicts, and with `--mirror` entries not in the manifest).
    pub removed: u64,
    /// Each restored mount, as the cache recorded it, with the bytes of its files.
    pub mounts: Vec<MountBytes>,
    /// Problems that did not fail the restore.
    pub warnings: Vec<String>,
    /// Store requests made.
    pub requests: RequestSnapshot,
    /// Wall time.
    pub elapsed_ms: u64,
}

/// How a mount with `**` in it matches paths, as drone-cache's doublestar does: `*` and `?` stay
/// within one folder, `**` spans folders.
pub const MOUNT_GLOB_OPTIONS: glob::MatchOptions =
    glob::MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };

/// A restored mount and the bytes of its files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MountBytes {
    /// The mount as the save recorded it.
    pub path: String,
    /// Bytes of file content under it.
    pub bytes: u64,
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
    /// A pack the manifest names is not in the store.
    #[error(
        "pack {pack} (holding chunk {id}, needed for {path}) is missing from the store; save the cache again \
         to repair it"
    )]
    MissingPack {
        /// The pack.
        pack: PackId,
        /// A chunk it holds.
        id: ChunkId,
        /// A file that needs it.
        path: PathBuf,
    },
    /// A chunk failed verification; nothing of it was written.
    #[error("{source} (needed for {path}); nothing of it was written; save the cache again to repair it")]
    Corrupt {
        /// What failed.
        source: CorruptChunk,
        /// A file that needs it.
        path: PathBuf,
    },
    /// A chunk decoded to another length than the manifest records: the manifest is damaged.
    #[error(
        "chunk {id} holds {actual} bytes but the manifest of {key:?} says {expected}: the manifest is damaged; \
         save the cache again to replace it"
    )]
    WrongLength {
        /// The chunk.
        id: ChunkId,
        /// The key whose manifest names it.
        key: String,
        /// The length the manifest records.
        expected: u32,
        /// The length of the verified chunk.
        actual: usize,
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

impl From<TreeError> for RestoreError {
    fn from(TreeError { path, source }: TreeError) -> Self {
        RestoreError::Io { path, source }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io { path: path.to_path_buf(), source }
}

/// Restores the newest manifest for `options.key` (or a fallback prefix): [`prepare`], then
/// [`execute`], except that the folders are listed for removals while the files are written
/// (what to remove is only needed at the end; execution checks each removal again anyway).
///
/// # Errors
/// [`RestoreError`]. Files already renamed into place stay; no partial file does.
pub async fn restore(
    store: &Store,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport, RestoreError> {
    let plan = plan_restore(store, options, true).await?;
    execute(store, plan, progress).await
}

/// A restore computed against the store and the local tree, not yet done: what [`execute`]
/// carries out and what `restore --dry-run` prints.
#[derive(Debug)]
pub struct RestorePlan {
    /// Hit, fallback hit or miss.
    pub outcome: Outcome,
    /// The key asked for.
    pub key: String,
    /// The key to restore, if any.
    pub restored_key: Option<String>,
    /// Where the mounts go.
    pub target: RestoreTarget,
    /// Chunk downloads in flight at once during execution.
    pub concurrency: usize,
    /// What execution will do, in numbers.
    pub stats: RestoreStats,
    /// Problems that do not fail the restore.
    pub warnings: Vec<String>,
    /// The manifest and the work on the tree; `None` on a miss.
    pub work: Option<RestoreWork>,
    /// Time spent preparing, in milliseconds (counted in the report's wall time).
    pub prepare_ms: u64,
}

/// The work a hit leaves to execution.
#[derive(Debug)]
pub struct RestoreWork {
    /// The manifest restored (only the mounts to restore).
    pub manifest: Arc<Manifest>,
    /// Every entry's action, the files to write and the chunks they need.
    pub tree: Arc<TreePlan>,
    /// The ranged reads that fetch those chunks, in the order the stream needs them.
    pub ranges: Vec<PackRange>,
    /// What listing the folders found to remove, or the listing still under way.
    pub(crate) removals: Removals,
}

/// What a restore removes from the folders already there ([`find_removals`]).
#[derive(Debug)]
pub(crate) enum Removals {
    Found {
        /// Staging files a killed restore left in the folders this one changes; removed before
        /// any file is written.
        stale_staging: Vec<Removal>,
        /// With `--mirror`, what the manifest does not have; removed after the files are written.
        strays: Vec<Removal>,
    },
    /// Being listed beside the writes ([`restore`]): all of it is removed after them.
    Listing(tokio::task::JoinHandle<Listed>),
}

/// Stale staging files and strays, as [`find_removals`] lists them.
type Listed = Result<(Vec<Removal>, Vec<Removal>), TreeError>;

/// What a restore plan will do, in numbers. The names are those of [`RestoreReport`], so a
/// dry run and the real run compare field by field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RestoreStats {
    /// Regular files in the manifest.
    pub files: u64,
    /// Bytes of file content in the manifest.
    pub bytes: u64,
    /// Files to write (new or changed).
    pub files_written: u64,
    /// Files already up to date.
    pub files_unchanged: u64,
    /// Bytes to write to files.
    pub bytes_written: u64,
    /// Entries to remove: type conflicts, stale staging files and, with `--mirror`, entries
    /// not in the manifest.
    pub removed: u64,
    /// Chunk downloads (a chunk whose bytes had to be dropped for memory and read again counts
    /// twice in the report, which says what happened).
    pub chunks_fetched: u64,
    /// Bytes of the ranged reads.
    pub bytes_fetched: u64,
    /// Ranged reads.
    pub ranges_fetched: u64,
}

impl RestorePlan {
    /// The files to write, in the order they are written.
    pub fn paths_to_write(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.work.iter().flat_map(|work| {
            work.tree.files.iter().map(|file| work.tree.path_of(&work.manifest.entries.get(file.entry)))
        })
    }

    /// Everything to remove: what is in the way of an entry, stale staging files and strays.
    pub fn paths_to_remove(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.work.iter().flat_map(|work| {
            let conflicts =
                work.tree.conflicts.iter().map(|&index| work.tree.path_of(&work.manifest.entries.get(index)));
            let removals = match &work.removals {
                Removals::Found { stale_staging, strays } => stale_staging.iter().chain(strays).collect(),
                Removals::Listing(_) => Vec::new(),
            };
            let removals = removals.into_iter().map(|removal| removal.path.clone());
            conflicts.chain(removals)
        })
    }
}

/// Finds the manifest, decodes it and compares it with the local tree: every write, every
/// chunk to fetch and every removal, with their statistics. Reads the store and the tree,
/// changes neither (no `used/` marker either: that is execution's).
///
/// # Errors
/// [`RestoreError`]: the store failed, the manifest is damaged, or the tree cannot be read.
pub async fn prepare(store: &Store, options: &RestoreOptions) -> Result<RestorePlan, RestoreError> {
    plan_restore(store, options, false).await
}

/// [`prepare`]; with `list_beside`, the folders are still being listed for removals when it
/// returns, and the plan's `removed` counts only what is in the way.
async fn plan_restore(store: &Store, options: &RestoreOptions, list_beside: bool) -> Result<RestorePlan, RestoreError> {
    let clock = Instant::now();
    let mut plan = RestorePlan {
        outcome: Outcome::Miss,
        key: options.key.clone(),
        restored_key: None,
        target: options.target.clone(),
        concurrency: options.concurrency.max(1),
        stats: RestoreStats::default(),
        warnings: Vec::new(),
        work: None,
        prepare_ms: 0,
    };
    let Some((outcome, key, bytes)) = find_manifest(store, options).await? else {
        plan.prepare_ms = clock.elapsed().as_millis() as u64;
        return Ok(plan);
    };
    let mut manifest = Manifest::decode(&key, &bytes)?;
    if let Some(only) = &options.only_mounts {
        let allowed: Vec<Mount> = only.iter().map(|m| Mount::from_path(m)).collect();
        let globs: Vec<glob::Pattern> = only
            .iter()
            .filter_map(|m| m.to_str().filter(|m| m.contains("**")))
            .filter_map(|m| glob::Pattern::new(m.trim_end_matches('/')).ok())
            .collect();
        let glob_match = |mount: &Mount| {
            let path = String::from_utf8_lossy(&mount.path);
            globs.iter().any(|glob| glob.matches_with(&path, MOUNT_GLOB_OPTIONS))
        };
        for skipped in manifest.retain_mounts(|mount| allowed.contains(mount) || glob_match(mount)) {
            plan.warnings
                .push(format!("skipped the cache's mount {skipped:?}: it is not one of the mounts to restore"));
        }
    }
    let manifest = Arc::new(manifest);
    let tree = {
        let (manifest, target) = (manifest.clone(), options.target.clone());
        Arc::new(tokio::task::spawn_blocking(move || self::plan(&manifest, &target)).await.expect("planning panicked")?)
    };
    let listing = {
        let (manifest, tree, mirror) = (manifest.clone(), tree.clone(), options.mirror);
        tokio::task::spawn_blocking(move || find_removals(&manifest, &tree, mirror))
    };
    let removals = match list_beside {
        true => Removals::Listing(listing),
        false => {
            let (stale_staging, strays) = listing.await.expect("listing panicked")?;
            Removals::Found { stale_staging, strays }
        }
    };
    let listed = match &removals {
        Removals::Found { stale_staging, strays } => stale_staging.len() + strays.len(),
        Removals::Listing(_) => 0,
    };
    let summary = manifest.summary();
    let ranges = plan_ranges(&manifest, &tree.chunks, max_range(store));
    plan.stats = RestoreStats {
        files: summary.files,
        bytes: summary.bytes,
        files_written: tree.files.len() as u64,
        files_unchanged: summary.files - tree.files.len() as u64,
        bytes_written: tree.files.iter().map(|f| f.size).sum(),
        removed: (tree.conflicts.len() + listed) as u64,
        chunks_fetched: ranges.iter().map(|range| range.chunks.len() as u64).sum(),
        bytes_fetched: ranges.iter().map(|range| u64::from(range.end - range.start)).sum(),
        ranges_fetched: ranges.len() as u64,
    };
    (plan.outcome, plan.restored_key) = (outcome, Some(key));
    plan.work = Some(RestoreWork { manifest, tree, ranges, removals });
    plan.prepare_ms = clock.elapsed().as_millis() as u64;
    Ok(plan)
}

/// Carries out a plan from [`prepare`]: every entry is reached through directory handles that
/// refuse symlinks, whatever the plan saw through paths; a removal whose entry has vanished
/// since is skipped. On a hit, records the key's use for GC.
///
/// # Errors
/// [`RestoreError`]. Files already renamed into place stay; no partial file does.
pub async fn execute(store: &Store, plan: RestorePlan, progress: &dyn Progress) -> Result<RestoreReport, RestoreError> {
    let clock = Instant::now();
    let stats = &plan.stats;
    let mut report = RestoreReport {
        outcome: plan.outcome,
        key: plan.key.clone(),
        restored_key: plan.restored_key.clone(),
        files: stats.files,
        bytes: stats.bytes,
        files_written: stats.files_written,
        files_unchanged: stats.files_unchanged,
        bytes_written: stats.bytes_written,
        warnings: plan.warnings.clone(),
        ..RestoreReport::default()
    };
    let elapsed_ms = |clock: Instant| plan.prepare_ms + clock.elapsed().as_millis() as u64;
    let (Some(work), Some(key)) = (plan.work, &plan.restored_key) else {
        report.requests = store.requests();
        report.elapsed_ms = elapsed_ms(clock);
        return Ok(report);
    };
    let mut work = work;
    let placeholder = Removals::Found { stale_staging: Vec::new(), strays: Vec::new() };
    let (stale_staging, later) = match std::mem::replace(&mut work.removals, placeholder) {
        Removals::Found { stale_staging, strays } => {
            (stale_staging, Removals::Found { stale_staging: Vec::new(), strays })
        }
        listing @ Removals::Listing(_) => (Vec::new(), listing),
    };
    let roots = {
        let (tree, manifest, target) = (work.tree.clone(), work.manifest.clone(), plan.target.clone());
        let (roots, removed) =
            tokio::task::spawn_blocking(move || prepare_tree(&manifest, &tree, &target, &stale_staging))
                .await
                .expect("preparing panicked")?;
        report.removed += removed;
        roots
    };
    progress.phase("restoring", report.bytes_written);
    // The key's use is recorded beside the writes: one round trip less at the end.
    let (fetched, marked) =
        tokio::join!(write_files(store, key, &work, &roots, plan.concurrency, progress), store.mark_used(key));
    if let Err(err) = marked {
        report.warnings.push(format!("could not record that {key:?} was used (GC may expire it early): {err}"));
    }
    let fetched = fetched?;
    (report.chunks_fetched, report.bytes_fetched, report.ranges_fetched) =
        (fetched.chunks, fetched.bytes, fetched.ranges);
    report.mounts = work
        .manifest
        .mounts
        .iter()
        .zip(work.manifest.mount_bytes())
        .map(|(mount, bytes)| MountBytes { path: String::from_utf8_lossy(&mount.path).into_owned(), bytes })
        .collect();
    // Stale staging files found beside the writes go with the strays: after them.
    let removals = match later {
        Removals::Found { strays, .. } => strays,
        Removals::Listing(listing) => {
            let (stale_staging, strays) = listing.await.expect("listing panicked")?;
            stale_staging.into_iter().chain(strays).collect()
        }
    };
    let (tree, manifest) = (work.tree, work.manifest);
    report.removed += tokio::task::spawn_blocking(move || finish_tree(&manifest, &tree, &roots, &removals))
        .await
        .expect("finishing panicked")?;
    report.requests = store.requests();
    report.elapsed_ms = elapsed_ms(clock);
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

/// Entries compared with the local tree per parallel task in [`plan`].
const COMPARE_RUN: usize = 256;

/// Compares the manifest with the local tree. Planning only reads; what it sees through a
/// path is advice, never trusted by execution, which reaches every entry through directory
/// handles that refuse symlinks ([`crate::fs::safe`]).
///
/// # Errors
/// [`RestoreError::Io`] when a target cannot be inspected.
pub fn plan(manifest: &Manifest, target: &RestoreTarget) -> Result<TreePlan, RestoreError> {
    let roots: Vec<PathBuf> = manifest.mounts.iter().map(|mount| mount_root(target, mount)).collect();
    // Entries are sorted by `(mount, path)` (checked on decode): a parent is found by binary
    // search, with no index of every path (issue 9: memory flat in the size of the cache).
    let parents = manifest.entries.parents().expect("a decoded manifest has every parent");
    let follow_roots = matches!(target, RestoreTarget::Original(_));
    // Compared in parallel by runs of entries, each run's paths decoded in order.
    let (mut actions, found_dirs): (Vec<Action>, Vec<bool>) = (0..manifest.entries.len().div_ceil(COMPARE_RUN))
        .into_par_iter()
        .flat_map_iter(|run| {
            let start = run * COMPARE_RUN;
            manifest
                .entries
                .iter_from(start)
                .take(COMPARE_RUN)
                .map(|entry| compare(&entry, &entry_path(&roots, &entry), follow_roots && entry.path.is_empty()))
        })
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    // What was seen below a folder that is missing or in the way (a file, or a symlink that a
    // path lookup went through) says nothing about the restored tree: all of it is created.
    // Parents come before their children in the manifest's order.
    for index in 0..actions.len() {
        if parents[index].is_some_and(|parent| matches!(actions[parent as usize], Action::Create | Action::Replace)) {
            actions[index] = Action::Create;
        }
    }
    let conflicts = (0..actions.len())
        .filter(|&index| {
            actions[index] == Action::Replace
                && (parents[index].is_none()
                    || found_dirs[index] != matches!(manifest.entries.kind(index), EntryKind::Dir))
        })
        .collect();
    let mut files: Vec<FileJob> = manifest
        .entries
        .kinds()
        .enumerate()
        .filter(|(index, _)| matches!(actions[*index], Action::Create | Action::Replace))
        .filter_map(|(index, (_, kind))| match *kind {
            EntryKind::File { size, offset } => Some(FileJob { entry: index, offset, size }),
            _ => None,
        })
        .collect();
    files.sort_by_key(|f| f.offset);
    let offsets = manifest.chunk_offsets();
    let mut chunks: Vec<usize> = files.iter().flat_map(|f| chunk_span(&offsets, f.offset, f.size)).collect();
    chunks.sort_unstable();
    chunks.dedup();
    Ok(TreePlan { roots, parents, actions, conflicts, files, chunks })
}

/// Where a mount's root lands on disk.
fn mount_root(target: &RestoreTarget, mount: &Mount) -> PathBuf {
    let saved = Path::new(OsStr::from_bytes(&mount.path));
    match target {
        RestoreTarget::Original(base) => base.join(saved),
        RestoreTarget::Under(dir) => dir.join(saved.strip_prefix("/").unwrap_or(saved)),
    }
}

/// What to do with `entry`, and whether what is at `path` now is a directory.
fn compare(entry: &Entry, path: &Path, follow: bool) -> Result<(Action, bool), RestoreError> {
    // A mount root restored where it was saved from may be the user's own symlink to a
    // directory; nothing else is looked at through a link.
    let found = if follow { fs::metadata(path) } else { fs::symlink_metadata(path) };
    let found = match found {
        Ok(found) => found,
        Err(err)
            if err.kind() == std::io::ErrorKind::NotFound
                || err.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
                || err.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) =>
        {
            return Ok((Action::Create, false));
        }
        Err(err) => return Err(io_error(path)(err)),
    };
    let same_meta = found.mode() & 0o7777 == entry.mode && mtime_of(&found) == entry.mtime;
    let action = match &entry.kind {
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
    };
    Ok((action, found.is_dir()))
}

fn mtime_of(metadata: &fs::Metadata) -> Timestamp {
    Timestamp { secs: metadata.mtime(), nanos: metadata.mtime_nsec() as u32 }
}

/// What the fetch of a restore read.
#[derive(Clone, Copy, Debug, Default)]
struct Fetched {
    chunks: u64,
    bytes: u64,
    ranges: u64,
}

/// Fetches the planned chunks in stream order and feeds the writers.
async fn write_files(
    store: &Store,
    key: &str,
    work: &RestoreWork,
    roots: &Arc<Vec<OwnedFd>>,
    concurrency: usize,
    progress: &dyn Progress,
) -> Result<Fetched, RestoreError> {
    let mut senders = Vec::with_capacity(WRITERS);
    let mut writers = Vec::with_capacity(WRITERS);
    for _ in 0..WRITERS {
        let (sender, receiver) = mpsc::channel::<Piece>(PIECES_QUEUED);
        senders.push(sender);
        let (manifest, plan, roots) = (work.manifest.clone(), work.tree.clone(), roots.clone());
        writers.push(tokio::task::spawn_blocking(move || write_pieces(&manifest, &plan, roots, receiver)));
    }
    let mut fetched = Fetched::default();
    let dispatched = dispatch(store, key, work, concurrency, &senders, progress, &mut fetched).await;
    drop(senders);
    let mut written: Result<(), TreeError> = Ok(());
    for writer in writers {
        let result = writer.await.expect("writer panicked");
        if written.is_ok() {
            written = result;
        }
    }
    // A fetch error stops the writers, so it comes first; else the first writer error.
    dispatched?;
    Ok(written.map(|()| fetched)?)
}

/// Reads `range`, counting it; on a missing pack or a corrupt chunk, records the pack as
/// damaged (best effort, so that the next save uploads its chunks again: "save the cache again
/// to repair it" is then true) and names a file that needed it.
async fn read_range(
    store: &Store,
    range: &PackRange,
    users: &Users<'_>,
    fetched: &std::sync::Mutex<Fetched>,
) -> Result<Vec<Bytes>, RestoreError> {
    {
        let mut fetched = fetched.lock().unwrap();
        fetched.ranges += 1;
        fetched.chunks += range.chunks.len() as u64;
        fetched.bytes += u64::from(range.end - range.start);
    }
    // On a task of its own: its body arrives and is decoded while the caller hands out pieces.
    // Dropped (a restore that stopped early), it aborts the task.
    let read = {
        let (store, range) = (store.clone(), range.clone());
        AbortOnDropHandle::new(tokio::spawn(async move { store.read_range(&range).await }))
    };
    match read.await.unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic())) {
        Ok(Some(chunks)) => Ok(chunks),
        Ok(None) => {
            let _ = store.mark_damaged(range.pack).await;
            let id = range.chunks[0].0;
            Err(RestoreError::MissingPack { pack: range.pack, id, path: users.path(id) })
        }
        Err(ChunkReadError::Corrupt(source)) => {
            let _ = store.mark_damaged(range.pack).await;
            let id = match &source {
                CorruptChunk::Malformed { id, .. } | CorruptChunk::HashMismatch { id, .. } => *id,
            };
            Err(RestoreError::Corrupt { source, path: users.path(id) })
        }
        Err(ChunkReadError::Store(err)) => Err(err.into()),
    }
}

/// Names a file that needs a chunk, for errors.
struct Users<'a> {
    /// The first chunk index of each id.
    first_chunk: HashMap<ChunkId, usize>,
    offsets: &'a [u64],
    manifest: &'a Manifest,
    plan: &'a TreePlan,
}

impl Users<'_> {
    fn path(&self, id: ChunkId) -> PathBuf {
        let chunk = self.first_chunk[&id];
        let (start, end) = (self.offsets[chunk], self.offsets[chunk + 1]);
        let user = self.plan.files.iter().find(|f| f.offset < end && f.offset + f.size > start);
        user.map_or_else(PathBuf::new, |f| self.plan.path_of(&self.manifest.entries.get(f.entry)))
    }
}

async fn dispatch(
    store: &Store,
    key: &str,
    work: &RestoreWork,
    concurrency: usize,
    senders: &[mpsc::Sender<Piece>],
    progress: &dyn Progress,
    total: &mut Fetched,
) -> Result<(), RestoreError> {
    let (manifest, plan) = (&*work.manifest, &*work.tree);
    let offsets = &manifest.chunk_offsets();
    let files = &plan.files;
    let send = |piece: Piece| async {
        let writer = piece.file % WRITERS;
        // A closed writer has failed; its error is reported when it is joined.
        senders[writer].send(piece).await.is_ok()
    };
    for (index, file) in files.iter().enumerate() {
        if file.size == 0 && !send(Piece { file: index, data: Bytes::new(), range: 0..0, last: true }).await {
            return Ok(());
        }
    }
    let mut users = Users { first_chunk: HashMap::with_capacity(plan.chunks.len()), offsets, manifest, plan };
    for &chunk in &plan.chunks {
        users.first_chunk.entry(manifest.chunks[chunk].id).or_insert(chunk);
    }
    let users = &users;
    let counts = &std::sync::Mutex::new(Fetched::default());
    let result = async {
        // Which read brings each id; reads are consumed in order, so a read index below
        // `received` has arrived.
        let mut read_of: HashMap<ChunkId, usize> = HashMap::with_capacity(users.first_chunk.len());
        for (index, range) in work.ranges.iter().enumerate() {
            for &(id, ..) in &range.chunks {
                read_of.entry(id).or_insert(index);
            }
        }
        let reads: Vec<_> = work
            .ranges
            .iter()
            .map(|range| (u64::from(range.end - range.start), read_range(store, range, users, counts)))
            .collect();
        let mut incoming = InOrder::new(reads.into_iter(), concurrency.min(READS_IN_FLIGHT));
        let mut received = 0;
        let mut kept = Kept::new(plan.chunks.iter().map(|&chunk| manifest.chunks[chunk].id), KEPT_BYTES);
        let mut next_file = 0;
        let mut active: Vec<usize> = Vec::new();
        for &chunk in &plan.chunks {
            let ChunkRef { id, len, pack, offset, stored_len } = manifest.chunks[chunk];
            while read_of[&id] >= received {
                let range = &work.ranges[received];
                let chunks = incoming.next().await.expect("one result per read")?;
                for (&(id, ..), data) in range.chunks.iter().zip(chunks) {
                    kept.insert(id, data);
                }
                received += 1;
            }
            let data = match kept.take(id) {
                Some(data) => data,
                // Dropped for memory since its read: read it again, alone.
                None => {
                    let alone = PackRange {
                        pack: manifest.packs[pack as usize],
                        start: offset,
                        end: offset + stored_len,
                        chunks: vec![(id, offset, stored_len)],
                    };
                    read_range(store, &alone, users, counts).await?.remove(0)
                }
            };
            if data.len() != len as usize {
                return Err(RestoreError::WrongLength { id, key: key.to_string(), expected: len, actual: data.len() });
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
                        return Ok(());
                    }
                }
                if job.offset + job.size > end {
                    still_active.push(file);
                }
            }
            active = still_active;
        }
        Ok(())
    }
    .await;
    *total = *counts.lock().unwrap();
    result
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
