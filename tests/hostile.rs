//! A damaged or hostile store, and a destination that is not what the cache expects: the
//! restore replaces what is in its way, never reaches anything through a symlink, and never
//! writes a wrong byte (issue 7).

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use crate::util::{
    assert_same_tree, chunkcache_on, edit_manifest, is_staging_name, noise, pack_objects, run, scratch, snapshot,
    stderr, stored_chunks,
};

/// `work/tree` with a folder `d` of a few files and a subfolder.
fn small_tree(work: &Path) {
    fs::create_dir_all(work.join("tree/d/sub")).unwrap();
    fs::write(work.join("tree/top.txt"), b"top").unwrap();
    fs::write(work.join("tree/d/a.bin"), noise(20_000, 1)).unwrap();
    fs::write(work.join("tree/d/sub/b.txt"), b"bee").unwrap();
}

fn walk_files(root: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            walk_files(&entry.path(), found);
        } else {
            found.push(entry.path());
        }
    }
}

fn staging_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    walk_files(root, &mut found);
    found.retain(|path| is_staging_name(path.file_name().unwrap()));
    found
}

#[test]
fn a_symlink_at_a_folders_place_is_replaced_never_followed() {
    let dir = scratch();
    let (work, store, out, elsewhere) =
        (dir.path().join("work"), dir.path().join("store"), dir.path().join("out"), dir.path().join("elsewhere"));
    small_tree(&work);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "tree"]), 0);
    run(chunkcache_on(&work, &store, &["restore", "--key", "k"]).arg(&out), 0);

    // The folder becomes a link to an identical copy (so a lookup through the link finds every
    // file "unchanged"), and, in a second round, a link to an unrelated folder.
    for identical in [true, false] {
        fs::remove_dir_all(&elsewhere).ok();
        if identical {
            fs::rename(out.join("tree/d"), &elsewhere).unwrap();
        } else {
            fs::remove_dir_all(out.join("tree/d")).unwrap();
            fs::create_dir_all(elsewhere.join("sub")).unwrap();
            fs::write(elsewhere.join("victim"), b"keep me").unwrap();
        }
        symlink(&elsewhere, out.join("tree/d")).unwrap();
        let before = snapshot(&elsewhere);
        run(chunkcache_on(&work, &store, &["restore", "--mirror", "--key", "k"]).arg(&out), 0);
        assert_same_tree(&snapshot(&out.join("tree")), &snapshot(&work.join("tree")));
        assert_same_tree(&snapshot(&elsewhere), &before);
    }
}

#[test]
fn a_file_at_a_folders_place_is_replaced() {
    let dir = scratch();
    let (work, store, out) = (dir.path().join("work"), dir.path().join("store"), dir.path().join("out"));
    small_tree(&work);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "tree"]), 0);
    fs::create_dir_all(out.join("tree")).unwrap();
    fs::write(out.join("tree/d"), b"a file where the cache has a folder").unwrap();
    run(chunkcache_on(&work, &store, &["restore", "--key", "k"]).arg(&out), 0);
    assert_same_tree(&snapshot(&out.join("tree")), &snapshot(&work.join("tree")));
}

#[test]
fn a_manifest_whose_chunk_lengths_lie_is_refused_naming_chunk_and_key() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/one.txt"), b"first file").unwrap();
    fs::write(work.join("tree/two.txt"), b"second file").unwrap();
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "tree"]), 0);
    for delta in [1i64, -1] {
        let key = format!("k{delta}");
        run(&mut chunkcache_on(&work, &store, &["save", "--key", &key, "tree"]), 0);
        edit_manifest(&store, &key, |manifest| {
            assert_eq!(manifest.chunks.len(), 1);
            manifest.chunks[0].len = (i64::from(manifest.chunks[0].len) + delta) as u32;
            if delta < 0 {
                // Keep the extents inside the (shorter) stream so the manifest validates.
                let mut entries = manifest.entries.to_vec();
                if let Some(chunkcache::core::manifest::EntryKind::File { size, .. }) =
                    entries.last_mut().map(|last| &mut last.kind)
                {
                    *size -= 1;
                }
                manifest.entries = entries.into();
            }
        });
        let out = dir.path().join(format!("out{delta}"));
        let failed = run(chunkcache_on(&work, &store, &["restore", "--key", &key]).arg(&out), 1);
        let message = stderr(&failed);
        assert!(message.contains("the manifest is damaged") && message.contains(&key), "{message}");
        let mut landed = Vec::new();
        walk_files(&out, &mut landed);
        assert!(landed.is_empty(), "no file may land, found {landed:?}");
    }
}

#[test]
fn long_names_restore_and_cached_names_that_look_like_staging_names_survive() {
    let dir = scratch();
    let (work, store, out) = (dir.path().join("work"), dir.path().join("store"), dir.path().join("out"));
    let long = "n".repeat(250);
    fs::create_dir_all(work.join("tree")).unwrap();
    for name in [long.as_str(), ".a.ccpart-1", ".ccpart-1-2", "plain"] {
        fs::write(work.join("tree").join(name), name.as_bytes()).unwrap();
    }
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k0", "tree"]), 0);
    run(chunkcache_on(&work, &store, &["restore", "--key", "k0"]).arg(&out), 0);
    assert_same_tree(&snapshot(&out.join("tree")), &snapshot(&work.join("tree")));
    // A second generation rewrites a neighbour: the restore's stale-staging sweep runs in this
    // folder and must leave the cached look-alikes alone.
    fs::write(work.join("tree/plain"), b"changed").unwrap();
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k1", "tree"]), 0);
    run(chunkcache_on(&work, &store, &["restore", "--key", "k1"]).arg(&out), 0);
    assert_same_tree(&snapshot(&out.join("tree")), &snapshot(&work.join("tree")));
}

/// The binary as an unprivileged user (root passes every permission check, so a test of
/// permissions must drop it).
fn unprivileged(mut command: std::process::Command) -> std::process::Command {
    if rustix::process::geteuid().is_root() {
        let mut dropped = std::process::Command::new("setpriv");
        dropped.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(command.get_program());
        dropped.args(command.get_args()).current_dir(command.get_current_dir().unwrap());
        for (name, value) in command.get_envs() {
            match value {
                Some(value) => dropped.env(name, value),
                None => dropped.env_remove(name),
            };
        }
        command = dropped;
    }
    command
}

#[test]
fn an_unprivileged_restore_works_over_read_only_folders_it_created() {
    let dir = scratch();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let (work, store, out) = (dir.path().join("work"), dir.path().join("store"), dir.path().join("out"));
    fs::create_dir_all(work.join("tree/ro/inner")).unwrap();
    fs::write(work.join("tree/ro/f"), b"generation 0").unwrap();
    fs::write(work.join("tree/ro/inner/g"), b"generation 0").unwrap();
    let read_only = |mode| {
        for folder in ["tree/ro/inner", "tree/ro"] {
            fs::set_permissions(work.join(folder), fs::Permissions::from_mode(mode)).unwrap();
        }
    };
    read_only(0o555);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k0", "tree"]), 0);
    read_only(0o755);
    fs::write(work.join("tree/ro/f"), b"generation 1, longer").unwrap();
    fs::remove_file(work.join("tree/ro/inner/g")).unwrap();
    fs::write(work.join("tree/ro/new"), b"new").unwrap();
    read_only(0o555);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k1", "tree"]), 0);
    fs::create_dir_all(&out).unwrap();
    rustix::fs::chown(&out, Some(rustix::fs::Uid::from_raw(65534)), Some(rustix::fs::Gid::from_raw(65534))).unwrap();

    run(&mut unprivileged(chunkcache_on(&work, &store, &["restore", "--key", "k0", out.to_str().unwrap()])), 0);
    let failed =
        unprivileged(chunkcache_on(&work, &store, &["restore", "--mirror", "--key", "k1", out.to_str().unwrap()]))
            .output()
            .unwrap();
    assert!(failed.status.success(), "{}", stderr(&failed));
    assert_same_tree(&snapshot(&out.join("tree")), &snapshot(&work.join("tree")));
    assert!(staging_files(&out).is_empty());
}

#[test]
fn a_save_repairs_what_a_restore_found_missing_or_corrupt() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/data.bin"), noise(50_000, 7)).unwrap();
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "tree"]), 0);
    let (pack, chunk) = stored_chunks(&store).pop().unwrap();
    let good = fs::read(&pack).unwrap();
    for damage in ["corrupt", "truncated", "missing"] {
        match damage {
            "corrupt" => {
                let mut bad = good.clone();
                bad[(chunk.offset + chunk.stored_len / 2) as usize] ^= 1;
                fs::write(&pack, bad).unwrap();
            }
            "truncated" => fs::write(&pack, &good[..(chunk.offset + chunk.stored_len / 2) as usize]).unwrap(),
            _ => fs::remove_file(&pack).unwrap(),
        }
        let out = dir.path().join(format!("out-{damage}"));
        let failed = run(chunkcache_on(&work, &store, &["restore", "--key", "k"]).arg(&out), 1);
        assert!(stderr(&failed).contains("save the cache again to repair it"), "{}", stderr(&failed));
        let named = if damage == "missing" { "is missing from the store" } else { "is corrupt" };
        assert!(stderr(&failed).contains(named), "{damage}: {}", stderr(&failed));
        assert_eq!(store.join("damaged").read_dir().unwrap().count(), 1, "{damage}: the restore marked the pack");
        // The advice is true: the same save of the same tree uploads the chunk again.
        let saved = crate::util::run_json(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "tree"]), 0);
        assert_eq!((&saved["new_chunks"], &saved["new_packs"]), (&1.into(), &1.into()), "{damage}: {saved}");
        run(chunkcache_on(&work, &store, &["restore", "--key", "k"]).arg(&out), 0);
        assert_same_tree(&snapshot(&out.join("tree")), &snapshot(&work.join("tree")));
        assert_eq!(fs::read(&pack).unwrap(), good, "{damage}: the same pack, rewritten whole");
        assert_eq!(
            store.join("damaged").read_dir().unwrap().count(),
            0,
            "{damage}: the repaired pack is no longer marked"
        );
    }
}

#[test]
fn a_corrupt_pack_a_save_relied_on_is_found_by_the_restore_and_repaired_by_the_next_save() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("a")).unwrap();
    fs::create_dir_all(work.join("b")).unwrap();
    fs::write(work.join("a/shared.bin"), noise(50_000, 9)).unwrap();
    fs::write(work.join("b/own.bin"), noise(40_000, 10)).unwrap();
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "a", "a"]), 0);
    let (shared, chunk) = stored_chunks(&store).pop().unwrap();
    let mut bad = fs::read(&shared).unwrap();
    bad[(chunk.offset + 100) as usize] ^= 1;
    fs::write(&shared, bad).unwrap();
    // Key b learns from key a (its newest sibling) that the store holds the shared chunk, so
    // its save does not upload it: the store is believed, not read, by saves.
    fs::copy(work.join("a/shared.bin"), work.join("b/shared.bin")).unwrap();
    let saved = crate::util::run_json(&mut chunkcache_on(&work, &store, &["save", "--key", "b", "b"]), 0);
    assert_eq!(saved["parents"], serde_json::json!(["a"]), "{saved}");
    assert_eq!(saved["new_chunks"], 1, "{saved}");
    // The restore reads it, finds it corrupt, names it and writes nothing of it.
    let out = dir.path().join("out");
    let failed = run(chunkcache_on(&work, &store, &["restore", "--key", "b"]).arg(&out), 1);
    assert!(
        stderr(&failed).contains(&chunk.id.to_string()) && stderr(&failed).contains("is corrupt"),
        "{}",
        stderr(&failed)
    );
    assert!(!out.join("b/shared.bin").exists());
    // The next save of b uploads it again, and b restores.
    let saved = crate::util::run_json(&mut chunkcache_on(&work, &store, &["save", "--key", "b", "b"]), 0);
    assert_eq!(saved["new_chunks"], 1, "{saved}");
    run(chunkcache_on(&work, &store, &["restore", "--key", "b"]).arg(&out), 0);
    assert_same_tree(&snapshot(&out.join("b")), &snapshot(&work.join("b")));
}

#[test]
fn paths_that_cannot_be_recorded_are_refused_before_any_upload() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree/sub")).unwrap();
    fs::write(work.join("tree/sub/data.bin"), noise(2_000_000, 3)).unwrap();
    for paths in [&["../work/tree"][..], &["tree", "tree"], &["tree", "tree/sub"], &["tree/", "tree"]] {
        let mut command = chunkcache_on(&work, &store, &["save", "--key", "k"]);
        let failed = run(command.args(paths), 1);
        assert!(stderr(&failed).contains("cannot save these paths"), "{paths:?}: {}", stderr(&failed));
        assert!(pack_objects(&store).is_empty(), "{paths:?}: nothing may be uploaded");
    }
}
