//! Micro-benchmarks of the hot paths, on deterministic generated data:
//! chunking, hashing, chunk encoding (zstd or raw), manifest encode/decode, restore planning.
//!
//! Run: `cargo bench --bench core`. Criterion reports medians; quote those, not one run.

use std::hint::black_box;

use chunkcache::core::chunker::ChunkerParams;
use chunkcache::core::codec;
use chunkcache::core::id::{ChunkId, PackId};
use chunkcache::core::manifest::{ChunkRef, Entry, EntryKind, Manifest, Mount, Timestamp};
use chunkcache::pipeline::fetch::{MAX_RANGE, plan_ranges};
use chunkcache::pipeline::restore::{RestoreTarget, plan};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// The integration tests' helpers, for their deterministic `noise`.
#[allow(dead_code)]
#[path = "../tests/util.rs"]
mod util;

use util::noise;

const MIB: usize = 1 << 20;

/// Class-file-like bytes: repeated identifiers with some variation; compresses ~4×.
fn text_like(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!("Lcom/example/module{}/Class{};->method{}()V ", i % 97, i % 1013, i % 13).as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

fn chunking(c: &mut Criterion) {
    let data = noise(64 * MIB, 7);
    let mut group = c.benchmark_group("chunking");
    group.throughput(Throughput::Bytes(data.len() as u64)).sample_size(10);
    for avg in [256 << 10, 1 << 20, 4 << 20] {
        let params = ChunkerParams::with_average(avg);
        group.bench_with_input(BenchmarkId::new("fastcdc", format!("{}KiB", avg >> 10)), &params, |b, params| {
            let mut buffer = Vec::new();
            b.iter(|| {
                let mut count = 0usize;
                params
                    .for_each_chunk(&data[..], &mut buffer, |_| {
                        count += 1;
                        Ok::<_, std::io::Error>(())
                    })
                    .unwrap();
                count
            })
        });
    }
    group.finish();
}

fn hashing(c: &mut Criterion) {
    let data = noise(MIB, 3);
    let mut group = c.benchmark_group("hashing");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("blake3 1MiB", |b| b.iter(|| ChunkId::of(black_box(&data))));
    group.finish();
}

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (name, data) in [("incompressible", noise(MIB, 5)), ("text-like", text_like(MIB))] {
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(BenchmarkId::new("zstd-3", name), &data, |b, data| b.iter(|| codec::encode(data, 3)));
        let id = ChunkId::of(&data);
        let object = bytes::Bytes::from(codec::encode(&data, 3));
        group.bench_with_input(BenchmarkId::new("decode", name), &object, |b, object| {
            b.iter(|| codec::decode(id, object.clone()).unwrap())
        });
    }
    group.finish();
}

/// A Gradle-like manifest: 100k files in 2k directories.
fn big_manifest() -> Manifest {
    let mtime = Timestamp { secs: 1_700_000_000, nanos: 1 };
    let mut entries = vec![Entry { mount: 0, path: Vec::new(), mode: 0o755, mtime, kind: EntryKind::Dir }];
    let mut offset = 0;
    for d in 0..2_000u64 {
        let dir = format!("caches/transforms-3/{d:040x}/transformed");
        let mut paths = vec![(dir.clone(), None)];
        for f in 0..50u64 {
            paths.push((format!("{dir}/com/example/Class{f}.class"), Some(2_000 + f * 10)));
        }
        for (path, size) in paths {
            let kind = match size {
                Some(size) => {
                    offset += size;
                    EntryKind::File { size, offset: offset - size }
                }
                None => EntryKind::Dir,
            };
            entries.push(Entry { mount: 0, path: path.into_bytes(), mode: 0o644, mtime, kind });
        }
    }
    // Parents for the nested paths, so the manifest validates.
    let mut all: Vec<Entry> = entries.clone();
    for entry in &entries {
        let mut path = entry.path.as_slice();
        while let Some(slash) = path.iter().rposition(|&b| b == b'/') {
            path = &path[..slash];
            all.push(Entry { mount: 0, path: path.to_vec(), mode: 0o755, mtime, kind: EntryKind::Dir });
        }
    }
    all.sort_by(|a, b| a.path.cmp(&b.path));
    all.dedup_by(|a, b| a.path == b.path);
    let chunk_len = 1 << 20;
    // 512 KiB stored per chunk, 32 chunks per pack.
    let count = offset.div_ceil(chunk_len);
    let chunks = (0..count)
        .map(|i| ChunkRef {
            id: ChunkId::of(&i.to_le_bytes()),
            len: chunk_len as u32,
            stored_len: 1 << 19,
            pack: (i / 32) as u32,
            offset: 8 + (i % 32) as u32 * (1 << 19),
        })
        .collect();
    let packs = (0..count.div_ceil(32)).map(|i| PackId::of(&i.to_le_bytes())).collect();
    Manifest {
        key: "bench".into(),
        started_at_ms: 0,
        finished_at_ms: 0,
        tool_version: "bench".into(),
        chunker: ChunkerParams::default(),
        mounts: vec![Mount { path: b"gradle".to_vec() }],
        packs,
        chunks,
        entries: all.into(),
    }
}

fn manifests(c: &mut Criterion) {
    let manifest = big_manifest();
    let encoded = manifest.encode();
    let mut group = c.benchmark_group("manifest-100k");
    group.sample_size(10);
    group.bench_function("encode", |b| b.iter(|| manifest.encode()));
    group.bench_function("decode+validate", |b| b.iter(|| Manifest::decode("bench", &encoded).unwrap()));
    let target = RestoreTarget::Under(std::env::temp_dir().join("chunkcache-bench-nonexistent"));
    group.bench_function("restore plan (empty target)", |b| b.iter(|| plan(&manifest, &target).unwrap()));
    let every_chunk: Vec<usize> = (0..manifest.chunks.len()).collect();
    group.bench_function("ranged reads of every chunk", |b| b.iter(|| plan_ranges(&manifest, &every_chunk, MAX_RANGE)));
    group.finish();
}

criterion_group!(benches, chunking, hashing, encoding, manifests);
criterion_main!(benches);
