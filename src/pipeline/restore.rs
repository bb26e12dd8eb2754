//! Restore: key → manifest → plan against the local tree → fetch missing chunks → write.
//!
//! [`restore`] is [`prepare`], then [`execute`]. [`prepare`] finds and decodes the manifest and
//! compares every entry with what is on disk (size, mtime and mode for files; target for
//! symlinks; [`plan`]), so a restore over an existing tree rewrites only what differs and fetches
//! only the chunks those files need; it also lists what will be removed (with `--mirror`, what
//! the manifest does not have). The resulting [`RestorePlan`] knows every write, every chunk to
//! fetch and every removal, with their statistics, and changes nothing: `restore --dry-run`
//! prints it. [`execute`] only carries it out.
//! Chunks are fetched in stream order with bounded concurrency, verified by BLAKE3 before any
//! byte reaches the disk, and handed to writer threads; each file is written under a temporary
//! name in its final directory and renamed into place only when complete, with its mode and
//! mtime already set. A restore that fails or is killed leaves no half-written file under a
//! final name.
//!
//! Safety: the manifest was validated on decode (relative, normal paths; parents are
//! directories of the manifest). On disk, every directory of the manifest is made a real
//! directory before anything is written into it, so no write goes through a symlink.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use rayon::prelude::*;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::core::codec::CorruptChunk;
use crate::core::id::ChunkId;
use crate::core::manifest::{
    ChunkRef, Entry, EntryKind, Manifest, ManifestError, Mount, Timestamp, chunk_span, parent_of,
};
use crate::fs::safe::{self, Resolver};
use crate::pipeline::progress::Progress;
use crate::store::{ChunkReadError, RequestSnapshot, Store, StoreError};

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

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io { path: path.to_path_buf(), source }
}

/// Restores the newest manifest for `options.key` (or a fallback prefix): [`prepare`], then
/// [`execute`].
///
/// # Errors
/// [`RestoreError`]. Files already renamed into place stay; no partial file does.
pub async fn restore(
    store: &Store,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport, RestoreError> {
    let plan = prepare(store, options).await?;
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
    /// Every entry's action, the files to write and the chunks to fetch.
    pub tree: Arc<TreePlan>,
    /// Staging files a killed restore left in the folders this one changes; removed before
    /// any file is written.
    pub stale_staging: Vec<Removal>,
    /// With `--mirror`, what the manifest does not have; removed after the files are written.
    pub strays: Vec<Removal>,
}

/// One name to remove from a folder of the manifest.
#[derive(Clone, Debug)]
pub struct Removal {
    /// Entry index of the folder.
    pub dir: usize,
    /// The name in that folder.
    pub name: Vec<u8>,
    /// The full path (for messages).
    pub path: PathBuf,
}

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
    /// Chunk downloads.
    pub chunks_fetched: u64,
    /// Stored (compressed) bytes of those downloads.
    pub bytes_fetched: u64,
}

impl RestorePlan {
    /// The files to write, in the order they are written.
    pub fn paths_to_write(&self) -> impl Iterator<Item = &Path> {
        self.work.iter().flat_map(|work| work.tree.files.iter().map(|file| file.path.as_path()))
    }

    /// Everything to remove: what is in the way of an entry, stale staging files and strays.
    pub fn paths_to_remove(&self) -> impl Iterator<Item = &Path> {
        self.work.iter().flat_map(|work| {
            let conflicts = work.tree.conflicts.iter().map(|&index| work.tree.paths[index].as_path());
            let removals = work.stale_staging.iter().chain(&work.strays).map(|removal| removal.path.as_path());
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
        for skipped in manifest.retain_mounts(|mount| allowed.contains(mount)) {
            plan.warnings
                .push(format!("skipped the cache's mount {skipped:?}: it is not one of the mounts to restore"));
        }
    }
    let manifest = Arc::new(manifest);
    let (tree, stale_staging, strays) = {
        let (manifest, target, mirror) = (manifest.clone(), options.target.clone(), options.mirror);
        tokio::task::spawn_blocking(move || {
            let tree = self::plan(&manifest, &target)?;
            let (stale_staging, strays) = find_removals(&manifest, &tree, mirror)?;
            Ok::<_, RestoreError>((tree, stale_staging, strays))
        })
        .await
        .expect("planning panicked")?
    };
    let summary = manifest.summary();
    let fetched = tree.uses.iter().filter(|use_| use_.source != ChunkSource::Kept);
    plan.stats = RestoreStats {
        files: summary.files,
        bytes: summary.bytes,
        files_written: tree.files.len() as u64,
        files_unchanged: summary.files - tree.files.len() as u64,
        bytes_written: tree.files.iter().map(|f| f.size).sum(),
        removed: (tree.conflicts.len() + stale_staging.len() + strays.len()) as u64,
        chunks_fetched: fetched.clone().count() as u64,
        bytes_fetched: fetched.map(|use_| u64::from(manifest.chunks[use_.chunk].stored_len)).sum(),
    };
    (plan.outcome, plan.restored_key) = (outcome, Some(key));
    plan.work = Some(RestoreWork { manifest, tree: Arc::new(tree), stale_staging, strays });
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
    let RestoreWork { manifest, tree, stale_staging, strays } = work;
    let roots = {
        let (tree, manifest, target) = (tree.clone(), manifest.clone(), plan.target.clone());
        let (roots, removed) =
            tokio::task::spawn_blocking(move || prepare_tree(&manifest, &tree, &target, &stale_staging))
                .await
                .expect("preparing panicked")?;
        report.removed += removed;
        roots
    };
    progress.phase("restoring", report.bytes_written);
    report.chunks_fetched = write_files(store, key, &manifest, &tree, &roots, plan.concurrency, progress).await?;
    report.removed += tokio::task::spawn_blocking(move || finish_tree(&manifest, &tree, &roots, &strays))
        .await
        .expect("finishing panicked")?;

    if let Err(err) = store.mark_used(key).await {
        report.warnings.push(format!("could not record that {key:?} was used (GC may expire it early): {err}"));
    }
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

/// Work on the local tree computed from a manifest, not yet done.
#[derive(Debug)]
pub struct TreePlan {
    /// The on-disk path of every manifest entry, by entry index (for messages).
    pub paths: Vec<PathBuf>,
    /// The index of every entry's parent directory entry; `None` for a mount root.
    pub parents: Vec<Option<usize>>,
    /// What to do per entry, by entry index.
    pub actions: Vec<Action>,
    /// Entries whose thing in the way is removed rather than renamed over (a folder where a
    /// file or symlink belongs, anything else where a folder belongs, a mount root that is not
    /// a folder), by entry index.
    pub conflicts: Vec<usize>,
    /// Files to write, sorted by stream offset.
    pub files: Vec<FileJob>,
    /// Every use of a chunk those files need, by ascending chunk index, with where its bytes
    /// come from.
    pub uses: Vec<ChunkUse>,
}

/// One use of a chunk by the files to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkUse {
    /// Chunk index in the manifest.
    pub chunk: usize,
    /// Where its bytes come from.
    pub source: ChunkSource,
    /// Keep the bytes for a later use of the same chunk id.
    pub keep: bool,
    /// Drop the kept bytes: this is the id's last use.
    pub release: bool,
}

/// Where the bytes of a chunk use come from. A chunk that recurs (duplicate files, repeated
/// content) is fetched once, at its first use, and kept until its last use within a memory
/// budget ([`KEPT_BYTES`]); past the budget it is fetched again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkSource {
    /// First use of the id: fetched ahead, `concurrency` at a time, in stream order.
    Ahead,
    /// A later use whose bytes were not kept: fetched again when reached.
    Again,
    /// Kept from an earlier use.
    Kept,
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
    /// Final path (for messages).
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

/// Compares the manifest with the local tree. Planning only reads; what it sees through a
/// path is advice, never trusted by execution, which reaches every entry through directory
/// handles that refuse symlinks ([`crate::fs::safe`]).
///
/// # Errors
/// [`RestoreError::Io`] when a target cannot be inspected.
pub fn plan(manifest: &Manifest, target: &RestoreTarget) -> Result<TreePlan, RestoreError> {
    let roots: Vec<PathBuf> = manifest.mounts.iter().map(|mount| mount_root(target, mount)).collect();
    let paths: Vec<PathBuf> = manifest
        .entries
        .iter()
        .map(|e| {
            let root = &roots[e.mount as usize];
            if e.path.is_empty() { root.clone() } else { root.join(OsStr::from_bytes(&e.path)) }
        })
        .collect();
    let index_of: HashMap<(u32, &[u8]), usize> =
        manifest.entries.iter().enumerate().map(|(index, e)| ((e.mount, e.path.as_slice()), index)).collect();
    let parents: Vec<Option<usize>> = manifest
        .entries
        .iter()
        .map(|e| (!e.path.is_empty()).then(|| index_of[&(e.mount, parent_of(&e.path))]))
        .collect();
    let follow_roots = matches!(target, RestoreTarget::Original(_));
    let (mut actions, found_dirs): (Vec<Action>, Vec<bool>) = manifest
        .entries
        .par_iter()
        .zip(paths.par_iter())
        .map(|(entry, path)| compare(entry, path, follow_roots && entry.path.is_empty()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    // What was seen below a folder that is missing or in the way (a file, or a symlink that a
    // path lookup went through) says nothing about the restored tree: all of it is created.
    // Parents come before their children in the manifest's order.
    for index in 0..actions.len() {
        if parents[index].is_some_and(|parent| matches!(actions[parent], Action::Create | Action::Replace)) {
            actions[index] = Action::Create;
        }
    }
    let conflicts = (0..actions.len())
        .filter(|&index| {
            let entry = &manifest.entries[index];
            actions[index] == Action::Replace
                && (entry.path.is_empty() || found_dirs[index] != matches!(entry.kind, EntryKind::Dir))
        })
        .collect();
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
    let uses = chunk_uses(manifest, &chunks);
    Ok(TreePlan { paths, parents, actions, conflicts, files, uses })
}

/// Decides, for each chunk the files need (ascending indices), whether its bytes are fetched
/// ahead, fetched again or kept from an earlier use, within the [`KEPT_BYTES`] budget.
fn chunk_uses(manifest: &Manifest, chunks: &[usize]) -> Vec<ChunkUse> {
    let mut first_use: HashMap<ChunkId, usize> = HashMap::new();
    let mut last_use: HashMap<ChunkId, usize> = HashMap::new();
    for &chunk in chunks {
        let id = manifest.chunks[chunk].id;
        first_use.entry(id).or_insert(chunk);
        last_use.insert(id, chunk);
    }
    let (mut kept, mut kept_bytes) = (HashSet::<ChunkId>::new(), 0usize);
    chunks
        .iter()
        .map(|&chunk| {
            let ChunkRef { id, len, .. } = manifest.chunks[chunk];
            let source = if kept.contains(&id) {
                ChunkSource::Kept
            } else if first_use[&id] == chunk {
                ChunkSource::Ahead
            } else {
                ChunkSource::Again
            };
            let (mut keep, mut release) = (false, false);
            if last_use[&id] == chunk {
                if kept.remove(&id) {
                    kept_bytes -= len as usize;
                    release = true;
                }
            } else if !kept.contains(&id) && kept_bytes + len as usize <= KEPT_BYTES {
                kept_bytes += len as usize;
                kept.insert(id);
                keep = true;
            }
            ChunkUse { chunk, source, keep, release }
        })
        .collect()
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

/// Opens every mount root (creating what is missing), then removes what is in the way and
/// creates directories and symlinks, parents first, all through directory handles that
/// refuse symlinks. Returns the root handles, by mount, and the number of entries removed.
fn prepare_tree(
    manifest: &Manifest,
    plan: &TreePlan,
    target: &RestoreTarget,
    stale_staging: &[Removal],
) -> Result<(Arc<Vec<OwnedFd>>, u64), RestoreError> {
    let mut removed = 0;
    let mut roots = Vec::with_capacity(manifest.mounts.len());
    for (index, entry) in manifest.entries.iter().enumerate().filter(|(_, e)| e.path.is_empty()) {
        let path = &plan.paths[index];
        if plan.actions[index] == Action::Replace {
            removed += 1;
        }
        let root = open_root(target, &manifest.mounts[entry.mount as usize], path, plan.actions[index])
            .map_err(io_error(path))?;
        roots.push(root);
    }
    let roots = Arc::new(roots);
    let mut resolver = Resolver::new(roots.clone());
    let at = |index: usize| (manifest.entries[index].mount, manifest.entries[index].path.as_slice());
    // Folders that stay but get new contents may have been saved read-only: make them
    // writable while working; `finish_tree` sets their saved mode again.
    let receiving: BTreeSet<usize> = changed_parents(plan).collect();
    for &index in receiving.iter().filter(|&&index| matches!(plan.actions[index], Action::Keep | Action::Touch)) {
        let (mount, path) = at(index);
        resolver.with_dir(mount, path, |dir| safe::make_owner_accessible(dir)).map_err(io_error(&plan.paths[index]))?;
    }
    for (index, entry) in manifest.entries.iter().enumerate() {
        let action = plan.actions[index];
        if entry.path.is_empty() || !matches!(action, Action::Create | Action::Replace) {
            continue;
        }
        let name = safe::file_name(&entry.path);
        resolver
            .with_dir(entry.mount, parent_of(&entry.path), |dir| {
                if action == Action::Replace {
                    // Files and symlinks are replaced by rename; a directory in the way must
                    // go, and anything else where a directory belongs.
                    let is_dir = safe::stat(dir, name)?.is_some_and(|found| safe::is_dir(&found));
                    if is_dir != matches!(entry.kind, EntryKind::Dir) {
                        safe::remove_any(dir, name)?;
                        removed += 1;
                    }
                }
                match &entry.kind {
                    EntryKind::Dir => safe::make_dir(dir, name),
                    EntryKind::Symlink { target } => {
                        let staging = staged(|staging| safe::make_symlink(dir, staging, target, entry.mtime))?.0;
                        safe::rename(dir, &staging, name).inspect_err(|_| {
                            let _ = safe::remove_file(dir, &staging);
                        })
                    }
                    EntryKind::File { .. } => Ok(()),
                }
            })
            .map_err(io_error(&plan.paths[index]))?;
    }
    for removal in stale_staging {
        let entry = &manifest.entries[removal.dir];
        let gone = resolver
            .with_dir(entry.mount, &entry.path, |dir| removed_if_there(safe::remove_file(dir, &removal.name)))
            .map_err(io_error(&removal.path))?;
        removed += u64::from(gone);
    }
    Ok((roots, removed))
}

/// The directories whose contents a restore changes (the parents of entries not kept).
fn changed_parents(plan: &TreePlan) -> impl Iterator<Item = usize> + '_ {
    plan.actions.iter().zip(&plan.parents).filter(|(action, _)| **action != Action::Keep).filter_map(|(_, p)| *p)
}

/// Opens a mount's root directory, making it a directory first if it is not one.
///
/// Restored where it was saved from, the root is the user's own path and may go through their
/// symlinks. Restored under a destination, every component below the destination is a real
/// directory or is refused.
fn open_root(target: &RestoreTarget, mount: &Mount, path: &Path, action: Action) -> std::io::Result<OwnedFd> {
    match target {
        RestoreTarget::Original(_) => {
            if action == Action::Replace {
                // A file, or a link to one: unlinking never follows.
                fs::remove_file(path)?;
            }
            fs::create_dir_all(path)?;
            safe::open_dir_path(path)
        }
        RestoreTarget::Under(destination) => {
            fs::create_dir_all(destination)?;
            let mut directory = safe::open_dir_path(destination)?;
            let components: Vec<&[u8]> =
                mount.path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
            for (position, name) in components.iter().enumerate() {
                match safe::stat(directory.as_fd(), name)? {
                    Some(found) if safe::is_dir(&found) => {}
                    Some(_) if position + 1 < components.len() => {
                        return Err(std::io::Error::other(format!(
                            "{:?} below the destination is not a directory; refusing to restore through it",
                            String::from_utf8_lossy(name)
                        )));
                    }
                    Some(_) => {
                        safe::remove_any(directory.as_fd(), name)?;
                        safe::make_dir(directory.as_fd(), name)?;
                    }
                    None => safe::make_dir(directory.as_fd(), name)?,
                }
                directory = safe::open_dir(directory.as_fd(), name)?;
            }
            Ok(directory)
        }
    }
}

/// Finds what a restore removes from the folders that are already there: with `mirror`, every
/// name the manifest does not have; without, the staging files and links a killed restore left
/// in the folders this one changes (they never carry a final name, but they take space; two
/// restores into the same tree at once are not supported, so any staging entry found there is
/// stale). Returns the stale staging entries and the other strays. Lists through paths, which
/// is only advice: execution removes through no-follow handles.
///
/// # Errors
/// [`RestoreError::Io`] when a folder cannot be listed.
fn find_removals(
    manifest: &Manifest,
    plan: &TreePlan,
    mirror: bool,
) -> Result<(Vec<Removal>, Vec<Removal>), RestoreError> {
    let known: HashSet<(u32, &[u8])> = manifest.entries.iter().map(|e| (e.mount, e.path.as_slice())).collect();
    let changed: HashSet<usize> = changed_parents(plan).collect();
    // Listing is the cost (one per folder), so it runs in parallel. Folders to create are empty.
    let found = manifest
        .entries
        .par_iter()
        .enumerate()
        .filter(|(index, entry)| {
            matches!(entry.kind, EntryKind::Dir)
                && matches!(plan.actions[*index], Action::Keep | Action::Touch)
                && (mirror || changed.contains(index))
        })
        .map(|(index, entry)| {
            let path = &plan.paths[index];
            let mut names = Vec::new();
            for found in fs::read_dir(path).map_err(io_error(path))? {
                let name = found.map_err(io_error(path))?.file_name().into_vec();
                if !known.contains(&(entry.mount, child_path(&entry.path, &name).as_slice())) {
                    names.push(name);
                }
            }
            names.sort_unstable();
            Ok(names.into_iter().map(|name| (index, name)).collect::<Vec<_>>())
        })
        .collect::<Result<Vec<_>, RestoreError>>()?;
    let (mut stale_staging, mut strays) = (Vec::new(), Vec::new());
    for (dir, name) in found.into_iter().flatten() {
        let removal = Removal { dir, path: plan.paths[dir].join(OsStr::from_bytes(&name)), name };
        if changed.contains(&dir) && is_staging_name(&removal.name) {
            stale_staging.push(removal);
        } else if mirror {
            strays.push(removal);
        }
    }
    Ok((stale_staging, strays))
}

/// Whether a removal happened: an entry that vanished since planning is fine.
fn removed_if_there(result: std::io::Result<()>) -> std::io::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

fn child_path(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = parent.to_vec();
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

const STAGING_PREFIX: &str = ".ccpart-";

/// Whether `name` is exactly a staging name: `.ccpart-PID-N`.
fn is_staging_name(name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(STAGING_PREFIX.as_bytes()) else {
        return false;
    };
    let mut parts = rest.split(|&b| b == b'-');
    let number = |part: Option<&[u8]>| part.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
    number(parts.next()) && number(parts.next()) && parts.next().is_none()
}

/// Creates a staging entry with `create`, under a name unique to this process that fits any
/// file system (at most 29 bytes, whatever the final name's length). A name that is taken (a
/// cached file can look like one) is skipped. Returns the name and what `create` made.
fn staged<T>(mut create: impl FnMut(&[u8]) -> std::io::Result<T>) -> std::io::Result<(Vec<u8>, T)> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{STAGING_PREFIX}{}-{n}", std::process::id()).into_bytes();
        match create(&name) {
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            result => return result.map(|made| (name, made)),
        }
    }
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
    key: &str,
    manifest: &Arc<Manifest>,
    plan: &Arc<TreePlan>,
    roots: &Arc<Vec<OwnedFd>>,
    concurrency: usize,
    progress: &dyn Progress,
) -> Result<u64, RestoreError> {
    let mut senders = Vec::with_capacity(WRITERS);
    let mut writers = Vec::with_capacity(WRITERS);
    for _ in 0..WRITERS {
        let (sender, receiver) = mpsc::channel::<Piece>(PIECES_QUEUED);
        senders.push(sender);
        let (manifest, plan, roots) = (manifest.clone(), plan.clone(), roots.clone());
        writers.push(tokio::task::spawn_blocking(move || write_pieces(&manifest, &plan, roots, receiver)));
    }
    let dispatched = dispatch(store, key, manifest, plan, concurrency, &senders, progress).await;
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
    key: &str,
    manifest: &Manifest,
    plan: &TreePlan,
    concurrency: usize,
    senders: &[mpsc::Sender<Piece>],
    progress: &dyn Progress,
) -> Result<u64, RestoreError> {
    let offsets = &manifest.chunk_offsets();
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
    let fetched = std::sync::atomic::AtomicU64::new(0);
    let fetch = |chunk: usize| {
        let store = store.clone();
        let ChunkRef { id, len, .. } = manifest.chunks[chunk];
        let fetched = &fetched;
        async move {
            fetched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // A chunk found missing or corrupt is recorded (best effort) so that the next save
            // uploads it again: "save the cache again to repair it" is then true.
            let data = match store.get_chunk_verified(id).await {
                Ok(Some(data)) => data,
                Ok(None) => {
                    let _ = store.mark_damaged(id).await;
                    return Err(RestoreError::MissingChunk { id, path: user_of(chunk) });
                }
                Err(ChunkReadError::Corrupt(source)) => {
                    let _ = store.mark_damaged(id).await;
                    return Err(RestoreError::Corrupt { source, path: user_of(chunk) });
                }
                Err(ChunkReadError::Store(err)) => return Err(err.into()),
            };
            if data.len() != len as usize {
                return Err(RestoreError::WrongLength { id, key: key.to_string(), expected: len, actual: data.len() });
            }
            Ok(data)
        }
    };
    // Chunks are fetched and kept as the plan decided ([`ChunkSource`]).
    let firsts: Vec<usize> =
        plan.uses.iter().filter(|use_| use_.source == ChunkSource::Ahead).map(|use_| use_.chunk).collect();
    let mut ahead = futures::stream::iter(firsts.into_iter().map(fetch)).buffered(concurrency);
    let mut kept = HashMap::<ChunkId, Bytes>::new();
    let mut next_file = 0;
    let mut active: Vec<usize> = Vec::new();
    for &ChunkUse { chunk, source, keep, release } in &plan.uses {
        let id = manifest.chunks[chunk].id;
        let data = match source {
            ChunkSource::Kept => kept.get(&id).expect("kept by an earlier use").clone(),
            ChunkSource::Ahead => ahead.next().await.expect("one fetch per first use")?,
            ChunkSource::Again => fetch(chunk).await?,
        };
        if release {
            kept.remove(&id);
        } else if keep {
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

/// One writer thread: appends pieces to staging files, and on a file's last piece sets its
/// mode and mtime and renames it into place. On failure, removes its staging files.
fn write_pieces(
    manifest: &Manifest,
    plan: &TreePlan,
    roots: Arc<Vec<OwnedFd>>,
    mut receiver: mpsc::Receiver<Piece>,
) -> Result<(), RestoreError> {
    let mut resolver = Resolver::new(roots);
    let mut open: HashMap<usize, (File, Vec<u8>)> = HashMap::new();
    let parent_of_job = |job: &FileJob| {
        let entry = &manifest.entries[job.entry];
        (entry.mount, parent_of(&entry.path))
    };
    let result = (|| {
        while let Some(piece) = receiver.blocking_recv() {
            let job = &plan.files[piece.file];
            let (mount, parent) = parent_of_job(job);
            let (file, _) = match open.entry(piece.file) {
                std::collections::hash_map::Entry::Occupied(slot) => slot.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    let (staging, file) = resolver
                        .with_dir(mount, parent, |dir| staged(|name| safe::create_file(dir, name)))
                        .map_err(io_error(&job.path))?;
                    slot.insert((file, staging))
                }
            };
            file.write_all(&piece.data[piece.range]).map_err(io_error(&job.path))?;
            if piece.last {
                let (file, staging) = open.remove(&piece.file).expect("opened above");
                let name = safe::file_name(&manifest.entries[job.entry].path);
                resolver
                    .with_dir(mount, parent, |dir| {
                        safe::set_mode_and_mtime(&file, job.mode, job.mtime)
                            .and_then(|()| {
                                drop(file);
                                safe::rename(dir, &staging, name)
                            })
                            .inspect_err(|_| {
                                let _ = safe::remove_file(dir, &staging);
                            })
                    })
                    .map_err(io_error(&job.path))?;
            }
        }
        Ok(())
    })();
    for (file, (_, staging)) in open.drain() {
        let (mount, parent) = parent_of_job(&plan.files[file]);
        let _ = resolver.with_dir(mount, parent, |dir| safe::remove_file(dir, &staging));
    }
    result
}

/// Removes the strays found at planning, each through its folder's no-follow handle; then
/// sets directory modes and mtimes, deepest first (writing into a directory changes its mtime).
/// Returns entries removed.
fn finish_tree(
    manifest: &Manifest,
    plan: &TreePlan,
    roots: &Arc<Vec<OwnedFd>>,
    strays: &[Removal],
) -> Result<u64, RestoreError> {
    let mut removed = 0;
    let mut resolver = Resolver::new(roots.clone());
    let mut changed: HashSet<usize> = changed_parents(plan).collect();
    for stray in strays {
        let entry = &manifest.entries[stray.dir];
        let gone = resolver
            .with_dir(entry.mount, &entry.path, |dir| {
                safe::make_owner_accessible(dir)?;
                removed_if_there(safe::remove_any(dir, &stray.name))
            })
            .map_err(io_error(&stray.path))?;
        removed += u64::from(gone);
        changed.insert(stray.dir);
    }
    for (index, entry) in manifest.entries.iter().enumerate().rev() {
        if !matches!(entry.kind, EntryKind::Dir) || (plan.actions[index] == Action::Keep && !changed.contains(&index)) {
            continue;
        }
        resolver
            .with_dir(entry.mount, &entry.path, |dir| safe::set_mode_and_mtime(dir, entry.mode, entry.mtime))
            .map_err(io_error(&plan.paths[index]))?;
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

    /// A folder swapped for a symlink between planning and execution (or planned wrongly by
    /// any bug) is never written, chmod'ed or emptied through: execution reaches entries only
    /// through handles that refuse links.
    #[test]
    fn execution_never_goes_through_a_symlink_even_when_the_plan_did_not_see_it() {
        use crate::core::manifest::tests::sample;
        let scratch = tempfile::tempdir().unwrap();
        let (target, outside) = (scratch.path().join("out"), scratch.path().join("outside"));
        let mut manifest = sample();
        manifest.entries.retain(|e| matches!(e.kind, EntryKind::Dir | EntryKind::Symlink { .. }));
        manifest.entries.push(Entry { path: b"d/sub".to_vec(), ..manifest.entries[1].clone() });
        manifest.validate().unwrap();
        fs::create_dir_all(target.join("caches/d")).unwrap();
        let target = RestoreTarget::Under(target);
        let plan = plan(&manifest, &target).unwrap();
        assert_eq!(plan.actions[3], Action::Create, "d/sub is missing");

        let restored_d = scratch.path().join("out/caches/d");
        fs::remove_dir(&restored_d).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("victim"), b"keep").unwrap();
        std::os::unix::fs::symlink(&outside, &restored_d).unwrap();

        // Planned after the swap, the mirror listing sees the victim through the link.
        let (_, strays) = find_removals(&manifest, &plan, true).unwrap();
        let failed = prepare_tree(&manifest, &plan, &target, &[]).unwrap_err();
        assert!(failed.to_string().contains("caches/d"), "{failed}");
        let roots = Arc::new(vec![safe::open_dir_path(&scratch.path().join("out/caches")).unwrap()]);
        assert!(finish_tree(&manifest, &plan, &roots, &strays).is_err());
        let left: Vec<_> = fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["victim"], "nothing created or removed outside");
        assert_eq!(fs::metadata(&outside).unwrap().mode() & 0o7777, 0o755, "mode untouched");
    }

    #[test]
    fn staging_names_are_short_and_exact() {
        let (name, ()) = staged(|_| Ok(())).unwrap();
        assert!(is_staging_name(&name) && name.len() <= 29, "{}", String::from_utf8_lossy(&name));
        for cached in [&b".a.ccpart-1"[..], b".ccpart-1", b".ccpart-1-2-3", b".ccpart-x-1", b"ccpart-1-2"] {
            assert!(!is_staging_name(cached), "{}", String::from_utf8_lossy(cached));
        }
    }
}
