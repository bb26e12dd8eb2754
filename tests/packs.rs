//! Store format 2 through the binary: packs, ranged reads, and what happens to format-1 stores.

use std::fs;
use std::path::Path;

use chunkcache::core::manifest::{EntryKind, Manifest, chunk_span};
use chunkcache::pipeline::fetch::LOCAL_MAX_RANGE;

use crate::util::{
    assert_same_tree, chunkcache_on, edit_manifest, noise, on_store, pack_objects, run, run_json, scratch, snapshot,
    stderr,
};

/// 48 files of 400 KB of noise, each its own chunk (64 KiB chunks are cut inside them, so
/// about six chunks each), about 19 MB in all: two packs or more.
fn many_files(tree: &Path) {
    fs::create_dir_all(tree).unwrap();
    for n in 0..48u64 {
        fs::write(tree.join(format!("f{n:02}.bin")), noise(400_000, 2 * n + 1)).unwrap();
    }
}

#[test]
fn a_restore_needing_one_chunk_from_the_middle_of_a_large_pack_reads_only_that_range() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    many_files(&work.join("tree"));
    let saved = run_json(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "--chunk-size", "64K", "tree"]), 0);
    let chunks = saved["unique_chunks"].as_u64().unwrap();
    assert!(chunks > 200, "{saved}");
    let packs = pack_objects(&store);
    assert_eq!(packs.len() as u64, saved["new_packs"].as_u64().unwrap(), "{saved}");
    assert!(packs.len() < 8, "{} packs for 19 MB: packs, not objects per chunk", packs.len());
    assert_eq!(saved["requests"]["put"].as_u64().unwrap(), packs.len() as u64 + 2, "config, packs, manifest: {saved}");

    // A cold restore reads every chunk in a few ranged reads, from a local folder none longer
    // than LOCAL_MAX_RANGE (3 MiB: so its buffers are reused, not mapped afresh).
    let out = dir.path().join("out");
    let cold = run_json(chunkcache_on(&work, &store, &["restore", "--key", "k"]).arg(&out), 0);
    assert_eq!(cold["chunks_fetched"].as_u64().unwrap(), chunks, "{cold}");
    let reads = cold["ranges_fetched"].as_u64().unwrap();
    let fewest = cold["bytes_fetched"].as_u64().unwrap().div_ceil(u64::from(LOCAL_MAX_RANGE));
    assert!(
        (fewest..=fewest + 2 * packs.len() as u64).contains(&reads),
        "{reads} ranged reads for 19 MB in reads of at most 3 MiB: {cold}"
    );
    assert_eq!(cold["requests"]["get"].as_u64().unwrap(), reads + 1, "the manifest and the reads: {cold}");
    assert_same_tree(&snapshot(&out.join("tree")), &snapshot(&work.join("tree")));

    // One file in the middle of the stream goes missing: its chunks, and only they, are read.
    fs::remove_file(out.join("tree/f30.bin")).unwrap();
    let one = run_json(chunkcache_on(&work, &store, &["restore", "--key", "k"]).arg(&out), 0);
    assert_eq!(one["files_written"], 1, "{one}");
    assert_eq!(one["ranges_fetched"], 1, "one file's chunks lie side by side in one pack: {one}");
    assert_eq!(one["requests"]["get"], 2, "the manifest and one read: {one}");
    let file_chunks = one["chunks_fetched"].as_u64().unwrap();
    let fetched = one["bytes_fetched"].as_u64().unwrap();
    assert!((400_000..420_000).contains(&fetched), "{fetched} bytes read for one 400 KB file of {file_chunks} chunks");
    assert_same_tree(&snapshot(&out.join("tree")), &snapshot(&work.join("tree")));
    // Its chunks lie in the middle of a pack: after the pack's first chunk and before its last.
    let manifest = on_store(&store, async |store| {
        let bytes = store.get_manifest("k").await.unwrap().unwrap();
        Manifest::decode("k", &bytes).unwrap()
    });
    let entry = manifest.entries.iter().find(|e| e.path == b"f30.bin").unwrap();
    let EntryKind::File { offset, size } = entry.kind else { panic!("f30.bin is a file") };
    let span = chunk_span(&manifest.chunk_offsets(), offset, size);
    assert_eq!(span.len() as u64, file_chunks);
    let refs = &manifest.chunks[span];
    let pack = refs[0].pack;
    assert!(refs.iter().all(|c| c.pack == pack), "one pack holds the file");
    let in_pack: Vec<u32> = manifest.chunks.iter().filter(|c| c.pack == pack).map(|c| c.offset).collect();
    let (first, last) = (*in_pack.iter().min().unwrap(), *in_pack.iter().max().unwrap());
    assert!(refs[0].offset > first && refs.last().unwrap().offset < last, "the file is in the middle of its pack");

    // Only the missing file's range went over the wire: far less than its pack.
    let pack_len = packs.iter().map(|p| fs::metadata(p).unwrap().len()).max().unwrap();
    assert!(fetched * 10 < pack_len, "{fetched} bytes read from a pack of {pack_len}");
}

#[test]
fn format_one_caches_are_refused_with_advice_and_a_save_upgrades_the_store() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/a.txt"), b"some content").unwrap();
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "old", "tree"]), 0);
    // Make it look like chunkcache 0.1 wrote it: store format 1, manifest format 2 (same
    // header layout and hash, older version number).
    let config = fs::read_to_string(store.join("chunkcache.json")).unwrap();
    fs::write(store.join("chunkcache.json"), config.replace("\"format\": 2", "\"format\": 1")).unwrap();
    edit_manifest(&store, "old", |_| {});
    let path = store.join("manifests/old~");
    let mut manifest = fs::read(&path).unwrap();
    manifest[10] = 2;
    let mut hasher = blake3::Hasher::new();
    hasher.update(&manifest[..20]);
    hasher.update(&manifest[52..]);
    manifest[20..52].copy_from_slice(hasher.finalize().as_bytes());
    fs::write(&path, manifest).unwrap();

    let out = dir.path().join("out");
    let failed = run(chunkcache_on(&work, &store, &["restore", "--key", "old"]).arg(&out), 1);
    let message = stderr(&failed);
    assert!(message.contains("format version 2") && message.contains("older chunkcache"), "{message}");
    assert!(message.contains("save the cache again"), "{message}");
    assert!(!out.join("tree").exists());

    // A save rewrites the config to format 2 and the key to the new format; then it restores.
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "old", "tree"]), 0);
    let config: serde_json::Value = serde_json::from_slice(&fs::read(store.join("chunkcache.json")).unwrap()).unwrap();
    assert_eq!(config["format"], 2, "{config}");
    run(chunkcache_on(&work, &store, &["restore", "--key", "old"]).arg(&out), 0);
    assert_same_tree(&snapshot(&out.join("tree")), &snapshot(&work.join("tree")));
}

#[test]
fn a_save_learns_from_parents_not_from_a_listing_of_the_store() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    many_files(&work.join("tree"));
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "team-a/main", "tree"]), 0);
    // Another folder of keys knows nothing of team-a's caches unless told.
    let cold = run_json(&mut chunkcache_on(&work, &store, &["save", "--key", "team-b/main", "tree"]), 0);
    assert_eq!(cold["parents"], serde_json::json!([]), "{cold}");
    assert_eq!(cold["new_chunks"], cold["unique_chunks"], "{cold}");
    let told = run_json(
        &mut chunkcache_on(&work, &store, &["save", "--key", "team-b/feature", "--parent", "team-a/", "tree"]),
        0,
    );
    assert_eq!(told["parents"], serde_json::json!(["team-a/main"]), "{told}");
    assert_eq!((&told["new_chunks"], &told["new_packs"]), (&0.into(), &0.into()), "{told}");
    // In its own folder a new key learns from the newest sibling.
    let sibling = run_json(&mut chunkcache_on(&work, &store, &["save", "--key", "team-b/other", "tree"]), 0);
    assert_eq!(sibling["parents"], serde_json::json!(["team-b/feature"]), "{sibling}");
    assert_eq!(sibling["new_chunks"], 0, "{sibling}");
    // No path lists the chunks: the saves above listed only damaged markers, GC's condemned
    // lists and key folders.
    assert!(sibling["requests"]["list"].as_u64().unwrap() <= 3, "{sibling}");
}
