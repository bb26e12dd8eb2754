//! Fuzz target: the manifest decoder and validator never panic, and what they accept is valid
//! and re-encodes to itself.
//!
//! The first input byte picks what the rest is: the raw object (which must then get past the
//! integrity hash), a postcard body framed with a correct header and hash (as a hostile writer
//! would), or edits to the body of a valid manifest, framed the same way, which reaches the
//! validator far more often than random bodies do.

#![no_main]

use chunkcache::core::chunker::ChunkerParams;
use chunkcache::core::id::{ChunkId, PackId};
use chunkcache::core::manifest::{ChunkRef, Entry, EntryKind, FORMAT_VERSION, Manifest, Mount, Timestamp};
use libfuzzer_sys::fuzz_target;

/// The on-store form of `body`: magic, the current version, declared length, BLAKE3 of every other byte.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = b"CCMANIFEST".to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&[0; 32]);
    out.extend_from_slice(&zstd::bulk::compress(body, 1).unwrap());
    let mut hasher = blake3::Hasher::new();
    hasher.update(&out[..20]);
    hasher.update(&out[52..]);
    let hash = hasher.finalize();
    out[20..52].copy_from_slice(hash.as_bytes());
    out
}

fn sample_body() -> Vec<u8> {
    let entry = |path: &str, kind| Entry {
        mount: 0,
        path: path.as_bytes().to_vec(),
        mode: 0o755,
        mtime: Timestamp { secs: 1_700_000_000, nanos: 5 },
        kind,
    };
    let manifest = Manifest {
        key: "k".into(),
        started_at_ms: 1,
        finished_at_ms: 2,
        tool_version: "fuzz".into(),
        chunker: ChunkerParams::with_average(1024),
        mounts: vec![Mount { path: b"caches".to_vec() }, Mount { path: b"/abs/other".to_vec() }],
        packs: vec![PackId::of(b"pack")],
        chunks: vec![
            ChunkRef { id: ChunkId::of(b"1"), len: 1000, stored_len: 500, pack: 0, offset: 8 },
            ChunkRef { id: ChunkId::of(b"2"), len: 500, stored_len: 250, pack: 0, offset: 508 },
        ],
        entries: vec![
            entry("", EntryKind::Dir),
            entry("a", EntryKind::File { size: 1200, offset: 0 }),
            entry("d", EntryKind::Dir),
            entry("d/b", EntryKind::File { size: 300, offset: 1200 }),
            entry("d/l", EntryKind::Symlink { target: b"../a".to_vec() }),
            Entry { mount: 1, ..entry("", EntryKind::Dir) },
        ]
        .into(),
    };
    postcard::to_stdvec(&manifest).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let bytes = match mode % 3 {
        0 => rest.to_vec(),
        1 => framed(rest),
        _ => {
            // Edits of three bytes: a 15-bit position, then a byte to write there, or to insert when
            // the position's top bit is set.
            let mut body = sample_body();
            for edit in rest.chunks_exact(3) {
                let at = usize::from(u16::from_le_bytes([edit[0], edit[1]]) & 0x7fff);
                if edit[1] & 0x80 != 0 {
                    body.insert(at % (body.len() + 1), edit[2]);
                } else {
                    let at = at % body.len();
                    body[at] = edit[2];
                }
            }
            framed(&body)
        }
    };
    if let Ok(manifest) = Manifest::decode("fuzz", &bytes) {
        assert_eq!(manifest.validate(), Ok(()));
        assert_eq!(Manifest::decode("fuzz", &manifest.encode()).unwrap(), manifest);
        let _ = manifest.summary();
        let _ = manifest.chunk_offsets();
    }
});
