//! `chunkcache gc` through the binary: retention, the two-phase sweep and its grace, saves taking
//! part in the protocol, kills at random points, and saves and restores racing GC.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chunkcache::core::gc::{CondemnedList, CondemnedPack};
use chunkcache::core::id::PackId;
use chunkcache::core::manifest::Manifest;
use futures::{StreamExt as _, TryStreamExt as _};

use crate::remote::Remote;
use crate::support::servers::{Azurite, Moto};
use crate::util::{
    assert_same_tree, chunkcache_on, noise, on_store, pack_objects, run, run_json, scratch, snapshot, stderr,
};

/// A tree as [`snapshot`] records it.
type Snapshot = BTreeMap<Vec<u8>, String>;

/// `files` files of 100 KB of noise from `seed`, plus one file shared by every tree.
pub(crate) fn tree(dir: &Path, seed: u64, files: u64) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("shared.bin"), noise(300_000, 7)).unwrap();
    for n in 0..files {
        fs::write(dir.join(format!("f{n}.bin")), noise(100_000, 2 * (seed * 1000 + n) + 1)).unwrap();
    }
}

fn packs_of(store: &Path, key: &str) -> Vec<PackId> {
    on_store(store, async |store| {
        let bytes = store.get_manifest(key).await.unwrap().expect("manifest exists");
        Manifest::decode(key, &bytes).unwrap().packs
    })
}

fn pack_ids(store: &Path) -> Vec<PackId> {
    pack_objects(store)
        .iter()
        .map(|path| PackId::from_hex(path.file_name().unwrap().to_str().unwrap()).unwrap())
        .collect()
}

#[test]
fn gc_expires_keys_condemns_their_packs_and_deletes_them_only_a_grace_later() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    tree(&work.join("a"), 1, 20);
    tree(&work.join("b"), 2, 20);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "old/a", "--chunk-size", "64K", "a"]), 0);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "keep/b", "b"]), 0);
    let (a_packs, b_packs) = (packs_of(&store, "old/a"), packs_of(&store, "keep/b"));
    thread::sleep(Duration::from_millis(1100));

    // A dry run names the key and changes nothing.
    let gc = |extra: &[&str], code| {
        let mut args = vec!["gc", "--grace", "1s", "--max-unused", "1s", "--keep", "keep/*"];
        args.extend_from_slice(extra);
        run_json(&mut chunkcache_on(&work, &store, &args), code)
    };
    let dry = gc(&["--dry-run"], 0);
    assert_eq!(dry["expired_keys"], serde_json::json!(["old/a"]), "{dry}");
    assert_eq!(dry["condemned"].as_u64().unwrap(), a_packs.len() as u64, "what a run would condemn: {dry}");
    assert_eq!(packs_of(&store, "old/a"), a_packs);
    assert!(!store.join("gc/condemned").exists(), "a dry run writes no list");

    let first = gc(&[], 0);
    assert_eq!((first["keys"].as_u64(), first["expired"].as_u64()), (Some(2), Some(1)), "{first}");
    assert_eq!(first["condemned"].as_u64().unwrap(), a_packs.iter().filter(|p| !b_packs.contains(p)).count() as u64);
    assert_eq!(first["deleted"], 0, "{first}");
    assert!(first.get("expired_keys").is_none(), "names only in dry runs: {first}");
    run(chunkcache_on(&work, &store, &["restore", "--key", "old/a"]).arg(dir.path().join("gone")), 4);

    // Within the grace: nothing to do (exit 5), the packs stay.
    let second = gc(&[], 5);
    assert_eq!(
        (second["deleted"].as_u64(), second["condemned_total"].as_u64()),
        (Some(0), first["condemned"].as_u64())
    );
    assert_eq!(pack_ids(&store).len(), a_packs.len() + b_packs.len());

    // A restore found one of them damaged: its marker goes with it.
    let doomed = *a_packs.iter().find(|pack| !b_packs.contains(pack)).unwrap();
    on_store(&store, async |store| store.mark_damaged(doomed).await.unwrap());
    thread::sleep(Duration::from_millis(1100));
    let third = gc(&[], 0);
    assert_eq!(fs::read_dir(store.join("damaged")).unwrap().count(), 0, "the marker was deleted with its pack");
    assert_eq!(third["deleted"], first["condemned"], "{third}");
    assert_eq!(third["condemned_total"], 0, "{third}");
    assert!(third["bytes_reclaimed"].as_u64().unwrap() > 2_000_000, "{third}");
    assert_eq!(
        third["store_bytes_after"].as_u64().unwrap(),
        pack_objects(&store).iter().map(|p| p.metadata().unwrap().len()).sum::<u64>()
    );
    let mut left = pack_ids(&store);
    left.sort();
    let mut expected = b_packs.clone();
    expected.sort();
    assert_eq!(left, expected, "exactly the live key's packs are left");
    assert_eq!(fs::read_dir(store.join("gc/condemned")).unwrap().count(), 0, "the old lists were deleted");
    gc(&[], 5);

    let out = dir.path().join("out");
    run(chunkcache_on(&work, &store, &["restore", "--key", "keep/b"]).arg(&out), 0);
    assert_same_tree(&snapshot(&out.join("b")), &snapshot(&work.join("b")));
    run(&mut chunkcache_on(&work, &store, &["verify", "--read-data"]), 0);
    let config: serde_json::Value = serde_json::from_slice(&fs::read(store.join("chunkcache.json")).unwrap()).unwrap();
    assert_eq!(config["gc_grace_ms"], 1000, "the grace is recorded in the store: {config}");
}

#[test]
fn the_size_cap_expires_least_recently_used_keys_first() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    for (n, key) in ["k1", "k2", "k3"].iter().enumerate() {
        tree(&work.join(key), 10 + n as u64, 10);
        run(&mut chunkcache_on(&work, &store, &["save", "--key", key, key]), 0);
        thread::sleep(Duration::from_millis(20));
    }
    // k1 restored last: most recently used.
    run(chunkcache_on(&work, &store, &["restore", "--key", "k1"]).arg(dir.path().join("out")), 0);
    // Each key holds about 1.3 MB: a 3 MB cap keeps two.
    let report = run_json(&mut chunkcache_on(&work, &store, &["gc", "--max-size", "3M", "--dry-run"]), 0);
    assert_eq!(report["keys"], 3, "{report}");
    assert_eq!(report["expired_keys"], serde_json::json!(["k2"]), "{report}");
}

#[test]
fn a_save_reuses_no_condemned_pack_and_names_no_new_pack_like_one() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    tree(&work.join("t"), 3, 12);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "p/one", "t"]), 0);
    let condemned = packs_of(&store, "p/one");
    let list = CondemnedList {
        grace_ms: 60_000,
        packs: condemned.iter().map(|&id| CondemnedPack { id, condemned_at_ms: 0 }).collect(),
    };
    on_store(&store, async |store| store.put_condemned("test", &list).await.unwrap());

    // Same tree, learning from p/one: without the lists it would upload nothing.
    let saved = run_json(&mut chunkcache_on(&work, &store, &["save", "--key", "p/two", "--parent", "p/one", "t"]), 0);
    assert_eq!(saved["dedup_percent"], 0.0, "condemned packs are not reused: {saved}");
    assert_eq!(saved["new_chunks"], saved["unique_chunks"], "{saved}");
    let two = packs_of(&store, "p/two");
    assert!(two.iter().all(|pack| !condemned.contains(pack)), "same chunks, other pack names: {two:?} {condemned:?}");
    let out = dir.path().join("out");
    run(chunkcache_on(&work, &store, &["restore", "--key", "p/two"]).arg(&out), 0);
    assert_same_tree(&snapshot(&out.join("t")), &snapshot(&work.join("t")));
    run(&mut chunkcache_on(&work, &store, &["verify", "--read-data"]), 0);
}

#[test]
fn a_save_slower_than_half_the_grace_commits_nothing() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    tree(&work.join("t"), 4, 10);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "first", "t"]), 0);
    run(&mut chunkcache_on(&work, &store, &["gc", "--grace", "2ms"]), 5);
    fs::write(work.join("t/new.bin"), noise(3_000_000, 99)).unwrap();
    let failed = run(&mut chunkcache_on(&work, &store, &["save", "--key", "second", "t"]), 1);
    let message = stderr(&failed);
    assert!(message.contains("nothing was committed") && message.contains("--grace"), "{message}");
    run(chunkcache_on(&work, &store, &["restore", "--key", "second"]).arg(dir.path().join("out")), 4);
    run(&mut chunkcache_on(&work, &store, &["gc", "--grace", "1h"]), 0);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "second", "t"]), 0);
}

#[test]
fn gc_on_a_store_never_saved_to_has_nothing_to_do() {
    let dir = scratch();
    fs::create_dir_all(dir.path().join("store")).unwrap();
    let report = run_json(&mut chunkcache_on(dir.path(), &dir.path().join("store"), &["gc"]), 5);
    assert_eq!(report["nothing_to_do"], true, "{report}");
    assert!(!dir.path().join("store/chunkcache.json").exists());
}

#[test]
fn staging_files_of_killed_uploads_are_swept_after_the_grace() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    tree(&work.join("t"), 5, 2);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "t"]), 0);
    let shard = store.join("packs/00");
    fs::create_dir_all(&shard).unwrap();
    fs::write(shard.join(format!("{}#3", "0".repeat(64))), b"half a pack").unwrap();
    thread::sleep(Duration::from_millis(1100));
    let report = run_json(&mut chunkcache_on(&work, &store, &["gc", "--grace", "1s"]), 0);
    assert_eq!(report["staging_deleted"], 1, "{report}");
    assert_eq!(fs::read_dir(&shard).unwrap().count(), 0);
}

/// GC killed at random points, with garbage to condemn and delete each time: the live keys
/// always verify, and a run to the end finishes the job.
#[test]
fn gc_killed_at_random_points_leaves_a_valid_store_and_the_next_run_finishes() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    tree(&work.join("live"), 6, 10);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "live/k", "--chunk-size", "64K", "live"]), 0);
    let gc_args = ["gc", "--grace", "1s", "--max-unused", "0s", "--keep", "live/**"];
    // How long a run takes here, so the kills fall across the whole run.
    let started = Instant::now();
    run(&mut chunkcache_on(&work, &store, &gc_args), 5);
    let full = started.elapsed();
    let mut killed = 0;
    for trial in 0..24u64 {
        let garbage = work.join(format!("g{trial}"));
        tree(&garbage, 100 + trial, 3);
        run(&mut chunkcache_on(&work, &store, &["save", "--key", &format!("tmp/{trial}"), &format!("g{trial}")]), 0);
        let mut child =
            chunkcache_on(&work, &store, &gc_args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        // Spread over the run: trial 7919 × n mod 24 visits every 24th of it once.
        thread::sleep(full.mul_f64(((trial * 7919) % 24) as f64 / 24.0));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        child.kill().ok();
        child.wait().unwrap();
        run(&mut chunkcache_on(&work, &store, &["verify", "--read-data"]), 0);
    }
    assert!(killed >= 6, "only {killed} of 24 runs were killed before they ended (a run takes {full:?})");
    // Two runs to the end, a grace apart: the first condemns what is left, the second deletes it.
    run(&mut chunkcache_on(&work, &store, &gc_args), 0);
    thread::sleep(Duration::from_millis(1100));
    let last = run_json(&mut chunkcache_on(&work, &store, &gc_args), 0);
    assert_eq!(last["condemned_total"], 0, "{last}");
    let mut left = pack_ids(&store);
    left.sort();
    let mut live = packs_of(&store, "live/k");
    live.sort();
    assert_eq!(left, live, "only the live key's packs are left");
    let out = dir.path().join("out");
    run(chunkcache_on(&work, &store, &["restore", "--key", "live/k"]).arg(&out), 0);
    assert_same_tree(&snapshot(&out.join("live")), &snapshot(&work.join("live")));
}

/// `files` files of 4 MB of noise from `seed`: a tree a save takes long enough to read that the
/// test can stop it in the middle ([`start_and_pause`]).
fn big_tree(dir: &Path, seed: u64, files: u64) {
    fs::create_dir_all(dir).unwrap();
    for n in 0..files {
        fs::write(dir.join(format!("big{n}.bin")), noise(4_000_000, 2 * (seed * 1000 + n) + 1)).unwrap();
    }
}

/// Bytes process `pid` has read so far, all its threads included (`rchar` of `/proc/PID/io`).
fn bytes_read(pid: u32) -> Option<u64> {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|line| line.strip_prefix("rchar:"))?.trim().parse().ok()
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill {signal} {}", child.id());
}

/// Starts `save` and stops it (SIGSTOP) once it has read 4 MB. A save reads GC's condemned lists
/// and its parent manifests (a few KB here) before it reads a byte of its tree, so it stops in
/// the middle of its tree: after it decided which packs to reuse, before it commits.
fn start_and_pause(save: &mut Command) -> Child {
    let child = save.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while bytes_read(child.id()).is_none_or(|read| read < 4_000_000) {
        assert!(started.elapsed() < Duration::from_secs(30), "the save read nothing for 30 s");
        thread::sleep(Duration::from_micros(200));
    }
    signal(&child, "-STOP");
    child
}

/// Lets a paused save go on, and waits for it.
fn resume(child: Child) -> Output {
    signal(&child, "-CONT");
    child.wait_with_output().unwrap()
}

/// Race 2 of issue 10 (and race 1 through a parent): a save learns its parent's packs, GC expires
/// the parent, condemns its packs and, a grace later, deletes them, all while the save runs. The
/// save must refuse to commit: its manifest would name deleted packs. Without the refusal past
/// half the grace, this save commits and `verify` finds its packs missing.
#[test]
fn a_save_that_outlives_the_grace_while_its_parent_expires_commits_nothing() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    big_tree(&work.join("t"), 30, 10);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k/old", "t"]), 0);
    let packs = packs_of(&store, "k/old");
    run(&mut chunkcache_on(&work, &store, &["gc", "--grace", "2s"]), 5);

    // Everything the save needs is in k/old's packs: it uploads nothing and reuses them all.
    let save =
        start_and_pause(&mut chunkcache_on(&work, &store, &["save", "--key", "k/new", "--parent", "k/old", "t"]));
    let gc = ["gc", "--grace", "2s", "--max-unused", "0s"];
    let first = run_json(&mut chunkcache_on(&work, &store, &gc), 0);
    assert_eq!(
        (first["expired"].as_u64(), first["condemned"].as_u64()),
        (Some(1), Some(packs.len() as u64)),
        "{first}"
    );
    thread::sleep(Duration::from_millis(2100));
    let second = run_json(&mut chunkcache_on(&work, &store, &gc), 0);
    assert_eq!(second["deleted"].as_u64(), Some(packs.len() as u64), "k/old's packs are gone: {second}");

    let saved = resume(save);
    assert_eq!(saved.status.code(), Some(1), "the save must not commit: {}", stderr(&saved));
    assert!(stderr(&saved).contains("nothing was committed"), "{}", stderr(&saved));
    run(chunkcache_on(&work, &store, &["restore", "--key", "k/new"]).arg(dir.path().join("out")), 4);
    run(&mut chunkcache_on(&work, &store, &["verify", "--read-data"]), 0);
    // Run again, it saves everything anew.
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k/new", "t"]), 0);
    let out = dir.path().join("out");
    run(chunkcache_on(&work, &store, &["restore", "--key", "k/new"]).arg(&out), 0);
    assert_same_tree(&snapshot(&out.join("t")), &snapshot(&work.join("t")));
}

/// Race 1 of issue 10, with the pack already condemned when the save reads GC's lists: a live
/// key references a condemned pack (its save read its parent before GC condemned the pack and
/// committed after), the next save learns the pack from that key, and GC expires the key and
/// deletes the pack while the save runs. The save started more than half a grace after the
/// condemnation, so it is within its own deadline when GC deletes the pack: only not reusing
/// condemned packs keeps its manifest whole. Without that, this save commits a manifest naming
/// deleted packs and `verify` fails.
#[test]
fn a_save_reuses_nothing_from_a_pack_condemned_before_it_started() {
    const GRACE: Duration = Duration::from_secs(8);
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    big_tree(&work.join("t"), 31, 10);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k/old", "t"]), 0);
    let packs = packs_of(&store, "k/old");
    let gc = ["gc", "--grace", "8s", "--max-unused", "0s"];
    run(&mut chunkcache_on(&work, &store, &["gc", "--grace", "8s"]), 5);

    // k/mid learns k/old's packs; GC expires k/old and condemns them; k/mid commits (within
    // its deadline): a live key now references condemned packs.
    let mid = start_and_pause(&mut chunkcache_on(&work, &store, &["save", "--key", "k/mid", "--parent", "k/old", "t"]));
    let first = run_json(&mut chunkcache_on(&work, &store, &gc), 0);
    let condemned_at = Instant::now();
    assert_eq!(first["condemned"].as_u64(), Some(packs.len() as u64), "{first}");
    let mid = resume(mid);
    assert_eq!(mid.status.code(), Some(0), "{}", stderr(&mid));
    assert_eq!(packs_of(&store, "k/mid"), packs, "k/mid reuses k/old's packs");

    // k/new starts more than half a grace after the condemnation, and learns from k/mid. GC
    // then expires k/mid and deletes the packs, a grace after their condemnation, while k/new
    // runs; k/new goes on well within its own deadline.
    let sleep_until = |moment: Instant| thread::sleep(moment.saturating_duration_since(Instant::now()));
    sleep_until(condemned_at + GRACE.mul_f64(0.85));
    let save =
        start_and_pause(&mut chunkcache_on(&work, &store, &["save", "--key", "k/new", "--parent", "k/mid", "t"]));
    sleep_until(condemned_at + GRACE + Duration::from_millis(300));
    let second = run_json(&mut chunkcache_on(&work, &store, &gc), 0);
    assert_eq!(second["expired"].as_u64(), Some(1), "k/mid expired: {second}");
    assert_eq!(second["deleted"].as_u64(), Some(packs.len() as u64), "k/old's packs are gone: {second}");
    let saved = resume(save);
    assert_eq!(saved.status.code(), Some(0), "the save ran within its deadline: {}", stderr(&saved));

    run(&mut chunkcache_on(&work, &store, &["verify", "--read-data"]), 0);
    let out = dir.path().join("out");
    run(chunkcache_on(&work, &store, &["restore", "--key", "k/new"]).arg(&out), 0);
    assert_same_tree(&snapshot(&out.join("t")), &snapshot(&work.join("t")));
}
/// Saves and restores in loops (changing trees, shared chunks, keys expiring) while GC runs
/// again and again with a grace of 2 s: every key left restores byte-exact, and verify finds
/// nothing missing. A soak test: its saves are too short to meet the two races, and it passed
/// 5 runs of 5 with either protection of the save path disabled. The two tests above set the
/// races up exactly, and each fails every time without its protection.
#[test]
fn saves_and_restores_racing_gc_never_lose_a_committed_key() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    tree(&work.join("seed"), 7, 2);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "race/seed", "seed"]), 0);
    run(&mut chunkcache_on(&work, &store, &["gc", "--grace", "2s"]), 5);
    let stop = Arc::new(AtomicBool::new(false));
    let saved: Arc<Mutex<BTreeMap<String, Snapshot>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(12);
    let savers: Vec<_> = (0..2u64)
        .map(|worker| {
            let (work, store, saved) = (work.clone(), store.clone(), Arc::clone(&saved));
            thread::spawn(move || {
                let mut rounds = (0, 0);
                for round in 0u64.. {
                    if Instant::now() > deadline {
                        break;
                    }
                    let name = format!("w{worker}");
                    let tree_dir = work.join(&name);
                    let _ = fs::remove_dir_all(&tree_dir);
                    // Half the files stay from round to round, half change: shared chunks.
                    fs::create_dir_all(&tree_dir).unwrap();
                    for n in 0..6u64 {
                        let seed = if n % 2 == 0 { worker * 100 + n } else { worker * 100_000 + round * 10 + n };
                        fs::write(tree_dir.join(format!("f{n}")), noise(120_000, seed)).unwrap();
                    }
                    let key = format!("race/{name}-{round}");
                    let output = chunkcache_on(&work, &store, &["save", "--key", &key, "--parent", "race", &name])
                        .output()
                        .unwrap();
                    if output.status.success() {
                        rounds.0 += 1;
                        saved.lock().unwrap().insert(key.clone(), snapshot(&tree_dir));
                    } else {
                        assert!(stderr(&output).contains("nothing was committed"), "{}", stderr(&output));
                        rounds.1 += 1;
                    }
                    let out = work.join(format!("out-{name}"));
                    let _ = fs::remove_dir_all(&out);
                    let restored =
                        chunkcache_on(&work, &store, &["restore", "--key", &key]).arg(&out).output().unwrap();
                    // 0: restored; 4: expired meanwhile. Never an error (a missing pack).
                    assert!(matches!(restored.status.code(), Some(0 | 4)), "{}", stderr(&restored));
                }
                rounds
            })
        })
        .collect();
    let gc_runs = {
        let (work, store, stop) = (work.clone(), store.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let (mut runs, mut deleted) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let args = ["gc", "--grace", "2s", "--max-unused", "3s", "--json"];
                let output = chunkcache_on(&work, &store, &args).output().unwrap();
                assert!(matches!(output.status.code(), Some(0 | 5)), "{}", stderr(&output));
                let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
                deleted += report["deleted"].as_u64().unwrap();
                runs += 1;
                thread::sleep(Duration::from_millis(200));
            }
            (runs, deleted)
        })
    };
    let rounds: Vec<(u64, u64)> = savers.into_iter().map(|saver| saver.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let (gc_runs, deleted) = gc_runs.join().unwrap();
    eprintln!("race: saves (committed, refused) per worker {rounds:?}, {gc_runs} gc runs, {deleted} packs deleted");
    assert!(gc_runs >= 10 && rounds.iter().all(|r| r.0 >= 5), "{rounds:?} {gc_runs}");
    assert!(deleted > 0, "GC deleted nothing while the saves ran: the race was not exercised");

    run(&mut chunkcache_on(&work, &store, &["verify", "--read-data"]), 0);
    let saved = saved.lock().unwrap();
    let mut restored = 0;
    for (key, expected) in saved.iter() {
        let out = dir.path().join(format!("check-{restored}"));
        let code = chunkcache_on(&work, &store, &["restore", "--key", key]).arg(&out).output().unwrap().status.code();
        match code {
            Some(0) => {
                let name = key.trim_start_matches("race/").split('-').next().unwrap();
                assert_same_tree(&snapshot(&out.join(name)), expected);
                restored += 1;
            }
            Some(4) => {}
            other => panic!("restore of {key} exited {other:?}"),
        }
    }
    assert!(restored > 0, "no key was left to check");
}

/// The same GC end to end on Azurite and moto: batch deletes (an Azure blob batch deletes up
/// to 256 objects in one request, an S3 `DeleteObjects` up to 1000), requests counted. Their
/// last-modified times have one-second resolution, hence the longer waits.
#[test]
fn gc_end_to_end_on_azurite_and_moto() {
    /// Packs no manifest references, as killed saves leave them.
    const ORPHANS: u64 = 300;
    for (remote, objects_per_delete) in [(Remote::azure(Azurite::start()), 256), (Remote::s3(Moto::start()), 1000)] {
        let dir = scratch();
        let work = dir.path().join("work");
        tree(&work.join("a"), 21, 8);
        tree(&work.join("b"), 22, 8);
        run(&mut remote.command(&work, &["save", "--key", "old/a", "--chunk-size", "64K", "a"]), 0);
        run(&mut remote.command(&work, &["save", "--key", "keep/b", "b"]), 0);
        remote.on_store(async |store| {
            futures::stream::iter(0..ORPHANS)
                .map(|n| {
                    let bytes = bytes::Bytes::from(format!("orphan {n}"));
                    store.put_pack(PackId::of(&bytes), bytes)
                })
                .buffer_unordered(16)
                .try_collect::<()>()
                .await
                .unwrap()
        });
        thread::sleep(Duration::from_millis(2100));
        let gc = |code| {
            let args = ["gc", "--grace", "1s", "--max-unused", "1s", "--keep", "keep/*", "--json"];
            let output = run(&mut remote.command(&work, &args), code);
            serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
        };
        let first = gc(0);
        assert_eq!(first["expired"], 1, "{}: {first}", remote.name);
        let condemned = first["condemned"].as_u64().unwrap();
        assert!(condemned > ORPHANS, "the orphans and old/a's packs: {}: {first}", remote.name);
        thread::sleep(Duration::from_millis(2100));
        let second = gc(0);
        assert_eq!(second["deleted"].as_u64(), Some(condemned), "{}: {second}", remote.name);
        // The condemned packs in batches, then the old list.
        let requests = second["requests"]["delete"].as_u64().unwrap();
        assert_eq!(requests, condemned.div_ceil(objects_per_delete) + 1, "{}: {second}", remote.name);
        assert!(requests * 50 < condemned, "{}: {requests} DELETE requests for {condemned} packs", remote.name);
        eprintln!("{}: {condemned} packs deleted; gc requests {}", remote.name, second["requests"]);
        run(&mut remote.command(&work, &["verify", "--read-data"]), 0);
        let out = dir.path().join("out");
        run(remote.command(&work, &["restore", "--key", "keep/b"]).arg(&out), 0);
        assert_same_tree(&snapshot(&out.join("b")), &snapshot(&work.join("b")));
        run(remote.command(&work, &["restore", "--key", "old/a"]).arg(dir.path().join("gone")), 4);
        let left = remote.on_store(async |store| store.list_packs().try_collect::<Vec<_>>().await.unwrap().len());
        assert!(left > 0 && left < 10, "only keep/b's packs are left: {left}");
    }
}
