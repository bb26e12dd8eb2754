//! Save and restore through the real binary on a local store.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chunkcache::store::keyed_path;
use filetime::FileTime;

use crate::util::{
    chunkcache, chunkcache_on, noise, run, run_json, scratch, snapshot, stderr, store_url, stored_chunks,
};

/// A tree with every kind of entry a restore must reproduce.
fn odd_tree(root: &Path) {
    fs::create_dir_all(root.join("deep/er/still")).unwrap();
    fs::create_dir_all(root.join("empty/nested-empty")).unwrap();
    fs::write(root.join("small.txt"), b"hello").unwrap();
    fs::write(root.join("zero"), b"").unwrap();
    fs::write(root.join("deep/er/still/big.bin"), noise(1_300_000, 1)).unwrap();
    fs::write(root.join("spaces and ünïcödé ✓.txt"), b"unicode").unwrap();
    fs::write(root.join("new\nline"), b"newline in name").unwrap();
    fs::write(root.join(OsStr::from_bytes(b"not-utf8-\xff\xfe")), b"raw bytes name").unwrap();
    fs::write(root.join("script.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("script.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(root.join("small.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("small.txt", root.join("link-to-small")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/absolute", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("deep/er", root.join("dir-link")).unwrap();
    fs::set_permissions(root.join("deep/er"), fs::Permissions::from_mode(0o750)).unwrap();
    for (i, entry) in ["small.txt", "zero", "deep/er/still/big.bin", "deep/er", "empty", ""].iter().enumerate() {
        let time = FileTime::from_unix_time(1_600_000_000 + i as i64, 123_456_789 + i as u32);
        filetime::set_file_mtime(root.join(entry), time).unwrap();
    }
}

#[test]
fn round_trip_is_byte_exact_with_modes_mtimes_symlinks_and_odd_names() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    odd_tree(&work.join("tree"));
    let before = snapshot(&work.join("tree"));
    // A 64 KiB average makes big.bin span several max-size (256 KiB) chunks.
    let report = run_json(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "--chunk-size", "64K", "tree"]), 0);
    assert_eq!(report["files"], 7);
    assert_eq!(report["symlinks"], 3);
    assert!(report["chunks"].as_u64().unwrap() >= 5, "{report}");

    let out = dir.path().join("out");
    let restored = run_json(chunkcache_on(&work, &store, &["restore", "--key", "k"]).arg(&out), 0);
    assert_eq!(restored["outcome"], "hit");
    assert_eq!(snapshot(&out.join("tree")), before);

    // Restoring to the original path (no DEST) after deleting it reproduces it too.
    fs::remove_dir_all(work.join("tree")).unwrap();
    run(&mut chunkcache_on(&work, &store, &["restore", "--key", "k"]), 0);
    assert_eq!(snapshot(&work.join("tree")), before);
}

#[test]
fn many_small_files_share_chunks() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    for i in 0..100_000u32 {
        let sub = work.join(format!("tree/{:03}", i % 500));
        if i < 500 {
            fs::create_dir_all(&sub).unwrap();
        }
        fs::write(sub.join(format!("f{i}.class")), format!("class {i} {{ constant pool {} }}", i * 7919)).unwrap();
    }
    let report = run_json(&mut chunkcache_on(&work, &store, &["save", "--key", "small", "tree"]), 0);
    assert_eq!(report["files"], 100_000);
    let chunks = stored_chunks(&store).len();
    assert!(chunks < 1_000, "100k small files became {chunks} chunks");
    let out = dir.path().join("out");
    run(chunkcache_on(&work, &store, &["restore", "--key", "small"]).arg(&out), 0);
    assert_eq!(
        fs::read(out.join("tree/123/f99623.class")).unwrap(),
        format!("class 99623 {{ constant pool {} }}", 99623u64 * 7919).as_bytes()
    );
}

#[test]
fn unchanged_saves_upload_nothing_and_changes_upload_only_new_chunks() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    let tree = work.join("tree");
    fs::create_dir_all(tree.join("a")).unwrap();
    for i in 0..40u64 {
        fs::write(tree.join(format!("a/lib-{i}.jar")), noise(300_000 + i as usize * 1000, 2 * i + 10)).unwrap();
    }
    fs::write(tree.join("a/big.zip"), noise(6_000_000, 99)).unwrap();
    // 64 KiB chunks (max 256 KiB) so the expected upload of an edit is sharp.
    let save = |key: &str| {
        let args = ["save", "--key", key, "--chunk-size", "64K", "--store", &store_url(&store), "tree"];
        run_json(chunkcache(&work).args(args), 0)
    };
    let first = save("gen0");
    assert!(first["new_bytes"].as_u64().unwrap() >= 18_000_000);

    let unchanged = save("gen0");
    assert_eq!(unchanged["new_chunks"], 0);
    assert_eq!(unchanged["new_bytes"], 0);
    let manifest_size = unchanged["requests"]["bytes_uploaded"].as_u64().unwrap();
    assert!(manifest_size < 20_000, "only the manifest is uploaded, got {manifest_size} bytes");

    // Edit one small file, and move the big file elsewhere: it must dedup whole.
    fs::write(tree.join("a/lib-3.jar"), noise(303_000, 1234)).unwrap();
    fs::create_dir_all(tree.join("moved")).unwrap();
    fs::rename(tree.join("a/big.zip"), tree.join("moved/renamed.zip")).unwrap();
    let changed = save("gen1");
    let new_bytes = changed["new_bytes"].as_u64().unwrap();
    assert!(new_bytes > 0 && new_bytes < 3_000_000, "a 300 KB edit uploaded {new_bytes} raw bytes: {changed}");
    assert!(changed["dedup_percent"].as_f64().unwrap() > 94.0, "{changed}");
}

#[test]
fn incremental_restore_rewrites_only_changed_files_and_mirror_removes_extras() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    let tree = work.join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    for i in 0..30u64 {
        fs::write(tree.join(format!("d/f{i}")), noise(200_000, i + 1)).unwrap();
    }
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "tree"]), 0);
    let saved = snapshot(&tree);
    let out = dir.path().join("out");
    run(chunkcache_on(&work, &store, &["restore", "--key", "k"]).arg(&out), 0);

    // Damage the restored copy: change a file, delete one, add an extra file and directory.
    fs::write(out.join("tree/d/f1"), b"local edit").unwrap();
    fs::remove_file(out.join("tree/d/f2")).unwrap();
    fs::write(out.join("tree/d/extra"), b"not in cache").unwrap();
    fs::create_dir_all(out.join("tree/extra-dir/x")).unwrap();
    let again = run_json(chunkcache_on(&work, &store, &["restore", "--key", "k"]).arg(&out), 0);
    assert_eq!(again["files_written"], 2, "{again}");
    assert_eq!(again["files_unchanged"], 28, "{again}");
    assert!(again["chunks_fetched"].as_u64().unwrap() <= 4, "{again}");
    assert!(out.join("tree/d/extra").exists(), "without --mirror extras stay");

    let mirrored = run_json(chunkcache_on(&work, &store, &["restore", "--mirror", "--key", "k"]).arg(&out), 0);
    assert_eq!(mirrored["files_written"], 0);
    assert_eq!(mirrored["removed"], 2);
    assert_eq!(snapshot(&out.join("tree")), saved);
}

#[test]
fn hit_fallback_and_miss_are_distinct() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/f"), b"one").unwrap();
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "repo/main-aaa", "tree"]), 0);
    fs::write(work.join("tree/f"), b"two").unwrap();
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "repo/main-bbb", "tree"]), 0);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "repo/main2-ccc", "tree"]), 0);

    let out = dir.path().join("out");
    let hit = run_json(chunkcache_on(&work, &store, &["restore", "--key", "repo/main-aaa"]).arg(&out), 0);
    assert_eq!(hit["restored_key"], "repo/main-aaa");
    assert_eq!(fs::read(out.join("tree/f")).unwrap(), b"one");

    let fallback = run(
        chunkcache_on(
            &work,
            &store,
            &["restore", "--key", "repo/main-zzz", "--restore-key", "repo/nope-", "--restore-key", "repo/main-"],
        )
        .arg(&out),
        3,
    );
    assert!(stderr(&fallback).contains("fallback hit: restored \"repo/main-bbb\""), "{}", stderr(&fallback));
    assert_eq!(fs::read(out.join("tree/f")).unwrap(), b"two");

    let miss = run(
        chunkcache_on(&work, &store, &["restore", "--key", "other", "--restore-key", "x-"])
            .arg(dir.path().join("none")),
        4,
    );
    assert!(stderr(&miss).contains("cache miss"), "{}", stderr(&miss));
    assert!(!dir.path().join("none").exists());
}

#[test]
fn corrupt_or_missing_chunks_are_named_and_never_land() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/data.bin"), noise(50_000, 5)).unwrap();
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "tree"]), 0);
    let chunks = stored_chunks(&store);
    assert_eq!(chunks.len(), 1);
    let (pack, chunk) = &chunks[0];
    let mut object = fs::read(pack).unwrap();
    let last = (chunk.offset + chunk.stored_len - 1) as usize;
    object[last] ^= 0x40;
    fs::write(pack, &object).unwrap();

    let out = dir.path().join("out");
    let failed = run(chunkcache_on(&work, &store, &["restore", "--key", "k"]).arg(&out), 1);
    let message = stderr(&failed);
    let name = chunk.id.to_string();
    assert!(message.contains("corrupt") && message.contains(&name) && message.contains("data.bin"), "{message}");
    let leftovers: Vec<_> = fs::read_dir(out.join("tree")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(leftovers.is_empty(), "nothing may land, found {leftovers:?}");

    fs::remove_file(pack).unwrap();
    let failed = run(chunkcache_on(&work, &store, &["restore", "--key", "k"]).arg(&out), 1);
    let message = stderr(&failed);
    let pack_name = &pack.file_name().unwrap().to_str().unwrap()[..12];
    assert!(message.contains("missing from the store") && message.contains(pack_name), "{message}");
    assert!(message.contains("data.bin"), "{message}");
}

#[test]
fn hostile_manifests_are_rejected_before_anything_is_written() {
    use chunkcache::core::manifest::{Entry, EntryKind, Manifest, Mount, Timestamp};
    let dir = scratch();
    let store = dir.path().join("store");
    let entry = |path: &str, kind| Entry {
        mount: 0,
        path: path.as_bytes().to_vec(),
        mode: 0o644,
        mtime: Timestamp { secs: 0, nanos: 0 },
        kind,
    };
    let cases = [
        ("dotdot", vec![entry("", EntryKind::Dir), entry("../escape", EntryKind::File { size: 0, offset: 0 })]),
        ("absolute", vec![entry("", EntryKind::Dir), entry("/etc/escape", EntryKind::File { size: 0, offset: 0 })]),
        (
            "through-symlink",
            vec![
                entry("", EntryKind::Dir),
                entry("link", EntryKind::Symlink { target: b"/tmp".to_vec() }),
                entry("link/escape", EntryKind::File { size: 0, offset: 0 }),
            ],
        ),
    ];
    for (key, entries) in cases {
        let manifest = Manifest {
            key: key.into(),
            started_at_ms: 0,
            finished_at_ms: 0,
            tool_version: "evil".into(),
            chunker: Default::default(),
            mounts: vec![Mount { path: b"tree".to_vec() }],
            packs: vec![],
            chunks: vec![],
            entries: entries.into(),
        };
        fs::create_dir_all(store.join("manifests")).unwrap();
        fs::write(store.join(keyed_path("manifests", key).unwrap().as_ref()), manifest.encode()).unwrap();
        let out = dir.path().join("out");
        let failed = run(chunkcache_on(dir.path(), &store, &["restore", "--key", key]).arg(&out), 1);
        assert!(stderr(&failed).contains("is invalid"), "{key}: {}", stderr(&failed));
        assert!(!out.exists(), "{key}: nothing may be written");
    }
    fs::write(store.join(keyed_path("manifests", "garbage").unwrap().as_ref()), b"CCMANIFEST\x02\x00not a manifest")
        .unwrap();
    let failed = run(&mut chunkcache_on(dir.path(), &store, &["restore", "--key", "garbage"]), 1);
    assert!(stderr(&failed).contains("corrupt"), "{}", stderr(&failed));
}

#[test]
fn store_config_guards_chunker_params_and_format() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/f"), b"x").unwrap();
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "a", "--chunk-size", "64K", "tree"]), 0);
    let config: serde_json::Value = serde_json::from_slice(&fs::read(store.join("chunkcache.json")).unwrap()).unwrap();
    assert_eq!(config["chunker"]["avg_size"], 65536);
    let mismatch = run(&mut chunkcache_on(&work, &store, &["save", "--key", "b", "--chunk-size", "128K", "tree"]), 1);
    assert!(stderr(&mismatch).contains("chunker parameters"), "{}", stderr(&mismatch));
    // Without --chunk-size a client takes the store's parameters.
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "b", "tree"]), 0);

    fs::write(
        store.join("chunkcache.json"),
        br#"{"format": 99, "chunker": {"min_size": 16384, "avg_size": 65536, "max_size": 262144}}"#,
    )
    .unwrap();
    let newer = run(&mut chunkcache_on(&work, &store, &["save", "--key", "c", "tree"]), 1);
    assert!(stderr(&newer).contains("upgrade chunkcache"), "{}", stderr(&newer));
}

#[test]
fn bad_input_gets_clear_errors_and_commits_nothing() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/f"), b"x").unwrap();
    let missing = run(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "tree", "no-such-dir"]), 1);
    assert!(
        stderr(&missing).contains("no-such-dir") && stderr(&missing).contains("check the mount path"),
        "{}",
        stderr(&missing)
    );
    assert!(!store.join(keyed_path("manifests", "k").unwrap().as_ref()).exists());

    let bad_key = run(&mut chunkcache_on(&work, &store, &["save", "--key", "a/../b", "tree"]), 1);
    assert!(stderr(&bad_key).contains("invalid cache key"), "{}", stderr(&bad_key));

    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "tree"]), 0);
    fs::write(dir.path().join("a-file"), b"").unwrap();
    let unwritable = run(chunkcache_on(&work, &store, &["restore", "--key", "k"]).arg(dir.path().join("a-file")), 1);
    assert!(stderr(&unwritable).contains("cannot write"), "{}", stderr(&unwritable));

    let no_key = run(&mut chunkcache_on(&work, &store, &["show", "--key", "nope"]), 1);
    assert!(stderr(&no_key).contains("chunkcache list"), "{}", stderr(&no_key));
}

#[test]
fn list_and_show_report_keys() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/f"), noise(10_000, 3)).unwrap();
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "team/one", "tree"]), 0);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "team/two", "tree"]), 0);
    let listed = run_json(&mut chunkcache_on(&work, &store, &["list"]), 0);
    let keys: Vec<&str> = listed.as_array().unwrap().iter().map(|m| m["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 2);
    assert!(keys.contains(&"team/one") && keys.contains(&"team/two"));
    let shown = run_json(&mut chunkcache_on(&work, &store, &["show", "--key", "team/two"]), 0);
    assert_eq!(shown["summary"]["files"], 1);
    assert_eq!(shown["summary"]["bytes"], 10_000);
    assert_eq!(shown["mounts"][0], "tree");
    assert!(shown["started_at_ms"].as_u64().unwrap() <= shown["finished_at_ms"].as_u64().unwrap());
}

#[test]
fn duplicate_content_is_uploaded_and_fetched_once() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    let block = noise(400_000, 77);
    fs::create_dir_all(work.join("tree/copy")).unwrap();
    fs::write(work.join("tree/repeated.bin"), block.repeat(4)).unwrap();
    fs::write(work.join("tree/a.jar"), noise(700_000, 78)).unwrap();
    fs::write(work.join("tree/copy/a.jar"), noise(700_000, 78)).unwrap();
    let saved = run_json(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "--chunk-size", "64K", "tree"]), 0);
    let stored = stored_chunks(&store).len() as u64;
    assert_eq!(saved["new_chunks"].as_u64().unwrap(), stored, "{saved}");
    assert_eq!(saved["unique_chunks"].as_u64().unwrap(), stored);
    assert!(saved["chunks"].as_u64().unwrap() > stored, "the stream repeats chunks: {saved}");
    let packs = saved["new_packs"].as_u64().unwrap();
    assert_eq!(saved["requests"]["put"].as_u64().unwrap(), packs + 2, "config + packs + manifest: {saved}");

    let out = dir.path().join("out");
    let restored = run_json(chunkcache_on(&work, &store, &["restore", "--key", "k"]).arg(&out), 0);
    assert_eq!(restored["chunks_fetched"].as_u64().unwrap(), stored, "{restored}");
    assert_eq!(snapshot(&out.join("tree")), snapshot(&work.join("tree")));
}

mod property {
    //! Any tree of files, directories and symlinks survives save → restore exactly.

    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use chunkcache::pipeline::progress::NoProgress;
    use chunkcache::pipeline::restore::{self, RestoreOptions, RestoreTarget};
    use chunkcache::pipeline::save::{self, SaveOptions};
    use chunkcache::store::backend::{self, BackendOptions};
    use proptest::prelude::*;

    use crate::util::{noise, scratch, snapshot};

    #[derive(Debug, Clone)]
    enum Node {
        File { size: usize, seed: u64, mode: u32 },
        Dir,
        Link(String),
    }

    fn tree() -> impl Strategy<Value = Vec<(String, Node)>> {
        let name = "[a-zA-Z0-9 ._é-]{1,8}".prop_filter("not . or ..", |n| n != "." && n != "..");
        let node = prop_oneof![
            4 => (0usize..300_000, any::<u64>(), prop::sample::select(vec![0o644, 0o600, 0o755, 0o400]))
                .prop_map(|(size, seed, mode)| Node::File { size, seed, mode }),
            1 => Just(Node::Dir),
            1 => "[a-z/.]{1,12}".prop_map(Node::Link),
        ];
        prop::collection::vec((prop::collection::vec(name, 1..4).prop_map(|p| p.join("/")), node), 0..40)
    }

    /// Whether every proper ancestor of `relative` under `root` is a real directory or absent.
    fn ancestors_are_dirs_or_missing(root: &std::path::Path, relative: &str) -> bool {
        let mut at = root.to_path_buf();
        let parts: Vec<&str> = relative.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            at.push(part);
            match at.symlink_metadata() {
                Ok(meta) if !meta.is_dir() => return false,
                Ok(_) => {}
                Err(_) => return true,
            }
        }
        true
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn restore_reproduces_what_was_saved(nodes in tree()) {
            let dir = scratch();
            let root = dir.path().join("src/tree");
            fs::create_dir_all(&root).unwrap();
            for (path, node) in &nodes {
                let target = root.join(path);
                // Skip nodes below a file or a symlink of this random tree: creating them would fail,
                // or follow the link out of the tree.
                if target.symlink_metadata().is_ok() || !ancestors_are_dirs_or_missing(&root, path) {
                    continue;
                }
                fs::create_dir_all(target.parent().unwrap()).unwrap();
                match node {
                    Node::File { size, seed, mode } => {
                        fs::write(&target, noise(*size, *seed)).unwrap();
                        fs::set_permissions(&target, fs::Permissions::from_mode(*mode)).unwrap();
                    }
                    Node::Dir => fs::create_dir_all(&target).unwrap(),
                    Node::Link(to) => std::os::unix::fs::symlink(to, &target).unwrap(),
                }
            }
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let restored = dir.path().join("dst");
            runtime.block_on(async {
                let store = backend::open("memory://", &BackendOptions::default()).await.unwrap();
                let save_options = SaveOptions {
                    key: "k".into(),
                    mounts: vec!["tree".into()],
                    root: dir.path().join("src"),
                    walk: Default::default(),
                    compression_level: 1,
                    concurrency: 4,
                    chunker: Some(chunkcache::core::chunker::ChunkerParams::with_average(16 << 10)),
                    skip_if_exists: false,
                    parent_prefixes: Vec::new(),
                };
                save::save(&store, &save_options, &NoProgress).await.unwrap();
                let restore_options = RestoreOptions {
                    key: "k".into(),
                    fallback_prefixes: vec![],
                    target: RestoreTarget::Under(restored.clone()),
                    mirror: false,
                    concurrency: 4,
                    only_mounts: None,
                };
                restore::restore(&store, &restore_options, &NoProgress).await.unwrap();
            });
            prop_assert_eq!(snapshot(&restored.join("tree")), snapshot(&root));
        }
    }
}

#[test]
fn a_symlinked_mount_saves_what_it_points_to() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("disk/gradle/caches")).unwrap();
    fs::write(work.join("disk/gradle/caches/a.bin"), b"on another disk").unwrap();
    std::os::unix::fs::symlink("disk/gradle", work.join("gradle-home")).unwrap();
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "gradle-home"]), 0);
    let out = dir.path().join("out");
    run(chunkcache_on(&work, &store, &["restore", "--key", "k"]).arg(&out), 0);
    assert!(out.join("gradle-home").symlink_metadata().unwrap().is_dir());
    assert_eq!(fs::read(out.join("gradle-home/caches/a.bin")).unwrap(), b"on another disk");
}
