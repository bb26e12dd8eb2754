//! `chunkcache stats` through the binary: the figures add up, GC brings the unreferenced bytes
//! to zero, `--key` filters rows but not totals, the JSON shape is pinned, and the same on
//! Azurite (a missing store is refused: tests/read_only.rs).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::gc::tree;
use crate::remote::Remote;
use crate::support::servers::Azurite;
use crate::util::{chunkcache_on, pack_objects, run, run_json, scratch, stderr, store_url};

fn u(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("not a count: {value}"))
}

/// Checks the identities the figures must satisfy.
#[track_caller]
fn assert_adds_up(report: &Value) {
    let store = &report["store"];
    let rows = report["keys"].as_array().unwrap();
    let unique: u64 = rows.iter().map(|row| u(&row["unique_bytes"])).sum();
    assert_eq!(unique, u(&store["unique_bytes"]), "{report}");
    assert_eq!(u(&store["unique_bytes"]) + u(&store["shared_bytes"]), u(&store["referenced_bytes"]), "{report}");
    for row in rows {
        assert_eq!(u(&row["unique_bytes"]) + u(&row["shared_bytes"]), u(&row["stored_bytes"]), "{row}");
    }
    assert_eq!(
        u(&store["stored_bytes"]),
        u(&store["referenced_bytes"]) - u(&store["missing_bytes"])
            + u(&store["framing_bytes"])
            + u(&store["unreferenced_bytes"]),
        "{report}"
    );
}

fn row<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["keys"].as_array().unwrap().iter().find(|row| row["key"] == key).unwrap_or_else(|| panic!("{key}: {report}"))
}

/// Saves x/a, x/b (which learns x/a's pack of the shared file from its folder) and y/c; expires y/c
/// with two GC runs a grace apart; checks stats after each step. `wait` outlasts the grace
/// on the store's clock.
fn scenario(work: &Path, chunkcache: &dyn Fn(&[&str]) -> Command, wait: Duration) {
    tree(&work.join("a"), 1, 6);
    tree(&work.join("b"), 2, 6);
    tree(&work.join("c"), 3, 6);
    for (key, path) in [("x/a", "a"), ("x/b", "b"), ("y/c", "c")] {
        run(&mut chunkcache(&["save", "--key", key, "--chunk-size", "64K", path]), 0);
    }
    let stats = |args: &[&str]| run_json(&mut chunkcache(&[&["stats"], args].concat()), 0);

    let before = stats(&[]);
    assert_adds_up(&before);
    assert_eq!((u(&before["keys_total"]), before["keys"].as_array().unwrap().len()), (3, 3), "{before}");
    let store = &before["store"];
    assert_eq!((u(&store["unreferenced_bytes"]), u(&store["missing_packs"])), (0, 0), "{before}");
    assert_eq!(u(&store["manifests"]), 3, "{before}");
    assert!(u(&store["other_objects"]) >= 1, "chunkcache.json: {before}");
    // The shared file: x/b references x/a's copy, y/c has its own.
    let (a, b, c) = (row(&before, "x/a"), row(&before, "x/b"), row(&before, "y/c"));
    assert!(u(&a["shared_bytes"]) >= 300_000 && u(&a["shared_bytes"]) == u(&b["shared_bytes"]), "{before}");
    assert_eq!(u(&c["shared_bytes"]), 0, "{before}");
    assert_eq!(u(&c["unique_bytes"]), u(&c["stored_bytes"]), "{before}");
    assert_eq!((u(&a["files"]), u(&a["bytes"])), (7, 900_000), "{a}");
    assert!(u(&a["last_used_ms"]) >= u(&a["saved_at_ms"]) && a["age_ms"].as_i64().unwrap() >= 0, "{a}");

    // --key filters the rows, not the totals.
    let filtered = stats(&["--key", "x/*"]);
    let keys: Vec<&str> = filtered["keys"].as_array().unwrap().iter().map(|row| row["key"].as_str().unwrap()).collect();
    assert_eq!(keys.iter().copied().collect::<BTreeSet<_>>(), BTreeSet::from(["x/a", "x/b"]), "{filtered}");
    assert_eq!(filtered["store"], before["store"], "{filtered}");
    assert_eq!(row(&filtered, "x/a")["unique_bytes"], a["unique_bytes"], "unique against every key of the store");
    assert_eq!(u(&filtered["keys_total"]), 3);

    // GC expires y/c: its packs are unreferenced until a second run deletes them.
    thread::sleep(wait);
    let gc = || run(&mut chunkcache(&["gc", "--grace", "1s", "--max-unused", "1s", "--keep", "x/**"]), 0);
    gc();
    let condemned = stats(&[]);
    assert_adds_up(&condemned);
    let store = &condemned["store"];
    assert_eq!(u(&condemned["keys_total"]), 2, "{condemned}");
    assert!(u(&store["unreferenced_bytes"]) > u(&c["stored_bytes"]), "y/c's packs, framing included: {condemned}");
    assert!(u(&store["unreferenced_packs"]) >= 1, "{condemned}");
    // Every chunk y/c held alone is now unreferenced, counted from the pack footers.
    assert_eq!(u(&store["unreferenced_chunks"]), u(&c["chunks"]), "{condemned}");
    assert_eq!(store["referenced_bytes"], u(&before["store"]["referenced_bytes"]) - u(&c["stored_bytes"]));
    thread::sleep(wait);
    gc();
    let after = stats(&[]);
    assert_adds_up(&after);
    let store = &after["store"];
    assert_eq!((u(&store["unreferenced_bytes"]), u(&store["unreferenced_packs"])), (0, 0), "{after}");
    assert_eq!(u(&store["unreferenced_chunks"]), 0, "{after}");
    assert_eq!(u(&store["stored_bytes"]), u(&store["referenced_bytes"]) + u(&store["framing_bytes"]), "{after}");
}

#[test]
fn figures_add_up_and_gc_brings_unreferenced_bytes_to_zero() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    scenario(&work, &|args| chunkcache_on(&work, &store, args), Duration::from_millis(1100));
    let listed: u64 = pack_objects(&store).iter().map(|pack| pack.metadata().unwrap().len()).sum();
    let report = run_json(&mut chunkcache_on(&work, &store, &["stats"]), 0);
    assert_eq!(u(&report["store"]["stored_bytes"]), listed, "{report}");
    assert_eq!(u(&report["requests"]["put"]) + u(&report["requests"]["delete"]), 0, "stats writes nothing");
}

/// Azurite's last-modified times have one-second resolution, hence the longer waits.
#[test]
fn stats_on_azurite() {
    let remote = Remote::azure(Azurite::start());
    let dir = scratch();
    let work = dir.path().join("work");
    scenario(&work, &|args| remote.command(&work, args), Duration::from_millis(2100));
}

#[test]
fn the_json_shape_is_pinned_and_the_text_ends_with_one_summary_line() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    tree(&work.join("a"), 1, 1);
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "a"]), 0);
    let report = run_json(&mut chunkcache_on(&work, &store, &["stats"]), 0);
    let names = |value: &Value| value.as_object().unwrap().keys().cloned().collect::<BTreeSet<String>>();
    let set = |list: &[&str]| list.iter().map(|name| name.to_string()).collect::<BTreeSet<String>>();
    assert_eq!(
        names(&report),
        set(&["keys", "keys_total", "keys_unreadable", "store", "requests", "elapsed_ms"]),
        "{report}"
    );
    assert_eq!(
        names(&report["keys"][0]),
        set(&[
            "key",
            "files",
            "bytes",
            "chunks",
            "stored_bytes",
            "unique_bytes",
            "shared_bytes",
            "saved_at_ms",
            "last_used_ms",
            "age_ms"
        ]),
        "{report}"
    );
    assert_eq!(
        names(&report["store"]),
        set(&[
            "stored_bytes",
            "referenced_bytes",
            "referenced_chunks",
            "unique_bytes",
            "shared_bytes",
            "framing_bytes",
            "unreferenced_bytes",
            "unreferenced_chunks",
            "unreferenced_packs",
            "partly_referenced_packs",
            "missing_packs",
            "missing_bytes",
            "packs",
            "manifests",
            "other_objects",
            "metadata_bytes"
        ]),
        "{report}"
    );

    let text = run(&mut chunkcache_on(&work, &store, &["stats"]), 0);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.lines().any(|line| line.starts_with("k ")), "{stdout}");
    assert!(stdout.contains("unreferenced: 0 B in 0 chunks"), "{stdout}");
    let summary = stderr(&text);
    assert_eq!(summary.lines().count(), 1, "{summary}");
    assert!(summary.starts_with("stats: 1 key, ") && summary.contains(&store_url(&store)), "{summary}");
}
