//! Content-defined chunking: how the bytes of a tree become chunks.
//!
//! The file contents of a save form one logical *stream*, in path order. The stream is cut into
//! independent *segments* at file boundaries, and each segment is split with FastCDC (2020):
//!
//! - a file of at least 1/16 of the average chunk size is a segment of its own, so it dedups
//!   whole even when it moves to another path, an edit elsewhere cannot shift its boundaries,
//!   and an edit to it costs itself, not the neighbours it would share a chunk with;
//! - runs of smaller files are concatenated, so 10^5 tiny files become a few hundred chunks, not
//!   10^5 objects, and cut with a quarter of the average chunk size, because there a changed
//!   file costs the whole chunk around it;
//! - a run of small files ends after a file whose path hash meets a mask. The boundary is
//!   content-defined, so inserting a file only disturbs its own segment, and segments can be
//!   chunked in parallel.
//!
//! Everything here is pure: segmentation looks at paths and sizes, and chunking reads any
//! [`Read`]. The save pipeline (`save.rs`) supplies the file readers.

use std::io::Read;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Upper bound on any chunk, whatever the store config says, so a hostile config or object
/// cannot make a reader allocate without limit.
pub const MAX_CHUNK_LIMIT: u32 = 64 << 20;

/// Files at least `avg_size / SEPARATE_FILE_DIVISOR` long are segments of their own.
///
/// Measured on the 1 GiB Gradle-like fixture, gen0 → gen1 (`benches/compare.sh`, the
/// CHANGELOG's Performance entry): with the threshold at the average chunk size (1 MiB) a warm save
/// uploaded 110 MiB, with 1/16 of it 73 MiB, with 1/64 71 MiB (and 25 % more objects).
const SEPARATE_FILE_DIVISOR: u32 = 16;

/// Segments of several small files are chunked with `avg_size / SMALL_FILES_DIVISOR`.
///
/// On the same fixture and 512 KiB chunks, the warm save uploaded 65.5 MiB chunking them
/// like large files, 63.9 MiB with half the average and 61.7 MiB with a quarter (restic: 64.1
/// MiB), for 8 % and 26 % more objects.
const SMALL_FILES_DIVISOR: u32 = 4;

/// A run of small files ends after a file whose path hash has these low bits all zero:
/// on average one file in 256. With Gradle-like trees that averages a few MiB per segment,
/// several chunks each.
const SEGMENT_PATH_MASK: u32 = 0xff;

/// FastCDC parameters. They belong to the store (see `chunkcache.json`), because dedup only
/// works when every writer cuts the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// No chunk is smaller, except the last one of a segment.
    pub min_size: u32,
    /// The target average size.
    pub avg_size: u32,
    /// No chunk is larger.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    /// 512 KiB average, with the FastCDC paper's min = avg/4 and max = 4·avg.
    ///
    /// Chosen on the 1 GiB Gradle-like fixture (gen0 → gen1): a 1 MiB average uploaded 73 MiB
    /// on the warm save, 512 KiB 65.5 MiB (restic: 65 MiB), 256 KiB 62.7 MiB but with 1.7× the
    /// objects (4452 vs 2656 per GiB), and cold saves were no slower at 512 KiB.
    fn default() -> Self {
        Self::with_average(512 << 10)
    }
}

impl ChunkerParams {
    /// Parameters for an average chunk size, with min = avg/4 and max = 4·avg.
    pub fn with_average(avg_size: u32) -> Self {
        Self { min_size: avg_size / 4, avg_size, max_size: avg_size.saturating_mul(4) }
    }

    /// The parameters for a segment of `files` files: runs of small files are cut finer (see
    /// `SMALL_FILES_DIVISOR`); a lone file uses these parameters. A pure function of the
    /// store's parameters, so every writer still cuts alike.
    pub fn for_segment(&self, files: usize) -> Self {
        if files > 1 { Self::with_average((self.avg_size / SMALL_FILES_DIVISOR).max(256) & !1) } else { *self }
    }

    /// Checks the parameters against FastCDC's limits and our own.
    ///
    /// # Errors
    /// A message naming the offending parameter.
    pub fn validate(&self) -> Result<(), String> {
        let Self { min_size, avg_size, max_size } = *self;
        if !(64..=(1 << 26)).contains(&min_size) {
            return Err(format!("min chunk size {min_size} is outside 64 B..64 MiB"));
        }
        if !(256..=(1 << 28)).contains(&avg_size) {
            return Err(format!("average chunk size {avg_size} is outside 256 B..256 MiB"));
        }
        if !(1024..=MAX_CHUNK_LIMIT).contains(&max_size) {
            return Err(format!("max chunk size {max_size} is outside 1 KiB..64 MiB"));
        }
        if !(min_size < avg_size && avg_size < max_size) {
            return Err(format!("chunk sizes must satisfy min < avg < max (got {min_size} / {avg_size} / {max_size})"));
        }
        if min_size % 2 + avg_size % 2 + max_size % 2 != 0 {
            return Err("chunk sizes must be even".into());
        }
        Ok(())
    }

    /// Splits everything `source` yields into content-defined chunks and hands each to `emit`,
    /// in order. `buffer` is reused across calls (it grows to `2 × max_size`), so chunking a
    /// stream allocates nothing per chunk; cut points are exactly FastCDC 2020's.
    ///
    /// # Errors
    /// The first error of `source` or `emit`.
    pub fn for_each_chunk<R: Read, E: From<std::io::Error>>(
        &self,
        mut source: R,
        buffer: &mut Vec<u8>,
        mut emit: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let (min, avg, max) = (self.min_size as usize, self.avg_size as usize, self.max_size as usize);
        let (mask_s, mask_l) = fastcdc::v2020::select_masks(avg, fastcdc::v2020::Normalization::Level1);
        buffer.resize(2 * max, 0);
        let (mut start, mut end, mut eof) = (0, 0, false);
        loop {
            while !eof && end < buffer.len() {
                match source.read(&mut buffer[end..]) {
                    Ok(0) => eof = true,
                    Ok(n) => end += n,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err.into()),
                }
            }
            // A cut needs up to `max` bytes of look-ahead; short of EOF, wait for more.
            while end - start >= max || (eof && start < end) {
                let window = &buffer[start..end];
                let (_, len) = fastcdc::v2020::cut(window, min, avg, max, mask_s, mask_l, mask_s << 1, mask_l << 1);
                emit(&window[..len])?;
                start += len;
            }
            if eof {
                return Ok(());
            }
            buffer.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
    }

    /// Groups files (given in stream order as `(path, size)`) into segments, returned as ranges
    /// of indices. Every file belongs to exactly one segment, in order.
    pub fn segments<P: AsRef<[u8]>>(&self, files: impl IntoIterator<Item = (P, u64)>) -> Vec<Range<usize>> {
        let mut segments = Vec::new();
        let mut start = 0;
        let mut index = 0;
        for (path, size) in files {
            if size >= u64::from(self.avg_size / SEPARATE_FILE_DIVISOR) {
                if start < index {
                    segments.push(start..index);
                }
                segments.push(index..index + 1);
                start = index + 1;
            } else if path_hash(path.as_ref()) & SEGMENT_PATH_MASK == 0 {
                segments.push(start..index + 1);
                start = index + 1;
            }
            index += 1;
        }
        if start < index {
            segments.push(start..index);
        }
        segments
    }
}

fn path_hash(path: &[u8]) -> u32 {
    let hash = blake3::hash(path);
    u32::from_le_bytes(hash.as_bytes()[..4].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams::with_average(1024)
    }

    fn chunks_of(params: &ChunkerParams, source: impl Read) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        params
            .for_each_chunk(source, &mut Vec::new(), |chunk| {
                out.push(chunk.to_vec());
                Ok::<_, std::io::Error>(())
            })
            .unwrap();
        out
    }

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 33) as u8
            })
            .collect()
    }

    /// A reader that returns at most 7 bytes per call, to exercise refills.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(7).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    proptest! {
        #[test]
        fn chunks_concatenate_back_to_the_input(data in proptest::collection::vec(any::<u8>(), 0..20_000)) {
            let chunks = chunks_of(&small(), &data[..]);
            prop_assert_eq!(chunks.concat(), data.clone());
            for chunk in &chunks {
                prop_assert!(!chunk.is_empty() && chunk.len() <= 4096);
            }
        }

        #[test]
        fn chunking_is_deterministic(seed in any::<u64>(), len in 0usize..50_000) {
            let data = pseudo_random(len, seed);
            let a = chunks_of(&small(), &data[..]);
            let b = chunks_of(&small(), Trickle(&data[..]));
            prop_assert_eq!(&a, &b);
            // The same cut points as the reference, whole-buffer FastCDC 2020.
            let reference: Vec<Vec<u8>> = fastcdc::v2020::FastCDC::new(&data, 256, 1024, 4096)
                .map(|c| data[c.offset..c.offset + c.length].to_vec())
                .collect();
            prop_assert_eq!(a, reference);
        }

        #[test]
        fn segments_cover_every_file_once_in_order(sizes in proptest::collection::vec(0u64..5000, 0..500)) {
            let names: Vec<String> = (0..sizes.len()).map(|i| format!("dir/file-{i}")).collect();
            let segments = small().segments(names.iter().map(|n| n.as_bytes()).zip(sizes.iter().copied()));
            let mut next = 0;
            for segment in &segments {
                prop_assert_eq!(segment.start, next);
                prop_assert!(segment.end > segment.start);
                if segment.len() > 1 {
                    prop_assert!(sizes[segment.clone()].iter().all(|&s| s < 1024));
                }
                next = segment.end;
            }
            prop_assert_eq!(next, sizes.len());
        }
    }

    #[test]
    fn an_insertion_shifts_only_nearby_chunks() {
        let data = pseudo_random(200_000, 7);
        let mut edited = data.clone();
        edited.splice(100_000..100_000, b"inserted bytes".iter().copied());
        let ids = |d: &[u8]| -> Vec<blake3::Hash> { chunks_of(&small(), d).iter().map(|c| blake3::hash(c)).collect() };
        let (before, after) = (ids(&data), ids(&edited));
        let shared = after.iter().filter(|id| before.contains(id)).count();
        assert!(shared + 3 >= before.len(), "{shared} of {} chunks kept", before.len());
    }

    #[test]
    fn large_files_are_segments_of_their_own() {
        let files: Vec<(&[u8], u64)> = vec![(b"a", 10), (b"b", 5000), (b"c", 10), (b"d", 10)];
        let segments = small().segments(files);
        assert!(segments.contains(&(1..2)), "{segments:?}");
        assert_eq!(segments[0], 0..1);
    }

    #[test]
    fn small_file_segments_are_cut_finer_with_valid_parameters() {
        for avg in [256, 1024, 64 << 10, 512 << 10, 1 << 20] {
            let params = ChunkerParams::with_average(avg);
            assert_eq!(params.for_segment(1), params);
            let small = params.for_segment(2);
            assert!(small.avg_size <= params.avg_size && small.validate().is_ok(), "{avg}: {small:?}");
        }
        assert_eq!(ChunkerParams::default().for_segment(50).avg_size, 128 << 10);
    }

    #[test]
    fn validation_rejects_bad_parameters() {
        assert!(ChunkerParams::default().validate().is_ok());
        assert!(ChunkerParams::with_average(100).validate().is_err());
        let inverted = ChunkerParams { min_size: 4096, avg_size: 1024, max_size: 8192 };
        assert!(inverted.validate().unwrap_err().contains("min < avg < max"));
        assert!(ChunkerParams::with_average(64 << 20).validate().is_err());
    }
}
