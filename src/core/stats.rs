//! The `stats` tally: what each key holds of the store and where the store's bytes go. Pure:
//! the manifests' chunk references and the store's listing come in, figures come out
//! ([`crate::pipeline::stats`] does the I/O).
//!
//! A chunk is a location in a pack (pack, offset, stored length), as GC counts it
//! ([`ReferencedChunks`](crate::core::gc::ReferencedChunks)): the bytes a key holds are the stored lengths of its distinct
//! locations. A key's **unique** bytes are those no other key references (what expiring it alone
//! would free, once its packs are repacked or wholly unreferenced), its **shared** bytes the rest,
//! so a key's unique + shared bytes are its stored bytes. Over the store, every referenced chunk
//! is counted once: referenced = Σ unique + shared, where shared counts each chunk held by two or
//! more keys once.
//!
//! The listing's pack sizes split into the referenced chunks, their framing (the pack header,
//! footer and one index entry per referenced chunk: [`pack::framing_len`]) and the rest, the
//! **unreferenced** bytes: chunks no manifest references (with their index entries), in packs
//! that also hold referenced chunks or in wholly unreferenced packs. Right after a GC that
//! deleted every unreferenced pack, they are the chunks of expired keys left in live packs.

use serde::Serialize;

use crate::core::gc::{KeyHolder, ListedPack, Referenced, ReferencedPack};
use crate::core::id::PackId;
use crate::core::pack;

/// An object of the store, as a listing of the whole store shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListedObject {
    /// A pack.
    Pack(ListedPack),
    /// An object under `manifests/`.
    Manifest {
        /// Its size in bytes.
        size: u64,
    },
    /// Anything else: `chunkcache.json`, `used/` and `damaged/` markers, GC's clock and lists,
    /// format 1's `chunks/`, objects chunkcache did not write.
    Other {
        /// Its size in bytes.
        size: u64,
    },
}

/// Each key's unique bytes (by index, as the [`KeyHolder`]s were given for `keys` keys), and
/// the bytes two or more keys share, each chunk once.
pub fn unique_and_shared(referenced: &Referenced<KeyHolder>, keys: usize) -> (Vec<u64>, u64) {
    let mut unique = vec![0u64; keys];
    let mut shared = 0;
    for (len, holder) in referenced.held() {
        match holder.only_key() {
            Some(key) => unique[key] += len,
            None => shared += len,
        }
    }
    (unique, shared)
}

/// The store's totals (see the module docs for what each means).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreTotals {
    /// Bytes of all packs, as listed.
    pub stored_bytes: u64,
    /// Stored bytes of the distinct chunks manifests reference, each chunk once.
    pub referenced_bytes: u64,
    /// Distinct chunks manifests reference.
    pub referenced_chunks: u64,
    /// Of the referenced bytes, those only one key references: the keys' unique bytes summed.
    pub unique_bytes: u64,
    /// Of the referenced bytes, those two or more keys reference, each chunk once:
    /// `referenced_bytes = unique_bytes + shared_bytes`.
    pub shared_bytes: u64,
    /// Pack headers, footers and the index entries of referenced chunks, in listed packs.
    pub framing_bytes: u64,
    /// Bytes of listed packs that no manifest references: unreferenced chunks and their index
    /// entries, whole unreferenced packs included. `stored_bytes = referenced_bytes −
    /// missing_bytes + framing_bytes + unreferenced_bytes`.
    pub unreferenced_bytes: u64,
    /// Chunks no manifest references, in the packs that hold unreferenced bytes (from their
    /// footers: [`StoreTally::to_count`]).
    pub unreferenced_chunks: u64,
    /// Packs no manifest references at all (whole packs GC would condemn).
    pub unreferenced_packs: u64,
    /// Referenced packs that also hold unreferenced chunks.
    pub partly_referenced_packs: u64,
    /// Packs manifests reference that the listing lacks (`chunkcache verify` names their keys).
    pub missing_packs: u64,
    /// Referenced bytes in those missing packs.
    pub missing_bytes: u64,
    /// Objects listed: packs.
    pub packs: u64,
    /// Objects listed: manifests.
    pub manifests: u64,
    /// Objects listed: everything else (config, markers, GC lists, format-1 chunks).
    pub other_objects: u64,
    /// Bytes of the manifests and other objects.
    pub metadata_bytes: u64,
}

/// Totals gathered over one listing of the store, each object seen once, in any order.
#[derive(Debug)]
pub struct StoreTally {
    referenced: Vec<ReferencedPack>,
    listed: Vec<bool>,
    totals: StoreTotals,
    to_count: Vec<PackToCount>,
}

/// A listed pack that holds unreferenced bytes: its footer says how many chunks it holds, of
/// which `referenced_chunks` are referenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackToCount {
    /// The pack.
    pub id: PackId,
    /// Its listed size.
    pub size: u64,
    /// Chunks manifests reference in it.
    pub referenced_chunks: u64,
}

impl StoreTally {
    /// A tally against the referenced packs (sorted by id, as [`Referenced::packs`]) and the
    /// referenced bytes split into unique and shared ([`unique_and_shared`]).
    pub fn new(referenced: Vec<ReferencedPack>, unique_bytes: u64, shared_bytes: u64) -> Self {
        let totals = StoreTotals {
            referenced_bytes: referenced.iter().map(|pack| pack.bytes).sum(),
            referenced_chunks: referenced.iter().map(|pack| pack.chunks).sum(),
            unique_bytes,
            shared_bytes,
            ..StoreTotals::default()
        };
        Self { listed: vec![false; referenced.len()], referenced, totals, to_count: Vec::new() }
    }

    /// Counts one listed object.
    pub fn visit(&mut self, object: ListedObject) {
        let totals = &mut self.totals;
        match object {
            ListedObject::Manifest { size } => {
                totals.manifests += 1;
                totals.metadata_bytes += size;
            }
            ListedObject::Other { size } => {
                totals.other_objects += 1;
                totals.metadata_bytes += size;
            }
            ListedObject::Pack(pack) => {
                totals.packs += 1;
                totals.stored_bytes += pack.size;
                match self.referenced.binary_search_by_key(&pack.id, |referenced| referenced.id) {
                    Ok(at) => {
                        self.listed[at] = true;
                        let referenced = self.referenced[at];
                        let framing = pack::framing_len(referenced.chunks);
                        // A pack shorter than what is referenced in it is damaged: verify's matter.
                        let used = (referenced.bytes + framing).min(pack.size);
                        totals.framing_bytes += framing.min(pack.size);
                        totals.unreferenced_bytes += pack.size - used;
                        if pack.size > used {
                            totals.partly_referenced_packs += 1;
                            let (id, size, referenced_chunks) = (pack.id, pack.size, referenced.chunks);
                            self.to_count.push(PackToCount { id, size, referenced_chunks });
                        }
                    }
                    Err(_) => {
                        totals.unreferenced_packs += 1;
                        totals.unreferenced_bytes += pack.size;
                        self.to_count.push(PackToCount { id: pack.id, size: pack.size, referenced_chunks: 0 });
                    }
                }
            }
        }
    }

    /// The listed packs that hold unreferenced bytes, whose footers give the unreferenced chunk
    /// count ([`Self::counted`]).
    pub fn to_count(&self) -> &[PackToCount] {
        &self.to_count
    }

    /// Counts the unreferenced chunks of `pack`, whose footer says it holds `chunks`.
    pub fn counted(&mut self, pack: &PackToCount, chunks: u32) {
        self.totals.unreferenced_chunks += u64::from(chunks).saturating_sub(pack.referenced_chunks);
    }

    /// The totals.
    pub fn finish(self) -> StoreTotals {
        let mut totals = self.totals;
        for (pack, _) in self.referenced.iter().zip(&self.listed).filter(|(_, listed)| !**listed) {
            totals.missing_packs += 1;
            totals.missing_bytes += pack.bytes;
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::gc::ReferencedChunks;

    fn pack(n: u8) -> PackId {
        PackId::of(&[n])
    }

    fn listed(n: u8, size: u64) -> ListedObject {
        ListedObject::Pack(ListedPack { id: pack(n), size, modified_ms: 0 })
    }

    #[test]
    fn stored_bytes_split_into_referenced_framing_and_unreferenced() {
        let mut chunks = ReferencedChunks::default();
        // Key 0 holds 100 + 50 bytes in pack 1, key 1 holds 50 of them and 30 in pack 2; pack 3
        // is referenced but missing.
        chunks.add(pack(1), 8, 100, KeyHolder::key(0));
        chunks.add(pack(1), 108, 50, KeyHolder::key(0));
        chunks.add(pack(1), 108, 50, KeyHolder::key(1));
        chunks.add(pack(2), 8, 30, KeyHolder::key(1));
        chunks.add(pack(3), 8, 9, KeyHolder::key(1));
        let referenced = chunks.finish();
        let (unique, shared) = unique_and_shared(&referenced, 2);
        assert_eq!((unique, shared), (vec![100, 39], 50));

        let mut tally = StoreTally::new(referenced.packs, 139, 50);
        let exact = 150 + pack::framing_len(2);
        tally.visit(listed(1, exact));
        tally.visit(listed(2, 30 + pack::framing_len(1) + 70 + 40));
        tally.visit(listed(4, 1000));
        tally.visit(ListedObject::Manifest { size: 7 });
        tally.visit(ListedObject::Other { size: 2 });
        // Pack 2 (1 chunk referenced) and pack 4 (none) hold unreferenced bytes; their footers
        // say 3 and 5 chunks.
        let to_count = tally.to_count().to_vec();
        assert_eq!(
            to_count.iter().map(|p| (p.id, p.referenced_chunks)).collect::<Vec<_>>(),
            [(pack(2), 1), (pack(4), 0)]
        );
        tally.counted(&to_count[0], 3);
        tally.counted(&to_count[1], 5);
        let totals = tally.finish();
        assert_eq!(totals.unreferenced_chunks, 2 + 5);
        assert_eq!((totals.referenced_bytes, totals.referenced_chunks), (189, 4));
        assert_eq!(totals.unreferenced_bytes, 110 + 1000);
        assert_eq!((totals.unreferenced_packs, totals.partly_referenced_packs), (1, 1));
        assert_eq!((totals.missing_packs, totals.missing_bytes), (1, 9));
        assert_eq!(totals.framing_bytes, pack::framing_len(2) + pack::framing_len(1));
        assert_eq!(
            totals.stored_bytes,
            totals.referenced_bytes - totals.missing_bytes + totals.framing_bytes + totals.unreferenced_bytes
        );
        assert_eq!((totals.packs, totals.manifests, totals.other_objects, totals.metadata_bytes), (3, 1, 1, 9));
    }
}
