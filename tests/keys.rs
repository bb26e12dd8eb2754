//! Cache keys through the real binary on a local store: one key rule for every backend, and
//! keys that need encoding (`#`, `%`, `~`, spaces, unicode, a key beside a longer one, the
//! longest key) save, list and restore.

use std::collections::BTreeSet;
use std::fs;

use crate::util::{assert_same_tree, chunkcache_on, pack_objects, run, run_json, scratch, snapshot, stderr};

/// The longest key: 800 bytes once encoded for the store, with the leaf mark.
fn longest_key() -> String {
    ["a".repeat(239), "b".repeat(239), "c".repeat(239), "d".repeat(79)].join("/")
}

#[test]
fn awkward_keys_save_list_and_restore() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    let longest = longest_key();
    let keys = ["a#1", "p", "p/q", "é x/ü", "100%~", "v1.", longest.as_str()];
    for (index, key) in keys.iter().enumerate() {
        let tree = work.join(format!("tree{index}"));
        fs::create_dir_all(&tree).unwrap();
        fs::write(tree.join("f"), format!("contents of {key}")).unwrap();
        run(&mut chunkcache_on(&work, &store, &["save", "--key", key, &format!("tree{index}")]), 0);
    }
    for (index, key) in keys.iter().enumerate() {
        let out = dir.path().join(format!("out{index}"));
        let report = run_json(chunkcache_on(&work, &store, &["restore", "--key", key]).arg(&out), 0);
        assert_eq!(report["restored_key"], *key);
        let name = format!("tree{index}");
        assert_same_tree(&snapshot(&out.join(&name)), &snapshot(&work.join(&name)));
    }
    let listed = run_json(&mut chunkcache_on(&work, &store, &["list"]), 0);
    let listed: BTreeSet<&str> = listed.as_array().unwrap().iter().map(|m| m["key"].as_str().unwrap()).collect();
    assert_eq!(listed, keys.iter().copied().collect());
    // `p` and `p/q` coexist, and a fallback prefix finds the longer key.
    let out = dir.path().join("fallback");
    let report =
        run_json(chunkcache_on(&work, &store, &["restore", "--key", "p/x", "--restore-key", "p/"]).arg(&out), 3);
    assert_eq!(report["restored_key"], "p/q");
}

#[test]
fn bad_keys_are_refused_before_any_upload() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/f"), b"x").unwrap();
    let too_long = format!("{}d", longest_key());
    let cases = [
        (too_long.as_str(), "it takes 801 bytes once encoded for the store"),
        ("a/../b", "it has a `..` segment"),
        ("a//b", "empty segment"),
        ("a\u{1}b", "control character"),
        (&*"é".repeat(100), "takes 601 bytes once encoded for the store"),
    ];
    for (key, reason) in cases {
        let failed = run(&mut chunkcache_on(&work, &store, &["save", "--key", key, "tree"]), 1);
        let message = stderr(&failed);
        assert!(message.contains("invalid cache key") && message.contains(reason), "{key:?}: {message}");
        assert!(pack_objects(&store).is_empty(), "{key:?}: chunks were uploaded for an invalid key");
    }
    let failed = run(&mut chunkcache_on(&work, &store, &["save", "--key", &too_long, "tree"]), 1);
    assert!(stderr(&failed).contains("more than the limit of 800: shorten it"), "{}", stderr(&failed));
}
