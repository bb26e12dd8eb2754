//! The file-system scan of a save: every entry below the mounts, with its metadata.
//!
//! The walk runs in parallel (`ignore`'s walker, with every ignore-file filter turned off:
//! a cache must hold exactly what is on disk) and the result is sorted, so the manifest and the
//! chunk stream are deterministic. Symlinks are recorded, never followed.
//!
//! An entry's path is held once, relative to its mount and front-coded with the others
//! ([`PathList`]): the scan of a large cache is hundreds of thousands of entries, so the
//! absolute path of a file is joined ([`Scan::absolute`]) only when it is opened or named in a
//! message (issue 9: memory flat in the size of the cache). A save hands the paths on to its
//! manifest as they are.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use globset::GlobSet;
use ignore::{WalkBuilder, WalkState};

use crate::core::manifest::Timestamp;
use crate::core::paths::PathList;

/// What the user asked the scan to leave out.
#[derive(Clone, Debug, Default)]
pub struct WalkOptions {
    /// Globs matched against paths relative to each mount root (`/`-separated).
    pub exclude: Option<GlobSet>,
    /// More globs for single mounts, by mount index (a missing or `None` entry adds none).
    pub mount_exclude: Vec<Option<GlobSet>>,
    /// Leave symlinks out instead of recording them.
    pub skip_symlinks: bool,
}

/// One scanned entry; its path is [`Scan::paths`] at the same index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedEntry {
    /// Index of the mount it lies under.
    pub mount: u32,
    /// Permission bits.
    pub mode: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// Kind and kind-specific data.
    pub kind: ScannedKind,
}

/// The kind of a scanned entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScannedKind {
    /// A directory.
    Dir,
    /// A regular file of this many bytes.
    File(u64),
    /// A symlink with this target.
    Symlink(Vec<u8>),
}

/// The result of a scan.
#[derive(Debug, Default)]
pub struct Scan {
    /// The directory each mount was read from, by mount index (a mount that is a symlink is
    /// resolved to what it points to).
    pub roots: Vec<PathBuf>,
    /// Each entry's path relative to its mount root (empty for the root), by entry index.
    pub paths: PathList,
    /// Entries sorted by `(mount, path)`.
    pub entries: Vec<ScannedEntry>,
    /// Entries left out because they cannot be cached (sockets, FIFOs, devices).
    pub skipped: Vec<PathBuf>,
}

impl Scan {
    /// Where entry `index` is on disk: its mount's root joined with its relative path.
    pub fn absolute(&self, index: usize) -> PathBuf {
        let root = &self.roots[self.entries[index].mount as usize];
        let path = self.paths.get(index);
        if path.is_empty() { root.clone() } else { root.join(std::ffi::OsStr::from_bytes(&path)) }
    }
}

/// A scan that could not complete.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// A mount does not exist.
    #[error("{path}: no such file or directory; check the mount path")]
    MissingMount {
        /// The mount as given.
        path: PathBuf,
    },
    /// An entry could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The entry.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Scans `mounts` in parallel.
///
/// # Errors
/// [`WalkError`] for a missing mount or an unreadable entry: a cache must not silently miss
/// files.
pub fn scan(mounts: &[PathBuf], options: &WalkOptions) -> Result<Scan, WalkError> {
    let found = Mutex::new(Found::default());
    let skipped = Mutex::new(Vec::new());
    let errors = Mutex::new(Vec::new());
    let mut roots = Vec::with_capacity(mounts.len());
    for (index, given) in mounts.iter().enumerate() {
        let Ok(metadata) = std::fs::symlink_metadata(given) else {
            return Err(WalkError::MissingMount { path: given.clone() });
        };
        // A mount that is itself a symlink (a cache folder linked to another disk) is followed:
        // the cache is what it points to. Symlinks below it are recorded, never followed.
        let root = if metadata.file_type().is_symlink() {
            std::fs::canonicalize(given).map_err(|_| WalkError::MissingMount { path: given.clone() })?
        } else {
            given.clone()
        };
        roots.push(root);
        let root = &roots[index];
        WalkBuilder::new(root).standard_filters(false).follow_links(false).threads(2).build_parallel().run(|| {
            Box::new(|result| {
                let entry = match result {
                    Ok(entry) => entry,
                    Err(err) => {
                        errors.lock().unwrap().push(walk_error(root, err));
                        return WalkState::Continue;
                    }
                };
                let relative = entry.path().strip_prefix(root).unwrap_or(Path::new(""));
                let relative = relative.as_os_str().as_bytes();
                let mount_exclude = options.mount_exclude.get(index).and_then(Option::as_ref);
                if !relative.is_empty()
                    && [options.exclude.as_ref(), mount_exclude]
                        .into_iter()
                        .flatten()
                        .any(|set| set.is_match(Path::new(std::ffi::OsStr::from_bytes(relative))))
                {
                    return WalkState::Skip;
                }
                match scan_one(index as u32, entry.path(), options) {
                    Ok(Some(scanned)) => found.lock().unwrap().push(relative, scanned),
                    Ok(None) => skipped.lock().unwrap().push(entry.path().to_path_buf()),
                    Err(err) => errors.lock().unwrap().push(err),
                }
                WalkState::Continue
            })
        });
    }
    if let Some(err) = errors.into_inner().unwrap().into_iter().next() {
        return Err(err);
    }
    let (paths, entries) = found.into_inner().unwrap().sorted();
    let mut skipped = skipped.into_inner().unwrap();
    skipped.sort();
    Ok(Scan { roots, paths, entries, skipped })
}

/// What the walk found, in the order it found it: every path in one buffer, not one allocation
/// each. Half a million small allocations, freed once the scan is sorted, would stay in the
/// process's heap for the rest of a save (80 MiB at 8 GB), where the large buffers that follow
/// (packs) cannot reuse them; these few large buffers go back to the system when dropped.
#[derive(Default)]
struct Found {
    paths: Vec<u8>,
    /// Each entry with where its path lies in `paths`.
    entries: Vec<(usize, usize, ScannedEntry)>,
}

impl Found {
    fn push(&mut self, path: &[u8], entry: ScannedEntry) {
        self.entries.push((self.paths.len(), path.len(), entry));
        self.paths.extend_from_slice(path);
    }

    /// The paths front-coded and the entries, sorted by `(mount, path)`.
    fn sorted(mut self) -> (PathList, Vec<ScannedEntry>) {
        let paths = &self.paths;
        let path = |&(start, len, _): &(usize, usize, ScannedEntry)| &paths[start..start + len];
        self.entries.sort_unstable_by(|a, b| (a.2.mount, path(a)).cmp(&(b.2.mount, path(b))));
        let mut list = PathList::new();
        for found in &self.entries {
            list.push(path(found));
        }
        list.shrink_to_fit();
        (list, self.entries.into_iter().map(|(_, _, entry)| entry).collect())
    }
}

fn walk_error(root: &Path, err: ignore::Error) -> WalkError {
    let path = match &err {
        ignore::Error::WithPath { path, .. } => path.clone(),
        _ => root.to_path_buf(),
    };
    let source = err.into_io_error().unwrap_or_else(|| std::io::Error::other("walk failed"));
    WalkError::Io { path, source }
}

/// Reads one entry's metadata; `Ok(None)` for kinds a cache cannot hold, or skipped symlinks.
fn scan_one(mount: u32, absolute: &Path, options: &WalkOptions) -> Result<Option<ScannedEntry>, WalkError> {
    let io = |source| WalkError::Io { path: absolute.to_path_buf(), source };
    let metadata = std::fs::symlink_metadata(absolute).map_err(io)?;
    let file_type = metadata.file_type();
    let kind = if file_type.is_dir() {
        ScannedKind::Dir
    } else if file_type.is_file() {
        ScannedKind::File(metadata.len())
    } else if file_type.is_symlink() {
        if options.skip_symlinks {
            return Ok(None);
        }
        ScannedKind::Symlink(std::fs::read_link(absolute).map_err(io)?.as_os_str().as_bytes().to_vec())
    } else {
        debug_assert!(
            file_type.is_fifo() || file_type.is_socket() || file_type.is_block_device() || file_type.is_char_device()
        );
        return Ok(None);
    };
    Ok(Some(ScannedEntry {
        mount,
        mode: metadata.mode() & 0o7777,
        mtime: Timestamp { secs: metadata.mtime(), nanos: metadata.mtime_nsec() as u32 },
        kind,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_is_sorted_records_symlinks_and_honours_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("m");
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::write(root.join("a.txt"), b"hello").unwrap();
        std::fs::write(root.join("b/c/x.lock"), b"").unwrap();
        std::os::unix::fs::symlink("../a.txt", root.join("b/link")).unwrap();
        let scan_paths = |options: &WalkOptions| -> Vec<String> {
            scan(std::slice::from_ref(&root), options)
                .unwrap()
                .paths
                .iter()
                .map(|p| String::from_utf8(p).unwrap())
                .collect()
        };
        assert_eq!(scan_paths(&WalkOptions::default()), ["", "a.txt", "b", "b/c", "b/c/x.lock", "b/link"]);
        let mut exclude = globset::GlobSetBuilder::new();
        exclude.add(globset::Glob::new("**/*.lock").unwrap());
        let options =
            WalkOptions { exclude: Some(exclude.build().unwrap()), skip_symlinks: true, ..WalkOptions::default() };
        assert_eq!(scan_paths(&options), ["", "a.txt", "b", "b/c"]);
        let entries = scan(std::slice::from_ref(&root), &WalkOptions::default()).unwrap().entries;
        assert_eq!(entries[1].kind, ScannedKind::File(5));
        assert_eq!(entries[5].kind, ScannedKind::Symlink(b"../a.txt".to_vec()));
    }

    #[test]
    fn a_mount_that_is_a_symlink_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("real/sub")).unwrap();
        std::fs::write(dir.path().join("real/sub/f"), b"x").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let scanned = scan(&[dir.path().join("link")], &WalkOptions::default()).unwrap();
        assert_eq!(scanned.paths.iter().collect::<Vec<_>>(), [&b""[..], b"sub", b"sub/f"]);
        assert_eq!(scanned.entries[0].kind, ScannedKind::Dir);
        assert_eq!(scanned.absolute(2), dir.path().join("real/sub/f"));
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink("nowhere", &dangling).unwrap();
        assert!(matches!(scan(&[dangling], &WalkOptions::default()), Err(WalkError::MissingMount { .. })));
    }

    #[test]
    fn a_missing_mount_is_a_clear_error() {
        let err = scan(&[PathBuf::from("/nonexistent/chunkcache")], &WalkOptions::default()).unwrap_err();
        assert!(err.to_string().contains("check the mount path"), "{err}");
    }
}
