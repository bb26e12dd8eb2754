//! The chunk stage: scanned files → the ordered chunk list, with each chunk the store lacks
//! handed to a [`ChunkSink`].
//!
//! The stage reads, chunks, hashes and (when asked) compresses; it knows nothing of stores.
//! `save` plugs in a sink that feeds the uploader, `save --dry-run` one that uploads nothing,
//! and the coming `analyze` may plug in its own counters. Work runs on rayon, one segment per
//! task: cut points depend only on the files and the chunker parameters, never on the sink.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

use rayon::prelude::*;

use crate::core::chunker::ChunkerParams;
use crate::core::codec;
use crate::core::id::ChunkId;
use crate::fs::walk::{Scan, ScannedEntry, ScannedKind};
use crate::pipeline::progress::Progress;

/// A chunk the stage found new: not known before, and seen first by this task.
pub struct NewChunk<'a> {
    /// BLAKE3 of the raw bytes.
    pub id: ChunkId,
    /// The raw bytes.
    pub data: &'a [u8],
    /// The stored object ([`codec::encode`]), when the stage was asked to encode.
    pub object: Option<Vec<u8>>,
}

/// Receives each new chunk once, from any rayon thread.
pub trait ChunkSink: Sync {
    /// Takes a new chunk. `false` stops the stage (the sink failed; its owner reports why).
    fn accept(&self, chunk: NewChunk<'_>) -> bool;
}

impl<F: Fn(NewChunk<'_>) -> bool + Sync> ChunkSink for F {
    fn accept(&self, chunk: NewChunk<'_>) -> bool {
        self(chunk)
    }
}

/// What the stage does besides chunking.
#[derive(Clone, Copy, Debug)]
pub struct ChunkStageOptions {
    /// Encode new chunks at this zstd level (to upload them or to know their stored sizes);
    /// `None` leaves them raw and their stored sizes 0.
    pub encode_level: Option<i32>,
}

/// A chunk as the stage found it (where it is stored is the save's business).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StagedChunk {
    /// BLAKE3 of the raw bytes.
    pub id: ChunkId,
    /// Raw length in bytes.
    pub len: u32,
    /// Length of the encoded object, or 0 when the stage did not encode it (or it was known).
    pub stored_len: u32,
}

/// The chunks of the scanned files, in order.
#[derive(Clone, Debug, Default)]
pub struct ChunkList {
    /// Every chunk of the files' contents, back to back, with its stored size when known.
    pub chunks: Vec<StagedChunk>,
    /// The chunks handed to the sink, each once, with their stored sizes when encoded.
    pub new: Vec<StagedChunk>,
}

impl ChunkList {
    /// Raw bytes of the new chunks.
    pub fn new_bytes(&self) -> u64 {
        self.new.iter().map(|c| u64::from(c.len)).sum()
    }

    /// Stored bytes of the new chunks (0 each when not encoded).
    pub fn new_stored_bytes(&self) -> u64 {
        self.new.iter().map(|c| u64::from(c.stored_len)).sum()
    }
}

/// Why the chunk stage failed.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file changed size while it was being saved.
    #[error("{path} changed while it was being saved; save again once nothing writes to it")]
    FileChanged {
        /// The file.
        path: PathBuf,
    },
    /// The sink refused a chunk; the sink's owner holds the reason.
    #[error("chunking stopped because the chunk sink stopped")]
    SinkStopped,
}

/// The bytes the stage will read from `entries` (the sum of their regular files' sizes).
pub fn content_bytes(entries: &[ScannedEntry]) -> u64 {
    entries.iter().map(file_size).sum()
}

/// Chunks the regular files of `scan`, in order (each opened by its mount root and relative
/// path, only while it is read). Chunks in `known` (id → stored size) are
/// not new; every other chunk goes to `sink` once, however often it occurs. Reports each
/// chunk's raw length to `progress`. Blocks on rayon: call it from a blocking context.
///
/// # Errors
/// [`ChunkError`]: a file unreadable or changed, or the sink stopped.
pub fn chunk_files(
    scan: &Scan,
    params: &ChunkerParams,
    known: HashMap<ChunkId, u32>,
    options: ChunkStageOptions,
    sink: &dyn ChunkSink,
    progress: &dyn Progress,
) -> Result<ChunkList, ChunkError> {
    let files: Vec<usize> =
        (0..scan.entries.len()).filter(|&i| matches!(scan.entries[i].kind, ScannedKind::File(s) if s > 0)).collect();
    let segments = params.segments(
        scan.paths
            .iter()
            .zip(&scan.entries)
            .filter(|(_, e)| matches!(e.kind, ScannedKind::File(s) if s > 0))
            .map(|(path, e)| (path, file_size(e))),
    );
    let claims = Mutex::new(known);
    let chunked = segments
        .par_iter()
        .map(|range| chunk_segment(scan, &files[range.clone()], params, options, &claims, sink, progress))
        .collect::<Result<Vec<_>, _>>()?;
    let stored_lengths = claims.into_inner().unwrap();
    let stored =
        |(id, len): (ChunkId, u32)| StagedChunk { id, len, stored_len: stored_lengths.get(&id).copied().unwrap_or(0) };
    // Each id is claimed by one segment only, so `new` holds each new chunk once.
    let new = chunked.iter().flat_map(|segment| &segment.new).copied().map(stored).collect();
    let chunks = chunked.into_iter().flat_map(|segment| segment.chunks).map(stored).collect();
    Ok(ChunkList { chunks, new })
}

/// The chunks of one segment, in order, and which of them this segment claimed.
struct SegmentChunks {
    chunks: Vec<(ChunkId, u32)>,
    new: Vec<(ChunkId, u32)>,
}

fn chunk_segment(
    scan: &Scan,
    files: &[usize],
    params: &ChunkerParams,
    options: ChunkStageOptions,
    claims: &Mutex<HashMap<ChunkId, u32>>,
    sink: &dyn ChunkSink,
    progress: &dyn Progress,
) -> Result<SegmentChunks, ChunkError> {
    let mut reader = SegmentReader { scan, files: files.iter(), current: None, failure: None };
    let mut out = SegmentChunks { chunks: Vec::new(), new: Vec::new() };
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let chunked = BUFFER.with_borrow_mut(|buffer| {
        params.for_segment(files.len()).for_each_chunk(&mut reader, buffer, |data| {
            let id = ChunkId::of(data);
            let len = data.len() as u32;
            if claims.lock().unwrap().try_insert_claim(id) {
                let object = options.encode_level.map(|level| codec::encode(data, level));
                if let Some(object) = &object {
                    claims.lock().unwrap().insert(id, object.len() as u32);
                }
                out.new.push((id, len));
                if !sink.accept(NewChunk { id, data, object }) {
                    return Err(ChunkingStopped::SinkStopped);
                }
            }
            out.chunks.push((id, len));
            progress.advance(u64::from(len));
            Ok(())
        })
    });
    match chunked {
        Ok(()) => Ok(out),
        Err(ChunkingStopped::SinkStopped) => Err(ChunkError::SinkStopped),
        Err(ChunkingStopped::Io(source)) => {
            Err(reader.failure.take().unwrap_or(ChunkError::Read { path: PathBuf::from("(segment)"), source }))
        }
    }
}

/// Why chunking a segment stopped early.
enum ChunkingStopped {
    Io(std::io::Error),
    SinkStopped,
}

impl From<std::io::Error> for ChunkingStopped {
    fn from(err: std::io::Error) -> Self {
        Self::Io(err)
    }
}

trait Claim {
    /// Claims `id` for this task; false if it is known or claimed already.
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
    scan: &'a Scan,
    files: std::slice::Iter<'a, usize>,
    /// The file being read, with its path on disk (for messages).
    current: Option<(PathBuf, std::io::Take<File>)>,
    failure: Option<ChunkError>,
}

impl Read for SegmentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let Some((path, file)) = &mut self.current else {
                let Some(&index) = self.files.next() else {
                    return Ok(0);
                };
                let path = self.scan.absolute(index);
                let entry = &self.scan.entries[index];
                let file = match File::open(&path) {
                    Ok(file) => file,
                    Err(source) => return Err(self.fail(ChunkError::Read { path, source })),
                };
                self.current = Some((path, file.take(file_size(entry))));
                continue;
            };
            let read = file.read(buf).map_err(|source| ChunkError::Read { path: path.clone(), source });
            match read {
                Ok(0) => {
                    let path = path.clone();
                    let grew = file.limit() == 0 && file.get_mut().read(&mut [0u8; 1]).map_or(true, |n| n > 0);
                    if file.limit() > 0 || grew {
                        return Err(self.fail(ChunkError::FileChanged { path }));
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
    fn fail(&mut self, err: ChunkError) -> std::io::Error {
        let io = std::io::Error::other(err.to_string());
        self.failure = Some(err);
        io
    }
}

fn file_size(entry: &ScannedEntry) -> u64 {
    match entry.kind {
        ScannedKind::File(size) => size,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::walk::{self, WalkOptions};
    use crate::pipeline::progress::NoProgress;

    /// Two files sharing their content, and one of its own, chunked with small chunks.
    fn tree() -> (tempfile::TempDir, Scan, ChunkerParams) {
        let dir = tempfile::tempdir().unwrap();
        let mut state = 7u64;
        let shared: Vec<u8> = (0..300_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(dir.path().join("a"), &shared).unwrap();
        std::fs::write(dir.path().join("b"), &shared).unwrap();
        std::fs::write(dir.path().join("c"), vec![b'x'; 100_000]).unwrap();
        let scan = walk::scan(&[dir.path().to_path_buf()], &WalkOptions::default()).unwrap();
        (dir, scan, ChunkerParams::with_average(16 * 1024))
    }

    #[test]
    fn each_new_chunk_reaches_the_sink_once_and_the_list_does_not_depend_on_the_sink() {
        let (_dir, scan, params) = tree();
        let seen = Mutex::new(Vec::new());
        let counter = |chunk: NewChunk<'_>| {
            seen.lock().unwrap().push((chunk.id, chunk.data.len(), chunk.object.map(|o| o.len())));
            true
        };
        let encoded = ChunkStageOptions { encode_level: Some(3) };
        let list = chunk_files(&scan, &params, HashMap::new(), encoded, &counter, &NoProgress).unwrap();
        let seen = seen.into_inner().unwrap();

        assert_eq!(list.chunks.iter().map(|c| u64::from(c.len)).sum::<u64>(), content_bytes(&scan.entries));
        assert_eq!(seen.len(), list.new.len());
        let distinct: std::collections::HashSet<ChunkId> = list.chunks.iter().map(|c| c.id).collect();
        assert_eq!(distinct.len(), list.new.len(), "each distinct chunk is new exactly once");
        assert!(list.new_bytes() < content_bytes(&scan.entries), "the shared file is deduplicated");
        for &(id, raw, stored) in &seen {
            let listed = list.new.iter().find(|c| c.id == id).unwrap();
            assert_eq!((listed.len as usize, Some(listed.stored_len as usize)), (raw, stored));
        }
        assert!(list.new_stored_bytes() < list.new_bytes(), "the run of x compresses");

        let raw = ChunkStageOptions { encode_level: None };
        let again = chunk_files(&scan, &params, HashMap::new(), raw, &|_: NewChunk<'_>| true, &NoProgress).unwrap();
        let ids = |list: &ChunkList| list.chunks.iter().map(|c| (c.id, c.len)).collect::<Vec<_>>();
        assert_eq!(ids(&again), ids(&list), "same cut points whatever the sink and encoding");
        assert_eq!(again.new_stored_bytes(), 0);
    }

    #[test]
    fn known_chunks_are_not_new_and_keep_their_stored_size() {
        let (_dir, scan, params) = tree();
        let none = ChunkStageOptions { encode_level: None };
        let first = chunk_files(&scan, &params, HashMap::new(), none, &|_: NewChunk<'_>| true, &NoProgress).unwrap();
        let known: HashMap<ChunkId, u32> = first.chunks.iter().map(|c| (c.id, 42)).collect();
        let refuse = |_: NewChunk<'_>| -> bool { panic!("no chunk is new") };
        let second = chunk_files(&scan, &params, known, none, &refuse, &NoProgress).unwrap();
        assert!(second.new.is_empty());
        assert!(second.chunks.iter().all(|c| c.stored_len == 42));
    }

    #[test]
    fn a_sink_that_stops_stops_the_stage() {
        let (_dir, scan, params) = tree();
        let none = ChunkStageOptions { encode_level: None };
        let stopped = chunk_files(&scan, &params, HashMap::new(), none, &|_: NewChunk<'_>| false, &NoProgress);
        assert!(matches!(stopped, Err(ChunkError::SinkStopped)));
    }
}
