//! The pack object format: many chunk objects in one store object.
//!
//! One object per chunk costs about 3,200 requests per GB, and on a remote store every request
//! costs time, throttling headroom and money. A save therefore appends its new chunk objects
//! ([`crate::core::codec`]) to packs of about [`PACK_TARGET_BYTES`], uploads each pack with one
//! PUT, and records in the manifest where each chunk lies (pack, offset, stored length). A
//! restore reads byte ranges of packs, one request per run of neighbouring chunks, and needs no
//! pack index: the manifest is the index.
//!
//! ```text
//! offset 0   "CCPACK01"
//!        8   chunk objects back to back (each self-describing: codec, raw length, payload)
//!        …   index: per chunk, in order: id [32] · offset u32 LE · stored length u32 LE
//!  end − 12  chunk count u32 LE · "CCPACKIX"
//! ```
//! The pack's name is the BLAKE3 of all its bytes ([`PackId`]), so a whole pack verifies against
//! its name, and every chunk read from it verifies against its own id. The index at the end
//! makes a pack self-describing: `verify` and GC can tell what a pack holds without any manifest.

use bytes::Bytes;

use crate::core::codec;
use crate::core::id::{ChunkId, PackId};

/// The size a pack is sealed at: new chunk objects are appended until the pack reaches it.
/// Measured on Azurite and moto (benches/remote.sh): larger packs cost fewer requests but hold
/// more memory per upload in flight and waste more when GC finds them partly used.
pub const PACK_TARGET_BYTES: usize = 16 << 20;
/// The largest pack a reader accepts a reference into: a pack is sealed once it reaches
/// [`PACK_TARGET_BYTES`], so it never exceeds that plus one chunk object and its index.
pub const MAX_PACK_LEN: u64 = PACK_TARGET_BYTES as u64 + codec::MAX_OBJECT_LEN + (1 << 20);

const MAGIC: &[u8; 8] = b"CCPACK01";
const INDEX_MAGIC: &[u8; 8] = b"CCPACKIX";
const INDEX_ENTRY_LEN: usize = 40;
const FOOTER_LEN: usize = 12;

/// The bytes of a pack of `chunks` chunk objects that are not chunk objects: its header, index
/// and footer.
pub fn framing_len(chunks: u64) -> u64 {
    (MAGIC.len() + FOOTER_LEN) as u64 + INDEX_ENTRY_LEN as u64 * chunks
}

/// The bytes at the end of a pack that say how many chunks it holds: read them with
/// [`chunk_count`].
pub const FOOTER_BYTES: u64 = FOOTER_LEN as u64;

/// The chunk count a pack's last [`FOOTER_BYTES`] bytes record, or `None` if they are not a
/// pack footer (a damaged or foreign object).
pub fn chunk_count(footer: &[u8]) -> Option<u32> {
    let (count, magic) = footer.split_at_checked(4)?;
    (magic == INDEX_MAGIC).then(|| u32::from_le_bytes(count.try_into().expect("4 bytes")))
}

/// A pack being filled. Its name is hashed as objects are appended, while each is still in
/// cache, instead of reading the whole pack again when it is sealed.
#[derive(Debug)]
pub struct PackBuilder {
    bytes: Vec<u8>,
    index: Vec<PackEntry>,
    hasher: blake3::Hasher,
}

impl Default for PackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// Room a pack buffer is allocated with: a pack reaches [`PACK_TARGET_BYTES`] and then takes at
/// most one more object, which zstd writes in place (its compression bound reserved). Room
/// never written is never touched, so it costs address space, not memory.
const PACK_CAPACITY: usize = PACK_TARGET_BYTES + (4 << 20);

impl PackBuilder {
    /// An empty pack.
    pub fn new() -> Self {
        Self::with_buffer(Vec::with_capacity(PACK_CAPACITY))
    }

    /// An empty pack written into `buffer` (its contents dropped, its allocation reused: a save
    /// hands the buffer of an uploaded pack to the next, rather than faulting in fresh pages).
    pub fn with_buffer(mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        buffer.extend_from_slice(MAGIC);
        let mut hasher = blake3::Hasher::new();
        hasher.update(MAGIC);
        Self { bytes: buffer, index: Vec::new(), hasher }
    }

    /// Appends a chunk object; returns its offset in the pack.
    pub fn push(&mut self, id: ChunkId, object: &[u8]) -> u32 {
        let offset = self.bytes.len();
        self.bytes.extend_from_slice(object);
        self.appended(id, offset)
    }

    /// Encodes a chunk's raw bytes ([`codec::encode_into`]) straight into the pack; returns the
    /// object's offset in the pack and its length.
    pub fn push_encoded(&mut self, id: ChunkId, raw: &[u8], level: i32) -> (u32, u32) {
        let offset = self.bytes.len();
        codec::encode_into(raw, level, &mut self.bytes);
        (self.appended(id, offset), (self.bytes.len() - offset) as u32)
    }

    /// Indexes and hashes the object just appended at `offset`.
    fn appended(&mut self, id: ChunkId, offset: usize) -> u32 {
        let object = &self.bytes[offset..];
        self.hasher.update(object);
        self.index.push(PackEntry { id, offset: offset as u32, stored_len: object.len() as u32 });
        offset as u32
    }

    /// The chunks appended so far, in order.
    pub fn entries(&self) -> &[PackEntry] {
        &self.index
    }

    /// Whether no chunk was appended.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether the pack reached [`PACK_TARGET_BYTES`] and should be sealed.
    pub fn is_full(&self) -> bool {
        self.bytes.len() >= PACK_TARGET_BYTES
    }

    /// Seals the pack: appends its index and names it.
    pub fn finish(mut self) -> (PackId, Bytes) {
        let body_end = self.bytes.len();
        for entry in &self.index {
            self.bytes.extend_from_slice(entry.id.as_bytes());
            self.bytes.extend_from_slice(&entry.offset.to_le_bytes());
            self.bytes.extend_from_slice(&entry.stored_len.to_le_bytes());
        }
        self.bytes.extend_from_slice(&(self.index.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(INDEX_MAGIC);
        self.hasher.update(&self.bytes[body_end..]);
        (PackId::from_bytes(*self.hasher.finalize().as_bytes()), Bytes::from(self.bytes))
    }
}

/// One chunk a pack's index lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    /// The chunk's id.
    pub id: ChunkId,
    /// Where its object starts in the pack.
    pub offset: u32,
    /// The object's length.
    pub stored_len: u32,
}

/// Reads a whole pack's index, checking the pack against its name first.
///
/// # Errors
/// A message saying what is wrong: the bytes do not hash to `id`, or the framing is broken.
pub fn read_index(id: PackId, pack: &[u8]) -> Result<Vec<PackEntry>, String> {
    if PackId::of(pack) != id {
        return Err(format!("pack {id} does not hash to its name (damaged, or cut short)"));
    }
    let body_end = pack.len().checked_sub(FOOTER_LEN).filter(|&end| end >= MAGIC.len());
    let Some(body_end) = body_end.filter(|&end| &pack[..MAGIC.len()] == MAGIC && &pack[end + 4..] == INDEX_MAGIC)
    else {
        return Err(format!("pack {id} is not a chunkcache pack (bad header or footer)"));
    };
    let count = u32::from_le_bytes(pack[body_end..body_end + 4].try_into().expect("4 bytes")) as usize;
    let index_start = count
        .checked_mul(INDEX_ENTRY_LEN)
        .and_then(|len| body_end.checked_sub(len))
        .filter(|&start| start >= MAGIC.len())
        .ok_or_else(|| format!("pack {id} declares {count} chunks, more than it has room for"))?;
    pack[index_start..body_end]
        .chunks_exact(INDEX_ENTRY_LEN)
        .map(|entry| {
            let mut id_bytes = [0u8; 32];
            id_bytes.copy_from_slice(&entry[..32]);
            let offset = u32::from_le_bytes(entry[32..36].try_into().expect("4 bytes"));
            let stored_len = u32::from_le_bytes(entry[36..40].try_into().expect("4 bytes"));
            if (offset as usize) < MAGIC.len() || offset as usize + stored_len as usize > index_start {
                return Err(format!("pack {id} lists a chunk outside its body"));
            }
            Ok(PackEntry { id: ChunkId::from_bytes(id_bytes), offset, stored_len })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_footer_says_how_many_chunks_a_pack_holds() {
        let mut builder = PackBuilder::new();
        for n in 0..3u8 {
            builder.push(ChunkId::of(&[n; 100]), &codec::encode(&[n; 100], 3));
        }
        let (_, bytes) = builder.finish();
        assert_eq!(chunk_count(&bytes[bytes.len() - FOOTER_BYTES as usize..]), Some(3));
        assert_eq!(chunk_count(b"not a footer"), None);
        assert_eq!(chunk_count(b"CCPACKIX"), None);
    }

    #[test]
    fn a_pack_lists_what_was_pushed_and_every_object_decodes_from_its_range() {
        let raws: Vec<Vec<u8>> = (0..5u8).map(|n| vec![n; 1000 + usize::from(n) * 77]).collect();
        let mut builder = PackBuilder::new();
        assert!(builder.is_empty() && !builder.is_full());
        let offsets: Vec<u32> = raws.iter().map(|raw| builder.push(ChunkId::of(raw), &codec::encode(raw, 3))).collect();
        let (id, pack) = builder.finish();
        assert_eq!(id, PackId::of(&pack));
        let objects: usize = raws.iter().map(|raw| codec::encode(raw, 3).len()).sum();
        assert_eq!(pack.len() as u64, objects as u64 + framing_len(raws.len() as u64));
        let index = read_index(id, &pack).unwrap();
        assert_eq!(index.len(), raws.len());
        for ((entry, raw), offset) in index.iter().zip(&raws).zip(offsets) {
            assert_eq!((entry.id, entry.offset), (ChunkId::of(raw), offset));
            let object = pack.slice(offset as usize..(offset + entry.stored_len) as usize);
            assert_eq!(&codec::decode(entry.id, object).unwrap()[..], &raw[..]);
        }
    }

    #[test]
    fn encoding_into_a_pack_or_a_reused_buffer_makes_the_same_pack() {
        let compressible = vec![b'x'; 300_000];
        let mut state = 1u64;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (state >> 56) as u8
            })
            .collect();
        let raws = [&compressible[..], &noise[..], b"tiny"];
        let mut copied = PackBuilder::new();
        for raw in raws {
            copied.push(ChunkId::of(raw), &codec::encode(raw, 3));
        }
        let fill = |mut builder: PackBuilder| {
            for raw in raws {
                let (offset, len) = builder.push_encoded(ChunkId::of(raw), raw, 3);
                assert_eq!(builder.entries().last().map(|e| (e.offset, e.stored_len)), Some((offset, len)));
            }
            builder.finish()
        };
        let (copied_id, copied_bytes) = copied.finish();
        let (id, bytes) = fill(PackBuilder::new());
        assert_eq!((id, &bytes), (copied_id, &copied_bytes));
        assert_eq!(id, PackId::of(&bytes), "the name hashed on the way is the hash of the whole pack");
        let used = vec![7u8; 1 << 20];
        assert_eq!(fill(PackBuilder::with_buffer(used)), (id, bytes), "a reused buffer's old bytes are gone");
    }

    #[test]
    fn a_damaged_or_truncated_pack_is_refused() {
        let mut builder = PackBuilder::new();
        builder.push(ChunkId::of(b"x"), &codec::encode(b"x", 3));
        let (id, pack) = builder.finish();
        let mut flipped = pack.to_vec();
        flipped[9] ^= 1;
        assert!(read_index(id, &flipped).unwrap_err().contains("does not hash"));
        assert!(read_index(id, &pack[..pack.len() - 1]).unwrap_err().contains("does not hash"));
        let lying = b"CCPACK01\xff\xff\xff\x00CCPACKIX";
        assert!(read_index(PackId::of(lying), lying).unwrap_err().contains("more than it has room"));
    }
}
