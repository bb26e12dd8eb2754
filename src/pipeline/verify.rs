//! Verify: manifests → the packs they name exist (one listing of `packs/`) → with `read_data`,
//! every referenced chunk read and checked against its BLAKE3.
//!
//! Reads are the restore's ([`crate::pipeline::fetch::plan_ranges`], [`Store::read_range`]): the
//! needed objects of a pack are read with few ranged GETs. A chunk verified for one key is not
//! read again for the next (32 bytes per distinct chunk). Verify only reads: it writes no marker.

use std::collections::HashSet;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use globset::GlobSet;
use serde::Serialize;

use crate::core::id::{ChunkId, PackId};
use crate::core::manifest::Manifest;
use crate::pipeline::fetch::{READ_BYTES_IN_FLIGHT, max_range, plan_ranges};
use crate::store::{ChunkReadError, RequestSnapshot, Store, StoreError};

/// What to verify.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Only keys matching these (all keys when `None`).
    pub keys: Option<GlobSet>,
    /// Read every referenced chunk and check it, not only that its pack exists.
    pub read_data: bool,
}

/// A key whose cache would not restore.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DamagedKey {
    /// The key.
    pub key: String,
    /// Its manifest could not be read or decoded: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_error: Option<String>,
    /// Packs it names that the store lacks (full hex ids).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_packs: Vec<String>,
    /// Chunks that failed verification (full hex ids), with their pack.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub corrupt_chunks: Vec<CorruptRef>,
}

/// A chunk that failed verification.
#[derive(Clone, Debug, Serialize)]
pub struct CorruptRef {
    /// The chunk.
    pub chunk: String,
    /// The pack read.
    pub pack: String,
}

/// What verify found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Keys checked.
    pub keys: u64,
    /// Packs in the store.
    pub packs: u64,
    /// Distinct chunks read and verified (with `read_data`).
    pub chunks_verified: u64,
    /// The keys that would not restore.
    pub damaged: Vec<DamagedKey>,
    /// Store requests made.
    pub requests: RequestSnapshot,
    /// Wall time.
    pub elapsed_ms: u64,
}

/// Verifies the manifests of `store` matching `options.keys`.
///
/// # Errors
/// Backend failures (damage is reported in [`VerifyReport::damaged`], not as an error).
pub async fn verify(store: &Store, options: &VerifyOptions) -> Result<VerifyReport, StoreError> {
    let clock = Instant::now();
    let mut report = VerifyReport::default();
    let present: HashSet<PackId> = store.list_packs().map_ok(|pack| pack.id).try_collect().await?;
    report.packs = present.len() as u64;
    let mut verified: HashSet<ChunkId> = HashSet::new();
    for info in store.list_manifests("").await? {
        if options.keys.as_ref().is_some_and(|keys| !keys.is_match(&info.key)) {
            continue;
        }
        report.keys += 1;
        let mut damage = DamagedKey { key: info.key.clone(), ..DamagedKey::default() };
        let manifest = match store.get_manifest(&info.key).await? {
            // Overwritten or expired since the listing: nothing to check.
            None => continue,
            Some(bytes) => Manifest::decode(&info.key, &bytes),
        };
        let manifest = match manifest {
            Ok(manifest) => manifest,
            Err(err) => {
                damage.manifest_error = Some(err.to_string());
                report.damaged.push(damage);
                continue;
            }
        };
        damage.missing_packs =
            manifest.packs.iter().filter(|pack| !present.contains(pack)).map(|pack| pack.to_hex()).collect();
        if options.read_data {
            let needed: Vec<usize> = (0..manifest.chunks.len())
                .filter(|&index| {
                    let chunk = &manifest.chunks[index];
                    present.contains(&manifest.packs[chunk.pack as usize]) && !verified.contains(&chunk.id)
                })
                .collect();
            let longest = max_range(store);
            let mut reads = futures::stream::iter(plan_ranges(&manifest, &needed, longest))
                .map(|range| async move { (store.read_range(&range).await, range) })
                // Whole packs' worth of reads: as many as a cold restore runs.
                .buffer_unordered((READ_BYTES_IN_FLIGHT / u64::from(longest)) as usize);
            while let Some((read, range)) = reads.next().await {
                match read {
                    Ok(Some(_)) => verified.extend(range.chunks.iter().map(|&(id, ..)| id)),
                    // Deleted since the listing.
                    Ok(None) => damage.missing_packs.push(range.pack.to_hex()),
                    Err(ChunkReadError::Corrupt(corrupt)) => damage
                        .corrupt_chunks
                        .push(CorruptRef { chunk: corrupt_id(&corrupt).to_hex(), pack: range.pack.to_hex() }),
                    Err(ChunkReadError::Store(err)) => return Err(err),
                }
            }
        }
        if !damage.missing_packs.is_empty() || !damage.corrupt_chunks.is_empty() {
            damage.missing_packs.sort();
            damage.missing_packs.dedup();
            report.damaged.push(damage);
        }
    }
    report.chunks_verified = verified.len() as u64;
    report.requests = store.requests();
    report.elapsed_ms = clock.elapsed().as_millis() as u64;
    Ok(report)
}

fn corrupt_id(corrupt: &crate::core::codec::CorruptChunk) -> ChunkId {
    use crate::core::codec::CorruptChunk;
    match corrupt {
        CorruptChunk::Malformed { id, .. } | CorruptChunk::HashMismatch { id, .. } => *id,
    }
}
