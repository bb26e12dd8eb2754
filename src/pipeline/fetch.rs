//! What a restore reads, and what it keeps in memory while it writes.
//!
//! The manifest says where every chunk lies (pack, offset, stored length). [`plan_ranges`] turns
//! the chunks a restore needs into ranged reads: the needed objects of each pack, sorted by
//! offset, are merged into one read when they lie closer than [`GAP`] (the bytes between are
//! read and dropped: cheaper than another request), and a run longer than [`max_range`] is split
//! so one large pack is read in parallel. Reads are ordered by when the file stream first needs
//! one of their chunks, so they can be issued in that order with bounded concurrency.
//!
//! A read may bring chunks the stream needs only later (a pack's chunks are in the order the
//! save's threads produced them), and a chunk may recur. [`Kept`] holds such chunks within a
//! byte budget; past it, it drops the chunk needed furthest in the future (Bélády's rule), which
//! is then read again on its own when its turn comes.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use crate::core::id::ChunkId;
use crate::core::manifest::Manifest;
use crate::store::{PackRange, Store};

/// Needed objects of one pack closer than this are read in one request.
pub const GAP: u32 = 256 << 10;
/// The longest single read from an object store; a longer run of needed objects is split.
pub const MAX_RANGE: u32 = 8 << 20;
/// The longest single read from a local folder, where a read costs a system call, not a
/// request: under the 4 MiB above which the binary has glibc map each buffer afresh
/// (`tune_allocator` in `src/main.rs`), so read buffers are reused instead of faulted in and
/// zeroed again each time (object_store zero-fills them). A cold restore of the 1 GiB Gradle
/// fixture from a folder: 0.85× the wall time and a third of the page faults (medians of 6
/// pairs), against 8 MiB reads.
pub const LOCAL_MAX_RANGE: u32 = 3 << 20;

/// The longest single read from `store`: [`LOCAL_MAX_RANGE`] from a local folder, else
/// [`MAX_RANGE`].
pub fn max_range(store: &Store) -> u32 {
    if store.local_root().is_some() { LOCAL_MAX_RANGE } else { MAX_RANGE }
}

/// Ranged reads in flight at most, whatever the concurrency asked for, however short.
pub const READS_IN_FLIGHT: usize = 8;
/// Bytes of the ranged reads a restore has started and not yet taken in, at most (one read
/// always runs). A cold restore's reads are up to [`MAX_RANGE`] long, so 3 to 5 run at once;
/// an incremental restore's are mostly shorter, and more of them run at once in the same
/// memory. Counting reads instead cost either memory (6 reads of 8 MiB: a 10 GB restore peaked
/// at 250-290 MiB; 32 MiB of reads: 240-272 MiB, as compressed chunks grow when decoded; 24 MiB:
/// 221-230 MiB) or the latency of short reads (4 reads: moto's incremental restore 0.13×).
pub const READ_BYTES_IN_FLIGHT: u64 = 24 << 20;

/// Ranged reads run in order, as many at once as [`READ_BYTES_IN_FLIGHT`] and a count allow,
/// their results handed out in order.
pub struct InOrder<I: Iterator<Item = (u64, F)>, F: Future> {
    pending: std::iter::Peekable<I>,
    running: futures::stream::FuturesOrdered<F>,
    /// The length of each running read, in order.
    lengths: VecDeque<u64>,
    bytes: u64,
    most: usize,
}

impl<I: Iterator<Item = (u64, F)>, F: Future> InOrder<I, F> {
    /// Reads given as (length, read), run at most `most` at once.
    pub fn new(reads: I, most: usize) -> Self {
        let (running, lengths) = (futures::stream::FuturesOrdered::new(), VecDeque::new());
        Self { pending: reads.peekable(), running, lengths, bytes: 0, most: most.max(1) }
    }

    /// Starts the reads that fit.
    fn start(&mut self) {
        while let Some((length, _)) = self.pending.peek() {
            let full = self.running.len() >= self.most || self.bytes + length > READ_BYTES_IN_FLIGHT;
            if full && !self.running.is_empty() {
                break;
            }
            let (length, read) = self.pending.next().expect("just peeked");
            self.running.push_back(read);
            self.lengths.push_back(length);
            self.bytes += length;
        }
    }

    /// The next read's result, in order; `None` after the last.
    pub async fn next(&mut self) -> Option<F::Output> {
        use futures::StreamExt;
        self.start();
        let result = self.running.next().await?;
        self.bytes -= self.lengths.pop_front().expect("one length per running read");
        self.start();
        Some(result)
    }
}
/// Decoded chunks held for later uses, at most.
pub const KEPT_BYTES: usize = 64 << 20;

/// The ranged reads that fetch every distinct chunk of `needed` (indices into
/// `manifest.chunks`, in stream order) once, ordered by the first position that needs them;
/// none longer than `longest` unless one object is.
pub fn plan_ranges(manifest: &Manifest, needed: &[usize], longest: u32) -> Vec<PackRange> {
    // Per pack: (offset, stored length, id, first position), each id once.
    let mut by_pack: HashMap<u32, Vec<(u32, u32, ChunkId, usize)>> = HashMap::new();
    let mut seen = std::collections::HashSet::with_capacity(needed.len());
    for (position, &chunk) in needed.iter().enumerate() {
        let reference = &manifest.chunks[chunk];
        if seen.insert(reference.id) {
            by_pack.entry(reference.pack).or_default().push((
                reference.offset,
                reference.stored_len,
                reference.id,
                position,
            ));
        }
    }
    let mut ranges: Vec<(usize, PackRange)> = Vec::new();
    for (pack, mut objects) in by_pack {
        objects.sort_unstable_by_key(|&(offset, ..)| offset);
        let mut current: Option<(usize, PackRange)> = None;
        for (offset, stored_len, id, position) in objects {
            let end = offset + stored_len;
            if let Some((first, range)) = &mut current
                && offset <= range.end.saturating_add(GAP)
                && end.max(range.end) - range.start <= longest
            {
                range.end = range.end.max(end);
                range.chunks.push((id, offset, stored_len));
                *first = (*first).min(position);
                continue;
            }
            ranges.extend(current.take());
            let range = PackRange {
                pack: manifest.packs[pack as usize],
                start: offset,
                end,
                chunks: vec![(id, offset, stored_len)],
            };
            current = Some((position, range));
        }
        ranges.extend(current);
    }
    ranges.sort_by_key(|(first, range)| (*first, range.pack, range.start));
    ranges.into_iter().map(|(_, range)| range).collect()
}

/// Decoded chunks held between the read that brought them and their uses, within a budget.
pub struct Kept {
    held: HashMap<ChunkId, Bytes>,
    bytes: usize,
    budget: usize,
    /// Positions in the stream still to come, per chunk.
    uses: HashMap<ChunkId, VecDeque<usize>>,
}

impl Kept {
    /// An empty holder for a stream whose chunks, in order, are `stream`.
    pub fn new(stream: impl IntoIterator<Item = ChunkId>, budget: usize) -> Self {
        let mut uses: HashMap<ChunkId, VecDeque<usize>> = HashMap::new();
        for (position, id) in stream.into_iter().enumerate() {
            uses.entry(id).or_default().push_back(position);
        }
        Self { held: HashMap::new(), bytes: 0, budget, uses }
    }

    /// Holds `data` for the uses of `id` still to come (none: it is dropped), then drops what
    /// is needed furthest ahead until the budget holds.
    pub fn insert(&mut self, id: ChunkId, data: Bytes) {
        if self.uses.get(&id).is_none_or(VecDeque::is_empty) || self.held.contains_key(&id) {
            return;
        }
        self.bytes += data.len();
        self.held.insert(id, data);
        while self.bytes > self.budget {
            let furthest = self
                .held
                .keys()
                .max_by_key(|id| self.uses[*id].front().copied().unwrap_or(usize::MAX))
                .copied()
                .expect("over budget means something is held");
            let dropped = self.held.remove(&furthest).expect("just found");
            self.bytes -= dropped.len();
        }
    }

    /// Uses `id` at the next stream position that needs it: its bytes if held (released after
    /// its last use), `None` if they must be read again.
    pub fn take(&mut self, id: ChunkId) -> Option<Bytes> {
        let uses = self.uses.get_mut(&id)?;
        uses.pop_front();
        if uses.is_empty() {
            let data = self.held.remove(&id)?;
            self.bytes -= data.len();
            Some(data)
        } else {
            self.held.get(&id).cloned()
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::id::PackId;
    use crate::core::manifest::ChunkRef;

    fn manifest(chunks: &[(u8, u32, u32, u32)]) -> Manifest {
        let mut manifest = crate::core::manifest::tests::sample();
        manifest.packs = vec![PackId::of(b"a"), PackId::of(b"b")];
        manifest.chunks = chunks
            .iter()
            .map(|&(byte, pack, offset, stored_len)| ChunkRef {
                id: ChunkId::of(&[byte]),
                len: 10,
                stored_len,
                pack,
                offset,
            })
            .collect();
        manifest
    }

    #[test]
    fn neighbours_merge_far_ones_split_and_reads_follow_the_stream() {
        let far = 308 + GAP + 1;
        // Stream order: chunk 0 in pack b, then pack a's three chunks (one far away), then a
        // repeat of chunk 1.
        let m = manifest(&[(0, 1, 8, 100), (1, 0, 208, 100), (2, 0, 8, 100), (3, 0, far, 50), (1, 0, 208, 100)]);
        let ranges = plan_ranges(&m, &[0, 1, 2, 3, 4], MAX_RANGE);
        let summary: Vec<(PackId, u32, u32, usize)> =
            ranges.iter().map(|r| (r.pack, r.start, r.end, r.chunks.len())).collect();
        assert_eq!(
            summary,
            [(m.packs[1], 8, 108, 1), (m.packs[0], 8, 308, 2), (m.packs[0], far, far + 50, 1)],
            "the gap of 100 bytes is read through, the far chunk is not, and the repeat is read once"
        );
    }

    #[test]
    fn a_long_run_is_split_into_reads_of_at_most_the_limit() {
        let chunk = MAX_RANGE / 4;
        let objects: Vec<(u8, u32, u32, u32)> = (0..10u8).map(|n| (n, 0, 8 + u32::from(n) * chunk, chunk)).collect();
        let ranges = plan_ranges(&manifest(&objects), &(0..10).collect::<Vec<_>>(), MAX_RANGE);
        assert_eq!(ranges.iter().map(|r| r.chunks.len()).collect::<Vec<_>>(), [4, 4, 2]);
        assert!(ranges.iter().all(|r| r.end - r.start <= MAX_RANGE));
        let local = plan_ranges(&manifest(&objects), &(0..10).collect::<Vec<_>>(), LOCAL_MAX_RANGE);
        assert!(local.iter().all(|r| r.end - r.start <= LOCAL_MAX_RANGE), "{local:?}");
        assert_eq!(local.iter().map(|r| r.chunks.len()).sum::<usize>(), 10);
    }

    /// Reads start in order within the byte budget and the count, and results come in order.
    #[test]
    fn reads_run_within_the_byte_budget_and_come_in_order() {
        let started = std::sync::Mutex::new(Vec::new());
        let read = |index: usize| {
            let started = &started;
            async move {
                started.lock().unwrap().push(index);
                index
            }
        };
        let mib = 1u64 << 20;
        // 8 MiB reads: three fit in the 24 MiB budget; then short reads up to the count of 8;
        // then one read over the whole budget, alone.
        let lengths = [8, 8, 8, 8, 8, 1, 1, 1, 1, 1, 1, 1, 1, 1, 40, 1].map(|l| l * mib);
        let mut reads = InOrder::new(lengths.iter().enumerate().map(|(index, &length)| (length, read(index))), 8);
        reads.start();
        assert_eq!(reads.running.len() as u64, READ_BYTES_IN_FLIGHT / (8 * mib), "8 MiB reads fill the budget");
        let mut order = Vec::new();
        let mut most_running = 0;
        futures::executor::block_on(async {
            while let Some(index) = reads.next().await {
                order.push(index);
                most_running = most_running.max(reads.running.len());
                assert!(reads.bytes <= READ_BYTES_IN_FLIGHT || reads.running.len() == 1);
            }
        });
        assert_eq!(order, (0..lengths.len()).collect::<Vec<_>>());
        assert_eq!(most_running, 8, "short reads run up to the count");
        assert_eq!(*started.lock().unwrap(), order, "started in order");
    }

    #[test]
    fn kept_chunks_stay_within_budget_dropping_the_one_needed_last() {
        let (a, b, c) = (ChunkId::of(b"a"), ChunkId::of(b"b"), ChunkId::of(b"c"));
        // Stream: a b c a b c: every chunk recurs; room for two.
        let mut kept = Kept::new([a, b, c, a, b, c], 20);
        let ten = || Bytes::from(vec![0u8; 10]);
        kept.insert(a, ten());
        kept.insert(b, ten());
        kept.insert(c, ten());
        assert_eq!(kept.bytes(), 20);
        assert!(kept.take(a).is_some(), "a is needed first, so it stays");
        assert!(kept.take(b).is_some());
        assert!(kept.take(c).is_none(), "c was needed last and was dropped");
        kept.insert(c, ten());
        assert_eq!(kept.bytes(), 20, "c's next use is after a's and b's: it was dropped again");
        assert!(kept.take(a).is_some() && kept.take(b).is_some());
        assert_eq!(kept.bytes(), 0, "last uses release their chunks");
        assert!(kept.take(c).is_none());
    }
}
