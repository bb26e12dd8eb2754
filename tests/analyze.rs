//! `chunkcache analyze` through the real binary: its predictions are what `save` and `restore`
//! then do, its JSON shape is pinned, and its page stands on its own.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use crate::gradle::{GradleTreeOptions, generate};
use crate::util::{chunkcache, chunkcache_on, noise, run, run_json, scratch, stderr};

/// Stored bytes may differ by this fraction between analyze and the store (the store format may
/// frame or pack objects differently; the compressed payloads are the same).
const COMPRESSION_NOISE: f64 = 0.02;

fn near(predicted: &serde_json::Value, actual: &serde_json::Value) -> bool {
    let (p, a) = (predicted.as_f64().unwrap(), actual.as_f64().unwrap());
    (p - a).abs() <= a * COMPRESSION_NOISE
}

fn analyze(work: &Path, args: &[&str]) -> serde_json::Value {
    run_json(chunkcache(work).arg("analyze").args(args), 0)
}

fn keys(value: &serde_json::Value) -> BTreeSet<&str> {
    value.as_object().unwrap_or_else(|| panic!("not an object: {value}")).keys().map(String::as_str).collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

#[test]
fn predictions_equal_what_the_next_save_uploads_and_restore_fetches() {
    let dir = scratch();
    let (work, store, previous) = (dir.path().join("work"), dir.path().join("store"), dir.path().join("previous"));
    let gen0 = GradleTreeOptions { size_bytes: 6 << 20, seed: 11, generation: 0 };
    generate(&work.join("gradle"), &gen0).unwrap();
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "gen0", "--chunk-size", "128K", "gradle"]), 0);
    // The previous build's tree, as the next runner has it: restored from the cache.
    run(chunkcache_on(&work, &store, &["restore", "--key", "gen0"]).arg(&previous), 0);
    generate(&work.join("gradle"), &GradleTreeOptions { generation: 1, ..gen0 }).unwrap();

    let report = analyze(&work, &["gradle", "--chunk-size", "64K,128K", "--previous", "../previous/gradle"]);
    let rows = report["sizes"].as_array().unwrap();
    assert_eq!(rows.iter().map(|r| r["chunk_size"].as_u64().unwrap()).collect::<Vec<_>>(), [64 << 10, 128 << 10]);
    let predicted = &rows[1];

    let saved = run_json(&mut chunkcache_on(&work, &store, &["save", "--key", "gen1", "gradle"]), 0);
    let upload = &predicted["upload"];
    assert!(saved["new_chunks"].as_u64().unwrap() > 0, "gen1 changes something: {saved}");
    assert_eq!(upload["chunks"], saved["new_chunks"], "predicted {upload}\nsave {saved}");
    assert_eq!(upload["bytes"], saved["new_bytes"], "predicted {upload}\nsave {saved}");
    assert!(near(&upload["stored_bytes"], &saved["new_stored_bytes"]), "predicted {upload}\nsave {saved}");
    assert_eq!(predicted["chunks"], saved["chunks"], "the same cut points as the save");
    assert_eq!(predicted["unique_chunks"], saved["unique_chunks"]);

    let restored = run_json(chunkcache_on(&work, &store, &["restore", "--key", "gen1"]).arg(&previous), 0);
    let fetch = &predicted["restore"];
    assert!(restored["files_unchanged"].as_u64().unwrap() > 0, "an incremental restore: {restored}");
    assert_eq!(fetch["chunks"], restored["chunks_fetched"], "predicted {fetch}\nrestore {restored}");
    assert_eq!(fetch["files_written"], restored["files_written"], "predicted {fetch}\nrestore {restored}");
    assert_eq!(fetch["bytes_written"], restored["bytes_written"], "predicted {fetch}\nrestore {restored}");
    assert!(near(&fetch["stored_bytes"], &restored["bytes_fetched"]), "predicted {fetch}\nrestore {restored}");
    // Far less than a whole archive, which every restore would download.
    assert!(fetch["stored_bytes"].as_u64().unwrap() * 3 < report["archive"]["tar_zstd_bytes"].as_u64().unwrap());
}

#[test]
fn the_json_shape_is_pinned() {
    let dir = scratch();
    let work = dir.path();
    for tree in ["now", "before"] {
        fs::create_dir_all(work.join(tree).join("sub")).unwrap();
        for name in ["a.bin", "sub/same-as-a.bin"] {
            fs::write(work.join(tree).join(name), noise(400_000, 1)).unwrap();
            // The same mtime in both trees, so a restore over `before` keeps these files.
            let file = fs::File::options().write(true).open(work.join(tree).join(name)).unwrap();
            file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)).unwrap();
        }
    }
    let text: String = (0..25_000).map(|line| format!("line {line}\n")).collect();
    fs::write(work.join("now/sub/text"), &text).unwrap();
    let bytes = 800_000 + text.len() as u64;
    let prices = ["--price-put", "0.05", "--price-get", "0.004", "--price-gb-month", "0.02"];
    let report = analyze(work, &[&["now", "--previous", "before", "--chunk-size", "64K"], &prices[..]].concat());

    let top = ["files", "bytes", "previous", "archive", "sizes", "directories", "recommendation", "elapsed_ms"];
    assert_eq!(keys(&report), set(&top), "{report}");
    assert_eq!(keys(&report["previous"]), set(&["files", "bytes"]));
    assert_eq!(keys(&report["archive"]), set(&["tar_bytes", "tar_gzip_bytes", "tar_zstd_bytes"]));
    let row = &report["sizes"][0];
    let row_fields = [
        "chunk_size",
        "store_default",
        "files",
        "bytes",
        "chunks",
        "unique_chunks",
        "unique_bytes",
        "dedup_percent",
        "stored_bytes",
        "objects",
        "chunk_bytes",
        "upload",
        "restore",
        "requests",
        "monthly_cost",
    ];
    assert_eq!(keys(row), set(&row_fields), "{row}");
    assert_eq!(keys(&row["chunk_bytes"]), set(&["min", "p50", "p99", "max"]));
    assert_eq!(keys(&row["upload"]), set(&["chunks", "bytes", "stored_bytes", "objects"]));
    let fetch_fields = ["files_written", "bytes_written", "chunks", "stored_bytes", "requests"];
    assert_eq!(keys(&row["restore"]), set(&fetch_fields));
    assert_eq!(keys(&row["requests"]), set(&["cold_save", "warm_save", "cold_restore", "warm_restore"]));
    for operation in ["cold_save", "warm_save", "cold_restore", "warm_restore"] {
        assert_eq!(keys(&row["requests"][operation]), set(&["put", "get"]), "{operation}");
    }
    assert!(row["monthly_cost"].as_f64().unwrap() > 0.0, "{row}");
    assert_eq!(keys(&report["directories"]), set(&["depth", "chunk_size", "by_size", "by_churn"]));
    let directory = &report["directories"]["by_churn"][0];
    assert_eq!(keys(directory), set(&["path", "files", "bytes", "churn_bytes"]), "{report}");
    assert_eq!(directory["path"], "now/sub", "only sub/text is new");
    assert_eq!(keys(&report["recommendation"]), set(&["chunk_size", "reason"]));

    // The figures agree with the tree: a.bin repeats, text is new and compresses.
    assert_eq!((&report["files"], &report["bytes"]), (&3.into(), &bytes.into()));
    let dedup = 100.0 * 400_000.0 / bytes as f64;
    assert!((row["dedup_percent"].as_f64().unwrap() - dedup).abs() < 0.1, "{dedup}: {row}");
    assert_eq!(row["upload"]["bytes"], text.len(), "only the text is new: {row}");
    assert!(row["upload"]["stored_bytes"].as_u64().unwrap() * 3 < text.len() as u64, "{row}");
    assert_eq!(row["restore"]["files_written"], 1, "{row}");

    // Without previous trees the incremental figures are null, not zero.
    let cold = analyze(work, &["now", "--chunk-size", "64K"]);
    assert_eq!(keys(&cold), set(&top));
    let row = &cold["sizes"][0];
    assert!(cold["previous"].is_null() && row["upload"].is_null() && row["restore"].is_null(), "{row}");
    assert!(row["requests"]["warm_save"].is_null() && row["monthly_cost"].is_null(), "{row}");
}

#[test]
fn the_page_has_inline_charts_and_references_nothing_outside_itself() {
    let dir = scratch();
    let work = dir.path();
    fs::create_dir_all(work.join("now/deep/er")).unwrap();
    fs::create_dir_all(work.join("before")).unwrap();
    fs::write(work.join("now/deep/er/<odd> & name.bin"), noise(300_000, 2)).unwrap();
    fs::write(work.join("now/top.txt"), "text\n".repeat(10_000)).unwrap();
    fs::write(work.join("before/top.txt"), "text\n".repeat(9_000)).unwrap();
    let page = work.join("report.html");
    let output = run(
        chunkcache(work)
            .args(["analyze", "now", "--previous", "before", "--chunk-size", "64K,256K", "--html"])
            .arg(&page),
        0,
    );
    assert!(stderr(&output).contains("page written to"), "{}", stderr(&output));
    let html = fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(html.matches("<svg").count() >= 4, "charts by chunk size and by directory");
    assert!(html.contains("Recommended chunk size"));
    assert!(html.contains("now/deep/er"), "directories are named");
    for outside in ["http:", "https:", "src=", "href=", "<script", "<link", "url(", "@import", "@font-face"] {
        assert!(!html.contains(outside), "the page references {outside:?}");
    }
}

#[test]
fn bad_flags_say_which_flag_and_how_to_fix_it() {
    let dir = scratch();
    let work = dir.path();
    fs::create_dir_all(work.join("a")).unwrap();
    fs::create_dir_all(work.join("b")).unwrap();
    let fails = |args: &[&str]| stderr(&run(chunkcache(work).arg("analyze").args(args), 1));

    let message = fails(&["a", "b", "--previous", "a"]);
    assert!(message.contains("--previous names 1 path but 2 PATHs") && message.contains("one previous path per PATH"));
    let message = fails(&["a", "--price-put", "1"]);
    assert!(message.contains("--price-get") && message.contains("give all three"), "{message}");
    let message = fails(&["a", "--chunk-size", "100"]);
    assert!(message.contains("--chunk-size 100") && message.contains("256K"), "{message}");
    let message = fails(&["missing"]);
    assert!(message.contains("missing") && message.contains("no such file"), "{message}");
}
