//! The manifest: one save's file tree and how its bytes map onto chunks.
//!
//! This module owns the on-store encoding, so the format can evolve in one place:
//!
//! ```text
//! "CCMANIFEST"  version: u16 LE  zstd( postcard(Manifest) )
//! ```
//! A reader rejects a newer version with an error that says to upgrade. Decoding is bounded
//! (decompressed size) and every decoded manifest is validated before anything trusts it: paths
//! must be relative and normal, parents must be directories of the same manifest (so no entry
//! can be written through a symlink), and file extents must lie inside the chunk stream.
//!
//! File contents form one stream: the concatenation of `chunks` in order. A file is the extent
//! `offset..offset + size` of that stream (see `chunker.rs` for how the stream is cut).

use std::collections::HashMap;
use std::io::Read;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::id::ChunkId;

/// The manifest format this build writes, and the newest it reads.
pub const FORMAT_VERSION: u16 = 1;
const MAGIC: &[u8; 10] = b"CCMANIFEST";
/// Decoded manifests larger than this are refused (a decompression bomb, not a cache).
const MAX_DECODED_LEN: u64 = 4 << 30;

/// One save of one cache key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The cache key this manifest was saved under.
    pub key: String,
    /// When the save started, in milliseconds since the Unix epoch. GC keeps every chunk newer
    /// than the oldest running save, so this is what a grace period is measured against.
    pub started_at_ms: u64,
    /// When the save wrote this manifest.
    pub finished_at_ms: u64,
    /// The chunkcache version that wrote it.
    pub tool_version: String,
    /// The chunker parameters in force when it was written.
    pub chunker: ChunkerParams,
    /// The roots that were saved, as the user named them.
    pub mounts: Vec<Mount>,
    /// The chunk stream, in order. An id may appear more than once.
    pub chunks: Vec<ChunkRef>,
    /// Every entry, sorted by `(mount, path)`; each mount's root has the empty path.
    pub entries: Vec<Entry>,
}

/// A saved root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The path as given to `save` (relative to its working directory, or absolute).
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
}

impl Mount {
    /// A mount as recorded: the path as given, without trailing slashes (`caches/` and
    /// `caches` are the same mount).
    pub fn from_path(path: &std::path::Path) -> Self {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        let trimmed = bytes.len() - bytes.iter().rev().take_while(|&&b| b == b'/').count();
        let path = if trimmed == 0 { bytes[..1.min(bytes.len())].to_vec() } else { bytes[..trimmed].to_vec() };
        Self { path }
    }
}

/// One chunk of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// BLAKE3 of the raw bytes.
    pub id: ChunkId,
    /// Raw length in bytes.
    pub len: u32,
    /// Length of the stored object in bytes (after compression), for size reports and GC.
    pub stored_len: u32,
}

/// A modification time with nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp {
    /// Seconds since the Unix epoch (negative before it).
    pub secs: i64,
    /// Nanoseconds, 0..1e9.
    pub nanos: u32,
}

/// One file-system entry below a mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Index into [`Manifest::mounts`].
    pub mount: u32,
    /// Path relative to the mount root, `/`-separated, raw bytes (names need not be UTF-8).
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// What the entry is.
    pub kind: EntryKind,
}

/// The kind of an entry and its kind-specific data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file: the extent `offset..offset + size` of the chunk stream.
    File {
        /// Length in bytes.
        size: u64,
        /// Where the file starts in the stream.
        offset: u64,
    },
    /// A symbolic link (never followed).
    Symlink {
        /// The link target, verbatim.
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
    },
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The bytes are not a manifest, or are damaged.
    #[error("manifest for key {key:?} is corrupt: {reason}")]
    Corrupt {
        /// The key whose manifest failed.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Written by a newer chunkcache.
    #[error(
        "manifest for key {key:?} has format version {found}, but this chunkcache reads up to \
         version {FORMAT_VERSION}: upgrade chunkcache"
    )]
    TooNew {
        /// The key whose manifest failed.
        key: String,
        /// The version found.
        found: u16,
    },
    /// Decoded, but fails validation (a hostile or buggy writer).
    #[error("manifest for key {key:?} is invalid: {reason}")]
    Invalid {
        /// The key whose manifest failed.
        key: String,
        /// The rule it breaks.
        reason: String,
    },
}

/// Totals that describe a manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ManifestSummary {
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Chunk references in the stream.
    pub chunks: u64,
    /// Distinct chunks.
    pub unique_chunks: u64,
    /// Bytes the distinct chunks occupy in the store.
    pub stored_bytes: u64,
}

impl Manifest {
    /// Encodes into the versioned, compressed on-store form.
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_stdvec(self).expect("manifest serializes");
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&zstd::bulk::compress(&body, 3).expect("zstd of a buffer"));
        out
    }

    /// Decodes and validates the on-store form. `key` names the manifest in errors.
    ///
    /// # Errors
    /// [`ManifestError`] if the bytes are damaged, too new, or describe an unsafe tree.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, ManifestError> {
        let corrupt = |reason: String| ManifestError::Corrupt { key: key.to_string(), reason };
        let header = MAGIC.len() + 2;
        if bytes.len() < header || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt("not a chunkcache manifest (bad header)".into()));
        }
        let version = u16::from_le_bytes([bytes[MAGIC.len()], bytes[MAGIC.len() + 1]]);
        if version > FORMAT_VERSION {
            return Err(ManifestError::TooNew { key: key.to_string(), found: version });
        }
        let mut body = Vec::new();
        zstd::stream::read::Decoder::new(&bytes[header..])
            .and_then(|decoder| decoder.take(MAX_DECODED_LEN + 1).read_to_end(&mut body))
            .map_err(|e| corrupt(format!("does not decompress: {e}")))?;
        if body.len() as u64 > MAX_DECODED_LEN {
            return Err(corrupt("decompresses to more than 4 GiB".into()));
        }
        let manifest: Manifest = postcard::from_bytes(&body).map_err(|e| corrupt(format!("does not decode: {e}")))?;
        manifest.validate().map_err(|reason| ManifestError::Invalid { key: key.to_string(), reason })?;
        Ok(manifest)
    }

    /// Checks every rule a reader relies on. Returns the first broken rule.
    ///
    /// # Errors
    /// A message naming the offending entry.
    pub fn validate(&self) -> Result<(), String> {
        self.chunker.validate()?;
        if self.mounts.is_empty() {
            return Err("it has no mounts".into());
        }
        for mount in &self.mounts {
            validate_mount_path(&mount.path)?;
        }
        let mut stream_len = 0u64;
        for chunk in &self.chunks {
            if chunk.len == 0 || chunk.len > self.chunker.max_size {
                return Err(format!("chunk {} has length {}", chunk.id, chunk.len));
            }
            stream_len += u64::from(chunk.len);
        }
        let mut kinds: HashMap<(u32, &[u8]), bool> = HashMap::with_capacity(self.entries.len());
        let mut previous: Option<(u32, &[u8])> = None;
        for entry in &self.entries {
            let shown = String::from_utf8_lossy(&entry.path);
            let here = (entry.mount, entry.path.as_slice());
            if entry.mount as usize >= self.mounts.len() {
                return Err(format!("entry {shown:?} names mount {}", entry.mount));
            }
            if previous.is_some_and(|p| p >= here) {
                return Err(format!("entry {shown:?} is out of order or repeated"));
            }
            previous = Some(here);
            validate_relative_path(&entry.path).map_err(|e| format!("entry {shown:?}: {e}"))?;
            if entry.mtime.nanos >= 1_000_000_000 {
                return Err(format!("entry {shown:?} has an invalid mtime"));
            }
            if entry.path.is_empty() {
                if matches!(entry.kind, EntryKind::Symlink { .. }) {
                    return Err("a mount root is a symlink".into());
                }
            } else {
                let parent = parent_of(&entry.path);
                if kinds.get(&(entry.mount, parent)) != Some(&true) {
                    return Err(format!("entry {shown:?} has no parent directory in the manifest"));
                }
            }
            match &entry.kind {
                EntryKind::File { size, offset } => {
                    if offset.checked_add(*size).is_none_or(|end| end > stream_len) {
                        return Err(format!("file {shown:?} lies outside the chunk stream"));
                    }
                }
                EntryKind::Symlink { target } => {
                    if target.is_empty() || target.contains(&0) {
                        return Err(format!("symlink {shown:?} has an invalid target"));
                    }
                }
                EntryKind::Dir => {}
            }
            kinds.insert(here, matches!(entry.kind, EntryKind::Dir));
        }
        for index in 0..self.mounts.len() as u32 {
            if !kinds.contains_key(&(index, &b""[..])) {
                return Err(format!("mount {index} has no root entry"));
            }
        }
        Ok(())
    }

    /// Drops the mounts `keep` rejects and their entries, renumbering the rest (the chunk list
    /// stays whole). Returns the dropped mounts' paths.
    pub fn retain_mounts(&mut self, keep: impl Fn(&Mount) -> bool) -> Vec<String> {
        let mut renumbered = Vec::with_capacity(self.mounts.len());
        let mut dropped = Vec::new();
        let mut kept = Vec::with_capacity(self.mounts.len());
        for mount in std::mem::take(&mut self.mounts) {
            if keep(&mount) {
                renumbered.push(Some(kept.len() as u32));
                kept.push(mount);
            } else {
                renumbered.push(None);
                dropped.push(String::from_utf8_lossy(&mount.path).into_owned());
            }
        }
        self.mounts = kept;
        self.entries.retain_mut(|entry| match renumbered[entry.mount as usize] {
            Some(index) => {
                entry.mount = index;
                true
            }
            None => false,
        });
        dropped
    }

    /// The start offset of every chunk in the stream, plus the total length at the end.
    pub fn chunk_offsets(&self) -> Vec<u64> {
        let mut offsets = Vec::with_capacity(self.chunks.len() + 1);
        let mut at = 0u64;
        offsets.push(0);
        for chunk in &self.chunks {
            at += u64::from(chunk.len);
            offsets.push(at);
        }
        offsets
    }

    /// Totals for reports.
    pub fn summary(&self) -> ManifestSummary {
        let mut summary = ManifestSummary { chunks: self.chunks.len() as u64, ..ManifestSummary::default() };
        for entry in &self.entries {
            match entry.kind {
                EntryKind::Dir => summary.dirs += 1,
                EntryKind::Symlink { .. } => summary.symlinks += 1,
                EntryKind::File { size, .. } => {
                    summary.files += 1;
                    summary.bytes += size;
                }
            }
        }
        let mut seen = std::collections::HashSet::with_capacity(self.chunks.len());
        for chunk in &self.chunks {
            if seen.insert(chunk.id) {
                summary.unique_chunks += 1;
                summary.stored_bytes += u64::from(chunk.stored_len);
            }
        }
        summary
    }
}

/// The indices of the chunks that hold stream extent `offset..offset + size`, given
/// [`Manifest::chunk_offsets`]. Empty for an empty extent.
pub fn chunk_span(offsets: &[u64], offset: u64, size: u64) -> Range<usize> {
    if size == 0 {
        return 0..0;
    }
    let first = offsets.partition_point(|&start| start <= offset) - 1;
    let last = offsets.partition_point(|&start| start < offset + size) - 1;
    first..last + 1
}

/// The parent of a relative path (`b""` for a top-level name).
pub fn parent_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(slash) => &path[..slash],
        None => b"",
    }
}

/// A relative path is empty (the mount root) or `/`-separated normal names: no empty, `.` or
/// `..` component, no leading `/`, no NUL.
///
/// # Errors
/// A message saying which rule is broken.
pub fn validate_relative_path(path: &[u8]) -> Result<(), String> {
    if path.is_empty() {
        return Ok(());
    }
    if path.contains(&0) {
        return Err("path contains a NUL byte".into());
    }
    if path[0] == b'/' {
        return Err("path is absolute".into());
    }
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" => return Err("path has an empty component".into()),
            b"." | b".." => return Err("path has a `.` or `..` component".into()),
            _ => {}
        }
    }
    Ok(())
}

/// A mount path may be absolute or relative but never climbs with `..` or holds a NUL.
fn validate_mount_path(path: &[u8]) -> Result<(), String> {
    let shown = String::from_utf8_lossy(path);
    if path.is_empty() || path.contains(&0) {
        return Err(format!("mount path {shown:?} is empty or has a NUL byte"));
    }
    if path.split(|&b| b == b'/').any(|c| c == b"..") {
        return Err(format!("mount path {shown:?} has a `..` component"));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample() -> Manifest {
        let chunk = |byte: u8, len| ChunkRef { id: ChunkId::of(&[byte]), len, stored_len: len / 2 };
        let entry = |path: &str, kind| Entry {
            mount: 0,
            path: path.as_bytes().to_vec(),
            mode: 0o755,
            mtime: Timestamp { secs: 1_700_000_000, nanos: 5 },
            kind,
        };
        Manifest {
            key: "k".into(),
            started_at_ms: 1,
            finished_at_ms: 2,
            tool_version: "test".into(),
            chunker: ChunkerParams::with_average(1024),
            mounts: vec![Mount { path: b"caches".to_vec() }],
            chunks: vec![chunk(1, 1000), chunk(2, 500)],
            entries: vec![
                entry("", EntryKind::Dir),
                entry("a", EntryKind::File { size: 1200, offset: 0 }),
                entry("d", EntryKind::Dir),
                entry("d/b", EntryKind::File { size: 300, offset: 1200 }),
                entry("d/l", EntryKind::Symlink { target: b"../a".to_vec() }),
            ],
        }
    }

    #[test]
    fn round_trips_through_the_encoding() {
        let manifest = sample();
        assert_eq!(Manifest::decode("k", &manifest.encode()).unwrap(), manifest);
    }

    #[test]
    fn newer_versions_and_garbage_are_refused_clearly() {
        let mut bytes = sample().encode();
        bytes[MAGIC.len()] = 99;
        assert!(Manifest::decode("k", &bytes).unwrap_err().to_string().contains("upgrade"));
        assert!(matches!(Manifest::decode("k", b"nope"), Err(ManifestError::Corrupt { .. })));
        let mut truncated = sample().encode();
        truncated.truncate(truncated.len() - 3);
        assert!(Manifest::decode("k", &truncated).is_err());
    }

    #[test]
    fn hostile_paths_are_rejected() {
        for bad in ["../etc/passwd", "/etc/passwd", "d/../../x", "d//x", "./x"] {
            let mut manifest = sample();
            manifest.entries.push(Entry { path: bad.as_bytes().to_vec(), ..manifest.entries[1].clone() });
            manifest.entries.sort_by(|a, b| a.path.cmp(&b.path));
            let err = Manifest::decode("k", &manifest.encode()).unwrap_err();
            assert!(matches!(err, ManifestError::Invalid { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn writes_through_a_symlink_are_rejected() {
        let mut manifest = sample();
        manifest.entries.push(Entry { path: b"d/l/x".to_vec(), ..manifest.entries[1].clone() });
        let err = manifest.validate().unwrap_err();
        assert!(err.contains("no parent directory"), "{err}");
    }

    #[test]
    fn extents_outside_the_stream_are_rejected() {
        let mut manifest = sample();
        manifest.entries[1].kind = EntryKind::File { size: 10, offset: 1495 };
        assert!(manifest.validate().unwrap_err().contains("outside"));
    }

    #[test]
    fn mounts_normalize_and_can_be_filtered() {
        assert_eq!(Mount::from_path(std::path::Path::new("caches/")).path, b"caches");
        assert_eq!(Mount::from_path(std::path::Path::new("/")).path, b"/");
        let mut manifest = sample();
        manifest.mounts.push(Mount { path: b"other".to_vec() });
        manifest.entries.push(Entry { mount: 1, path: Vec::new(), ..manifest.entries[0].clone() });
        let dropped = manifest.retain_mounts(|m| m.path == b"other");
        assert_eq!(dropped, ["caches"]);
        assert_eq!(manifest.mounts, [Mount { path: b"other".to_vec() }]);
        assert!(manifest.entries.iter().all(|e| e.mount == 0) && manifest.entries.len() == 1);
    }

    #[test]
    fn chunk_span_finds_covering_chunks() {
        let offsets = [0, 100, 250, 300];
        assert_eq!(chunk_span(&offsets, 0, 100), 0..1);
        assert_eq!(chunk_span(&offsets, 99, 2), 0..2);
        assert_eq!(chunk_span(&offsets, 100, 200), 1..3);
        assert_eq!(chunk_span(&offsets, 120, 0), 0..0);
    }

    proptest! {
        #[test]
        fn any_valid_manifest_round_trips(names in proptest::collection::btree_set("[a-zA-Z0-9 ._é-]{1,12}", 0..40), secs in any::<i64>(), nanos in 0u32..1_000_000_000) {
            let mut manifest = sample();
            manifest.entries.truncate(1);
            for name in names.iter().filter(|n| *n != "." && *n != "..") {
                manifest.entries.push(Entry {
                    mount: 0,
                    path: name.as_bytes().to_vec(),
                    mode: 0o644,
                    mtime: Timestamp { secs, nanos },
                    kind: EntryKind::File { size: 7, offset: 3 },
                });
            }
            prop_assert_eq!(Manifest::decode("k", &manifest.encode()).unwrap(), manifest);
        }
    }
}
