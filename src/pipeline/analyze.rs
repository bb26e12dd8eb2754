//! Analyze: what caching a tree would cost, measured locally before anyone adopts chunkcache
//! (issue 11). No store is opened.
//!
//! Read top to bottom, [`analyze`] is the pipeline:
//! scan the trees → per chunk size: chunk the previous tree (what the store would hold),
//! chunk the current tree with those chunks known, exactly as `save` does (the same chunk
//! stage, [`chunk::chunk_files`], with a sink that only counts), lay the chunks out in packs
//! ([`PackModel`]), and plan a restore of the current tree over the previous one as `restore`
//! plans it (size, mode and mtime decide which files are written); after the first size, on
//! another thread, stream the current tree through tar and estimate its gzip and zstd sizes
//! from samples scaled by that size's chunks (`ArchiveSizer`) → recommend a chunk size.
//!
//! Memory: the chunk sizes are measured one after the other, and each keeps only its chunk
//! list (about 40 bytes a chunk, as a manifest holds) until its figures are taken, and the
//! archive estimate 16 bytes a chunk of the first size; the tar stream is sized as it streams.
//! So a sweep of five sizes holds one chunk list, not five. It reads the files once per size
//! and tree, and once more for the tar stream (the page cache usually serves the later reads).

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use serde::Serialize;

use crate::core::chunker::ChunkerParams;
use crate::core::id::ChunkId;
use crate::core::manifest::{Timestamp, chunk_span};
use crate::core::units::binary_units;
use crate::fs::walk::{self, Scan, ScannedEntry, ScannedKind, WalkError, WalkOptions};
use crate::pipeline::chunk::{self, ChunkError, ChunkList, ChunkStageOptions, NewChunk, StagedChunk};
use crate::pipeline::progress::Progress;

/// The chunk sizes measured when none are given: a sweep around the store default (512 KiB).
pub const DEFAULT_SWEEP: [u32; 5] = [128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20];

/// Directories are reported this many levels below their mount (a Gradle home then shows
/// `caches/modules-2/files-2.1` and `caches/transforms-3/<hash>`); shallower files count
/// towards their own folder.
pub const DIRECTORY_DEPTH: usize = 3;

/// Directories listed by size and by churn.
pub const DIRECTORIES_LISTED: usize = 10;

/// When no prices are given, the recommendation counts one request as the cost of moving this
/// many bytes: a request's round trip (about 50 ms to a cloud store) moves about 1 MiB at the
/// 20 MB/s a CI runner typically gets.
pub const REQUEST_COST_BYTES: u64 = 1 << 20;

/// zstd level of the whole-archive comparison (`tar | zstd -3`, as in `benches/compare.sh`).
const ARCHIVE_ZSTD_LEVEL: i32 = 3;
/// gzip level of the whole-archive comparison (`tar | gzip -6`, drone-cache's default).
const ARCHIVE_GZIP_LEVEL: u32 = 6;

/// What the user asked to analyze.
#[derive(Clone, Debug)]
pub struct AnalyzeOptions {
    /// The trees to cache, as they would be given to `save`.
    pub paths: Vec<PathBuf>,
    /// The same trees as an earlier build left them, one per path in the same order, or none.
    pub previous: Vec<PathBuf>,
    /// Average chunk sizes to measure, in the order reported.
    pub chunk_sizes: Vec<u32>,
    /// zstd level of the chunk objects (as `save --level`).
    pub compression_level: i32,
    /// Excludes and symlink handling, as for `save`.
    pub walk: WalkOptions,
    /// Prices, for a monthly cost.
    pub prices: Option<Prices>,
}

/// Store prices, in any one currency, for a monthly cost. None are built in.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Prices {
    /// Price of 1,000 PUT (write) requests.
    pub put_per_1000: f64,
    /// Price of 1,000 GET (read) requests.
    pub get_per_1000: f64,
    /// Price of storing 1 GB (10^9 bytes) for a month.
    pub gb_month: f64,
    /// Builds a month, each one restore and one save.
    pub builds_per_month: u64,
}

/// Everything analyze measured. The `--json` output; its field names are stable.
#[derive(Clone, Debug, Serialize)]
pub struct AnalyzeReport {
    /// Regular files in the trees.
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// The previous trees' totals, when given.
    pub previous: Option<TreeTotals>,
    /// What a whole-archive tool moves per save and per restore.
    pub archive: ArchiveSizes,
    /// One row per chunk size, in the order asked.
    pub sizes: Vec<SizeReport>,
    /// The largest directories by size and by churn.
    pub directories: Directories,
    /// The chunk size to use, and why.
    pub recommendation: Recommendation,
    /// Wall time.
    pub elapsed_ms: u64,
}

/// Files and bytes of a tree.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct TreeTotals {
    /// Regular files.
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// The current tree as one archive: what `tar | gzip` or `tar | zstd` caching uploads on
/// every save and downloads on every restore. The compressed sizes are estimates from a sample
/// of the stream, scaled by the chunks' own zstd sizes: within 1 % of compressing the whole
/// stream.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ArchiveSizes {
    /// The tar stream (exact).
    pub tar_bytes: u64,
    /// `tar | gzip -6`, estimated within 1 %.
    pub tar_gzip_bytes: u64,
    /// `tar | zstd -3`, estimated within 1 %.
    pub tar_zstd_bytes: u64,
}

/// The figures of one chunk size.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SizeReport {
    /// Average chunk size.
    pub chunk_size: u32,
    /// Whether it is the store default (what `save` uses on a new store).
    pub store_default: bool,
    /// Regular files.
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Chunks of the content, repeats included.
    pub chunks: u64,
    /// Distinct chunks: what a cold save uploads.
    pub unique_chunks: u64,
    /// Raw bytes of the distinct chunks.
    pub unique_bytes: u64,
    /// Content that repeats, as a percentage of all content.
    pub dedup_percent: f64,
    /// Bytes of the distinct chunks once compressed: what the store holds.
    pub stored_bytes: u64,
    /// Packs a cold save writes (see [`PackModel`]).
    pub objects: u64,
    /// Chunk lengths, repeats included.
    pub chunk_bytes: Distribution,
    /// What a save of the current trees uploads after the previous trees were saved.
    pub upload: Option<Upload>,
    /// What a restore of the current trees over the previous trees fetches and writes.
    pub restore: Option<RestoreFetch>,
    /// Store requests per operation.
    pub requests: RequestCounts,
    /// With prices: requests of the builds plus storage, per month.
    pub monthly_cost: Option<f64>,
}

/// Min, median, 99th percentile and max.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Distribution {
    /// Smallest.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

/// What an incremental save uploads.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Upload {
    /// New chunks (`save --json`'s `new_chunks`).
    pub chunks: u64,
    /// Their raw bytes (`new_bytes`).
    pub bytes: u64,
    /// Their compressed bytes (`new_stored_bytes`).
    pub stored_bytes: u64,
    /// Packs written.
    pub objects: u64,
}

/// What an incremental restore fetches and writes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct RestoreFetch {
    /// Files written (new or changed).
    pub files_written: u64,
    /// Bytes written to them.
    pub bytes_written: u64,
    /// Chunks fetched (`restore --json`'s `chunks_fetched`).
    pub chunks: u64,
    /// Their compressed bytes (`bytes_fetched`).
    pub stored_bytes: u64,
    /// Ranged GETs that fetch them.
    pub requests: u64,
}

/// Requests of one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Requests {
    /// Writes.
    pub put: u64,
    /// Reads.
    pub get: u64,
}

impl Requests {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.put + self.get
    }
}

/// Requests per operation; the warm ones need the previous trees.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct RequestCounts {
    /// A save to an empty store.
    pub cold_save: Requests,
    /// A save after the previous trees were saved.
    pub warm_save: Option<Requests>,
    /// A restore into an empty folder.
    pub cold_restore: Requests,
    /// A restore over the previous trees.
    pub warm_restore: Option<Requests>,
}

/// Directories by size and by churn.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Directories {
    /// Levels below the mount at which directories are reported.
    pub depth: usize,
    /// The chunk size churn was measured with.
    pub chunk_size: u32,
    /// The largest directories.
    pub by_size: Vec<DirectoryUse>,
    /// The directories whose files an incremental save uploads most of (empty without
    /// previous trees).
    pub by_churn: Vec<DirectoryUse>,
}

/// One directory's share.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DirectoryUse {
    /// The directory, under its mount as given.
    pub path: String,
    /// Regular files below it.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Raw bytes of new chunks an incremental save uploads for them (`None` without previous
    /// trees).
    pub churn_bytes: Option<u64>,
}

/// The chunk size to use.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Recommendation {
    /// Average chunk size.
    pub chunk_size: u32,
    /// The trade-off behind it, in one or two sentences.
    pub reason: String,
}

/// Why an analysis failed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// A tree could not be scanned.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// A file could not be read.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// A file could not be read into the archive comparison.
    #[error("cannot read {path} for the tar comparison")]
    Archive {
        /// The entry.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The store's pack layout, as far as request counts go.
///
/// A save appends its new chunk objects, in stream order, to packs of about
/// [`PACK_TARGET_BYTES`] and PUTs each pack once; a restore fetches byte ranges, one ranged GET
/// per run of neighbouring chunks of one pack, runs less than [`RANGE_GAP_BYTES`] apart
/// fetched together. So requests follow the packs touched, not the chunks. The model packs the
/// stream in one lane and does not split reads longer than [`crate::pipeline::fetch::MAX_RANGE`]:
/// a save writes up to two partly filled packs more, and a cold restore makes a read per 8 MiB.
#[derive(Debug, Default)]
pub struct PackModel {
    /// Where each stored chunk lies: pack number, offset in it, stored length.
    located: HashMap<ChunkId, (u64, u64, u64)>,
    packs: u64,
}

/// A save closes a pack once it holds this many bytes.
pub const PACK_TARGET_BYTES: u64 = crate::core::pack::PACK_TARGET_BYTES as u64;
/// A restore fetches two ranges of one pack with one GET when at most this many bytes apart.
pub const RANGE_GAP_BYTES: u64 = crate::pipeline::fetch::GAP as u64;

impl PackModel {
    /// Lays out the new chunks of one save (stream order, stored lengths) in fresh packs, as
    /// the save writes them; returns the packs it PUTs. Chunks already laid out stay put.
    pub fn save(&mut self, chunks: impl IntoIterator<Item = StagedChunk>) -> u64 {
        let (first, mut fill) = (self.packs, PACK_TARGET_BYTES);
        for chunk in chunks {
            if self.located.contains_key(&chunk.id) {
                continue;
            }
            if fill >= PACK_TARGET_BYTES {
                self.packs += 1;
                fill = 0;
            }
            let stored = u64::from(chunk.stored_len);
            self.located.insert(chunk.id, (self.packs - 1, fill, stored));
            fill += stored;
        }
        self.packs - first
    }

    /// The ranged GETs a restore makes to fetch `ids`.
    pub fn ranged_gets(&self, ids: impl IntoIterator<Item = ChunkId>) -> u64 {
        let mut extents: Vec<(u64, u64, u64)> =
            ids.into_iter().filter_map(|id| self.located.get(&id).copied()).collect();
        extents.sort_unstable();
        let mut gets = 0;
        let mut open: Option<(u64, u64)> = None;
        for (pack, offset, len) in extents {
            match open {
                Some((open_pack, end)) if open_pack == pack && offset <= end + RANGE_GAP_BYTES => {
                    open = Some((pack, end.max(offset + len)));
                }
                _ => {
                    gets += 1;
                    open = Some((pack, offset + len));
                }
            }
        }
        gets
    }
}

/// Analyzes `options.paths`: per chunk size what the store would hold, what an incremental
/// save and restore would move and in how many requests, against a whole archive; the
/// largest directories; a recommended chunk size. Blocks (on rayon and one thread for the
/// archive): call it from a blocking context.
///
/// # Errors
/// [`AnalyzeError`]: a tree that cannot be scanned or a file that cannot be read.
pub fn analyze(options: &AnalyzeOptions, progress: &dyn Progress) -> Result<AnalyzeReport, AnalyzeError> {
    let clock = Instant::now();
    let current = walk::scan(&options.paths, &options.walk)?;
    let previous = if options.previous.is_empty() { None } else { Some(walk::scan(&options.previous, &options.walk)?) };

    // The archive estimate scales by the first size's chunks; it runs beside the other sizes.
    let sizes: &[u32] = match options.chunk_sizes.is_empty() {
        true => &[ChunkerParams::default().avg_size],
        false => &options.chunk_sizes,
    };
    let (archive, measured) = std::thread::scope(|scope| {
        let (first, churn, list) = measure(options, sizes[0], &current, previous.as_ref(), progress)?;
        let costs = ContentCosts::of(&list);
        drop(list);
        let (paths, scan) = (&options.paths, &current);
        let archive = scope.spawn(move || archive_sizes(paths, scan, &costs));
        let mut measured = vec![(first, churn)];
        for &size in &sizes[1..] {
            let (row, churn, _) = measure(options, size, &current, previous.as_ref(), progress)?;
            measured.push((row, churn));
        }
        let archive = archive.join().expect("archive thread panicked")?;
        Ok::<_, AnalyzeError>((archive, measured))
    })?;

    let directory_size =
        options.chunk_sizes.iter().position(|&size| size == ChunkerParams::default().avg_size).unwrap_or(0);
    let mut sizes = Vec::new();
    let mut directories = Directories::default();
    for (index, (row, churn)) in measured.into_iter().enumerate() {
        if index == directory_size {
            directories = directory_table(&options.paths, &current, &churn, row.chunk_size, previous.is_some());
        }
        sizes.push(row);
    }
    let recommendation = recommend(&sizes, options.prices.is_some());
    let current_totals = totals(&current.entries);
    Ok(AnalyzeReport {
        files: current_totals.files,
        bytes: current_totals.bytes,
        previous: previous.as_ref().map(|previous| totals(&previous.entries)),
        archive,
        sizes,
        directories,
        recommendation,
        elapsed_ms: clock.elapsed().as_millis() as u64,
    })
}

fn totals(entries: &[ScannedEntry]) -> TreeTotals {
    TreeTotals {
        files: entries.iter().filter(|e| matches!(e.kind, ScannedKind::File(_))).count() as u64,
        bytes: chunk::content_bytes(entries),
    }
}

/// Measures one chunk size; also returns the churn (new raw bytes) of every regular file, in
/// entry order, for the directory table, and the chunk list of the current trees.
fn measure(
    options: &AnalyzeOptions,
    chunk_size: u32,
    current: &Scan,
    previous: Option<&Scan>,
    progress: &dyn Progress,
) -> Result<(SizeReport, Vec<u64>, ChunkList), AnalyzeError> {
    let params = ChunkerParams::with_average(chunk_size);
    let stage = ChunkStageOptions { encode_level: Some(options.compression_level) };
    let count_only = |_: NewChunk<'_>| true;

    // What the store holds after the previous build: its chunks, laid out by its cold save.
    let mut packs = PackModel::default();
    let known: HashMap<ChunkId, u32> = match previous {
        Some(previous) => {
            progress.phase("previous", chunk::content_bytes(&previous.entries));
            let before = chunk::chunk_files(previous, &params, HashMap::new(), stage, &count_only, progress)?;
            packs.save(before.new.iter().copied());
            before.new.iter().map(|c| (c.id, c.stored_len)).collect()
        }
        None => HashMap::new(),
    };

    // The save of the current trees, exactly as `save` chunks them against what is known.
    progress.phase("analyzing", chunk::content_bytes(&current.entries));
    let list = chunk::chunk_files(current, &params, known, stage, &count_only, progress)?;

    let totals = totals(&current.entries);
    let mut distinct: HashMap<ChunkId, StagedChunk> = HashMap::new();
    let mut first_uses = Vec::new();
    for chunk in &list.chunks {
        if distinct.insert(chunk.id, *chunk).is_none() {
            first_uses.push(*chunk);
        }
    }
    let unique_bytes: u64 = first_uses.iter().map(|c| u64::from(c.len)).sum();
    let stored_bytes: u64 = first_uses.iter().map(|c| u64::from(c.stored_len)).sum();
    let mut cold_packs = PackModel::default();
    let objects = cold_packs.save(first_uses.iter().copied());
    let cold_restore_gets = cold_packs.ranged_gets(distinct.keys().copied());
    let churn = file_churn(&current.entries, &list);

    let (upload, restore, warm_save, warm_restore) = match previous {
        Some(previous) => {
            let upload_objects = packs.save(list.new.iter().copied());
            let upload = Upload {
                chunks: list.new.len() as u64,
                bytes: list.new_bytes(),
                stored_bytes: list.new_stored_bytes(),
                objects: upload_objects,
            };
            let restore = restore_over(current, previous, &list, &packs);
            (Some(upload), Some(restore), Some(save_requests(upload_objects)), Some(restore_requests(restore.requests)))
        }
        None => (None, None, None, None),
    };
    let requests = RequestCounts {
        cold_save: save_requests(objects),
        warm_save,
        cold_restore: restore_requests(cold_restore_gets),
        warm_restore,
    };
    let monthly_cost = options.prices.map(|prices| {
        let save = requests.warm_save.unwrap_or(requests.cold_save);
        let restore = requests.warm_restore.unwrap_or(requests.cold_restore);
        let per_build = (save.put + restore.put) as f64 * prices.put_per_1000 / 1000.0
            + (save.get + restore.get) as f64 * prices.get_per_1000 / 1000.0;
        per_build * prices.builds_per_month as f64 + stored_bytes as f64 / 1e9 * prices.gb_month
    });
    let row = SizeReport {
        chunk_size,
        store_default: chunk_size == ChunkerParams::default().avg_size,
        files: totals.files,
        bytes: totals.bytes,
        chunks: list.chunks.len() as u64,
        unique_chunks: first_uses.len() as u64,
        unique_bytes,
        dedup_percent: if totals.bytes == 0 { 0.0 } else { 100.0 * (1.0 - unique_bytes as f64 / totals.bytes as f64) },
        stored_bytes,
        objects,
        chunk_bytes: distribution(list.chunks.iter().map(|c| u64::from(c.len)).collect()),
        upload,
        restore,
        requests,
        monthly_cost,
    };
    Ok((row, churn, list))
}

/// A save's requests: one PUT per pack and one for the manifest; GETs of the store config and
/// of the key's previous manifest (what the save knows the store holds).
fn save_requests(packs: u64) -> Requests {
    Requests { put: packs + 1, get: 2 }
}

/// A restore's requests: the manifest GET and the ranged GETs; one PUT recording the key's use.
fn restore_requests(ranged_gets: u64) -> Requests {
    Requests { put: 1, get: ranged_gets + 1 }
}

/// The restore of the current trees over the previous ones, planned as `restore` plans it: a
/// file is kept when the previous tree has it at the same path with the same size, mode and
/// mtime; every other file is written, and the chunks spanning them are fetched, each once.
fn restore_over(current: &Scan, previous: &Scan, list: &ChunkList, packs: &PackModel) -> RestoreFetch {
    // Both scans are sorted by `(mount, path)`: the previous tree is walked beside the current.
    let mut on_disk = previous.paths.iter().zip(&previous.entries).peekable();
    let mut previous_file = |mount: u32, path: &[u8]| -> Option<(u64, u32, Timestamp)> {
        while on_disk.next_if(|(found, e)| (e.mount, found.as_slice()) < (mount, path)).is_some() {}
        match on_disk.peek() {
            Some((found, e)) if (e.mount, found.as_slice()) == (mount, path) => match e.kind {
                ScannedKind::File(size) => Some((size, e.mode, e.mtime)),
                _ => None,
            },
            _ => None,
        }
    };
    let mut offsets = Vec::with_capacity(list.chunks.len() + 1);
    offsets.push(0u64);
    for chunk in &list.chunks {
        offsets.push(offsets.last().copied().unwrap_or(0) + u64::from(chunk.len));
    }
    let mut fetch = RestoreFetch::default();
    let mut needed: HashSet<usize> = HashSet::new();
    let mut offset = 0u64;
    for (path, entry) in current.paths.iter().zip(&current.entries) {
        let ScannedKind::File(size) = entry.kind else { continue };
        let kept = previous_file(entry.mount, &path) == Some((size, entry.mode, entry.mtime));
        if !kept {
            fetch.files_written += 1;
            fetch.bytes_written += size;
            needed.extend(chunk_span(&offsets, offset, size));
        }
        offset += size;
    }
    let mut ids: HashMap<ChunkId, u32> = HashMap::new();
    for index in needed {
        let chunk = list.chunks[index];
        ids.insert(chunk.id, chunk.stored_len);
    }
    fetch.chunks = ids.len() as u64;
    fetch.stored_bytes = ids.values().map(|&stored| u64::from(stored)).sum();
    fetch.requests = packs.ranged_gets(ids.into_keys());
    fetch
}

/// The raw bytes of new chunks (their first use) that fall in each regular file, by entry.
fn file_churn(entries: &[ScannedEntry], list: &ChunkList) -> Vec<u64> {
    let new: HashSet<ChunkId> = list.new.iter().map(|c| c.id).collect();
    let mut counted: HashSet<ChunkId> = HashSet::new();
    // New chunks' extents in the stream, in order.
    let mut extents = Vec::new();
    let mut at = 0u64;
    for chunk in &list.chunks {
        if new.contains(&chunk.id) && counted.insert(chunk.id) {
            extents.push((at, at + u64::from(chunk.len)));
        }
        at += u64::from(chunk.len);
    }
    let mut churn = vec![0u64; entries.len()];
    let (mut next, mut start) = (0usize, 0u64);
    for (index, entry) in entries.iter().enumerate() {
        let ScannedKind::File(size) = entry.kind else { continue };
        let end = start + size;
        while next < extents.len() && extents[next].1 <= start {
            next += 1;
        }
        let mut scan = next;
        while scan < extents.len() && extents[scan].0 < end {
            churn[index] += extents[scan].1.min(end) - extents[scan].0.max(start);
            scan += 1;
        }
        start = end;
    }
    churn
}

/// The largest directories (at [`DIRECTORY_DEPTH`]) by size and by churn.
fn directory_table(mounts: &[PathBuf], scan: &Scan, churn: &[u64], chunk_size: u32, with_churn: bool) -> Directories {
    // By mount, then by directory: a directory's key is copied once, when first seen.
    let mut table: HashMap<u32, HashMap<Vec<u8>, DirectoryUse>> = HashMap::new();
    for ((path, entry), &churned) in scan.paths.iter().zip(&scan.entries).zip(churn) {
        let ScannedKind::File(size) = entry.kind else { continue };
        let parent = crate::core::manifest::parent_of(&path);
        let depth_end =
            parent.iter().enumerate().filter(|(_, b)| **b == b'/').map(|(at, _)| at).nth(DIRECTORY_DEPTH - 1);
        let directory = &parent[..depth_end.unwrap_or(parent.len())];
        let directories = table.entry(entry.mount).or_default();
        if !directories.contains_key(directory) {
            let row = DirectoryUse {
                path: display_path(&mounts[entry.mount as usize], directory),
                churn_bytes: with_churn.then_some(0),
                ..DirectoryUse::default()
            };
            directories.insert(directory.to_vec(), row);
        }
        let row = directories.get_mut(directory).expect("inserted above");
        row.files += 1;
        row.bytes += size;
        if let Some(total) = &mut row.churn_bytes {
            *total += churned;
        }
    }
    let mut rows: Vec<DirectoryUse> = table.into_values().flat_map(HashMap::into_values).collect();
    rows.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    let by_size = rows.iter().take(DIRECTORIES_LISTED).cloned().collect();
    let by_churn = if with_churn {
        rows.sort_by(|a, b| b.churn_bytes.cmp(&a.churn_bytes).then_with(|| a.path.cmp(&b.path)));
        rows.into_iter().filter(|r| r.churn_bytes > Some(0)).take(DIRECTORIES_LISTED).collect()
    } else {
        Vec::new()
    };
    Directories { depth: DIRECTORY_DEPTH, chunk_size, by_size, by_churn }
}

/// `mount/relative`, as text.
fn display_path(mount: &Path, relative: &[u8]) -> String {
    let mount = mount.to_string_lossy();
    if relative.is_empty() {
        mount.into_owned()
    } else {
        format!("{}/{}", mount.trim_end_matches('/'), String::from_utf8_lossy(relative))
    }
}

fn distribution(mut lengths: Vec<u64>) -> Distribution {
    if lengths.is_empty() {
        return Distribution::default();
    }
    lengths.sort_unstable();
    let at = |percent: usize| lengths[(lengths.len() - 1) * percent / 100];
    Distribution { min: lengths[0], p50: at(50), p99: at(99), max: lengths[lengths.len() - 1] }
}

/// Picks the size that costs least per build: with prices, the monthly cost; otherwise the
/// stored bytes a build moves (its save and its restore) plus [`REQUEST_COST_BYTES`] per
/// request. Ties go to the larger size (fewer chunks, a smaller manifest).
fn recommend(sizes: &[SizeReport], priced: bool) -> Recommendation {
    let moved = |row: &SizeReport| match (&row.upload, &row.restore) {
        (Some(upload), Some(restore)) => upload.stored_bytes + restore.stored_bytes,
        _ => 2 * row.stored_bytes,
    };
    let requests = |row: &SizeReport| {
        let r = &row.requests;
        r.warm_save.unwrap_or(r.cold_save).total() + r.warm_restore.unwrap_or(r.cold_restore).total()
    };
    let score = |row: &SizeReport| moved(row) as f64 + (requests(row) * REQUEST_COST_BYTES) as f64;
    let cost = |row: &SizeReport| if priced { row.monthly_cost.unwrap_or(0.0) } else { score(row) };
    let Some(best) = sizes.iter().min_by(|a, b| cost(a).total_cmp(&cost(b)).then(b.chunk_size.cmp(&a.chunk_size)))
    else {
        return Recommendation::default();
    };
    let build = if best.upload.is_some() {
        "an incremental build (its save and its restore)"
    } else {
        "a cold save and restore"
    };
    let describe = |row: &SizeReport| format!("{} in {} requests", human(moved(row)), requests(row));
    let mut reason = format!("{}: {build} moves {}", human(u64::from(best.chunk_size)), describe(best));
    if let Some(other) = sizes.iter().filter(|r| r.chunk_size != best.chunk_size).min_by_key(|r| moved(r)) {
        if moved(other) < moved(best) {
            reason += &format!(
                ", against {} ({}), whose fewer bytes do not pay for its extra requests",
                human(u64::from(other.chunk_size)),
                describe(other)
            );
        } else {
            reason += &format!(
                ", the fewest bytes of the sizes measured; the next best, {}, moves {}",
                human(u64::from(other.chunk_size)),
                describe(other)
            );
        }
    }
    reason += &if priced {
        ". The choice minimises the monthly cost at the prices given.".to_string()
    } else {
        format!(
            ". The choice counts each request as the cost of moving {} (a round trip to a cloud store); \
             give --price-put, --price-get and --price-gb-month to weigh them by price.",
            human(REQUEST_COST_BYTES)
        )
    };
    Recommendation { chunk_size: best.chunk_size, reason }
}

/// `1536` → `1.5 KiB`; whole units print without a decimal (`512 KiB`).
fn human(bytes: u64) -> String {
    let (value, unit) = binary_units(bytes);
    if value.fract() == 0.0 { format!("{value} {unit}") } else { format!("{value:.1} {unit}") }
}

/// Sizes the current trees as tar would archive them (paths under their mounts, in scan order,
/// symlinks as links, headers from the scan's metadata), and estimates that stream through
/// `gzip -6` and `zstd -3` from a sample of its blocks ([`ArchiveSizer`]), scaled by what the
/// chunk stage measured (`costs`). Only the files' bytes that a sample needs are read
/// ([`SampledFile`]): the rest of the stream is sized, not read.
fn archive_sizes(mounts: &[PathBuf], scan: &Scan, costs: &ContentCosts) -> Result<ArchiveSizes, AnalyzeError> {
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AnalyzeError::Archive { path, source }
    };
    let every = ArchiveSizer::sampling(chunk::content_bytes(&scan.entries) + 512 * scan.entries.len() as u64);
    let sizer = ArchiveSizer::new(every);
    let (schedules, position) = (sizer.schedules(), sizer.position.clone());
    let mut tar = tar::Builder::new(sizer);
    // Where each file's content lies in the tar stream, and in the chunk stage's stream.
    let mut layout = Vec::new();
    let mut content = 0u64;
    for (path, entry) in scan.paths.iter().zip(&scan.entries) {
        let name = archive_name(&mounts[entry.mount as usize], &path);
        let root = &scan.roots[entry.mount as usize];
        let absolute = if path.is_empty() { root.clone() } else { root.join(std::ffi::OsStr::from_bytes(&path)) };
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.mode);
        header.set_mtime(entry.mtime.secs.max(0) as u64);
        header.set_size(0);
        let appended = match &entry.kind {
            ScannedKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                tar.append_data(&mut header, &name, std::io::empty())
            }
            ScannedKind::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                tar.append_link(&mut header, &name, std::ffi::OsStr::from_bytes(target))
            }
            &ScannedKind::File(size) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(size);
                let file = SampledFile::new(&absolute, size, schedules, &position);
                tar.append_data(&mut header, &name, BufReader::with_capacity(SAMPLED_READ, file))
            }
        };
        appended.map_err(fail(&absolute))?;
        if let ScannedKind::File(size) = entry.kind
            && size > 0
        {
            // A file that changed since the scan may be placed wrong: it only blurs the predictor.
            let data_end = tar.get_ref().written.saturating_sub((512 - size % 512) % 512);
            layout.push(FileExtent { tar_start: data_end.saturating_sub(size), size, content_start: content });
            content += size;
        }
    }
    tar.finish().map_err(fail(Path::new("(tar)")))?;
    let sizer = tar.into_inner().map_err(fail(Path::new("(tar)")))?;
    Ok(sizer.estimate(&layout, costs))
}

/// The name of an entry in the archive: its mount's normal components, then its path.
fn archive_name(mount: &Path, relative: &[u8]) -> PathBuf {
    let mut name: PathBuf = mount.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    if name.as_os_str().is_empty() {
        name.push("root");
    }
    if !relative.is_empty() {
        name.push(std::ffi::OsStr::from_bytes(relative));
    }
    name
}

/// A file's content in the tar stream.
#[derive(Clone, Copy, Debug)]
struct FileExtent {
    /// Where its content starts in the tar stream.
    tar_start: u64,
    /// Its length.
    size: u64,
    /// Where it starts in the chunk stage's stream (the files' contents back to back).
    content_start: u64,
}

/// The stored (compressed) bytes of the contents, chunk by chunk, as the chunk stage measured
/// them: what the archive estimate scales by. 16 bytes a chunk.
#[derive(Debug, Default)]
struct ContentCosts {
    /// Where each chunk ends in the content stream.
    ends: Vec<u64>,
    /// Stored bytes of the chunks up to and including each.
    stored: Vec<u64>,
}

impl ContentCosts {
    fn of(list: &ChunkList) -> Self {
        let (mut end, mut stored) = (0u64, 0u64);
        let mut costs =
            Self { ends: Vec::with_capacity(list.chunks.len()), stored: Vec::with_capacity(list.chunks.len()) };
        for chunk in &list.chunks {
            end += u64::from(chunk.len);
            // A chunk stored raw costs its bytes; one whose size is unknown is counted as raw.
            stored += u64::from(if chunk.stored_len == 0 { chunk.len } else { chunk.stored_len.min(chunk.len) });
            costs.ends.push(end);
            costs.stored.push(stored);
        }
        costs
    }

    /// Stored bytes of content `0..at`, pro rata inside a chunk.
    fn before(&self, at: u64) -> f64 {
        let index = self.ends.partition_point(|&end| end <= at);
        let (start, stored_before) = match index {
            0 => (0, 0),
            _ => (self.ends[index - 1], self.stored[index - 1]),
        };
        match self.ends.get(index) {
            None => stored_before as f64,
            Some(&end) => {
                let chunk_stored = self.stored[index] - stored_before;
                stored_before as f64 + (at - start) as f64 * chunk_stored as f64 / (end - start) as f64
            }
        }
    }

    /// Stored bytes of content `start..end`.
    fn between(&self, start: u64, end: u64) -> f64 {
        self.before(end) - self.before(start)
    }
}

/// At most one stretch of the tar stream in this many is compressed...
const ARCHIVE_MAX_EVERY: u64 = 32;
/// ...and at least this many zstd samples are taken, when the stream has them (a small stream
/// is compressed whole).
const ARCHIVE_MIN_SAMPLES: u64 = 256;
/// zstd samples: 128 KiB, zstd's largest block, so that a sample pays for its entropy tables
/// as a block of the stream does.
const ZSTD_SAMPLE: u64 = 128 << 10;
/// zstd -3's window: a zstd sample gets the 2 MiB before it as its prefix. Less misses what
/// repeats across files (a quarter of it made the estimate 20 % too large on a tree of source
/// code); indexing the prefix costs about five times compressing the sample.
const ZSTD_CONTEXT: u64 = 2 << 20;
/// gzip samples: 64 KiB, twice as many bytes as zstd's in all (they are cheap, and gzip's ratio
/// to the chunks' zstd sizes varies more).
const GZIP_SAMPLE: u64 = 64 << 10;
/// gzip's window: a gzip sample is deflated with the 32 KiB before it as its dictionary, so it
/// compresses as it would inside the whole stream.
const GZIP_CONTEXT: u64 = 32 << 10;
/// What tar's headers and padding are expected to shrink to, relative to their size: only the
/// predictor's shape (the samples set the scale).
const HEADER_COST: f64 = 0.1;

/// Which bytes of a stream a [`Sampler`] takes: stretch `n` of `len` bytes when
/// `n % every == every / 2`, each with the `context` bytes before it.
#[derive(Clone, Copy, Debug)]
struct Schedule {
    len: u64,
    context: u64,
    every: u64,
}

impl Schedule {
    /// Whether the byte at stream offset `at` is in a sample or its context, and where that
    /// stops being so.
    fn at(&self, at: u64) -> (bool, u64) {
        let phase = self.every / 2;
        let stretch = at / self.len;
        // The first sampled stretch that ends after `at`.
        let next = if stretch <= phase { phase } else { phase + (stretch - phase).div_ceil(self.every) * self.every };
        let from = (next * self.len).saturating_sub(self.context);
        if at >= from { (true, (next + 1) * self.len) } else { (false, from) }
    }
}

/// Whether any of `schedules` needs the byte at `at`, and where that may change.
fn needed(schedules: &[Schedule; 2], at: u64) -> (bool, u64) {
    let [(first, first_until), (second, second_until)] = schedules.map(|schedule| schedule.at(at));
    (first || second, first_until.min(second_until))
}

/// Takes samples of a stream ([`Schedule`]), keeping only the bytes a coming sample needs.
struct Sampler {
    schedule: Schedule,
    /// The next stretch to sample.
    next: u64,
    /// The stream from `kept_from` on, as far as the next sample needs it.
    kept: Vec<u8>,
    kept_from: u64,
}

impl Sampler {
    fn new(len: u64, context: u64, every: u64) -> Self {
        let schedule = Schedule { len, context, every };
        let mut sampler = Self { schedule, next: every / 2, kept: Vec::new(), kept_from: 0 };
        sampler.kept_from = sampler.keep_from();
        sampler
    }

    /// Where the next sample's context starts.
    fn keep_from(&self) -> u64 {
        (self.next * self.schedule.len).saturating_sub(self.schedule.context)
    }

    /// Where the next sample ends: no write may cross it.
    fn sample_end(&self) -> u64 {
        (self.next + 1) * self.schedule.len
    }

    /// Takes `buf`, written at stream offset `at` (not crossing [`Sampler::sample_end`]).
    fn keep(&mut self, at: u64, buf: &[u8]) {
        let end = at + buf.len() as u64;
        if end > self.kept_from {
            self.kept.extend_from_slice(&buf[(self.kept_from.max(at) - at) as usize..]);
        }
    }

    /// The sample that ends where the stream is now (the context, then the sample; short at the
    /// end of the stream), and where it starts, or `None` if the sample has no bytes.
    fn take(&mut self, written: u64) -> Option<(u64, &[u8], &[u8])> {
        let start = self.next * self.schedule.len;
        if written <= start {
            return None;
        }
        // Drop what came before the sample's context (a context that began before the stream
        // was still being kept when this was computed).
        let context_start = start.saturating_sub(self.schedule.context).max(self.kept_from);
        let split = (start - self.kept_from) as usize;
        let from = (context_start - self.kept_from) as usize;
        Some((start, &self.kept[from..split], &self.kept[split..]))
    }

    /// Moves on to the next sample.
    fn advance(&mut self) {
        self.next += self.schedule.every;
        let keep_from = self.keep_from();
        if keep_from > self.kept_from {
            let drop = ((keep_from - self.kept_from) as usize).min(self.kept.len());
            self.kept.drain(..drop);
            self.kept_from = keep_from;
        }
    }
}

/// Estimates what `tar | gzip -6` and `tar | zstd -3` of the stream written to it would weigh,
/// without compressing the whole stream.
///
/// Compressing the whole stream twice made analyze cost three times a save (gzip -6 and zstd -3
/// over 1.1 GB on one thread: 28 of the 36 CPU seconds on the 1 GiB Gradle fixture). But the
/// chunk stage has already compressed every chunk with zstd -3 ([`ContentCosts`]), so each
/// stretch of the stream has a predicted size: its content's stored bytes, and a tenth of its
/// tar headers and padding. One stretch in up to [`ARCHIVE_MAX_EVERY`] (every stretch of a
/// small tree) is compressed for real, with the bytes before it as context (see
/// [`ZSTD_CONTEXT`], [`GZIP_CONTEXT`]), and each estimate is the whole stream's prediction times
/// the samples' ratio of real to predicted size (a ratio estimator: the prediction only has to
/// be proportional to the truth, which per-chunk zstd sizes nearly are to both). Against
/// compressing the whole stream, gzip and zstd were off by +0.10 % and +0.17 % on the 1 GiB
/// Gradle fixture (gen 1; analyze went from 3.5 to about 1.2 times a save's CPU time, and to
/// 1.1 once only the sampled bytes were read, [`SampledFile`]), and by
/// −0.76 % and −0.42 % on 221 MB of Rust crate sources (text, where the samples' ratios vary
/// most); the unit test holds a mixed stream within 1 %. The JSON docs say they are estimates.
struct ArchiveSizer {
    /// Bytes written so far: the tar stream's length.
    written: u64,
    /// The same, for the [`SampledFile`]s being written.
    position: Rc<Cell<u64>>,
    gzip: Sampler,
    zstd: Sampler,
    /// Per sample: where it starts, how long it is, and its compressed size.
    gzip_samples: Vec<(u64, u64, u64)>,
    zstd_samples: Vec<(u64, u64, u64)>,
    /// zstd -1, to tell incompressible samples.
    probe: zstd::bulk::Compressor<'static>,
    deflate: flate2::Compress,
    out: Vec<u8>,
}

impl ArchiveSizer {
    /// How often to sample a stream of about `expected_bytes`.
    fn sampling(expected_bytes: u64) -> u64 {
        (expected_bytes / ZSTD_SAMPLE / ARCHIVE_MIN_SAMPLES).clamp(1, ARCHIVE_MAX_EVERY)
    }

    fn new(every: u64) -> Self {
        Self {
            written: 0,
            position: Rc::default(),
            gzip: Sampler::new(GZIP_SAMPLE, GZIP_CONTEXT, every.div_ceil(2)),
            zstd: Sampler::new(ZSTD_SAMPLE, ZSTD_CONTEXT, every),
            gzip_samples: Vec::new(),
            zstd_samples: Vec::new(),
            probe: zstd::bulk::Compressor::new(1).expect("a zstd context"),
            deflate: flate2::Compress::new(flate2::Compression::new(ARCHIVE_GZIP_LEVEL), false),
            out: Vec::with_capacity(2 * ZSTD_SAMPLE as usize),
        }
    }

    /// Which bytes of the stream the samples take.
    fn schedules(&self) -> [Schedule; 2] {
        [self.gzip.schedule, self.zstd.schedule]
    }

    /// Whether zstd -1 cannot shrink `block` by 1/128: both tools then store it as it is
    /// (deflate in stored blocks of at most 65,535 bytes with a 5-byte header, zstd in raw
    /// blocks of at most 128 KiB with a 3-byte header), and searching it for matches is most of
    /// what compressing it costs. Random bytes give a compressor nothing to match later either.
    fn incompressible(probe: &mut zstd::bulk::Compressor<'static>, block: &[u8]) -> bool {
        let len = block.len();
        probe.compress(block).map_or(true, |probed| probed.len() >= len - len / 128)
    }

    /// Deflates the gzip sample that ends here, with its context as the dictionary.
    fn sample_gzip(&mut self) {
        if let Some((start, dictionary, block)) = self.gzip.take(self.written) {
            let len = block.len() as u64;
            if Self::incompressible(&mut self.probe, block) {
                self.gzip_samples.push((start, len, len + 5 * len.div_ceil(65_535)));
                self.gzip.advance();
                return;
            }
            self.deflate.reset();
            self.deflate.set_dictionary(dictionary).expect("a deflate dictionary is accepted before any input");
            self.out.clear();
            self.out.reserve(block.len() + 1024);
            let status = self.deflate.compress_vec(block, &mut self.out, flate2::FlushCompress::Finish);
            debug_assert!(matches!(status, Ok(flate2::Status::StreamEnd)), "{status:?}");
            self.gzip_samples.push((start, block.len() as u64, self.deflate.total_out()));
        }
        self.gzip.advance();
    }

    /// Compresses the zstd sample that ends here, with its context as the prefix.
    fn sample_zstd(&mut self) {
        if let Some((start, prefix, block)) = self.zstd.take(self.written) {
            let len = block.len() as u64;
            if Self::incompressible(&mut self.probe, block) {
                self.zstd_samples.push((start, len, len + 3 * len.div_ceil(128 << 10)));
                self.zstd.advance();
                return;
            }
            // A context per sample: it borrows its prefix.
            let mut zstd = zstd::zstd_safe::CCtx::create();
            let size = zstd
                .set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(ARCHIVE_ZSTD_LEVEL))
                .and_then(|_| zstd.ref_prefix(prefix))
                .and_then(|_| {
                    self.out.clear();
                    zstd.compress2(&mut self.out, block)
                })
                .map_or(block.len() as u64, |size| size as u64);
            self.zstd_samples.push((start, block.len() as u64, size));
        }
        self.zstd.advance();
    }

    /// The estimates, once the whole stream was written: `layout` places the files' contents in
    /// it, `costs` predicts their compressed size.
    fn estimate(mut self, layout: &[FileExtent], costs: &ContentCosts) -> ArchiveSizes {
        // The samples the end of the stream cut short.
        self.sample_gzip();
        self.sample_zstd();
        let content: u64 = layout.iter().map(|file| file.size).sum();
        let predicted_total = costs.between(0, content) + (self.written - content) as f64 * HEADER_COST;
        let estimate = |samples: &[(u64, u64, u64)]| {
            let predicted: f64 =
                samples.iter().map(|&(start, len, _)| predict(layout, costs, start, start + len)).sum();
            let real: u64 = samples.iter().map(|&(.., size)| size).sum();
            if predicted > 0.0 { (predicted_total * real as f64 / predicted).round() as u64 } else { real }
        };
        ArchiveSizes {
            tar_bytes: self.written,
            // gzip's header and trailer, and zstd's frame header, once.
            tar_gzip_bytes: estimate(&self.gzip_samples) + 18,
            tar_zstd_bytes: estimate(&self.zstd_samples) + 6,
        }
    }
}

/// The predicted compressed size of tar stream `start..end`: its files' content at their
/// chunks' stored bytes, the rest (headers, padding) at [`HEADER_COST`].
fn predict(layout: &[FileExtent], costs: &ContentCosts, start: u64, end: u64) -> f64 {
    let first = layout.partition_point(|file| file.tar_start + file.size <= start);
    let (mut content, mut predicted) = (0, 0.0);
    for file in layout[first..].iter().take_while(|file| file.tar_start < end) {
        let from = start.max(file.tar_start);
        let to = end.min(file.tar_start + file.size);
        if to <= from {
            continue;
        }
        content += to - from;
        let content_at = |offset: u64| offset - file.tar_start + file.content_start;
        predicted += costs.between(content_at(from), content_at(to));
    }
    predicted + (end - start).saturating_sub(content) as f64 * HEADER_COST
}

/// What a [`SampledFile`] reads at once.
const SAMPLED_READ: usize = 256 << 10;

/// A file's content as the tar stream carries it, read only where a sample needs it: elsewhere
/// it reads as zeros (the samplers drop those bytes unseen), and a file no sample reaches is
/// never opened. A file that shrank since the scan reads as zeros past its end.
struct SampledFile {
    path: PathBuf,
    size: u64,
    /// Bytes of it read so far.
    read: u64,
    file: Option<File>,
    /// Where its content starts in the tar stream, known at its first read.
    start: Option<u64>,
    schedules: [Schedule; 2],
    /// The tar stream's length, as its writer updates it.
    position: Rc<Cell<u64>>,
}

impl SampledFile {
    fn new(path: &Path, size: u64, schedules: [Schedule; 2], position: &Rc<Cell<u64>>) -> Self {
        let path = path.to_path_buf();
        Self { path, size, read: 0, file: None, start: None, schedules, position: Rc::clone(position) }
    }
}

impl Read for SampledFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Nothing of this file is written before its first read: the stream ends at its start.
        let start = *self.start.get_or_insert_with(|| self.position.get());
        let at = start + self.read;
        let (wanted, until) = needed(&self.schedules, at);
        let len = (buf.len() as u64).min(self.size - self.read).min(until - at) as usize;
        let buf = &mut buf[..len];
        let got = match (wanted, &mut self.file) {
            (false, _) => 0,
            (true, Some(file)) => file.read_at(buf, self.read)?,
            (true, file @ None) => file.insert(File::open(&self.path)?).read_at(buf, self.read)?,
        };
        // Not wanted, or past the end of a file that shrank: zeros.
        let len = if got == 0 {
            buf.fill(0);
            len
        } else {
            got
        };
        self.read += len as u64;
        Ok(len)
    }
}

impl Write for ArchiveSizer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let limit = self.gzip.sample_end().min(self.zstd.sample_end());
        let taken = buf.len().min((limit - self.written) as usize);
        self.gzip.keep(self.written, &buf[..taken]);
        self.zstd.keep(self.written, &buf[..taken]);
        self.written += taken as u64;
        self.position.set(self.written);
        if self.written == self.gzip.sample_end() {
            self.sample_gzip();
        }
        if self.written == self.zstd.sample_end() {
            self.sample_zstd();
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: u8, stored_len: u32) -> StagedChunk {
        StagedChunk { id: ChunkId::of(&[n]), len: stored_len * 2, stored_len }
    }

    #[test]
    fn packs_fill_to_the_target_and_neighbouring_ranges_share_a_get() {
        let mut packs = PackModel::default();
        let mib = 1 << 20;
        // 20 chunks of 1 MiB: two packs (16 + 4).
        assert_eq!(packs.save((0..20).map(|n| chunk(n, mib))), 2);
        // The next save starts a fresh pack, and does not lay out what is there again.
        assert_eq!(packs.save((15..25).map(|n| chunk(n, mib))), 1);
        let id = |n: u8| ChunkId::of(&[n]);
        assert_eq!(packs.ranged_gets((0..20).map(id)), 2, "a whole pack is one GET");
        assert_eq!(packs.ranged_gets([15, 16, 20].map(id)), 3, "one run per pack");
        // Chunks as long as the read gap: a gap of one is read through, of two is not.
        let gap = RANGE_GAP_BYTES as u32;
        let mut packs = PackModel::default();
        packs.save((0..4).map(|n| chunk(n, gap)));
        assert_eq!(packs.ranged_gets([0, 2].map(id)), 1, "a gap of one chunk is read through");
        assert_eq!(packs.ranged_gets([0, 3].map(id)), 2, "a gap of two is not");
    }

    #[test]
    fn percentiles_pick_from_the_sorted_lengths() {
        let d = distribution((1..=100).rev().collect());
        assert_eq!((d.min, d.p50, d.p99, d.max), (1, 50, 99, 100));
        assert_eq!(distribution(Vec::new()).max, 0);
    }

    /// Counts the bytes written to it.
    #[derive(Default)]
    struct Counter(u64);

    impl Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn archive_estimates_stay_within_a_percent_of_compressing_the_whole_stream() {
        // 12 MiB: noise, then lines of text, then noise again, then text with noise mixed in.
        let mut seed = 0u64;
        let mut noise = |len: usize| -> Vec<u8> {
            seed += 1;
            let mut bytes = vec![0; len];
            blake3::Hasher::new().update(&seed.to_le_bytes()).finalize_xof().fill(&mut bytes);
            bytes
        };
        let text = |from: usize, lines: usize| -> Vec<u8> {
            (from..from + lines)
                .flat_map(|line| format!("line {line}: value {}\n", line * 7 % 1000).into_bytes())
                .collect()
        };
        let mut stream = noise(3 << 20);
        stream.extend(text(0, 150_000));
        stream.extend(noise(3 << 20));
        for part in 0..40 {
            stream.extend(text(part * 1000, 1000));
            stream.extend(noise(40_000));
        }
        // The chunk stage's view: 512 KiB chunks, each compressed on its own.
        let chunks: Vec<StagedChunk> = stream
            .chunks(512 << 10)
            .map(|piece| StagedChunk {
                id: ChunkId::of(piece),
                len: piece.len() as u32,
                stored_len: crate::core::codec::encode(piece, 3).len() as u32,
            })
            .collect();
        let costs = ContentCosts::of(&ChunkList { chunks, new: Vec::new() });
        // As one file in a tar stream: a header before it, the end blocks after it.
        let mut header = b"gradle/caches/modules-2/a-file".to_vec();
        header.resize(512, 0);
        let layout = [FileExtent { tar_start: 512, size: stream.len() as u64, content_start: 0 }];
        let stream = [header, stream, vec![0; 1024]].concat();

        let mut gzip = flate2::write::GzEncoder::new(Counter::default(), flate2::Compression::new(6));
        gzip.write_all(&stream).unwrap();
        let mut zstd = zstd::Encoder::new(Counter::default(), 3).unwrap();
        zstd.write_all(&stream).unwrap();
        let (gzip, zstd) = (gzip.finish().unwrap().0, zstd.finish().unwrap().0);
        assert!(gzip < stream.len() as u64 * 3 / 4, "the text compresses");

        for every in [1, 2] {
            let mut sizer = ArchiveSizer::new(every);
            sizer.write_all(&stream).unwrap();
            let sized = sizer.estimate(&layout, &costs);
            assert_eq!(sized.tar_bytes, stream.len() as u64);
            let close = |estimate: u64, exact: u64| estimate.abs_diff(exact) * 100 < exact;
            assert!(close(sized.tar_gzip_bytes, gzip), "every {every}: {} against {gzip}", sized.tar_gzip_bytes);
            assert!(close(sized.tar_zstd_bytes, zstd), "every {every}: {} against {zstd}", sized.tar_zstd_bytes);
        }
        assert_eq!(ArchiveSizer::sampling(1 << 20), 1, "a small tree is compressed whole");
        assert_eq!(ArchiveSizer::sampling(1 << 30), ARCHIVE_MAX_EVERY);
    }

    #[test]
    fn samples_see_only_the_bytes_their_schedule_names() {
        let mut stream = vec![0u8; 9 << 20];
        blake3::Hasher::new().update(b"stream").finalize_xof().fill(&mut stream);
        for every in [1, 3, 24, 32] {
            let mut sizer = ArchiveSizer::new(every);
            let schedules = sizer.schedules();
            // Every byte no schedule names is overwritten: the samples must not change.
            let mut blurred = stream.clone();
            let mut at = 0;
            while at < blurred.len() as u64 {
                let (wanted, until) = needed(&schedules, at);
                let until = until.min(blurred.len() as u64);
                if !wanted {
                    blurred[at as usize..until as usize].fill(0xaa);
                }
                at = until;
            }
            assert_eq!(blurred != stream, every >= 24, "every {every}: sparse sampling leaves bytes out");
            sizer.write_all(&stream).unwrap();
            let mut other = ArchiveSizer::new(every);
            other.write_all(&blurred).unwrap();
            for sampled in [&mut sizer, &mut other] {
                sampled.sample_gzip();
                sampled.sample_zstd();
            }
            assert_eq!(sizer.gzip_samples, other.gzip_samples, "every {every}");
            assert_eq!(sizer.zstd_samples, other.zstd_samples, "every {every}");
            assert!(!sizer.zstd_samples.is_empty());
        }
    }

    #[test]
    fn a_sampled_file_is_read_only_where_needed_and_a_shrunk_one_reads_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        std::fs::write(&path, vec![7u8; 1000]).unwrap();
        let sizer = ArchiveSizer::new(ARCHIVE_MAX_EVERY);
        let schedules = sizer.schedules();
        // The first stretch no sample reaches, and the first one a sample does: 2,000 bytes each.
        let run = |wanted: bool| {
            let mut at = 0;
            loop {
                let (needed, until) = needed(&schedules, at);
                if needed == wanted && until - at >= 2000 {
                    return at;
                }
                at = until;
            }
        };
        // Where nothing is sampled the file is not even opened.
        sizer.position.set(run(false));
        let mut unread = SampledFile::new(&dir.path().join("missing"), 2000, schedules, &sizer.position);
        let mut content = Vec::new();
        unread.read_to_end(&mut content).unwrap();
        assert_eq!(content, vec![0; 2000]);
        // Where a sample reaches, the bytes are the file's, and zeros past its end.
        sizer.position.set(run(true));
        let mut read = SampledFile::new(&path, 2000, schedules, &sizer.position);
        content.clear();
        read.read_to_end(&mut content).unwrap();
        assert_eq!(content, [vec![7; 1000], vec![0; 1000]].concat());
    }

    fn row(chunk_size: u32, moved_mib: u64, requests: u64) -> SizeReport {
        let mut row = SizeReport { chunk_size, ..SizeReport::default() };
        row.upload = Some(Upload { stored_bytes: moved_mib << 20, ..Upload::default() });
        row.restore = Some(RestoreFetch::default());
        row.requests.warm_save = Some(Requests { put: requests, get: 0 });
        row.requests.warm_restore = Some(Requests::default());
        row
    }

    #[test]
    fn the_recommendation_weighs_bytes_against_requests() {
        // 2 MiB fewer bytes for 10 more requests (10 MiB at 1 MiB a request): not worth it.
        let picked = recommend(&[row(128 << 10, 100, 20), row(512 << 10, 102, 10)], false);
        assert_eq!(picked.chunk_size, 512 << 10, "{}", picked.reason);
        assert!(picked.reason.starts_with("512 KiB: an incremental build"), "{}", picked.reason);
        assert!(picked.reason.contains("against 128 KiB (100 MiB in 20 requests)"), "{}", picked.reason);
        // 20 MiB fewer for the same 10 more requests: worth it.
        let picked = recommend(&[row(128 << 10, 100, 20), row(512 << 10, 120, 10)], false);
        assert_eq!(picked.chunk_size, 128 << 10, "{}", picked.reason);
        assert!(picked.reason.contains("the fewest bytes"), "{}", picked.reason);
        // A tie goes to the larger size.
        assert_eq!(recommend(&[row(128 << 10, 100, 10), row(512 << 10, 100, 10)], false).chunk_size, 512 << 10);
    }

    #[test]
    fn human_sizes_drop_whole_decimals() {
        assert_eq!(human(512 << 10), "512 KiB");
        assert_eq!(human(1536), "1.5 KiB");
    }
}
