//! The manifest: one save's file tree and how its bytes map onto chunks.
//!
//! This module owns the on-store encoding, so the format can evolve in one place. Format 2:
//!
//! ```text
//! offset  0  "CCMANIFEST"
//!        10  version: u16 LE (3)
//!        12  decoded body length: u64 LE
//!        20  BLAKE3 of every byte of the object except these 32
//!        52  zstd( postcard(Manifest) ), one frame
//! ```
//! A manifest comes from a store that every pipeline with credentials can write, so a reader
//! believes nothing in it before the hash matches, and allocates nothing the bytes cannot pay
//! for:
//! - The hash covers the magic, the version, the declared length and the body, so every
//!   damaged byte is refused before anything is decompressed. From version 2 on, the first 52
//!   bytes keep this layout in every version: a flipped version bit fails the hash instead of
//!   passing as another version.
//! - The declared decoded length is capped at [`MAX_DECODED_LEN`] and checked before
//!   decompressing; decompression produces exactly that many bytes or the manifest is refused,
//!   and the zstd window is capped, so a small object cannot expand into gigabytes.
//! - Each list (mounts, chunks, entries) is read with its declared count checked against a hard
//!   limit and against the bytes left, before anything is allocated for it.
//! - Every decoded manifest is validated before anything trusts it: paths must be relative and
//!   normal, mounts must not overlap, parents must be directories of the same manifest (so no
//!   entry can be written through a symlink), and file extents must lie inside the chunk stream.
//!
//! Format 3 (store format 2) names, for every chunk, the pack that holds it and where
//! ([`ChunkRef`]): the manifest is the restore's index. Older manifests (format 1, no hash;
//! format 2, chunks stored one object each) are refused with [`ManifestError::Outdated`]:
//! caches are rebuilt by saving again.
//!
//! File contents form one stream: the concatenation of `chunks` in order. A file is the extent
//! `offset..offset + size` of that stream (see `chunker.rs` for how the stream is cut).

use std::io::Read;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::core::chunker::ChunkerParams;
use crate::core::codec;
use crate::core::id::{ChunkId, PackId};
use crate::core::pack::MAX_PACK_LEN;
use crate::core::paths::PathList;

/// The manifest format this build writes, and the newest it reads.
pub const FORMAT_VERSION: u16 = 3;
const MAGIC: &[u8; 10] = b"CCMANIFEST";
/// Where the version, the declared decoded length and the hash sit in the header.
const VERSION_AT: usize = MAGIC.len();
const LENGTH_AT: usize = VERSION_AT + 2;
const HASH_AT: usize = LENGTH_AT + 8;
/// Bytes before the compressed body.
const HEADER_LEN: usize = HASH_AT + 32;

/// The largest decoded (uncompressed) manifest body a reader accepts, and a writer produces:
/// 256 MiB. A file entry with a Gradle-length path (about 80 bytes) takes about 105 bytes, so
/// this holds about 2.5 million files. Decoding a manifest at the limits peaks at about 850 MiB
/// (measured: 2.4 million entries with 96-byte paths, 700 MiB; 4 Mi entries with 47-byte
/// paths, 845 MiB).
pub const MAX_DECODED_LEN: u64 = 256 << 20;
/// The largest encoded manifest object a reader accepts: the header plus zstd's worst-case
/// expansion of [`MAX_DECODED_LEN`] (it never grows data by more than 1/128 plus a few bytes).
pub const MAX_ENCODED_LEN: u64 = HEADER_LEN as u64 + MAX_DECODED_LEN + MAX_DECODED_LEN / 128 + 4096;
/// The most entries a manifest may hold: 4 Mi, 1.6 times what [`MAX_DECODED_LEN`] holds of
/// Gradle-length paths. An entry can be encoded in 6 bytes but takes about 80 in memory, so
/// without this limit a hostile body of [`MAX_DECODED_LEN`] could expand to 3.5 GB.
pub const MAX_ENTRIES: usize = 1 << 22;
/// The most chunk references a manifest may hold: 4 Mi, 2 TiB of content at the default 512 KiB
/// average chunk size (128 GiB if it were all small files, which are cut at 32 KiB).
pub const MAX_CHUNKS: usize = 1 << 22;
/// The most mounts a manifest may hold (a save names its mounts one by one).
pub const MAX_MOUNTS: usize = 1 << 10;
/// The most packs a manifest may name (no more than its chunks).
pub const MAX_PACKS: usize = MAX_CHUNKS;
/// The largest zstd window a reader allocates: 8 MiB (`encode` uses level 3, whose window is
/// at most 2 MiB). A frame asking for more is refused instead of allocating it.
const MAX_WINDOW_LOG: u32 = 23;
/// The fewest bytes one encoded mount, pack id, chunk reference and entry take (an empty path;
/// 32 bytes; a 32-byte id and four one-byte numbers; six one-byte fields).
const MIN_MOUNT_LEN: usize = 1;
const MIN_PACK_LEN: usize = 32;
const MIN_CHUNK_LEN: usize = 36;
const MIN_ENTRY_LEN: usize = 6;

/// One save of one cache key.
///
/// It has no `Deserialize`: [`Manifest::decode`] reads it field by field, checking each list's
/// declared count before allocating it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
    /// The packs that hold the chunks, each once; [`ChunkRef::pack`] indexes this list.
    pub packs: Vec<PackId>,
    /// The chunk stream, in order. An id may appear more than once.
    pub chunks: Vec<ChunkRef>,
    /// Every entry, sorted by `(mount, path)`; each mount's root has the empty path.
    pub entries: Entries,
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

/// One chunk of the stream, and where it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// BLAKE3 of the raw bytes.
    pub id: ChunkId,
    /// Raw length in bytes.
    pub len: u32,
    /// Length of the stored object in bytes (after compression): the bytes to read.
    pub stored_len: u32,
    /// Index into [`Manifest::packs`] of the pack holding the object.
    pub pack: u32,
    /// Where the object starts in its pack.
    pub offset: u32,
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

/// The entries of a manifest, in order, with their paths front-coded ([`PathList`]): at 500k
/// files, a path held as a vector of its own cost about 150 bytes, here about 30 (issue 9:
/// memory flat in the size of the cache). An entry is read out whole ([`Entries::get`],
/// [`Entries::iter`]); its kind, mount and mode without decoding its path.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Entries {
    paths: PathList,
    meta: Vec<EntryMeta>,
}

/// What an entry is, but its path.
#[derive(Clone, Debug, PartialEq, Eq)]
struct EntryMeta {
    mount: u32,
    mode: u32,
    mtime: Timestamp,
    kind: EntryKind,
}

impl Entries {
    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Appends an entry.
    pub fn push(&mut self, entry: Entry) {
        let Entry { mount, path, mode, mtime, kind } = entry;
        self.paths.push(&path);
        self.meta.push(EntryMeta { mount, mode, mtime, kind });
    }

    /// Entry `index`, path included.
    ///
    /// # Panics
    /// If `index` is out of bounds.
    pub fn get(&self, index: usize) -> Entry {
        let EntryMeta { mount, mode, mtime, ref kind } = self.meta[index];
        Entry { mount, path: self.paths.get(index), mode, mtime, kind: kind.clone() }
    }

    /// The kind of entry `index`.
    pub fn kind(&self, index: usize) -> &EntryKind {
        &self.meta[index].kind
    }

    /// Every entry in order, each read out whole.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Entry> + '_ {
        self.iter_from(0)
    }

    /// The entries from `start` on, in order, each read out whole.
    pub fn iter_from(&self, start: usize) -> impl ExactSizeIterator<Item = Entry> + '_ {
        self.paths.iter_from(start).zip(&self.meta[start.min(self.len())..]).map(|(path, meta)| Entry {
            mount: meta.mount,
            path,
            mode: meta.mode,
            mtime: meta.mtime,
            kind: meta.kind.clone(),
        })
    }

    /// The index of every entry's parent directory entry (`None` for a mount root), found in
    /// one pass with a stack of the open directories, and by binary search where the sort
    /// order interleaves (`a`, `a-b`, `a/c`). Valid once the entries are known to be sorted.
    ///
    /// # Errors
    /// The index of the first entry whose parent is missing or is not a directory.
    pub fn parents(&self) -> Result<Vec<Option<u32>>, usize> {
        let mut parents = Vec::with_capacity(self.len());
        let mut open: Vec<(u32, Vec<u8>, u32)> = Vec::new();
        for (index, (path, meta)) in self.paths.iter().zip(&self.meta).enumerate() {
            let parent = if path.is_empty() {
                open.clear();
                None
            } else {
                let wanted = parent_of(&path);
                while open.last().is_some_and(|(mount, dir, _)| *mount != meta.mount || !contains(dir, wanted)) {
                    open.pop();
                }
                let found = match open.last() {
                    Some((_, dir, at)) if dir == wanted => Some(*at as usize),
                    _ => self.position(meta.mount, wanted),
                };
                match found {
                    Some(at) if matches!(self.meta[at].kind, EntryKind::Dir) => Some(at as u32),
                    _ => return Err(index),
                }
            };
            if matches!(meta.kind, EntryKind::Dir) {
                open.push((meta.mount, path, index as u32));
            }
            parents.push(parent);
        }
        Ok(parents)
    }

    /// Every entry's mount and kind, in order, without reading paths.
    pub fn kinds(&self) -> impl ExactSizeIterator<Item = (u32, &EntryKind)> + '_ {
        self.meta.iter().map(|meta| (meta.mount, &meta.kind))
    }

    /// The index of the entry at `path` of `mount`: a binary search, valid once the entries are
    /// known to be sorted by `(mount, path)` (as a decoded manifest's are).
    pub fn position(&self, mount: u32, path: &[u8]) -> Option<usize> {
        let at = self.paths.partition_point(|index, found| (self.meta[index].mount, found) < (mount, path));
        (at < self.len() && self.meta[at].mount == mount && self.paths.get(at) == path).then_some(at)
    }

    /// Every entry, each read out whole (tests and small manifests).
    pub fn to_vec(&self) -> Vec<Entry> {
        self.iter().collect()
    }

    /// Frees the room reserved for more entries.
    pub fn shrink_to_fit(&mut self) {
        self.paths.shrink_to_fit();
        self.meta.shrink_to_fit();
    }

    /// Entries from a path list and the rest of each entry, in the same order (a save hands
    /// over its scan's paths without copying them).
    ///
    /// # Panics
    /// If the two differ in length.
    pub fn from_parts(paths: PathList, rest: impl IntoIterator<Item = (u32, u32, Timestamp, EntryKind)>) -> Self {
        let meta: Vec<EntryMeta> =
            rest.into_iter().map(|(mount, mode, mtime, kind)| EntryMeta { mount, mode, mtime, kind }).collect();
        assert_eq!(paths.len(), meta.len(), "one path per entry");
        Self { paths, meta }
    }
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl FromIterator<Entry> for Entries {
    fn from_iter<I: IntoIterator<Item = Entry>>(entries: I) -> Self {
        let mut list = Self::default();
        for entry in entries {
            list.push(entry);
        }
        list.shrink_to_fit();
        list
    }
}

impl From<Vec<Entry>> for Entries {
    fn from(entries: Vec<Entry>) -> Self {
        entries.into_iter().collect()
    }
}

/// Encoded as the list of entries it holds, as a `Vec<Entry>` is (the format is unchanged).
impl Serialize for Entries {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The bytes are not a manifest, or are damaged.
    #[error("manifest for key {key:?} is corrupt: {reason}; save the cache again to replace it")]
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
    /// Written by an older chunkcache, in a format this one no longer reads (format 1 had no
    /// integrity hash; format 2 stored one object per chunk).
    #[error(
        "manifest for key {key:?} has format version {found}, written by an older chunkcache in a format \
         this one no longer reads: save the cache again to replace it (restores treat it as damaged until then)"
    )]
    Outdated {
        /// The key whose manifest failed.
        key: String,
        /// The version found.
        found: u16,
    },
    /// Larger than any manifest chunkcache writes: a damaged or hostile store, refused before
    /// the memory is spent.
    #[error(
        "manifest for key {key:?} is refused: {reason}; chunkcache never writes such a manifest, so \
         the store is damaged or was written by something else: save the cache again to replace it"
    )]
    TooLarge {
        /// The key whose manifest failed.
        key: String,
        /// The limit it exceeds, and by how much.
        reason: String,
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
    /// Packs holding them.
    pub packs: u64,
    /// Bytes the distinct chunks occupy in the store.
    pub stored_bytes: u64,
}

impl Manifest {
    /// Encodes into the versioned, hashed, compressed on-store form. Call [`Manifest::validate`]
    /// first: a manifest over the size limits encodes, but no reader accepts it.
    ///
    /// The body is serialized straight into the compressor, never held whole: at hundreds of
    /// thousands of entries it is tens of MiB (issue 9: memory flat in the size of the cache).
    pub fn encode(&self) -> Vec<u8> {
        let body_len = postcard::serialize_with_flavor(self, postcard::ser_flavors::Size::default())
            .expect("manifest serializes") as u64;
        let mut out = Vec::with_capacity(HEADER_LEN + body_len as usize / 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&body_len.to_le_bytes());
        out.extend_from_slice(&[0; 32]);
        let mut encoder = zstd::stream::write::Encoder::new(out, 3).expect("zstd encoder");
        encoder.set_pledged_src_size(Some(body_len)).expect("zstd takes a pledged size");
        // postcard writes field by field: buffer the small writes before the compressor.
        let mut buffered = std::io::BufWriter::with_capacity(64 << 10, encoder);
        postcard::to_io(self, &mut buffered).expect("manifest serializes into memory");
        let encoder = buffered.into_inner().map_err(|err| err.into_error()).expect("compression into memory");
        let mut out = encoder.finish().expect("compression into memory");
        let hash = frame_hash(&out);
        out[HASH_AT..HEADER_LEN].copy_from_slice(hash.as_bytes());
        out
    }

    /// Decodes and validates the on-store form. `key` names the manifest in errors.
    ///
    /// Nothing is decompressed before the hash matches and the declared length is within
    /// [`MAX_DECODED_LEN`]; see the module docs for every bound.
    ///
    /// # Errors
    /// [`ManifestError`] if the bytes are damaged, too old, too new, over a size limit, or
    /// describe an unsafe tree.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, ManifestError> {
        let corrupt = |reason: String| ManifestError::Corrupt { key: key.to_string(), reason };
        let too_large = |reason: String| ManifestError::TooLarge { key: key.to_string(), reason };
        if bytes.len() < LENGTH_AT || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt("not a chunkcache manifest (bad header)".into()));
        }
        let version = u16::from_le_bytes([bytes[VERSION_AT], bytes[VERSION_AT + 1]]);
        match version {
            0 => return Err(corrupt("format version 0 does not exist".into())),
            1 => return Err(ManifestError::Outdated { key: key.to_string(), found: version }),
            _ => {}
        }
        if bytes.len() < HEADER_LEN {
            return Err(corrupt(format!("its header is cut short at {} bytes", bytes.len())));
        }
        if bytes.len() as u64 > MAX_ENCODED_LEN {
            return Err(too_large(format!(
                "the object has {} bytes, more than the limit of {MAX_ENCODED_LEN}",
                bytes.len()
            )));
        }
        if frame_hash(bytes).as_bytes() != &bytes[HASH_AT..HEADER_LEN] {
            return Err(corrupt(
                "its integrity hash does not match (damaged in storage or transit, or not written by chunkcache)"
                    .into(),
            ));
        }
        if version > FORMAT_VERSION {
            return Err(ManifestError::TooNew { key: key.to_string(), found: version });
        }
        if version < FORMAT_VERSION {
            return Err(ManifestError::Outdated { key: key.to_string(), found: version });
        }
        let declared = u64::from_le_bytes(bytes[LENGTH_AT..HASH_AT].try_into().expect("8 bytes"));
        if declared > MAX_DECODED_LEN {
            return Err(too_large(format!(
                "it declares {declared} decoded bytes, more than the limit of {MAX_DECODED_LEN} (256 MiB)"
            )));
        }
        let body = decompress(&bytes[HEADER_LEN..], declared).map_err(corrupt)?;
        let manifest = decode_body(&body).map_err(|refusal| match refusal {
            Refusal::Malformed(reason) => corrupt(reason),
            Refusal::OverLimit(reason) => too_large(reason),
        })?;
        // Free the body before validating: the entries hold everything it said.
        drop(body);
        manifest.validate_tree().map_err(|reason| ManifestError::Invalid { key: key.to_string(), reason })?;
        Ok(manifest)
    }

    /// Checks every rule a reader relies on, size limits included. Returns the first broken
    /// rule.
    ///
    /// # Errors
    /// A message naming the offending entry, mount or limit.
    pub fn validate(&self) -> Result<(), String> {
        let split = "save its folders under several keys";
        for (what, count, limit) in [
            ("mounts", self.mounts.len(), MAX_MOUNTS),
            ("packs", self.packs.len(), MAX_PACKS),
            ("chunks", self.chunks.len(), MAX_CHUNKS),
            ("entries", self.entries.len(), MAX_ENTRIES),
        ] {
            if count > limit {
                return Err(format!("it has {count} {what}, more than the limit of {limit}: {split}"));
            }
        }
        let body_len = postcard::serialize_with_flavor(self, postcard::ser_flavors::Size::default())
            .expect("manifest serializes") as u64;
        if body_len > MAX_DECODED_LEN {
            return Err(format!(
                "it encodes to {body_len} bytes, more than the limit of {MAX_DECODED_LEN} (256 MiB): {split}"
            ));
        }
        self.validate_tree()
    }

    /// The rules on the tree itself, for a manifest whose size is known to be within limits.
    fn validate_tree(&self) -> Result<(), String> {
        self.chunker.validate()?;
        if self.mounts.is_empty() {
            return Err("it has no mounts".into());
        }
        validate_mounts(&self.mounts)?;
        let mut stream_len = 0u64;
        for chunk in &self.chunks {
            if chunk.len == 0 || chunk.len > self.chunker.max_size {
                return Err(format!("chunk {} has length {}", chunk.id, chunk.len));
            }
            if chunk.pack as usize >= self.packs.len() {
                return Err(format!("chunk {} names pack {} of {}", chunk.id, chunk.pack, self.packs.len()));
            }
            if chunk.stored_len == 0
                || u64::from(chunk.stored_len) > codec::MAX_OBJECT_LEN
                || u64::from(chunk.offset) + u64::from(chunk.stored_len) > MAX_PACK_LEN
            {
                return Err(format!(
                    "chunk {} lies at {}+{} in its pack, outside any pack chunkcache writes",
                    chunk.id, chunk.offset, chunk.stored_len
                ));
            }
            stream_len += u64::from(chunk.len);
        }
        // First the order, so that a parent is then found by binary search: no index of every
        // path is built.
        let mut previous: Option<(u32, Vec<u8>)> = None;
        for entry in self.entries.iter() {
            let shown = || String::from_utf8_lossy(&entry.path);
            if entry.mount as usize >= self.mounts.len() {
                return Err(format!("entry {:?} names mount {}", shown(), entry.mount));
            }
            if previous.as_ref().is_some_and(|(mount, path)| (*mount, path.as_slice()) >= (entry.mount, &entry.path)) {
                return Err(format!("entry {:?} is out of order or repeated", shown()));
            }
            previous = Some((entry.mount, entry.path));
        }
        // The first entry without a directory parent; reported in its place in the order.
        let orphan = self.entries.parents().err();
        let mut roots = vec![false; self.mounts.len()];
        for (index, entry) in self.entries.iter().enumerate() {
            let shown = || String::from_utf8_lossy(&entry.path);
            validate_relative_path(&entry.path).map_err(|e| format!("entry {:?}: {e}", shown()))?;
            if entry.mtime.nanos >= 1_000_000_000 {
                return Err(format!("entry {:?} has an invalid mtime", shown()));
            }
            if entry.path.is_empty() {
                if matches!(entry.kind, EntryKind::Symlink { .. }) {
                    return Err("a mount root is a symlink".into());
                }
                roots[entry.mount as usize] = true;
            } else if orphan == Some(index) {
                return Err(format!("entry {:?} has no parent directory in the manifest", shown()));
            }
            match &entry.kind {
                EntryKind::File { size, offset } => {
                    if offset.checked_add(*size).is_none_or(|end| end > stream_len) {
                        return Err(format!("file {:?} lies outside the chunk stream", shown()));
                    }
                }
                EntryKind::Symlink { target } => {
                    if target.is_empty() || target.contains(&0) {
                        return Err(format!("symlink {:?} has an invalid target", shown()));
                    }
                }
                EntryKind::Dir => {}
            }
        }
        if let Some(index) = roots.iter().position(|&found| !found) {
            return Err(format!("mount {index} has no root entry"));
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
        self.entries = std::mem::take(&mut self.entries)
            .iter()
            .filter_map(|entry| renumbered[entry.mount as usize].map(|mount| Entry { mount, ..entry }))
            .collect();
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

    /// Bytes of file content under each mount, by mount index.
    pub fn mount_bytes(&self) -> Vec<u64> {
        let mut bytes = vec![0; self.mounts.len()];
        for (mount, kind) in self.entries.kinds() {
            if let (EntryKind::File { size, .. }, Some(total)) = (kind, bytes.get_mut(mount as usize)) {
                *total += size;
            }
        }
        bytes
    }

    /// Totals for reports.
    pub fn summary(&self) -> ManifestSummary {
        let mut summary = ManifestSummary {
            chunks: self.chunks.len() as u64,
            packs: self.packs.len() as u64,
            ..ManifestSummary::default()
        };
        for (_, kind) in self.entries.kinds() {
            match *kind {
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

/// Whether relative path `dir` is `path` or one of its ancestors.
fn contains(dir: &[u8], path: &[u8]) -> bool {
    dir.is_empty() || (path.starts_with(dir) && path.get(dir.len()).is_none_or(|&b| b == b'/'))
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

/// The rules on a manifest's mounts, which a save checks before any work: each path is
/// absolute or relative but never climbs with `..`, and no two are the same folder or one
/// inside the other.
///
/// # Errors
/// A message naming the offending mount.
pub fn validate_mounts(mounts: &[Mount]) -> Result<(), String> {
    for mount in mounts {
        validate_mount_path(&mount.path)?;
    }
    validate_mounts_apart(mounts)
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

/// Two mounts must not be the same folder or one inside the other, or a restore would write
/// one mount's entries through the other's (a symlink of the first could lead outside). Paths
/// are compared by normal components, and an absolute path like its relative twin, since a
/// restore under `DEST` puts `/a` and `a` at the same place.
fn validate_mounts_apart(mounts: &[Mount]) -> Result<(), String> {
    let mut normal: Vec<(Vec<&[u8]>, &[u8])> = mounts
        .iter()
        .map(|mount| {
            let components = mount.path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
            (components, mount.path.as_slice())
        })
        .collect();
    normal.sort();
    // Sorted, a mount that contains others comes right before the first of them.
    for pair in normal.windows(2) {
        let ((outer, outer_path), (inner, inner_path)) = (&pair[0], &pair[1]);
        if inner.starts_with(outer) {
            let (outer_path, inner_path) = (String::from_utf8_lossy(outer_path), String::from_utf8_lossy(inner_path));
            let relation = if inner.len() == outer.len() { "is the same folder as" } else { "lies inside" };
            return Err(format!("mount {inner_path:?} {relation} mount {outer_path:?}"));
        }
    }
    Ok(())
}

/// The hash of a format-2 object: every byte but the hash itself.
fn frame_hash(bytes: &[u8]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&bytes[..HASH_AT]);
    hasher.update(&bytes[HEADER_LEN..]);
    hasher.finalize()
}

/// Decompresses one zstd frame to exactly `declared` bytes, with a capped window. Memory is
/// `declared` (at most [`MAX_DECODED_LEN`]) plus the window.
fn decompress(compressed: &[u8], declared: u64) -> Result<Vec<u8>, String> {
    let fail = |e: std::io::Error| format!("does not decompress: {e}");
    let mut decoder = zstd::stream::read::Decoder::with_buffer(compressed).map_err(fail)?.single_frame();
    decoder.window_log_max(MAX_WINDOW_LOG).map_err(fail)?;
    let declared = usize::try_from(declared).map_err(|_| "its declared length does not fit in memory".to_string())?;
    let mut body = vec![0; declared];
    decoder.read_exact(&mut body).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => format!("it decompresses to fewer than the {declared} bytes it declares"),
        _ => fail(e),
    })?;
    if decoder.read(&mut [0; 1]).map_err(fail)? != 0 {
        return Err(format!("it decompresses to more than the {declared} bytes it declares"));
    }
    if !decoder.finish().is_empty() {
        return Err("it has bytes after its compressed body".into());
    }
    Ok(body)
}

/// Why a body was refused.
enum Refusal {
    /// It does not decode.
    Malformed(String),
    /// A list declares more elements than a limit allows.
    OverLimit(String),
}

/// Reads the postcard body of a [`Manifest`] field by field (postcard encodes a struct as its
/// fields in order, a list as a varint count then its elements), so that each list's count is
/// checked before anything is allocated for it.
fn decode_body(body: &[u8]) -> Result<Manifest, Refusal> {
    type Head = (String, u64, u64, String, ChunkerParams);
    let ((key, started_at_ms, finished_at_ms, tool_version, chunker), rest) =
        postcard::take_from_bytes::<Head>(body).map_err(|e| Refusal::Malformed(format!("does not decode: {e}")))?;
    let (mounts, rest) = take_list::<Mount>(rest, "mounts", MAX_MOUNTS, MIN_MOUNT_LEN)?;
    let (packs, rest) = take_list::<PackId>(rest, "packs", MAX_PACKS, MIN_PACK_LEN)?;
    let (chunks, rest) = take_list::<ChunkRef>(rest, "chunks", MAX_CHUNKS, MIN_CHUNK_LEN)?;
    let mut entries = Entries::default();
    let rest = take_each::<Entry>(rest, "entries", MAX_ENTRIES, MIN_ENTRY_LEN, |entry| entries.push(entry))?;
    entries.shrink_to_fit();
    if !rest.is_empty() {
        return Err(Refusal::Malformed(format!("{} bytes follow the manifest", rest.len())));
    }
    Ok(Manifest { key, started_at_ms, finished_at_ms, tool_version, chunker, mounts, packs, chunks, entries })
}

/// Reads a list of at most `limit` elements, each at least `min_len` bytes long.
fn take_list<'a, T: Deserialize<'a>>(
    input: &'a [u8],
    what: &str,
    limit: usize,
    min_len: usize,
) -> Result<(Vec<T>, &'a [u8]), Refusal> {
    let (count, rest) = take_count(input, what, limit, min_len)?;
    let mut list = Vec::with_capacity(count);
    let rest = take_items(rest, what, count, |item| list.push(item))?;
    Ok((list, rest))
}

/// Reads a list of at most `limit` elements, each at least `min_len` bytes long, handing each
/// to `take`.
fn take_each<'a, T: Deserialize<'a>>(
    input: &'a [u8],
    what: &str,
    limit: usize,
    min_len: usize,
    take: impl FnMut(T),
) -> Result<&'a [u8], Refusal> {
    let (count, rest) = take_count(input, what, limit, min_len)?;
    take_items(rest, what, count, take)
}

/// Reads a list's count, refused over `limit` or over what the bytes left can hold.
fn take_count<'a>(input: &'a [u8], what: &str, limit: usize, min_len: usize) -> Result<(usize, &'a [u8]), Refusal> {
    let (count, rest) = postcard::take_from_bytes::<u64>(input)
        .map_err(|e| Refusal::Malformed(format!("its {what} do not decode: {e}")))?;
    if count > limit as u64 {
        return Err(Refusal::OverLimit(format!("it declares {count} {what}, more than the limit of {limit}")));
    }
    if count > (rest.len() / min_len) as u64 {
        return Err(Refusal::Malformed(format!(
            "it declares {count} {what}, but only {} bytes follow, enough for at most {}",
            rest.len(),
            rest.len() / min_len
        )));
    }
    Ok((count as usize, rest))
}

/// Reads `count` elements of a list, handing each to `take`.
fn take_items<'a, T: Deserialize<'a>>(
    mut rest: &'a [u8],
    what: &str,
    count: usize,
    mut take: impl FnMut(T),
) -> Result<&'a [u8], Refusal> {
    for _ in 0..count {
        let (item, after) = postcard::take_from_bytes::<T>(rest)
            .map_err(|e| Refusal::Malformed(format!("its {what} do not decode: {e}")))?;
        take(item);
        rest = after;
    }
    Ok(rest)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample() -> Manifest {
        let chunk = |byte: u8, len: u32| ChunkRef {
            id: ChunkId::of(&[byte]),
            len,
            stored_len: len / 2,
            pack: u32::from(byte) - 1,
            offset: 8,
        };
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
            packs: vec![PackId::of(b"p1"), PackId::of(b"p2")],
            chunks: vec![chunk(1, 1000), chunk(2, 500)],
            entries: Entries::from(vec![
                entry("", EntryKind::Dir),
                entry("a", EntryKind::File { size: 1200, offset: 0 }),
                entry("d", EntryKind::Dir),
                entry("d/b", EntryKind::File { size: 300, offset: 1200 }),
                entry("d/l", EntryKind::Symlink { target: b"../a".to_vec() }),
            ]),
        }
    }

    /// Changes `manifest`'s entries as a vector.
    pub(crate) fn edit(manifest: &mut Manifest, change: impl FnOnce(&mut Vec<Entry>)) {
        let mut entries = manifest.entries.to_vec();
        change(&mut entries);
        manifest.entries = entries.into();
    }

    #[test]
    fn round_trips_through_the_encoding() {
        let manifest = sample();
        assert_eq!(Manifest::decode("k", &manifest.encode()).unwrap(), manifest);
    }

    /// The on-store form of `body` as a writer computing the hash would produce it, declaring
    /// `declared` decoded bytes and version `version`, with `compressed` as the zstd body.
    fn framed(version: u16, declared: u64, compressed: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&declared.to_le_bytes());
        out.extend_from_slice(&[0; 32]);
        out.extend_from_slice(compressed);
        let hash = frame_hash(&out);
        out[HASH_AT..HEADER_LEN].copy_from_slice(hash.as_bytes());
        out
    }

    /// `body` framed honestly: its true length, compressed by zstd.
    pub(crate) fn framed_body(body: &[u8]) -> Vec<u8> {
        framed(FORMAT_VERSION, body.len() as u64, &zstd::bulk::compress(body, 3).unwrap())
    }

    #[test]
    fn the_header_holds_the_declared_length_and_a_hash_of_everything_else() {
        let manifest = sample();
        let bytes = manifest.encode();
        let body = postcard::to_stdvec(&manifest).unwrap();
        assert_eq!(&bytes[..VERSION_AT], b"CCMANIFEST");
        assert_eq!(bytes[VERSION_AT..LENGTH_AT], [3, 0]);
        assert_eq!(bytes[LENGTH_AT..HASH_AT], (body.len() as u64).to_le_bytes());
        let mut hashed = bytes[..HASH_AT].to_vec();
        hashed.extend_from_slice(&bytes[HEADER_LEN..]);
        assert_eq!(&bytes[HASH_AT..HEADER_LEN], blake3::hash(&hashed).as_bytes());
        assert_eq!(zstd::decode_all(&bytes[HEADER_LEN..]).unwrap(), body);
    }

    #[test]
    fn newer_versions_and_garbage_are_refused_clearly() {
        let body = postcard::to_stdvec(&sample()).unwrap();
        let compressed = zstd::bulk::compress(&body, 3).unwrap();
        let newer = framed(4, body.len() as u64, &compressed);
        assert!(matches!(Manifest::decode("k", &newer), Err(ManifestError::TooNew { found: 4, .. })));
        assert!(Manifest::decode("k", &newer).unwrap_err().to_string().contains("upgrade chunkcache"));
        // A version changed without the hash is damage, not a newer writer.
        let mut damaged = sample().encode();
        damaged[VERSION_AT] = 4;
        let err = Manifest::decode("k", &damaged).unwrap_err();
        assert!(matches!(err, ManifestError::Corrupt { .. }) && err.to_string().contains("integrity hash"), "{err}");
        assert!(matches!(Manifest::decode("k", b"nope"), Err(ManifestError::Corrupt { .. })));
        assert!(matches!(Manifest::decode("k", b"CCMANIFEST\x02\x00\x01"), Err(ManifestError::Corrupt { .. })));
        let mut truncated = sample().encode();
        truncated.truncate(truncated.len() - 3);
        assert!(matches!(Manifest::decode("k", &truncated), Err(ManifestError::Corrupt { .. })));
    }

    #[test]
    fn version_one_manifests_are_refused_with_advice() {
        // Format 1: magic, version, zstd(postcard), no hash.
        let mut old = b"CCMANIFEST\x01\x00".to_vec();
        old.extend_from_slice(&zstd::bulk::compress(&postcard::to_stdvec(&sample()).unwrap(), 3).unwrap());
        let err = Manifest::decode("k", &old).unwrap_err();
        assert!(matches!(err, ManifestError::Outdated { found: 1, .. }), "{err}");
        assert!(err.to_string().contains("save the cache again"), "{err}");
        // Format 2: hashed, but its chunks were objects of their own, not in packs.
        let body = postcard::to_stdvec(&sample()).unwrap();
        let format_two = framed(2, body.len() as u64, &zstd::bulk::compress(&body, 3).unwrap());
        let err = Manifest::decode("k", &format_two).unwrap_err();
        assert!(matches!(err, ManifestError::Outdated { found: 2, .. }), "{err}");
        assert!(err.to_string().contains("older chunkcache"), "{err}");
    }

    #[test]
    fn chunks_outside_the_packs_named_are_invalid() {
        for (pack, offset, stored_len, needle) in
            [(2, 8, 10, "names pack 2 of 2"), (0, u32::MAX - 4, 10, "outside any pack"), (0, 8, 0, "outside any pack")]
        {
            let mut manifest = sample();
            manifest.chunks[0] = ChunkRef { pack, offset, stored_len, ..manifest.chunks[0] };
            let err = manifest.validate().unwrap_err();
            assert!(err.contains(needle), "{err}");
            assert!(Manifest::decode("k", &manifest.encode()).is_err());
        }
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let bytes = sample().encode();
        assert!(Manifest::decode("k", &bytes).is_ok());
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            match Manifest::decode("k", &flipped) {
                Ok(_) => panic!("a flip of bit {bit} (byte {}) was accepted", bit / 8),
                Err(
                    ManifestError::Corrupt { .. }
                    | ManifestError::Outdated { .. }
                    | ManifestError::TooNew { .. }
                    | ManifestError::TooLarge { .. }
                    | ManifestError::Invalid { .. },
                ) => {}
            }
        }
    }

    #[test]
    fn an_accepted_body_with_trailing_bytes_is_refused() {
        let mut body = postcard::to_stdvec(&sample()).unwrap();
        assert!(Manifest::decode("k", &framed_body(&body)).is_ok());
        body.push(0);
        let err = Manifest::decode("k", &framed_body(&body)).unwrap_err();
        assert!(err.to_string().contains("1 bytes follow the manifest"), "{err}");
    }

    /// One zstd frame as a hostile writer builds it by hand: `prefix` in raw blocks, then
    /// `zeros` zero bytes in run-length blocks of 128 KiB, 4 bytes each, with a window of
    /// 2^`window_log` bytes (17..=31).
    fn zstd_frame(prefix: &[u8], zeros: u64, window_log: u8) -> Vec<u8> {
        const BLOCK: u64 = 128 << 10;
        let mut frame = 0xFD2F_B528u32.to_le_bytes().to_vec();
        // Frame header: no content size, no checksum, no dictionary; the window's exponent.
        frame.extend_from_slice(&[0, (window_log - 10) << 3]);
        let mut blocks: Vec<(u32, u32, Option<&[u8]>)> = Vec::new();
        for raw in prefix.chunks(BLOCK as usize) {
            blocks.push((0, raw.len() as u32, Some(raw)));
        }
        let mut left = zeros;
        while left > 0 {
            let size = left.min(BLOCK);
            blocks.push((1, size as u32, None));
            left -= size;
        }
        if blocks.is_empty() {
            blocks.push((0, 0, Some(&[])));
        }
        let last = blocks.len() - 1;
        for (index, (kind, size, raw)) in blocks.into_iter().enumerate() {
            let header = (size << 3) | (kind << 1) | u32::from(index == last);
            frame.extend_from_slice(&header.to_le_bytes()[..3]);
            frame.extend_from_slice(raw.unwrap_or(&[0]));
        }
        frame
    }

    /// The start of a body: the fields before the lists, and one mount.
    fn body_head() -> Vec<u8> {
        let manifest = sample();
        let mut head = postcard::to_stdvec(&(
            &manifest.key,
            manifest.started_at_ms,
            manifest.finished_at_ms,
            &manifest.tool_version,
            manifest.chunker,
        ))
        .unwrap();
        head.extend_from_slice(&postcard::to_stdvec(&manifest.mounts).unwrap());
        head.extend_from_slice(&postcard::to_stdvec(&manifest.packs).unwrap());
        head
    }

    fn varint(count: u64) -> Vec<u8> {
        postcard::to_stdvec(&count).unwrap()
    }

    /// Decodes on another thread and returns the error, failing if it takes a second or more
    /// or if the manifest is accepted.
    fn refused_quickly(bytes: Vec<u8>) -> ManifestError {
        let (sender, receiver) = std::sync::mpsc::channel();
        let started = std::time::Instant::now();
        std::thread::spawn(move || sender.send(Manifest::decode("bomb", &bytes).map(drop)));
        let result = receiver
            .recv_timeout(std::time::Duration::from_secs(1))
            .unwrap_or_else(|_| panic!("decoding took over a second ({:?} so far)", started.elapsed()));
        result.expect_err("a bomb was accepted")
    }

    #[test]
    fn hand_built_zstd_frames_decode_to_what_they_claim() {
        let frame = zstd_frame(b"head", 300_000, 20);
        let mut expected = b"head".to_vec();
        expected.resize(300_004, 0);
        assert_eq!(zstd::decode_all(&frame[..]).unwrap(), expected);
        assert!(frame.len() < 30, "{} bytes", frame.len());
    }

    #[test]
    fn an_entry_count_bomb_is_refused_before_decompressing() {
        // 10^8 entries of 6 zero bytes (an empty-path directory): 600 MB in an 18 KB object.
        let mut prefix = body_head();
        prefix.extend(varint(0));
        prefix.extend(varint(100_000_000));
        let decoded = prefix.len() as u64 + 600_000_000;
        let compressed = zstd_frame(&prefix, 600_000_000, 20);
        let bytes = framed(FORMAT_VERSION, decoded, &compressed);
        assert!(bytes.len() < 20_000, "{} bytes", bytes.len());
        let err = refused_quickly(bytes);
        assert!(matches!(err, ManifestError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("more than the limit of 268435456 (256 MiB)"), "{err}");
        // Declaring less than it holds stops decompression at the declared length.
        let err = refused_quickly(framed(FORMAT_VERSION, 1 << 20, &compressed));
        assert!(err.to_string().contains("decompresses to more than the 1048576 bytes it declares"), "{err}");
    }

    #[test]
    fn an_entry_count_over_the_limit_is_refused_before_allocating() {
        // Within the size cap, but one entry more than the limit: refused on the count.
        let mut prefix = body_head();
        prefix.extend(varint(0));
        prefix.extend(varint(MAX_ENTRIES as u64 + 1));
        let zeros = (MAX_ENTRIES as u64 + 1) * MIN_ENTRY_LEN as u64;
        let bytes = framed(FORMAT_VERSION, prefix.len() as u64 + zeros, &zstd_frame(&prefix, zeros, 20));
        let err = refused_quickly(bytes);
        assert!(matches!(err, ManifestError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("declares 4194305 entries, more than the limit of 4194304"), "{err}");
        // A count the remaining bytes cannot hold is refused too, without allocating for it.
        let mut body = body_head();
        body.extend(varint(0));
        body.extend(varint(1000));
        body.extend([0; 60]);
        let err = refused_quickly(framed_body(&body));
        assert!(err.to_string().contains("declares 1000 entries, but only 60 bytes follow"), "{err}");
    }

    #[test]
    fn a_chunk_reference_bomb_is_refused() {
        // 10^8 chunk references (3.4 GB decoded) in a small object.
        let mut prefix = body_head();
        prefix.extend(varint(100_000_000));
        let zeros = 100_000_000 * MIN_CHUNK_LEN as u64;
        let compressed = zstd_frame(&prefix, zeros, 20);
        let err = refused_quickly(framed(FORMAT_VERSION, prefix.len() as u64 + zeros, &compressed));
        assert!(err.to_string().contains("more than the limit of 268435456"), "{err}");
        // The same count declared within a small honest body: refused on the count.
        let mut body = prefix.clone();
        body.extend([0; 34 * 3]);
        let err = refused_quickly(framed_body(&body));
        assert!(err.to_string().contains("declares 100000000 chunks, more than the limit of 4194304"), "{err}");
    }

    #[test]
    fn a_zstd_bomb_is_refused() {
        // 4 GiB of zeros in a 128 KiB object.
        let compressed = zstd_frame(&[], 4 << 30, 20);
        assert!(compressed.len() < 140_000, "{} bytes", compressed.len());
        let err = refused_quickly(framed(FORMAT_VERSION, 4 << 30, &compressed));
        assert!(matches!(err, ManifestError::TooLarge { .. }) && err.to_string().contains("256 MiB"), "{err}");
        let err = refused_quickly(framed(FORMAT_VERSION, 4096, &compressed));
        assert!(err.to_string().contains("decompresses to more than the 4096 bytes it declares"), "{err}");
        // A frame that asks for a 2 GiB window is refused instead of allocating it.
        let err = refused_quickly(framed(FORMAT_VERSION, 4096, &zstd_frame(&[], 4096, 31)));
        assert!(err.to_string().contains("does not decompress"), "{err}");
        // Declaring more than the frame holds is refused too.
        let err = refused_quickly(framed(FORMAT_VERSION, 8192, &zstd_frame(&[], 4096, 20)));
        assert!(err.to_string().contains("fewer than the 8192 bytes it declares"), "{err}");
    }

    #[test]
    fn an_oversized_object_is_refused_before_hashing() {
        let encoded = sample().encode();
        let mut bytes = vec![0; MAX_ENCODED_LEN as usize + 1];
        bytes[..encoded.len()].copy_from_slice(&encoded);
        let err = refused_quickly(bytes);
        assert!(matches!(err, ManifestError::TooLarge { .. }) && err.to_string().contains("the object has"), "{err}");
    }

    #[test]
    fn validate_enforces_the_limits_a_reader_enforces() {
        let mut manifest = sample();
        manifest.mounts = (0..=MAX_MOUNTS).map(|n| Mount { path: format!("m{n}").into_bytes() }).collect();
        let err = manifest.validate().unwrap_err();
        assert!(err.contains("1025 mounts, more than the limit of 1024"), "{err}");
        let mut manifest = sample();
        manifest.tool_version = "x".repeat(MAX_DECODED_LEN as usize);
        let err = manifest.validate().unwrap_err();
        assert!(err.contains("more than the limit of 268435456 (256 MiB)"), "{err}");
    }

    #[test]
    fn hostile_paths_are_rejected() {
        for bad in ["../etc/passwd", "/etc/passwd", "d/../../x", "d//x", "./x"] {
            let mut manifest = sample();
            edit(&mut manifest, |entries| {
                entries.push(Entry { path: bad.as_bytes().to_vec(), ..entries[1].clone() });
                entries.sort_by(|a, b| a.path.cmp(&b.path));
            });
            let err = Manifest::decode("k", &manifest.encode()).unwrap_err();
            assert!(matches!(err, ManifestError::Invalid { .. }), "{bad}: {err}");
        }
    }

    /// The one-pass parent search agrees with a binary search, also where the byte order puts
    /// siblings between a folder and its children (`-` and `.` sort before `/`).
    #[test]
    fn parents_are_found_where_the_order_interleaves() {
        let mut manifest = sample();
        edit(&mut manifest, |entries| {
            let (dir, file) = (entries[2].clone(), entries[1].clone());
            for (path, like) in
                [("e", &dir), ("e-x", &dir), ("e.y", &file), ("e/f", &dir), ("e/f/g", &file), ("e-x/h", &file)]
            {
                entries.push(Entry { path: path.as_bytes().to_vec(), ..like.clone() });
            }
            entries.sort_by(|a, b| a.path.cmp(&b.path));
        });
        manifest.validate().unwrap();
        let parents = manifest.entries.parents().unwrap();
        for (index, entry) in manifest.entries.iter().enumerate() {
            let expected = (!entry.path.is_empty())
                .then(|| manifest.entries.position(entry.mount, parent_of(&entry.path)).unwrap() as u32);
            assert_eq!(parents[index], expected, "{:?}", String::from_utf8_lossy(&entry.path));
        }
    }

    #[test]
    fn writes_through_a_symlink_are_rejected() {
        let mut manifest = sample();
        edit(&mut manifest, |entries| entries.push(Entry { path: b"d/l/x".to_vec(), ..entries[1].clone() }));
        let err = manifest.validate().unwrap_err();
        assert!(err.contains("no parent directory"), "{err}");
    }

    /// Parents are found by binary search among the entries before: one that is missing or a
    /// file is no parent, and every mount needs its root.
    #[test]
    fn every_entry_needs_a_directory_parent_and_every_mount_a_root() {
        let with = |extra: &[(&str, EntryKind)]| {
            let mut manifest = sample();
            edit(&mut manifest, |entries| {
                for (path, kind) in extra {
                    entries.push(Entry { path: path.as_bytes().to_vec(), kind: kind.clone(), ..entries[0].clone() });
                }
                entries.sort_by(|a, b| a.path.cmp(&b.path));
            });
            manifest.validate()
        };
        assert!(with(&[("e", EntryKind::Dir), ("e/x", EntryKind::Dir)]).is_ok());
        for (path, kind) in [("e/x", EntryKind::Dir), ("a/x", EntryKind::Dir)] {
            let err = with(&[(path, kind)]).unwrap_err();
            assert!(err.contains("no parent directory"), "{path}: {err}");
        }
        let mut manifest = sample();
        manifest.mounts.push(Mount { path: b"other".to_vec() });
        assert_eq!(manifest.validate().unwrap_err(), "mount 1 has no root entry");
    }

    /// `sample()` with these two mounts, each with a root entry.
    fn with_mounts(first: &str, second: &str) -> Manifest {
        let mut manifest = sample();
        manifest.mounts = vec![Mount { path: first.as_bytes().to_vec() }, Mount { path: second.as_bytes().to_vec() }];
        edit(&mut manifest, |entries| entries.push(Entry { mount: 1, path: Vec::new(), ..entries[0].clone() }));
        manifest
    }

    #[test]
    fn duplicate_and_nested_mounts_are_invalid() {
        for (first, second) in [
            ("a", "a"),
            ("a", "a/l"),
            ("/x", "/x/y"),
            ("a/l", "a"),
            ("caches/", "caches"),
            ("./a", "a//b"),
            ("a", "/a"),
            ("/", "/x"),
            (".", "x"),
        ] {
            let manifest = with_mounts(first, second);
            let err = manifest.validate().unwrap_err();
            assert!(err.contains("is the same folder as") || err.contains("lies inside"), "{first} {second}: {err}");
            let err = Manifest::decode("k", &manifest.encode()).unwrap_err();
            assert!(matches!(err, ManifestError::Invalid { .. }), "{first} {second}: {err}");
        }
        let err = with_mounts("a", "a/l").validate().unwrap_err();
        assert_eq!(err, "mount \"a/l\" lies inside mount \"a\"");
        for (first, second) in [("a", "b"), ("a", "ab"), ("a-1", "a"), ("a/b", "a/c"), ("/x/y", "/x/z"), ("x", "/y/x")]
        {
            assert_eq!(with_mounts(first, second).validate(), Ok(()), "{first} {second}");
        }
    }

    #[test]
    fn extents_outside_the_stream_are_rejected() {
        let mut manifest = sample();
        edit(&mut manifest, |entries| entries[1].kind = EntryKind::File { size: 10, offset: 1495 });
        assert!(manifest.validate().unwrap_err().contains("outside"));
    }

    #[test]
    fn mounts_normalize_and_can_be_filtered() {
        assert_eq!(Mount::from_path(std::path::Path::new("caches/")).path, b"caches");
        assert_eq!(Mount::from_path(std::path::Path::new("/")).path, b"/");
        let mut manifest = sample();
        manifest.mounts.push(Mount { path: b"other".to_vec() });
        edit(&mut manifest, |entries| entries.push(Entry { mount: 1, path: Vec::new(), ..entries[0].clone() }));
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

    /// A manifest built from random parts: mostly invalid, sometimes valid.
    fn arbitrary_manifest() -> impl Strategy<Value = Manifest> {
        let path =
            || proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'/'), Just(b'.'), Just(0)], 0..6);
        let kind = prop_oneof![
            Just(EntryKind::Dir),
            (0u64..3000, 0u64..3000).prop_map(|(size, offset)| EntryKind::File { size, offset }),
            path().prop_map(|target| EntryKind::Symlink { target }),
        ];
        let entry = (0u32..3, path(), any::<u32>(), any::<i64>(), 0u32..1_000_000_100, kind).prop_map(
            |(mount, path, mode, secs, nanos, kind)| Entry {
                mount,
                path,
                mode,
                mtime: Timestamp { secs, nanos },
                kind,
            },
        );
        let chunk = (any::<u8>(), 0u32..5000, 0u32..3).prop_map(|(byte, len, pack)| ChunkRef {
            id: ChunkId::of(&[byte]),
            len,
            stored_len: len,
            pack,
            offset: 8,
        });
        let params = prop_oneof![
            Just(ChunkerParams::with_average(1024)),
            (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(min_size, avg_size, max_size)| ChunkerParams {
                min_size,
                avg_size,
                max_size
            })
        ];
        (
            proptest::collection::vec(path().prop_map(|path| Mount { path }), 0..3),
            proptest::collection::vec(chunk, 0..4),
            proptest::collection::vec(entry, 0..12),
            params,
            any::<bool>(),
        )
            .prop_map(|(mounts, chunks, mut entries, chunker, sorted)| {
                if sorted {
                    entries.sort_by(|a, b| (a.mount, &a.path).cmp(&(b.mount, &b.path)));
                }
                Manifest { mounts, chunks, entries: entries.into(), chunker, ..sample() }
            })
    }

    proptest! {
        #[test]
        fn any_valid_manifest_round_trips(names in proptest::collection::btree_set("[a-zA-Z0-9 ._é-]{1,12}", 0..40), secs in any::<i64>(), nanos in 0u32..1_000_000_000) {
            let mut manifest = sample();
            edit(&mut manifest, |entries| {
                entries.truncate(1);
                for name in names.iter().filter(|n| *n != "." && *n != "..") {
                    entries.push(Entry {
                        mount: 0,
                        path: name.as_bytes().to_vec(),
                        mode: 0o644,
                        mtime: Timestamp { secs, nanos },
                        kind: EntryKind::File { size: 7, offset: 3 },
                    });
                }
            });
            prop_assert_eq!(Manifest::decode("k", &manifest.encode()).unwrap(), manifest);
        }

        /// Fuzzing the decoder with random bytes: as they are, behind a valid header, and
        /// framed with a valid hash so they reach the decompressor and the body decoder.
        #[test]
        fn random_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            prop_assert!(Manifest::decode("fuzz", &bytes).is_err());
            let mut headed = framed_body(&[]);
            headed.truncate(HEADER_LEN);
            headed.extend_from_slice(&bytes);
            prop_assert!(Manifest::decode("fuzz", &headed).is_err());
            prop_assert!(Manifest::decode("fuzz", &framed(FORMAT_VERSION, bytes.len() as u64, &bytes)).is_err());
            let _ = Manifest::decode("fuzz", &framed_body(&bytes));
        }

        /// Fuzzing past the hash: a real body with random edits (overwrite, insert, remove),
        /// framed with the hash recomputed as a hostile writer would. Whatever is accepted is
        /// valid and re-encodes to itself.
        #[test]
        fn mutated_manifests_never_panic_and_what_is_accepted_is_valid(
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
        ) {
            let mut body = postcard::to_stdvec(&sample()).unwrap();
            for (at, byte, operation) in edits {
                match operation {
                    0 => { let at = at.index(body.len()); body[at] = byte; }
                    1 => body.insert(at.index(body.len() + 1), byte),
                    _ => { body.remove(at.index(body.len())); }
                }
            }
            if let Ok(manifest) = Manifest::decode("fuzz", &framed_body(&body)) {
                prop_assert_eq!(manifest.validate(), Ok(()));
                prop_assert_eq!(Manifest::decode("fuzz", &manifest.encode()).unwrap(), manifest);
            }
        }

        /// Fuzzing the validator with structurally random manifests: it never panics, and the
        /// decoder accepts exactly what `validate` accepts.
        #[test]
        fn decode_accepts_exactly_what_validate_accepts(manifest in arbitrary_manifest()) {
            let valid = manifest.validate();
            match Manifest::decode("fuzz", &manifest.encode()) {
                Ok(decoded) => {
                    prop_assert_eq!(valid, Ok(()));
                    prop_assert_eq!(decoded, manifest);
                }
                Err(ManifestError::Invalid { reason, .. }) => prop_assert_eq!(valid, Err(reason)),
                Err(other) => prop_assert!(false, "{other}"),
            }
        }
    }
}
