//! The tree writer: carries out a [`TreePlan`] below a restore's mount roots.
//!
//! Everything is reached through directory handles that refuse symlinks ([`crate::fs::safe`]),
//! whatever planning saw through paths. Files are written under a staging name in their final
//! folder and renamed into place only when complete, with mode and mtime already set; folders get
//! their saved mode and mtime last, deepest first. Mirror strays found at planning are removed
//! through their folder's handle, and one that vanished since is fine.
//!
//! Per-entry state is small and holds no path (issue 9: memory flat in the size of the cache):
//! the manifest holds each relative path once, and an entry's path on disk is joined from its
//! mount's root ([`TreePlan::path_of`]) only to list a folder or to name it in a message.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rayon::prelude::*;
use tokio::sync::mpsc;

use crate::core::manifest::{Entry, EntryKind, Manifest, Mount, parent_of};
use crate::fs::safe::{self, Resolver};

/// A file-system operation on the restored tree failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}")]
pub struct TreeError {
    /// The path involved.
    pub path: PathBuf,
    /// The cause.
    pub source: std::io::Error,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TreeError + '_ {
    move |source| TreeError { path: path.to_path_buf(), source }
}

/// Where restored mounts land.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreTarget {
    /// Each mount at the path it was saved from; relative paths are taken against this directory.
    Original(PathBuf),
    /// Each mount below this directory, at its saved path made relative (`/a/b` → `DIR/a/b`).
    Under(PathBuf),
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

/// Work on the local tree computed from a manifest, not yet done.
#[derive(Debug)]
pub struct TreePlan {
    /// Where each mount's root lands on disk, by mount index.
    pub roots: Vec<PathBuf>,
    /// The index of every entry's parent directory entry; `None` for a mount root.
    pub parents: Vec<Option<u32>>,
    /// What to do per entry, by entry index.
    pub actions: Vec<Action>,
    /// Entries whose thing in the way is removed rather than renamed over (a folder where a
    /// file or symlink belongs, anything else where a folder belongs, a mount root that is not
    /// a folder), by entry index.
    pub conflicts: Vec<usize>,
    /// Files to write, sorted by stream offset.
    pub files: Vec<FileJob>,
    /// Indices of the chunks those files need, ascending.
    pub chunks: Vec<usize>,
}

impl TreePlan {
    /// Where `entry` (of the planned manifest) lands on disk, for listing and messages.
    pub fn path_of(&self, entry: &Entry) -> PathBuf {
        entry_path(&self.roots, entry)
    }
}

/// Where `entry` lands on disk, given where each mount's root lands.
pub fn entry_path(roots: &[PathBuf], entry: &Entry) -> PathBuf {
    let root = &roots[entry.mount as usize];
    if entry.path.is_empty() { root.clone() } else { root.join(OsStr::from_bytes(&entry.path)) }
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

/// One file to write; its name, mode and mtime are its manifest entry's.
#[derive(Clone, Debug)]
pub struct FileJob {
    /// Entry index.
    pub entry: usize,
    /// Stream extent start.
    pub offset: u64,
    /// Length.
    pub size: u64,
}

/// Opens every mount root (creating what is missing), then removes what is in the way and
/// creates directories and symlinks, parents first, all through directory handles that
/// refuse symlinks; removes the stale staging entries planned (one gone since is skipped).
/// Returns the root handles, by mount, and the number of entries removed.
///
/// # Errors
/// [`TreeError`] naming the first path that could not be made as planned.
pub fn prepare_tree(
    manifest: &Manifest,
    plan: &TreePlan,
    target: &RestoreTarget,
    stale_staging: &[Removal],
) -> Result<(Arc<Vec<OwnedFd>>, u64), TreeError> {
    let mut removed = 0;
    let mut roots = Vec::with_capacity(manifest.mounts.len());
    for (index, entry) in manifest.entries.iter().enumerate().filter(|(_, e)| e.path.is_empty()) {
        let path = plan.path_of(&entry);
        if plan.actions[index] == Action::Replace {
            removed += 1;
        }
        let root = open_root(target, &manifest.mounts[entry.mount as usize], &path, plan.actions[index])
            .map_err(io_error(&path))?;
        roots.push(root);
    }
    let roots = Arc::new(roots);
    let mut resolver = Resolver::new(roots.clone());
    // Folders that stay but get new contents may have been saved read-only: make them
    // writable while working; `finish_tree` sets their saved mode again.
    let receiving = changed_dirs(plan);
    for index in (0..receiving.len())
        .filter(|&index| receiving[index] && matches!(plan.actions[index], Action::Keep | Action::Touch))
    {
        let entry = manifest.entries.get(index);
        resolver
            .with_dir(entry.mount, &entry.path, |dir| safe::make_owner_accessible(dir))
            .map_err(|source| TreeError { path: plan.path_of(&entry), source })?;
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
            .map_err(|source| TreeError { path: plan.path_of(&entry), source })?;
    }
    for removal in stale_staging {
        let entry = manifest.entries.get(removal.dir);
        let gone = resolver
            .with_dir(entry.mount, &entry.path, |dir| removed_if_there(safe::remove_file(dir, &removal.name)))
            .map_err(io_error(&removal.path))?;
        removed += u64::from(gone);
    }
    Ok((roots, removed))
}

/// Whether a restore changes the contents of each entry, by entry index: true for the parents
/// of the entries not kept.
fn changed_dirs(plan: &TreePlan) -> Vec<bool> {
    let mut changed = vec![false; plan.actions.len()];
    for (_, parent) in plan.actions.iter().zip(&plan.parents).filter(|(action, _)| **action != Action::Keep) {
        if let Some(parent) = parent {
            changed[*parent as usize] = true;
        }
    }
    changed
}

/// Whether the manifest has an entry at `path` of `mount`: a binary search, since entries are
/// sorted by `(mount, path)` (checked on decode), so no index of every path is built.
fn has_entry(manifest: &Manifest, mount: u32, path: &[u8]) -> bool {
    manifest.entries.position(mount, path).is_some()
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
/// [`TreeError`] when a folder cannot be listed.
pub fn find_removals(
    manifest: &Manifest,
    plan: &TreePlan,
    mirror: bool,
) -> Result<(Vec<Removal>, Vec<Removal>), TreeError> {
    let changed = changed_dirs(plan);
    // How many of each folder's entries planning found there: a folder listing as many names
    // has no other name, and is not looked at name by name.
    let mut present = vec![0u32; plan.parents.len()];
    for (parent, action) in plan.parents.iter().zip(&plan.actions) {
        if let Some(parent) = parent
            && *action != Action::Create
        {
            present[*parent as usize] += 1;
        }
    }
    // Listing is the cost (one per folder), so it runs in parallel. Folders to create are empty.
    let found = (0..manifest.entries.len())
        .into_par_iter()
        .filter(|&index| {
            matches!(manifest.entries.kind(index), EntryKind::Dir)
                && matches!(plan.actions[index], Action::Keep | Action::Touch)
                && (mirror || changed[index])
        })
        .map(|index| {
            let entry = manifest.entries.get(index);
            let path = &plan.path_of(&entry);
            if count_names(path).map_err(io_error(path))? == u64::from(present[index]) {
                return Ok(Vec::new());
            }
            let mut names = Vec::new();
            for found in fs::read_dir(path).map_err(io_error(path))? {
                let name = found.map_err(io_error(path))?.file_name().into_vec();
                if !has_entry(manifest, entry.mount, &child_path(&entry.path, &name)) {
                    names.push(name);
                }
            }
            names.sort_unstable();
            Ok(names.into_iter().map(|name| (index, name)).collect::<Vec<_>>())
        })
        .collect::<Result<Vec<_>, TreeError>>()?;
    let (mut stale_staging, mut strays) = (Vec::new(), Vec::new());
    for (dir, name) in found.into_iter().flatten() {
        let path = plan.path_of(&manifest.entries.get(dir)).join(OsStr::from_bytes(&name));
        let removal = Removal { dir, path, name };
        if changed[dir] && is_staging_name(&removal.name) {
            stale_staging.push(removal);
        } else if mirror {
            strays.push(removal);
        }
    }
    Ok((stale_staging, strays))
}

/// How many names the folder at `path` has (`.` and `..` aside), read without a copy of each.
fn count_names(path: &Path) -> std::io::Result<u64> {
    let folder = safe::open_dir_path(path)?;
    let mut buffer = [std::mem::MaybeUninit::<u8>::uninit(); 8192];
    let mut listing = rustix::fs::RawDir::new(&folder, &mut buffer);
    let mut names = 0;
    while let Some(found) = listing.next() {
        let found = found?;
        let name = found.file_name().to_bytes();
        names += u64::from(name != b"." && name != b"..");
    }
    Ok(names)
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
    // Read once: `std::process::id` is a system call each time, one per restored file.
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let pid = *PID.get_or_init(std::process::id);
    loop {
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{STAGING_PREFIX}{pid}-{n}").into_bytes();
        match create(&name) {
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            result => return result.map(|made| (name, made)),
        }
    }
}

/// A piece of a chunk for one file.
pub struct Piece {
    /// Index of the file in [`TreePlan::files`].
    pub file: usize,
    /// The chunk.
    pub data: Bytes,
    /// The part of the chunk that belongs to the file, at the file's current end.
    pub range: std::ops::Range<usize>,
    /// Whether this is the file's last piece.
    pub last: bool,
}

/// One writer thread: appends pieces to staging files, and on a file's last piece sets its
/// mode and mtime and renames it into place. On failure, removes its staging files.
///
/// # Errors
/// [`TreeError`] naming the file that could not be written.
pub fn write_pieces(
    manifest: &Manifest,
    plan: &TreePlan,
    roots: Arc<Vec<OwnedFd>>,
    mut receiver: mpsc::Receiver<Piece>,
) -> Result<(), TreeError> {
    let mut resolver = Resolver::new(roots);
    // Each file being written, with its staging name and its entry (read out once).
    let mut open: HashMap<usize, (File, Vec<u8>, Entry)> = HashMap::new();
    let result = (|| {
        while let Some(piece) = receiver.blocking_recv() {
            let (file, _, entry) = match open.entry(piece.file) {
                std::collections::hash_map::Entry::Occupied(slot) => slot.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    let entry = manifest.entries.get(plan.files[piece.file].entry);
                    let (staging, file) = resolver
                        .with_dir(entry.mount, parent_of(&entry.path), |dir| {
                            staged(|name| safe::create_file(dir, name))
                        })
                        .map_err(|source| TreeError { path: plan.path_of(&entry), source })?;
                    slot.insert((file, staging, entry))
                }
            };
            let failed = |entry: &Entry| {
                let path = plan.path_of(entry);
                move |source| TreeError { path, source }
            };
            file.write_all(&piece.data[piece.range]).map_err(failed(entry))?;
            if piece.last {
                let (file, staging, entry) = open.remove(&piece.file).expect("opened above");
                let (mount, parent, name) = (entry.mount, parent_of(&entry.path), safe::file_name(&entry.path));
                resolver
                    .with_dir(mount, parent, |dir| {
                        safe::set_mode_and_mtime(&file, entry.mode, entry.mtime)
                            .and_then(|()| {
                                drop(file);
                                safe::rename(dir, &staging, name)
                            })
                            .inspect_err(|_| {
                                let _ = safe::remove_file(dir, &staging);
                            })
                    })
                    .map_err(failed(&entry))?;
            }
        }
        Ok(())
    })();
    for (_, (_, staging, entry)) in open.drain() {
        let _ = resolver.with_dir(entry.mount, parent_of(&entry.path), |dir| safe::remove_file(dir, &staging));
    }
    result
}

/// Removes the strays found at planning, each through its folder's no-follow handle; then
/// sets directory modes and mtimes, deepest first (writing into a directory changes its mtime).
/// Returns entries removed.
///
/// # Errors
/// [`TreeError`] naming the first path that could not be removed or set.
pub fn finish_tree(
    manifest: &Manifest,
    plan: &TreePlan,
    roots: &Arc<Vec<OwnedFd>>,
    strays: &[Removal],
) -> Result<u64, TreeError> {
    let mut removed = 0;
    let mut resolver = Resolver::new(roots.clone());
    let mut changed = changed_dirs(plan);
    for stray in strays {
        let entry = manifest.entries.get(stray.dir);
        let gone = resolver
            .with_dir(entry.mount, &entry.path, |dir| {
                if safe::stat(dir, &stray.name)?.is_none() {
                    return Ok(false);
                }
                safe::make_owner_accessible(dir)?;
                removed_if_there(safe::remove_any(dir, &stray.name))
            })
            .map_err(io_error(&stray.path))?;
        removed += u64::from(gone);
        changed[stray.dir] = true;
    }
    for index in (0..manifest.entries.len()).rev() {
        if !matches!(manifest.entries.kind(index), EntryKind::Dir)
            || (plan.actions[index] == Action::Keep && !changed[index])
        {
            continue;
        }
        let entry = manifest.entries.get(index);
        resolver
            .with_dir(entry.mount, &entry.path, |dir| safe::set_mode_and_mtime(dir, entry.mode, entry.mtime))
            .map_err(|source| TreeError { path: plan.path_of(&entry), source })?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::core::manifest::Entry;

    /// A folder swapped for a symlink between planning and execution (or planned wrongly by
    /// any bug) is never written, chmod'ed or emptied through: execution reaches entries only
    /// through handles that refuse links.
    #[test]
    fn execution_never_goes_through_a_symlink_even_when_the_plan_did_not_see_it() {
        use crate::core::manifest::tests::sample;
        use crate::pipeline::restore::plan;
        let scratch = tempfile::tempdir().unwrap();
        let (target, outside) = (scratch.path().join("out"), scratch.path().join("outside"));
        let mut manifest = sample();
        crate::core::manifest::tests::edit(&mut manifest, |entries| {
            entries.retain(|e| matches!(e.kind, EntryKind::Dir | EntryKind::Symlink { .. }));
            entries.push(Entry { path: b"d/sub".to_vec(), ..entries[1].clone() });
        });
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

    /// Mirror strays are found at planning and re-checked at execution: one that vanished in
    /// between is skipped, not an error, and is not counted.
    #[test]
    fn a_stray_that_vanished_since_planning_is_skipped() {
        use crate::core::manifest::tests::sample;
        use crate::pipeline::restore::plan;
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("out");
        let mut manifest = sample();
        crate::core::manifest::tests::edit(&mut manifest, |entries| {
            entries.retain(|e| matches!(e.kind, EntryKind::Dir))
        });
        manifest.validate().unwrap();
        let target = RestoreTarget::Under(out.clone());
        let tree = plan(&manifest, &target).unwrap();
        let (roots, _) = prepare_tree(&manifest, &tree, &target, &[]).unwrap();
        finish_tree(&manifest, &tree, &roots, &[]).unwrap();
        fs::write(out.join("caches/d/vanishes"), b"").unwrap();
        fs::create_dir_all(out.join("caches/stray/inner")).unwrap();

        let tree = plan(&manifest, &target).unwrap();
        let (stale_staging, strays) = find_removals(&manifest, &tree, true).unwrap();
        assert!(stale_staging.is_empty());
        let found: Vec<&Path> = strays.iter().map(|stray| stray.path.as_path()).collect();
        assert_eq!(found, [out.join("caches/stray"), out.join("caches/d/vanishes")]);
        fs::remove_file(out.join("caches/d/vanishes")).unwrap();
        let (roots, removed) = prepare_tree(&manifest, &tree, &target, &stale_staging).unwrap();
        assert_eq!(removed, 0);
        assert_eq!(finish_tree(&manifest, &tree, &roots, &strays).unwrap(), 1, "only the stray still there");
        assert!(!out.join("caches/stray").exists());
    }

    #[test]
    fn names_are_counted_without_dot_entries() {
        let scratch = tempfile::tempdir().unwrap();
        assert_eq!(count_names(scratch.path()).unwrap(), 0);
        fs::write(scratch.path().join("file"), b"").unwrap();
        fs::create_dir(scratch.path().join("dir")).unwrap();
        std::os::unix::fs::symlink("nowhere", scratch.path().join("link")).unwrap();
        for n in 0..500 {
            fs::write(scratch.path().join(format!("a-rather-long-name-to-fill-the-buffer-{n:04}")), b"").unwrap();
        }
        assert_eq!(count_names(scratch.path()).unwrap(), 503, "more than one buffer of names");
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
