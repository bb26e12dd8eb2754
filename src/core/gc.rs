//! The GC plan: which keys expire and what happens to each pack. Pure: listings, manifests' pack
//! references and the server's clock come in, decisions come out ([`crate::pipeline::gc`] does the
//! I/O).
//!
//! Retention ([`expire`]) ranks keys by last use (the newer of the manifest's write time and its
//! `used/` marker): keys unused for longer than `max_unused` expire, then the least recently used
//! go until the rest fit in `max_size` (each key counted at its own stored size, the sum of the
//! stored lengths of its distinct chunks: simpler than the union over keys, and an upper bound of
//! it, so the cap is never exceeded). Pinned keys never expire.
//!
//! The sweep ([`Sweep`]) sees each listed pack once, in any order, and keeps, deletes or condemns
//! it. A pack is deleted only when no live manifest references it, it was condemned (recorded
//! unreferenced on a list under `gc/condemned/`) at least the grace period ago, and it was not
//! modified since. Every other unreferenced pack stays condemned, at its earliest recorded time. A
//! condemned pack that a manifest references again is revived: it leaves the lists. Memory: the
//! referenced packs are a sorted vector of ids, and the referenced chunks (for the waste report) a
//! sorted vector of `(pack index, offset, stored length)` of 12 bytes each ([`ReferencedChunks`],
//! which `stats` shares, with the key holding each chunk).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::id::PackId;

/// The grace period unless the operator asks for another: longer than any real save.
pub const DEFAULT_GRACE_MS: u64 = 24 * 3_600_000;

/// A cache key as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUse {
    /// The key.
    pub key: String,
    /// Last use, server time in ms: the newer of the manifest's write and its `used/` marker.
    pub last_used_ms: i64,
    /// The key's stored size (see the module docs); 0 when no size cap is asked for.
    pub bytes: u64,
    /// Matched a `--keep` glob: never expires.
    pub pinned: bool,
}

/// A key's last use: the newer of its manifest's write (`saved_ms`) and its `used/` marker.
pub fn last_used_ms(saved_ms: i64, used_marker_ms: Option<i64>) -> i64 {
    used_marker_ms.map_or(saved_ms, |at| at.max(saved_ms))
}

/// What the operator asked retention to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionOptions {
    /// Expire keys unused for longer than this many ms.
    pub max_unused_ms: Option<u64>,
    /// Then expire the least recently used keys until the rest fit in this many bytes.
    pub max_size: Option<u64>,
}

/// The keys that expire (indices into `keys`, ascending), at server time `now_ms`.
pub fn expire(keys: &[KeyUse], now_ms: i64, options: RetentionOptions) -> Vec<usize> {
    let mut expired = vec![false; keys.len()];
    if let Some(max_unused) = options.max_unused_ms {
        for (index, key) in keys.iter().enumerate() {
            if !key.pinned && now_ms.saturating_sub(key.last_used_ms) > max_unused as i64 {
                expired[index] = true;
            }
        }
    }
    if let Some(max_size) = options.max_size {
        let mut total: u64 = keys.iter().zip(&expired).filter(|(_, gone)| !**gone).map(|(key, _)| key.bytes).sum();
        // Least recently used first; ties by key so the plan is deterministic.
        let mut order: Vec<usize> = (0..keys.len()).filter(|&index| !expired[index] && !keys[index].pinned).collect();
        order.sort_by(|&a, &b| {
            keys[a].last_used_ms.cmp(&keys[b].last_used_ms).then_with(|| keys[a].key.cmp(&keys[b].key))
        });
        for index in order {
            if total <= max_size {
                break;
            }
            expired[index] = true;
            total -= keys[index].bytes;
        }
    }
    (0..keys.len()).filter(|&index| expired[index]).collect()
}

/// One pack on a condemned list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CondemnedPack {
    /// The pack.
    pub id: PackId,
    /// When a GC run recorded it unreferenced, server time in ms.
    pub condemned_at_ms: i64,
}

/// A condemned list, `gc/condemned/<run id>.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CondemnedList {
    /// The grace the run that wrote it used.
    pub grace_ms: u64,
    /// The packs it condemned (or kept condemned).
    pub packs: Vec<CondemnedPack>,
}

/// The condemned lists merged: each pack once, at its earliest condemnation.
pub fn merge_condemned<'a>(lists: impl IntoIterator<Item = &'a CondemnedList>) -> Vec<CondemnedPack> {
    let mut earliest: BTreeMap<PackId, i64> = BTreeMap::new();
    for pack in lists.into_iter().flat_map(|list| &list.packs) {
        let at = earliest.entry(pack.id).or_insert(pack.condemned_at_ms);
        *at = (*at).min(pack.condemned_at_ms);
    }
    earliest.into_iter().map(|(id, condemned_at_ms)| CondemnedPack { id, condemned_at_ms }).collect()
}

/// A pack as the listing shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedPack {
    /// The pack.
    pub id: PackId,
    /// Its size in bytes.
    pub size: u64,
    /// Its last-modified time, server time in ms.
    pub modified_ms: i64,
}

/// What the sweep does with one pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A live manifest references it.
    Keep,
    /// Unreferenced, but not condemned long enough (or modified since): stays on the list.
    Condemn,
    /// Unreferenced, condemned at least the grace ago and not modified since: delete it.
    Delete,
}

/// What the sweep counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepCounts {
    /// Distinct chunks the live manifests reference (what GC's memory grows with).
    pub referenced_chunks: u64,
    /// Packs listed.
    pub packs: u64,
    /// Their bytes.
    pub pack_bytes: u64,
    /// Packs kept because a live manifest references them.
    pub live_packs: u64,
    /// Packs condemned by this run for the first time.
    pub condemned: u64,
    /// Packs still condemned from an earlier run (not yet deletable).
    pub still_condemned: u64,
    /// Packs condemned earlier that a live manifest references again.
    pub revived: u64,
    /// Packs to delete.
    pub deleted: u64,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// Bytes of live packs that no live manifest references (chunks of expired keys, headers
    /// and indexes): what a repack could reclaim.
    pub waste_bytes: u64,
}

/// The sweep over the pack listing (see the module docs).
#[derive(Debug)]
pub struct Sweep {
    now_ms: i64,
    grace_ms: u64,
    /// The referenced packs, sorted by id.
    referenced: Vec<ReferencedPack>,
    condemned: Vec<CondemnedPack>,
    /// Packs left condemned, with their condemnation time (`None`: condemned by this run).
    pending: Vec<(PackId, Option<i64>)>,
    counts: SweepCounts,
}

impl Sweep {
    /// A sweep at server time `now_ms` with `grace_ms`, over what the live manifests reference
    /// (`chunks`: pack, offset and stored length of each referenced chunk, in any order and with
    /// repeats) and the merged condemned lists ([`merge_condemned`]).
    pub fn new(now_ms: i64, grace_ms: u64, chunks: ReferencedChunks, condemned: Vec<CondemnedPack>) -> Self {
        let referenced = chunks.finish();
        let referenced_chunks = referenced.chunks.len() as u64;
        Self {
            now_ms,
            grace_ms,
            referenced: referenced.packs,
            condemned,
            pending: Vec::new(),
            counts: SweepCounts { referenced_chunks, ..SweepCounts::default() },
        }
    }

    /// Decides about one listed pack.
    pub fn visit(&mut self, pack: ListedPack) -> Verdict {
        self.counts.packs += 1;
        self.counts.pack_bytes += pack.size;
        let condemned = self.condemned.binary_search_by_key(&pack.id, |c| c.id).ok().map(|at| self.condemned[at]);
        if let Ok(at) = self.referenced.binary_search_by_key(&pack.id, |referenced| referenced.id) {
            self.counts.live_packs += 1;
            self.counts.waste_bytes += pack.size.saturating_sub(self.referenced[at].bytes);
            if condemned.is_some() {
                self.counts.revived += 1;
            }
            return Verdict::Keep;
        }
        match condemned {
            Some(entry)
                if self.now_ms.saturating_sub(entry.condemned_at_ms) >= self.grace_ms as i64
                    && pack.modified_ms <= entry.condemned_at_ms =>
            {
                self.counts.deleted += 1;
                self.counts.deleted_bytes += pack.size;
                Verdict::Delete
            }
            Some(entry) => {
                self.counts.still_condemned += 1;
                // Modified since it was condemned (written again by a save): its clock starts over.
                let at = (pack.modified_ms <= entry.condemned_at_ms).then_some(entry.condemned_at_ms);
                self.pending.push((pack.id, at));
                Verdict::Condemn
            }
            None => {
                self.counts.condemned += 1;
                self.pending.push((pack.id, None));
                Verdict::Condemn
            }
        }
    }

    /// The counts, and the new condemned list: every pack left condemned, sorted by id. Packs
    /// this run condemned get `written_at_ms`, the server's time just before the list is
    /// written: a save that read the lists before this one appeared started before that time,
    /// which is what the protocol's proof needs (see [`crate::pipeline::gc`]).
    pub fn finish(mut self, written_at_ms: i64) -> (SweepCounts, CondemnedList) {
        self.pending.sort_by_key(|&(id, _)| id);
        let packs = self
            .pending
            .into_iter()
            .map(|(id, at)| CondemnedPack { id, condemned_at_ms: at.unwrap_or(written_at_ms) })
            .collect();
        (self.counts, CondemnedList { grace_ms: self.grace_ms, packs })
    }
}

/// Who holds a referenced chunk. [`ReferencedChunks`] keeps each chunk once and merges the
/// holders of its repeats.
pub trait Holder: Copy + Ord + std::fmt::Debug {
    /// The holder of a chunk that both `self` and `other` hold.
    #[must_use]
    fn merge(self, other: Self) -> Self;
}

/// GC only asks whether a chunk is held: no holder, no bytes.
impl Holder for () {
    fn merge(self, (): ()) {}
}

/// The one cache key that holds a chunk (its index in the caller's list of keys), or
/// [`KeyHolder::SHARED`] for a chunk two or more keys hold: what `stats` needs to tell a key's
/// unique bytes from its shared ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyHolder(u32);

impl KeyHolder {
    /// Held by two or more keys.
    pub const SHARED: Self = Self(u32::MAX);

    /// The key at `index` of the caller's list.
    ///
    /// # Panics
    /// If `index` does not fit below [`KeyHolder::SHARED`] (four billion keys).
    pub fn key(index: usize) -> Self {
        let index = u32::try_from(index).ok().filter(|&index| index != u32::MAX).expect("fewer than 2^32 - 1 keys");
        Self(index)
    }

    /// The index of the only key holding the chunk; `None` when it is shared.
    pub fn only_key(self) -> Option<usize> {
        (self != Self::SHARED).then_some(self.0 as usize)
    }
}

impl Holder for KeyHolder {
    fn merge(self, other: Self) -> Self {
        if self == other { self } else { Self::SHARED }
    }
}

/// The chunks manifests reference, gathered one manifest at a time: a chunk is a location (pack,
/// offset, stored length), kept once with the merged [`Holder`] of its repeats. At most 12 bytes
/// per referenced chunk plus the holder's size (none for GC, 4 for `stats`) and 32 per pack once
/// compacted (packs are interned; the list is sorted and deduplicated whenever it doubles).
#[derive(Debug)]
pub struct ReferencedChunks<H: Holder = ()> {
    packs: BTreeMap<PackId, u32>,
    chunks: Vec<(u32, u32, u32, H)>,
    compacted: usize,
}

impl<H: Holder> Default for ReferencedChunks<H> {
    fn default() -> Self {
        Self { packs: BTreeMap::new(), chunks: Vec::new(), compacted: 0 }
    }
}

/// A referenced pack, as [`ReferencedChunks::finish`] sums it up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReferencedPack {
    /// The pack.
    pub id: PackId,
    /// The stored bytes of its distinct referenced chunks.
    pub bytes: u64,
    /// How many distinct chunks of it are referenced.
    pub chunks: u64,
}

/// Every referenced chunk, each once: the packs (sorted by id, for binary searches) and the
/// chunks' stored lengths with their holders.
#[derive(Debug)]
pub struct Referenced<H: Holder> {
    /// The referenced packs, sorted by id.
    pub packs: Vec<ReferencedPack>,
    chunks: Vec<(u32, u32, u32, H)>,
}

impl<H: Holder> Referenced<H> {
    /// Each distinct referenced chunk's stored length and holder.
    pub fn held(&self) -> impl Iterator<Item = (u64, H)> + '_ {
        self.chunks.iter().map(|&(_, _, len, holder)| (u64::from(len), holder))
    }
}

impl<H: Holder> ReferencedChunks<H> {
    /// Adds one referenced chunk: its pack, offset and stored length, and who holds it.
    pub fn add(&mut self, pack: PackId, offset: u32, stored_len: u32, holder: H) {
        let next = self.packs.len() as u32;
        let index = *self.packs.entry(pack).or_insert(next);
        self.chunks.push((index, offset, stored_len, holder));
        if self.chunks.len() >= 2 * self.compacted.max(1 << 16) {
            self.compact();
        }
    }

    fn compact(&mut self) {
        self.chunks.sort_unstable();
        self.chunks.dedup_by(|next, kept| {
            let same = (next.0, next.1, next.2) == (kept.0, kept.1, kept.2);
            if same {
                kept.3 = kept.3.merge(next.3);
            }
            same
        });
        self.compacted = self.chunks.len();
    }

    /// Every referenced chunk once, and what each referenced pack holds of them.
    pub fn finish(mut self) -> Referenced<H> {
        self.compact();
        let mut by_index = vec![(0u64, 0u64); self.packs.len()];
        for &(index, _, len, _) in &self.chunks {
            let (bytes, chunks) = &mut by_index[index as usize];
            *bytes += u64::from(len);
            *chunks += 1;
        }
        // BTreeMap iterates in id order: the sorted vector binary searches need.
        let packs = self
            .packs
            .into_iter()
            .map(|(id, index)| {
                let (bytes, chunks) = by_index[index as usize];
                ReferencedPack { id, bytes, chunks }
            })
            .collect();
        Referenced { packs, chunks: self.chunks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn key(name: &str, last_used_ms: i64, bytes: u64) -> KeyUse {
        KeyUse { key: name.to_string(), last_used_ms, bytes, pinned: false }
    }

    #[test]
    fn keys_unused_too_long_expire_unless_pinned() {
        let mut keys = vec![key("old", 0, 1), key("new", 10 * HOUR, 1), key("pinned", 0, 1)];
        keys[2].pinned = true;
        let options = RetentionOptions { max_unused_ms: Some(5 * HOUR as u64), max_size: None };
        assert_eq!(expire(&keys, 11 * HOUR, options), [0]);
        assert!(expire(&keys, 11 * HOUR, RetentionOptions::default()).is_empty());
    }

    #[test]
    fn the_size_cap_expires_least_recently_used_first() {
        let keys = vec![key("c", 3, 100), key("a", 1, 100), key("b", 2, 100), key("d", 4, 100)];
        let cap = |max_size| expire(&keys, 10, RetentionOptions { max_unused_ms: None, max_size: Some(max_size) });
        assert_eq!(cap(400), Vec::<usize>::new());
        assert_eq!(cap(399), [1]);
        assert_eq!(cap(200), [1, 2]);
        assert_eq!(cap(0), [0, 1, 2, 3]);
        // Keys already expired by age no longer count against the cap.
        let both = RetentionOptions { max_unused_ms: Some(8), max_size: Some(200) };
        assert_eq!(expire(&keys, 10, both), [1, 2]);
    }

    #[test]
    fn pinned_keys_count_against_the_cap_but_never_expire() {
        let mut keys = vec![key("a", 1, 100), key("b", 2, 100)];
        keys[0].pinned = true;
        assert_eq!(expire(&keys, 10, RetentionOptions { max_unused_ms: None, max_size: Some(50) }), [1]);
    }

    fn pack(n: u8) -> PackId {
        PackId::of(&[n])
    }

    fn listed(n: u8, modified_ms: i64) -> ListedPack {
        ListedPack { id: pack(n), size: 1000, modified_ms }
    }

    fn referencing(packs: &[u8]) -> ReferencedChunks {
        let mut chunks = ReferencedChunks::default();
        for &n in packs {
            chunks.add(pack(n), 8, 100, ());
            chunks.add(pack(n), 8, 100, ());
            chunks.add(pack(n), 108, 300, ());
        }
        chunks
    }

    #[test]
    fn referenced_packs_are_kept_and_the_rest_condemned_then_deleted_after_the_grace() {
        let mut first = Sweep::new(10 * HOUR, HOUR as u64, referencing(&[1]), Vec::new());
        assert_eq!(first.visit(listed(1, 0)), Verdict::Keep);
        assert_eq!(first.visit(listed(2, 0)), Verdict::Condemn);
        let (counts, list) = first.finish(10 * HOUR + 5);
        assert_eq!((counts.live_packs, counts.condemned, counts.deleted), (1, 1, 0));
        assert_eq!(counts.referenced_chunks, 2, "pack 1's two chunks, each once");
        assert_eq!(counts.waste_bytes, 600, "1000 bytes listed, 400 referenced once each");
        assert_eq!(list.packs, [CondemnedPack { id: pack(2), condemned_at_ms: 10 * HOUR + 5 }], "at the list's time");

        // Within the grace: still condemned, at the first time.
        let condemned = merge_condemned([&list]);
        let mut early = Sweep::new(11 * HOUR + 4, HOUR as u64, referencing(&[1]), condemned.clone());
        assert_eq!(early.visit(listed(2, 0)), Verdict::Condemn);
        assert_eq!(early.finish(12 * HOUR).1.packs, list.packs);

        let mut late = Sweep::new(11 * HOUR + 5, HOUR as u64, referencing(&[1]), condemned);
        assert_eq!(late.visit(listed(2, 0)), Verdict::Delete);
        let (counts, list) = late.finish(12 * HOUR);
        assert_eq!((counts.deleted, counts.deleted_bytes), (1, 1000));
        assert!(list.packs.is_empty());
    }

    #[test]
    fn a_condemned_pack_referenced_again_is_revived() {
        let condemned = vec![CondemnedPack { id: pack(1), condemned_at_ms: 0 }];
        let mut sweep = Sweep::new(10 * HOUR, HOUR as u64, referencing(&[1]), condemned);
        assert_eq!(sweep.visit(listed(1, 0)), Verdict::Keep);
        let (counts, list) = sweep.finish(11 * HOUR);
        assert_eq!((counts.revived, counts.deleted), (1, 0));
        assert!(list.packs.is_empty());
    }

    #[test]
    fn a_pack_modified_since_its_condemnation_is_not_deleted_and_its_clock_starts_over() {
        let condemned = vec![CondemnedPack { id: pack(3), condemned_at_ms: 0 }];
        let mut sweep = Sweep::new(10 * HOUR, HOUR as u64, referencing(&[]), condemned);
        assert_eq!(sweep.visit(listed(3, 1)), Verdict::Condemn);
        assert_eq!(sweep.finish(11 * HOUR).1.packs, [CondemnedPack { id: pack(3), condemned_at_ms: 11 * HOUR }]);
    }

    #[test]
    fn lists_merge_at_the_earliest_condemnation() {
        let a = CondemnedList { grace_ms: 1, packs: vec![CondemnedPack { id: pack(1), condemned_at_ms: 5 }] };
        let b = CondemnedList {
            grace_ms: 1,
            packs: vec![
                CondemnedPack { id: pack(1), condemned_at_ms: 3 },
                CondemnedPack { id: pack(2), condemned_at_ms: 9 },
            ],
        };
        let merged = merge_condemned([&a, &b]);
        assert_eq!(merged.len(), 2);
        assert!(merged.contains(&CondemnedPack { id: pack(1), condemned_at_ms: 3 }));
        assert!(merged.windows(2).all(|w| w[0].id < w[1].id), "sorted for binary search");
    }

    #[test]
    fn referenced_chunks_compact_without_losing_any() {
        let mut chunks = ReferencedChunks::default();
        for _ in 0..3 {
            for offset in 0..100_000u32 {
                chunks.add(pack((offset % 7) as u8), offset * 10, 10, ());
            }
        }
        let referenced = chunks.finish();
        assert_eq!(referenced.packs.len(), 7);
        assert!(referenced.packs.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(referenced.packs.iter().map(|p| p.bytes).sum::<u64>(), 100_000 * 10);
        assert_eq!(referenced.packs.iter().map(|p| p.chunks).sum::<u64>(), 100_000);
        assert_eq!(referenced.chunks.len(), 100_000, "each distinct chunk once");
    }

    #[test]
    fn a_chunk_two_keys_hold_is_shared_and_one_key_holds_twice_is_its_own() {
        let mut chunks = ReferencedChunks::default();
        // Past the first compaction, so that merging across compactions is exercised too.
        for offset in 0..100_000u32 {
            chunks.add(pack(1), offset, 1, KeyHolder::key(0));
        }
        chunks.add(pack(1), 0, 1, KeyHolder::key(1));
        chunks.add(pack(2), 0, 5, KeyHolder::key(1));
        chunks.add(pack(2), 0, 5, KeyHolder::key(1));
        chunks.add(pack(2), 8, 7, KeyHolder::key(2));
        chunks.add(pack(2), 8, 7, KeyHolder::key(0));
        chunks.add(pack(2), 8, 7, KeyHolder::key(2));
        let held: Vec<(u64, KeyHolder)> = chunks.finish().held().collect();
        assert_eq!(held.len(), 100_002);
        assert_eq!(held[0], (1, KeyHolder::SHARED), "offset 0 of pack 1: keys 0 and 1");
        assert!(held[1..100_000].iter().all(|&chunk| chunk == (1, KeyHolder::key(0))));
        assert_eq!(held[100_000..], [(5, KeyHolder::key(1)), (7, KeyHolder::SHARED)]);
        assert_eq!(KeyHolder::key(1).only_key(), Some(1));
        assert_eq!(KeyHolder::SHARED.only_key(), None);
    }
}
