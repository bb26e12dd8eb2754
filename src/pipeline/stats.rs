//! Stats: manifests listed, then read a few at a time → each key's distinct chunks, merged into
//! one sorted vector with the key holding each → `used/` markers → the store listed once
//! (packs, manifests, the rest) → the footers of the packs that hold unreferenced bytes (their
//! chunk counts) → per-key rows and store totals ([`crate::core::stats`] says what each figure
//! means).
//!
//! Stats lists and reads manifests; of packs it reads only those footers, 12 bytes each (pack
//! sizes come from the listing, each chunk's stored length from its manifest). Nothing is
//! written, so ages are measured with
//! the local clock. Memory: 16 bytes per distinct referenced chunk ([`ReferencedChunks`]), 8 per
//! key, one row per key shown, and [`MANIFESTS_IN_FLIGHT`] manifests. Every key is read even with
//! a key filter: a key's unique bytes are those no other key of the store holds.

use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use globset::GlobSet;
use serde::Serialize;

use crate::core::gc::{self, KeyHolder, ReferencedChunks};
use crate::core::manifest::Manifest;
use crate::core::stats::{self, StoreTally, StoreTotals};
use crate::core::time::now_ms;
use crate::pipeline::progress::Progress;
use crate::store::{RequestSnapshot, Store, StoreError};

/// Manifests read at once: enough to hide a remote store's latency, few enough to stay bounded.
pub const MANIFESTS_IN_FLIGHT: usize = 8;

/// What to report on.
#[derive(Clone, Debug, Default)]
pub struct StatsOptions {
    /// Rows only for keys matching these (all keys when `None`); the totals are the store's.
    pub keys: Option<GlobSet>,
}

/// One key: its tree, what it holds of the store, and when it was saved and used. The sizes
/// are `None` when its manifest cannot be decoded (`error` says why).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeyStats {
    /// The cache key.
    pub key: String,
    /// Regular files in its tree.
    pub files: Option<u64>,
    /// Bytes of file content in its tree (the logical size).
    pub bytes: Option<u64>,
    /// Distinct chunks it references.
    pub chunks: Option<u64>,
    /// Stored (compressed) bytes of those chunks: `unique_bytes + shared_bytes`.
    pub stored_bytes: Option<u64>,
    /// Stored bytes no other key references.
    pub unique_bytes: Option<u64>,
    /// Stored bytes other keys reference too.
    pub shared_bytes: Option<u64>,
    /// When its manifest was written (ms since the Unix epoch, the store's clock).
    pub saved_at_ms: i64,
    /// Its last use: the newer of the save and the last restore's `used/` marker.
    pub last_used_ms: i64,
    /// Time since the save, in ms.
    pub age_ms: i64,
    /// Why its manifest could not be decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What stats found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StatsReport {
    /// The keys shown (all, or those matching the filter), newest save first.
    pub keys: Vec<KeyStats>,
    /// Keys in the store.
    pub keys_total: u64,
    /// Keys whose manifest could not be decoded: their chunks count as unreferenced.
    pub keys_unreadable: u64,
    /// The store's totals.
    pub store: StoreTotals,
    /// Store requests made.
    pub requests: RequestSnapshot,
    /// Wall time.
    pub elapsed_ms: u64,
}

/// Reports what each key of `store` holds and where the store's bytes go (see the module docs).
///
/// # Errors
/// Backend failures and a store of a newer format. A manifest that cannot be decoded is a row
/// with its error, not a failure.
pub async fn stats(store: &Store, options: &StatsOptions, progress: &dyn Progress) -> Result<StatsReport, StoreError> {
    let clock = Instant::now();
    let mut report = StatsReport::default();
    // Refuses a store of a newer format, whose layout this build may misread.
    store.config().await?;

    // 1. Manifests, a few at a time, in listing order (newest first).
    let manifests = store.list_manifests("").await?;
    progress.phase("manifests", manifests.iter().map(|info| info.size).sum());
    let mut reads = futures::stream::iter(manifests)
        .map(|info| async move { store.get_manifest(&info.key).await.map(|bytes| (info, bytes)) })
        .buffered(MANIFESTS_IN_FLIGHT);
    let mut chunks = ReferencedChunks::default();
    let mut shown: Vec<(usize, KeyStats)> = Vec::new();
    let mut keys = 0;
    while let Some((info, bytes)) = reads.try_next().await? {
        progress.advance(info.size);
        // Overwritten or expired since the listing.
        let Some(bytes) = bytes else { continue };
        let holder = KeyHolder::key(keys);
        let show = options.keys.as_ref().is_none_or(|filter| filter.is_match(&info.key));
        let mut row = KeyStats { saved_at_ms: info.modified_ms, ..KeyStats::default() };
        match Manifest::decode(&info.key, &bytes) {
            Ok(manifest) => {
                let summary = manifest.summary();
                let (distinct, stored) = add_distinct_chunks(&manifest, holder, &mut chunks);
                (row.files, row.bytes, row.chunks, row.stored_bytes) =
                    (Some(summary.files), Some(summary.bytes), Some(distinct), Some(stored));
            }
            Err(err) => {
                report.keys_unreadable += 1;
                row.error = Some(err.to_string());
            }
        }
        if show {
            row.key = info.key;
            shown.push((keys, row));
        }
        keys += 1;
    }
    report.keys_total = keys as u64;

    // 2. Unique and shared bytes, now that every key's chunks are in.
    let referenced = chunks.finish();
    let (unique, shared) = stats::unique_and_shared(&referenced, keys);
    let mut tally = StoreTally::new(referenced.packs, unique.iter().sum(), shared);

    // 3. Last use.
    let used = store.used_markers().await?;
    let now = now_ms() as i64;
    for (index, row) in &mut shown {
        row.unique_bytes = row.stored_bytes.map(|_| unique[*index]);
        row.shared_bytes = row.stored_bytes.map(|stored| stored - unique[*index]);
        row.last_used_ms = gc::last_used_ms(row.saved_at_ms, used.get(&row.key).copied());
        row.age_ms = now - row.saved_at_ms;
    }
    report.keys = shown.into_iter().map(|(_, row)| row).collect();

    // 4. The store's objects, one listing.
    let mut objects = store.list_objects();
    while let Some(object) = objects.try_next().await? {
        tally.visit(object);
    }
    drop(objects);
    // 5. The unreferenced chunks, from the footers of the packs that hold any (usually few).
    let to_count = tally.to_count().to_vec();
    let mut counts = futures::stream::iter(to_count)
        .map(|pack| async move { store.pack_chunk_count(pack.id, pack.size).await.map(|count| (pack, count)) })
        .buffered(MANIFESTS_IN_FLIGHT);
    while let Some((pack, count)) = counts.try_next().await? {
        // A pack gone since the listing, or not a pack at the end: `verify`'s matter.
        if let Some(count) = count {
            tally.counted(&pack, count);
        }
    }
    drop(counts);
    report.store = tally.finish();
    report.requests = store.requests();
    report.elapsed_ms = clock.elapsed().as_millis() as u64;
    Ok(report)
}

/// Adds the distinct chunks (locations) of `manifest` to `chunks` as held by `holder`; returns
/// how many there are and their stored bytes.
fn add_distinct_chunks(manifest: &Manifest, holder: KeyHolder, chunks: &mut ReferencedChunks<KeyHolder>) -> (u64, u64) {
    let mut locations: Vec<(u32, u32, u32)> =
        manifest.chunks.iter().map(|chunk| (chunk.pack, chunk.offset, chunk.stored_len)).collect();
    locations.sort_unstable();
    locations.dedup();
    for &(pack, offset, stored_len) in &locations {
        chunks.add(manifest.packs[pack as usize], offset, stored_len, holder);
    }
    (locations.len() as u64, locations.iter().map(|&(.., len)| u64::from(len)).sum())
}
