//! The chunk object format: what one `chunks/<xx>/<id>` object holds.
//!
//! ```text
//! "CCK1"  codec: u8 (0 = raw, 1 = zstd)  reserved: [u8; 3]  raw length: u32 LE  payload
//! ```
//! Objects are self-describing, so a reader never needs the manifest to decode one, and the
//! codec can change per chunk: incompressible data (jars, zips) is stored raw instead of paying
//! zstd's cost twice. Decoding verifies the BLAKE3 id of the raw bytes.

use std::cell::RefCell;

use bytes::Bytes;

use crate::core::chunker::MAX_CHUNK_LIMIT;
use crate::core::id::ChunkId;

const MAGIC: &[u8; 4] = b"CCK1";
const HEADER_LEN: usize = 12;
/// The largest object [`encode`] writes: a header and a chunk stored raw.
pub const MAX_OBJECT_LEN: u64 = HEADER_LEN as u64 + MAX_CHUNK_LIMIT as u64;
const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// Chunks smaller than this skip the compressibility probe and are simply compressed.
const PROBE_MIN_LEN: usize = 64 << 10;
const PROBE_LEN: usize = 16 << 10;

/// A chunk object that could not be decoded, or whose content does not match its id.
#[derive(Debug, thiserror::Error)]
pub enum CorruptChunk {
    /// The header is missing or malformed.
    #[error("chunk {id} is corrupt: {reason}")]
    Malformed {
        /// The chunk's id (its name in the store).
        id: ChunkId,
        /// What is wrong.
        reason: String,
    },
    /// The bytes decoded, but hash to another id.
    #[error("chunk {id} is corrupt: its content hashes to {actual}")]
    HashMismatch {
        /// The chunk's id (its name in the store).
        id: ChunkId,
        /// What the decoded bytes hash to.
        actual: ChunkId,
    },
}

/// Encodes a chunk's raw bytes into a store object, compressing with zstd at `level` when that
/// pays. Incompressible data is detected on a sample first, so it costs almost nothing.
pub fn encode(raw: &[u8], level: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + raw.len() / 2);
    encode_into(raw, level, &mut out);
    out
}

/// Appends the object [`encode`] makes of `raw` to `out`; returns its length. zstd writes
/// straight into `out`'s spare room, so a pack being filled takes each object without a buffer
/// of its own or a copy.
pub fn encode_into(raw: &[u8], level: i32, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[ZSTD, 0, 0, 0]);
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    if looks_compressible(raw) {
        let payload = out.len();
        out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        let mut spare = std::io::Cursor::new(&mut *out);
        spare.set_position(payload as u64);
        let compressed = with_compressor(level, |compressor| compressor.compress_to_buffer(raw, &mut spare))
            .expect("zstd compression into a buffer of its bound");
        if compressed + raw.len() / 32 < raw.len() {
            return out.len() - start;
        }
        out.truncate(payload);
    }
    out[start + 4] = RAW;
    out.extend_from_slice(raw);
    out.len() - start
}

fn looks_compressible(raw: &[u8]) -> bool {
    if raw.len() < PROBE_MIN_LEN {
        return true;
    }
    let start = raw.len() / 2 - PROBE_LEN / 2;
    let sample = &raw[start..start + PROBE_LEN];
    compress(sample, 1).len() < PROBE_LEN * 15 / 16
}

thread_local! {
    /// One zstd context per thread and level: creating one allocates megabytes of tables,
    /// too much to pay per chunk.
    static COMPRESSORS: RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(Vec::new()) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn compress(data: &[u8], level: i32) -> Vec<u8> {
    with_compressor(level, |compressor| compressor.compress(data)).expect("zstd compression of a buffer")
}

/// Runs `work` with this thread's compressor for `level`.
fn with_compressor<T>(level: i32, work: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> T) -> T {
    COMPRESSORS.with_borrow_mut(|compressors| {
        let index = match compressors.iter().position(|(l, _)| *l == level) {
            Some(index) => index,
            None => {
                compressors.push((level, zstd::bulk::Compressor::new(level).expect("zstd context")));
                compressors.len() - 1
            }
        };
        work(&mut compressors[index].1)
    })
}

fn decompress(payload: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with_borrow_mut(|slot| {
        let decompressor = match slot {
            Some(decompressor) => decompressor,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress(payload, capacity)
    })
}

/// Decodes a store object and verifies it is the chunk named `id`.
///
/// # Errors
/// [`CorruptChunk`] when the header is malformed, the payload does not decompress to the
/// recorded length, or the content does not hash to `id`.
pub fn decode(id: ChunkId, object: Bytes) -> Result<Bytes, CorruptChunk> {
    let malformed = |reason: &str| CorruptChunk::Malformed { id, reason: reason.to_string() };
    if object.len() < HEADER_LEN || &object[..4] != MAGIC {
        return Err(malformed("not a chunkcache chunk object (bad header)"));
    }
    let raw_len = u32::from_le_bytes(object[8..12].try_into().expect("4 bytes"));
    if raw_len > MAX_CHUNK_LIMIT {
        return Err(malformed("recorded length exceeds the chunk size limit"));
    }
    let raw = match object[4] {
        // Stored raw: the payload is the chunk, no copy.
        RAW => object.slice(HEADER_LEN..),
        ZSTD => Bytes::from(
            decompress(&object[HEADER_LEN..], raw_len as usize)
                .map_err(|e| malformed(&format!("zstd payload does not decompress: {e}")))?,
        ),
        other => return Err(malformed(&format!("unknown codec {other}"))),
    };
    if raw.len() != raw_len as usize {
        return Err(malformed("decoded length differs from the recorded length"));
    }
    let actual = ChunkId::of(&raw);
    if actual != id {
        return Err(CorruptChunk::HashMismatch { id, actual });
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize) -> Vec<u8> {
        let mut state = 0x9e3779b97f4a7c15u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn compressible_data_is_compressed_and_round_trips() {
        let raw = b"gradle ".repeat(50_000);
        let object = encode(&raw, 3);
        assert_eq!(object[4], ZSTD);
        assert!(object.len() < raw.len() / 10);
        assert_eq!(decode(ChunkId::of(&raw), object.into()).unwrap(), raw);
    }

    #[test]
    fn incompressible_data_is_stored_raw() {
        let raw = noise(300_000);
        let object = encode(&raw, 3);
        assert_eq!(object[4], RAW);
        assert_eq!(object.len(), raw.len() + HEADER_LEN);
        assert_eq!(decode(ChunkId::of(&raw), object.into()).unwrap(), raw);
    }

    #[test]
    fn encoding_into_a_buffer_appends_what_encode_returns() {
        for raw in [vec![b'a'; 100_000], noise(100_000), Vec::new()] {
            let mut out = b"before".to_vec();
            let len = encode_into(&raw, 3, &mut out);
            assert_eq!(&out[..6], b"before");
            assert_eq!((len, &out[6..]), (out.len() - 6, &encode(&raw, 3)[..]));
            assert_eq!(decode(ChunkId::of(&raw), Bytes::copy_from_slice(&out[6..])).unwrap(), raw);
        }
    }

    #[test]
    fn corruption_is_detected_and_named() {
        let raw = noise(1000);
        let id = ChunkId::of(&raw);
        let mut object = encode(&raw, 3);
        let last = object.len() - 1;
        object[last] ^= 1;
        let err = decode(id, object.into()).unwrap_err();
        assert!(err.to_string().contains(&id.to_string()), "{err}");
        assert!(decode(id, Bytes::from_static(b"garbage")).is_err());
        let mut bomb = encode(&raw, 3);
        bomb[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(id, bomb.into()).unwrap_err().to_string().contains("limit"));
    }
}
