//! `restore --dry-run`: it reports exactly what the real restore then does, and changes nothing,
//! neither the destination nor the store.

use std::fs;
use std::path::Path;

use crate::util::{chunkcache_on, noise, run, run_json, scratch, snapshot, stderr};

/// Generation 0 of a tree; generation 1 edits, adds and deletes files in place (the others keep
/// their mtimes, so a restore over generation 0 leaves them alone).
fn write_generation(tree: &Path, generation: u64) {
    if generation == 0 {
        fs::create_dir_all(tree.join("d")).unwrap();
        for i in 0..12u64 {
            fs::write(tree.join(format!("d/f{i}")), noise(150_000, i + 1)).unwrap();
        }
        // The same content twice: one chunk, used by two files.
        fs::write(tree.join("d/copy-a"), noise(90_000, 99)).unwrap();
        fs::write(tree.join("d/copy-b"), noise(90_000, 99)).unwrap();
    } else {
        fs::write(tree.join("d/f1"), noise(150_000, 1001)).unwrap();
        fs::remove_file(tree.join("d/f2")).unwrap();
        fs::create_dir_all(tree.join("new")).unwrap();
        fs::write(tree.join("new/file"), noise(70_000, 1002)).unwrap();
        std::os::unix::fs::symlink("../d/f0", tree.join("new/link")).unwrap();
    }
}

/// The numbers a dry run and the real run must agree on.
const COUNTS: [&str; 7] =
    ["files", "bytes", "files_written", "files_unchanged", "bytes_written", "removed", "chunks_fetched"];

#[test]
fn a_mirror_dry_run_reports_what_the_restore_then_does_and_changes_nothing() {
    let dir = scratch();
    let (work, store, dest) = (dir.path().join("work"), dir.path().join("store"), dir.path().join("dest"));
    let tree = work.join("tree");
    write_generation(&tree, 0);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "gen0", "tree"]), 0);
    run(chunkcache_on(&work, &store, &["restore", "--key", "gen0"]).arg(&dest), 0);
    write_generation(&tree, 1);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "gen1", "tree"]), 0);
    // Local changes to the restored copy: a stray file and folder for --mirror to remove, and a
    // folder where the cache has a file (removed, then written).
    fs::write(dest.join("tree/d/stray"), b"not in the cache").unwrap();
    fs::create_dir_all(dest.join("tree/stray-dir/inner")).unwrap();
    fs::remove_file(dest.join("tree/d/f3")).unwrap();
    fs::create_dir(dest.join("tree/d/f3")).unwrap();

    let (dest_before, store_before) = (snapshot(&dest), snapshot(&store));
    let planned =
        run_json(chunkcache_on(&work, &store, &["restore", "--dry-run", "--mirror", "--key", "gen1"]).arg(&dest), 0);
    assert_eq!(snapshot(&dest), dest_before, "a dry run changes nothing in the destination");
    assert_eq!(snapshot(&store), store_before, "a dry run writes nothing to the store, not even used/");
    assert_eq!(planned["dry_run"], true, "{planned}");
    assert_eq!(planned["outcome"], "hit", "{planned}");
    assert_eq!(planned["restored_key"], "gen1", "{planned}");

    let done = run_json(chunkcache_on(&work, &store, &["restore", "--mirror", "--key", "gen1"]).arg(&dest), 0);
    for count in COUNTS {
        assert_eq!(planned[count], done[count], "{count}: planned {planned}\ndone {done}");
    }
    // Written: f1 (edited), f3 (a folder was in the way), new/file. Removed: f2 (deleted in
    // gen1), the stray file and folder, the folder at f3.
    assert_eq!(done["files_written"], 3, "{done}");
    assert_eq!(done["removed"], 4, "{done}");
    let listed = |name: &str| {
        let mut paths: Vec<String> =
            planned[name].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
        paths.sort();
        paths
    };
    let under = |relative: &str| dest.join(relative).to_string_lossy().into_owned();
    assert_eq!(listed("write"), [under("tree/d/f1"), under("tree/d/f3"), under("tree/new/file")]);
    assert_eq!(
        listed("remove"),
        [under("tree/d/f2"), under("tree/d/f3"), under("tree/d/stray"), under("tree/stray-dir")]
    );
    assert_eq!(snapshot(&dest.join("tree")), snapshot(&tree), "the real run restored gen1");

    // Once restored, a dry run finds nothing to do.
    let idle =
        run_json(chunkcache_on(&work, &store, &["restore", "--dry-run", "--mirror", "--key", "gen1"]).arg(&dest), 0);
    for (count, expected) in [("files_written", 0), ("removed", 0), ("chunks_fetched", 0), ("files_unchanged", 14)] {
        assert_eq!(idle[count], expected, "{count}: {idle}");
    }
}

#[test]
fn a_dry_run_exits_as_a_restore_does_and_prints_one_summary_line() {
    let dir = scratch();
    let (work, store, dest) = (dir.path().join("work"), dir.path().join("store"), dir.path().join("dest"));
    write_generation(&work.join("tree"), 0);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "main-1", "tree"]), 0);
    let store_before = snapshot(&store);

    let hit = run(chunkcache_on(&work, &store, &["restore", "--dry-run", "--key", "main-1"]).arg(&dest), 0);
    let text = stderr(&hit);
    assert!(text.contains("dry run, cache hit: \"main-1\"") && text.contains("would write 14"), "{text}");
    assert!(text.contains("would write ") && text.contains("and 4 more to write"), "up to 10 paths: {text}");
    let fallback = run(
        chunkcache_on(&work, &store, &["restore", "--dry-run", "--key", "main-2", "--restore-key", "main"]).arg(&dest),
        3,
    );
    assert!(stderr(&fallback).contains("would restore \"main-1\""), "{}", stderr(&fallback));
    let miss = run_json(chunkcache_on(&work, &store, &["restore", "--dry-run", "--key", "other"]).arg(&dest), 4);
    assert_eq!((miss["outcome"].as_str(), miss["files_written"].as_u64()), (Some("miss"), Some(0)), "{miss}");

    let planned = run_json(chunkcache_on(&work, &store, &["restore", "--dry-run", "--key", "main-1"]).arg(&dest), 0);
    assert!(!dest.exists(), "a dry run creates not even the destination");
    assert_eq!(snapshot(&store), store_before, "nothing written to the store");

    // Into an empty destination, with a chunk two files share: fetched once, as planned.
    let done = run_json(chunkcache_on(&work, &store, &["restore", "--key", "main-1"]).arg(&dest), 0);
    for count in COUNTS {
        assert_eq!(planned[count], done[count], "{count}: planned {planned}\ndone {done}");
    }
    assert_eq!(done["files_written"], 14, "{done}");
}
