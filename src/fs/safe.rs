//! File-system operations below a directory that never follow a symbolic link.
//!
//! A restore writes what a store says, and a store can be damaged or hostile. Checking a path
//! before acting on it leaves a window in which a directory can become a symlink, and a check
//! that follows links (`Path::is_dir`) lets a link pass for a directory (issue 7: a restore
//! wrote, chmod'ed and deleted outside its destination that way). So nothing here takes a path
//! below a restore root: every operation names one entry by a directory handle and a single
//! name, and every directory handle is opened with `O_NOFOLLOW | O_DIRECTORY` from its parent's
//! handle ([`open_dir`]). A symlink anywhere below the root makes the operation fail with
//! `ELOOP`/`ENOTDIR`; it is never traversed. Only the root itself is opened by path
//! ([`open_dir_path`]): it is the user's choice, and may be their own symlink.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use rustix::fs::Timespec;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps};

use crate::core::manifest::{Timestamp, parent_of};

const DIRECTORY_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);
/// Permission bits a restore needs on a directory it works in (owner read, write, search).
pub const OWNER_ALL: u32 = 0o700;

fn name_of(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

/// Opens directory `name` of `parent`. Fails if it is a symlink or not a directory.
///
/// # Errors
/// The system error (`ELOOP` or `ENOTDIR` for a symlink, `ENOENT` when missing).
pub fn open_dir(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(parent, name_of(name), DIRECTORY_FLAGS, Mode::empty())?)
}

/// Opens the directory at `path`, following symlinks in `path` itself: only for roots the user
/// named.
///
/// # Errors
/// The system error.
pub fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::open(path, flags, Mode::empty())?)
}

/// What is at `name` in `parent`, without following a symlink; `None` if nothing is.
///
/// # Errors
/// The system error, other than "not found".
pub fn stat(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(parent, name_of(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(stat)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Whether a stat describes a directory (a symlink to one is not).
pub fn is_dir(stat: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode) == FileType::Directory
}

/// The modification time of a stat.
pub fn mtime_of(stat: &rustix::fs::Stat) -> Timestamp {
    Timestamp { secs: stat.st_mtime, nanos: stat.st_mtime_nsec as u32 }
}

/// Creates directory `name` in `parent`, owner-accessible while the restore works in it (the
/// saved mode is set when it is finished). An existing real directory is accepted.
///
/// # Errors
/// The system error; a symlink or file at `name` is an error.
pub fn make_dir(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rustix::fs::mkdirat(parent, name_of(name), Mode::from_raw_mode(OWNER_ALL)) {
        Err(rustix::io::Errno::EXIST) => open_dir(parent, name).map(drop),
        other => Ok(other?),
    }
}

/// Creates a new file `name` in `parent` for writing; fails if anything is there.
///
/// # Errors
/// The system error (`EEXIST` when the name is taken).
pub fn create_file(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::openat(parent, name_of(name), flags, Mode::from_raw_mode(0o600))?))
}

fn timestamps(mtime: Timestamp) -> Timestamps {
    let time = Timespec { tv_sec: mtime.secs, tv_nsec: i64::from(mtime.nanos) };
    Timestamps { last_access: time, last_modification: time }
}

/// Sets the permission bits and modification time of an open file or directory.
///
/// # Errors
/// The system error.
pub fn set_mode_and_mtime(handle: impl AsFd, mode: u32, mtime: Timestamp) -> io::Result<()> {
    rustix::fs::fchmod(&handle, Mode::from_raw_mode(mode))?;
    Ok(rustix::fs::futimens(&handle, &timestamps(mtime))?)
}

/// Makes an open directory owner-accessible if it is not, so a restore can work in a folder
/// that was saved read-only (its saved mode is set again when the restore finishes).
///
/// # Errors
/// The system error.
pub fn make_owner_accessible(directory: impl AsFd) -> io::Result<()> {
    let mode = rustix::fs::fstat(&directory)?.st_mode & 0o7777;
    if mode & OWNER_ALL != OWNER_ALL {
        rustix::fs::fchmod(&directory, Mode::from_raw_mode(mode | OWNER_ALL))?;
    }
    Ok(())
}

/// Creates symlink `name` in `parent` pointing at `target`, with modification time `mtime`.
///
/// # Errors
/// The system error (`EEXIST` when the name is taken).
pub fn make_symlink(parent: BorrowedFd<'_>, name: &[u8], target: &[u8], mtime: Timestamp) -> io::Result<()> {
    rustix::fs::symlinkat(name_of(target), parent, name_of(name))?;
    Ok(rustix::fs::utimensat(parent, name_of(name), &timestamps(mtime), AtFlags::SYMLINK_NOFOLLOW)?)
}

/// The target of symlink `name` in `parent`.
///
/// # Errors
/// The system error.
pub fn read_link(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<u8>> {
    Ok(rustix::fs::readlinkat(parent, name_of(name), Vec::new())?.into_bytes())
}

/// Renames `from` to `to`, both in `parent`, replacing a file or symlink at `to`.
///
/// # Errors
/// The system error.
pub fn rename(parent: BorrowedFd<'_>, from: &[u8], to: &[u8]) -> io::Result<()> {
    Ok(rustix::fs::renameat(parent, name_of(from), parent, name_of(to))?)
}

/// Removes the file or symlink `name` of `parent`.
///
/// # Errors
/// The system error.
pub fn remove_file(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(parent, name_of(name), AtFlags::empty())?)
}

/// Removes whatever is at `name` of `parent`: a file or symlink, or a directory with
/// everything in it. Links are removed, never followed; read-only directories are made
/// writable first.
///
/// # Errors
/// The system error.
pub fn remove_any(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match stat(parent, name)? {
        Some(found) if is_dir(&found) => {
            let directory = open_dir(parent, name)?;
            make_owner_accessible(&directory)?;
            for child in list(directory.as_fd())? {
                remove_any(directory.as_fd(), &child)?;
            }
            drop(directory);
            Ok(rustix::fs::unlinkat(parent, name_of(name), AtFlags::REMOVEDIR)?)
        }
        Some(_) => remove_file(parent, name),
        None => Ok(()),
    }
}

/// The names in an open directory, without `.` and `..`.
///
/// # Errors
/// The system error.
pub fn list(directory: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(directory)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// Directory handles below a set of roots (one per mount), opened component by component
/// without following links, and cached so that a run of files in one folder costs one open.
#[derive(Debug)]
pub struct Resolver {
    roots: Arc<Vec<OwnedFd>>,
    /// Open handles by mount, then by path (so a lookup borrows the path: no allocation per file).
    cache: HashMap<u32, HashMap<Vec<u8>, Arc<OwnedFd>>>,
    cached: usize,
}

/// Handles kept at most; past this the cache starts over (entries arrive in path order, so
/// the folders in use are few at any time).
const CACHED_HANDLES: usize = 256;

impl Resolver {
    /// A resolver below `roots`, indexed by mount.
    pub fn new(roots: Arc<Vec<OwnedFd>>) -> Self {
        Self { roots, cache: HashMap::new(), cached: 0 }
    }

    /// The directory `path` (relative, `/`-separated) of mount `mount`, with `run` applied to
    /// its handle.
    ///
    /// # Errors
    /// The system error of the first component that is missing, a symlink or not a directory.
    pub fn with_dir<T>(
        &mut self,
        mount: u32,
        path: &[u8],
        run: impl FnOnce(BorrowedFd<'_>) -> io::Result<T>,
    ) -> io::Result<T> {
        if path.is_empty() {
            return run(self.roots[mount as usize].as_fd());
        }
        let handle = self.open(mount, path)?;
        run(handle.as_fd())
    }

    fn open(&mut self, mount: u32, path: &[u8]) -> io::Result<Arc<OwnedFd>> {
        if let Some(handle) = self.cache.get(&mount).and_then(|paths| paths.get(path)) {
            return Ok(handle.clone());
        }
        let handle = Arc::new(self.with_dir(mount, parent_of(path), |parent| open_dir(parent, file_name(path)))?);
        if self.cached >= CACHED_HANDLES {
            self.cache.clear();
            self.cached = 0;
        }
        self.cache.entry(mount).or_default().insert(path.to_vec(), handle.clone());
        self.cached += 1;
        Ok(handle)
    }
}

/// The last component of a relative path.
pub fn file_name(path: &[u8]) -> &[u8] {
    let parent = parent_of(path);
    &path[parent.len() + usize::from(!parent.is_empty())..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_reached_through_a_symlink() {
        let scratch = tempfile::tempdir().unwrap();
        let (root, outside) = (scratch.path().join("root"), scratch.path().join("outside"));
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let roots = Arc::new(vec![open_dir_path(&root).unwrap()]);
        let mut resolver = Resolver::new(roots);

        assert!(resolver.with_dir(0, b"real", |dir| make_dir(dir, b"made")).is_ok());
        assert!(root.join("real/made").is_dir());
        assert!(resolver.with_dir(0, b"link", |dir| make_dir(dir, b"x")).is_err());
        assert!(resolver.with_dir(0, b"", |dir| make_dir(dir, b"link")).is_err(), "a link is not a directory");
        assert!(resolver.with_dir(0, b"", |dir| create_file(dir, b"link")).is_err());
        assert!(resolver.with_dir(0, b"link/deeper", |dir| make_dir(dir, b"x")).is_err());
        resolver.with_dir(0, b"", |dir| remove_any(dir, b"link")).unwrap();
        assert!(std::fs::symlink_metadata(root.join("link")).is_err(), "the link itself is removed");
        assert!(outside.is_dir(), "its target is not touched");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn read_only_trees_are_removed() {
        let scratch = tempfile::tempdir().unwrap();
        let tree = scratch.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/f"), b"x").unwrap();
        for dir in ["a/b", "a", ""] {
            std::fs::set_permissions(tree.join(dir), std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
        }
        let parent = open_dir_path(scratch.path()).unwrap();
        remove_any(parent.as_fd(), b"tree").unwrap();
        assert!(!tree.exists());
    }

    #[test]
    fn file_names_are_the_last_component() {
        assert_eq!(file_name(b"a/b/c"), b"c");
        assert_eq!(file_name(b"c"), b"c");
    }
}
