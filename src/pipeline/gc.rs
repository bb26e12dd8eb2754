//! GC: server clock → retention → condemned lists → referenced packs → sweep → new list, old
//! lists deleted → staging leftovers.
//!
//! Read top to bottom, [`gc()`] is the pipeline; the decisions are [`crate::core::gc`]'s.
//!
//! # The protocol (two-phase, lock-free)
//! 1. **Server now.** A run writes `gc/clock` and reads its last-modified: every time GC compares
//!    is a server time (no local clock is compared with a server clock).
//! 2. **Retention.** Keys unused for `max_unused`, then the least recently used beyond
//!    `max_size`, lose their manifest and `used/` marker (pinned keys never). Packs go only
//!    through the sweep.
//! 3. **Condemned lists** under `gc/condemned/` are read and merged (earliest time wins).
//! 4. **Referenced packs**: every live manifest is decoded, one at a time, into a sorted vector of
//!    the packs and chunks it references. A manifest GC cannot decode (other than one of store
//!    format 1, which references no pack) stops the run: GC cannot tell what it needs.
//! 5. **Sweep** of the `packs/` listing: a referenced pack is kept (and leaves the lists: revived);
//!    an unreferenced pack condemned at least the grace ago and not modified since is deleted
//!    (with its `damaged/` marker); any other unreferenced pack is condemned.
//! 6. The **new list** (every pack still condemned; a newly condemned pack at a second server-clock
//!    reading taken just before the list is written) is written, **then** the old lists are
//!    deleted. A run killed at any point leaves the old lists, or both: the next run merges them.
//!
//! Saves take part ([`crate::pipeline::save`]): a save reads the condemned lists before anything
//! else, reuses no chunk of a condemned pack (and never names a new pack like a condemned one),
//! and refuses to commit once half the grace has passed since it started reading them.
//!
//! **Why a pack a save uses is never deleted.** Let save S start reading the lists at `tc` and
//! use pack P (reused, or found present when uploading). P was not on any list S read. Deleting P
//! needs a condemnation at some `t3` and a later run whose manifest listing is at least `t3 +
//! grace`. If the condemnation was on a list S could not see, that list became visible after
//! `tc`, and its times are read just before it is written: `t3 > tc − ε`, ε being one PUT plus
//! the server clock's resolution (a second on Azure and S3). S commits before
//! `tc + grace/2 < t3 + grace` (as long as ε < grace/2), so the deleting run's
//! listing holds S's manifest, which references P: P is kept. A parent key expiring while S runs
//! is the same case. Assumptions: one server clock per store; local clocks only measure
//! durations (skew does not matter); a save longer than grace/2 refuses to commit; ε is less
//! than grace/2; listings are strongly consistent (Azure, S3, GCS and local folders are). A
//! run asked for a shorter grace than the recorded one records it but uses the longer one, so
//! saves that read the old grace stay safe during that run.
//!
//! Not covered: a restore slower than the grace whose key expires meanwhile fails naming the
//! missing pack (never a half-written tree); a key saved again between the run's listing and its
//! expiry delete loses that new save (a later miss, not a broken cache).

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use futures::TryStreamExt;
use globset::GlobSet;
use object_store::path::Path;
use serde::Serialize;

use crate::core::gc::{self, KeyUse, ReferencedChunks, RetentionOptions, Sweep, SweepCounts, Verdict};
use crate::core::manifest::{Manifest, ManifestError};
use crate::core::time::now_ms;
use crate::store::{RequestSnapshot, Store, StoreError};

/// What the operator asked GC to do.
#[derive(Clone, Debug, Default)]
pub struct GcOptions {
    /// Retention: `max_unused` and `max_size`.
    pub retention: RetentionOptions,
    /// Keys matching these never expire.
    pub keep: GlobSet,
    /// The grace period in ms ([`gc::DEFAULT_GRACE_MS`] unless asked otherwise).
    pub grace_ms: u64,
    /// Decide and report, but write and delete nothing (the clock is then the local one).
    pub dry_run: bool,
}

/// What a GC run did (or, dry-running, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    /// True for a dry run.
    pub dry_run: bool,
    /// Nothing expired, condemned, revived or deleted.
    pub nothing_to_do: bool,
    /// The grace this run used, in ms.
    pub grace_ms: u64,
    /// Keys found.
    pub keys: u64,
    /// Keys expired.
    pub expired: u64,
    /// Their names (dry runs only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expired_keys: Vec<String>,
    /// What the sweep counted.
    #[serde(flatten)]
    pub sweep: SweepCounts,
    /// Packs on the new condemned list.
    pub condemned_total: u64,
    /// Staging files of killed local uploads deleted.
    pub staging_deleted: u64,
    /// Bytes of packs and staging files deleted.
    pub bytes_reclaimed: u64,
    /// Bytes of packs before the run.
    pub store_bytes_before: u64,
    /// And after.
    pub store_bytes_after: u64,
    /// Store requests made.
    pub requests: RequestSnapshot,
    /// Wall time.
    pub elapsed_ms: u64,
}

/// Why GC stopped. What it deleted before stopping was garbage by the protocol; the store stays
/// valid and the next run continues.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A live manifest could not be decoded, so GC cannot tell which packs it needs.
    #[error(
        "GC cannot tell which packs key {key:?} uses ({source}); nothing more was deleted: delete that key \
         (or save it again, or let --max-unused expire it) and run gc again"
    )]
    Manifest {
        /// The key.
        key: String,
        /// Why decoding failed.
        source: ManifestError,
    },
}

/// Deletes are sent in batches of this many objects (S3's limit per request).
const DELETE_BATCH: usize = 1000;

/// Runs GC on `store` (see the module docs).
///
/// # Errors
/// [`GcError`]; the store stays valid whatever the point of failure.
pub async fn gc(store: &Store, options: &GcOptions) -> Result<GcReport, GcError> {
    let clock = Instant::now();
    let mut report = GcReport { dry_run: options.dry_run, ..GcReport::default() };
    let Some(config) = store.config().await? else {
        // Nothing was ever saved here.
        report.nothing_to_do = true;
        report.grace_ms = options.grace_ms;
        return Ok(finish(store, report, clock));
    };

    // 1. Server now, and the grace.
    let now = if options.dry_run { now_ms() as i64 } else { store.server_now_ms().await? };
    report.grace_ms = options.grace_ms.max(config.gc_grace_ms.unwrap_or(0));
    if !options.dry_run {
        store.record_gc_grace(&config, options.grace_ms).await?;
    }

    // 2. Retention.
    let manifests = store.list_manifests("").await?;
    let used = store.used_markers().await?;
    let mut keys = Vec::with_capacity(manifests.len());
    for info in &manifests {
        let bytes = match options.retention.max_size {
            Some(_) => decoded(store, &info.key).await?.map_or(0, |manifest| manifest.summary().stored_bytes),
            None => 0,
        };
        let last_used_ms = gc::last_used_ms(info.modified_ms, used.get(&info.key).copied());
        keys.push(KeyUse { key: info.key.clone(), last_used_ms, bytes, pinned: options.keep.is_match(&info.key) });
    }
    let expired: HashSet<usize> = gc::expire(&keys, now, options.retention).into_iter().collect();
    report.keys = keys.len() as u64;
    report.expired = expired.len() as u64;
    let live: Vec<&str> = keys
        .iter()
        .enumerate()
        .filter(|(index, _)| !expired.contains(index))
        .map(|(_, key)| key.key.as_str())
        .collect();
    let live_set: HashSet<&str> = live.iter().copied().collect();
    let mut doomed = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        if expired.contains(&index) {
            let [manifest, marker] = Store::key_objects(&key.key)?;
            doomed.push(manifest);
            // Most keys were never restored: no marker, no DELETE for it.
            if used.contains_key(&key.key) {
                doomed.push(marker);
            }
            if options.dry_run {
                report.expired_keys.push(key.key.clone());
            }
        }
    }
    // `used/` markers of keys without a manifest (expired by an earlier run killed midway).
    for key in used.keys().filter(|key| !live_set.contains(key.as_str())) {
        doomed.push(Store::key_objects(key)?[1].clone());
    }
    if !options.dry_run {
        store.delete_objects(doomed).await?;
    }

    // 3. Condemned lists.
    let lists = store.condemned_lists().await?;
    let condemned = gc::merge_condemned(lists.iter().map(|(_, list)| list));

    // 4. Referenced packs, one manifest at a time.
    let mut chunks = ReferencedChunks::default();
    for key in &live {
        if let Some(manifest) = decoded(store, key).await? {
            for chunk in &manifest.chunks {
                chunks.add(manifest.packs[chunk.pack as usize], chunk.offset, chunk.stored_len, ());
            }
        }
    }

    // 5. Sweep.
    let mut sweep = Sweep::new(now, report.grace_ms, chunks, condemned);
    let mut deletes = Vec::new();
    // One listing, so that a deleted pack's damaged marker costs a DELETE only when there is one.
    let damaged = store.damaged_packs().await?;
    let mut packs = store.list_packs();
    while let Some(pack) = packs.try_next().await? {
        if sweep.visit(pack) == Verdict::Delete && !options.dry_run {
            deletes.push(Store::pack_object(pack.id));
            if damaged.contains(&pack.id) {
                deletes.push(Store::damaged_object(pack.id));
            }
            if deletes.len() >= DELETE_BATCH {
                store.delete_objects(std::mem::take(&mut deletes)).await?;
            }
        }
    }
    drop(packs);
    if !options.dry_run {
        store.delete_objects(deletes).await?;
    }

    // 6. The new list, then the old lists go.
    let written_at = if options.dry_run { now } else { store.server_now_ms().await? };
    let (counts, list) = sweep.finish(written_at);
    report.sweep = counts;
    report.condemned_total = list.packs.len() as u64;
    if !options.dry_run {
        let old: Vec<Path> = lists.into_iter().map(|(path, _)| path).collect();
        let written = match list.packs.is_empty() {
            true => None,
            false => Some(store.put_condemned(&format!("{written_at:013}-{}", std::process::id()), &list).await?),
        };
        store.delete_objects(old.into_iter().filter(|path| Some(path) != written.as_ref()).collect()).await?;
    }

    // Leftovers of killed local uploads.
    if let Some(root) = store.local_root() {
        let (files, bytes) =
            sweep_staging(&root.join("packs"), Duration::from_millis(report.grace_ms), options.dry_run);
        report.staging_deleted = files;
        report.bytes_reclaimed += bytes;
    }

    report.bytes_reclaimed += counts.deleted_bytes;
    report.store_bytes_before = counts.pack_bytes;
    report.store_bytes_after = counts.pack_bytes - counts.deleted_bytes;
    report.nothing_to_do = report.expired == 0
        && counts.deleted == 0
        && counts.condemned == 0
        && counts.revived == 0
        && report.staging_deleted == 0;
    Ok(finish(store, report, clock))
}

fn finish(store: &Store, report: GcReport, clock: Instant) -> GcReport {
    GcReport { requests: store.requests(), elapsed_ms: clock.elapsed().as_millis() as u64, ..report }
}

/// The manifest of `key`; `None` if it is gone or of store format 1 (which references no pack).
async fn decoded(store: &Store, key: &str) -> Result<Option<Manifest>, GcError> {
    let Some(bytes) = store.get_manifest(key).await? else { return Ok(None) };
    match Manifest::decode(key, &bytes) {
        Ok(manifest) => Ok(Some(manifest)),
        Err(ManifestError::Outdated { .. }) => Ok(None),
        Err(source) => Err(GcError::Manifest { key: key.to_string(), source }),
    }
}

/// Deletes `object_store`'s staging files (`<name>#<n>`, which its listing hides) under `folder`
/// older than `grace`: left by local uploads that were killed. Returns files and bytes deleted
/// (or that would be). Unreadable entries are skipped: a leftover costs only space.
fn sweep_staging(folder: &std::path::Path, grace: Duration, dry_run: bool) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let Ok(shards) = std::fs::read_dir(folder) else { return (0, 0) };
    for shard in shards.flatten() {
        let Ok(entries) = std::fs::read_dir(shard.path()) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let old = meta
                .modified()
                .ok()
                .and_then(|modified| SystemTime::now().duration_since(modified).ok())
                .is_some_and(|age| age >= grace);
            let staging = meta.is_file() && old && entry.file_name().to_string_lossy().contains('#');
            if staging && (dry_run || std::fs::remove_file(entry.path()).is_ok()) {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes)
}
