//! A typo never looks like a cold cache: read-only commands never create a store, a store that
//! does not exist is an error naming it (and, in the plugin, a store error rather than a miss),
//! `file:` URLs must be absolute, and `--version` names the build.

use std::fs;
use std::path::Path;
use std::process::Output;

use crate::util::{chunkcache, chunkcache_on, run, run_json, scratch, stderr, store_url};

/// A work folder with one small tree to save.
fn work(root: &Path) -> std::path::PathBuf {
    let work = root.join("work");
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/a.txt"), b"hello").unwrap();
    work
}

#[test]
fn read_only_commands_on_a_missing_store_fail_and_create_nothing() {
    let dir = scratch();
    let work = work(dir.path());
    let store = dir.path().join("typo-store");
    let url = store_url(&store);
    for args in [
        &["list"][..],
        &["show", "--key", "k"],
        &["restore", "--key", "k"],
        &["restore", "--dry-run", "--key", "k"],
        &["stats"],
    ] {
        let output = run(&mut chunkcache_on(&work, &store, args), 1);
        let message = stderr(&output);
        assert!(message.contains(&format!("store {url} does not exist")), "{args:?}: {message}");
        assert!(message.contains("--store or CHUNKCACHE_STORE"), "{args:?}: {message}");
        assert!(message.contains("run `chunkcache save` to create it"), "{args:?}: {message}");
        assert!(!message.contains("cache miss"), "{args:?}: a typo is not a miss: {message}");
        assert!(!store.exists(), "{args:?} created the store folder");
    }
}

#[test]
fn a_missing_default_store_is_named_too() {
    let dir = scratch();
    let work = work(dir.path());
    let output = run(chunkcache(&work).args(["list"]).env("XDG_CACHE_HOME", dir.path().join("cache")), 1);
    let expected = format!("store file://{}/cache/chunkcache/store does not exist", dir.path().display());
    assert!(stderr(&output).contains(&expected), "{}", stderr(&output));
    assert!(!dir.path().join("cache").exists());
}

#[test]
fn the_save_dry_run_predicts_a_full_upload_and_only_a_real_save_creates_the_store() {
    let dir = scratch();
    let work = work(dir.path());
    let store = dir.path().join("new-store");
    let report = run_json(&mut chunkcache_on(&work, &store, &["save", "--dry-run", "--key", "k", "tree"]), 0);
    assert_eq!(report["dry_run"], true, "{report}");
    assert!(!store.exists(), "the save dry run created the store folder");
    assert_eq!(report["new_chunks"], 1, "everything would be uploaded: {report}");

    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "tree"]), 0);
    assert!(store.is_dir(), "a real save creates the store");
    let listed = run_json(&mut chunkcache_on(&work, &store, &["list"]), 0);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[test]
fn file_urls_without_an_absolute_path_are_refused_with_the_right_spelling() {
    let dir = scratch();
    let work = work(dir.path());
    for url in ["file://relative/x", "file:relative/x", "file:/relative/x"] {
        let output = run(chunkcache(&work).args(["save", "--key", "k", "tree", "--store", url]), 1);
        let message = stderr(&output);
        assert!(message.contains(&format!("invalid store URL {url:?}")), "{url}: {message}");
        assert!(message.contains("write file:///relative/x"), "{url}: {message}");
        assert!(message.contains("plain path relative/x"), "{url}: {message}");
        assert!(!work.join("relative").exists() && !work.join("file:relative").exists(), "{url} created a folder");
    }
    // A plain relative path is still a local store, relative to the working directory.
    run(chunkcache(&work).args(["save", "--key", "k", "tree", "--store", "relative/x"]), 0);
    assert!(work.join("relative/x").is_dir());
}

/// The plugin binary in `workspace` with only `vars` (and `PATH`) in its environment.
fn plugin(workspace: &Path, vars: &[(&str, &str)]) -> Output {
    let mut command = crate::util::plugin(workspace);
    command.envs(vars.iter().copied());
    command.output().unwrap()
}

#[test]
fn a_plugin_restore_from_a_missing_filesystem_root_is_a_store_error_not_a_miss() {
    let dir = scratch();
    let workspace = work(dir.path());
    let root = dir.path().join("cache-typo");
    let root_text = root.to_str().unwrap();
    let vars = [
        ("PLUGIN_RESTORE", "true"),
        ("PLUGIN_BACKEND", "filesystem"),
        ("PLUGIN_FILESYSTEM_CACHE_ROOT", root_text),
        ("PLUGIN_MOUNT", "tree"),
        ("PLUGIN_CACHE_KEY", "k"),
        ("DRONE_REPO_NAME", "app"),
    ];
    let output = plugin(&workspace, &vars);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "store errors do not fail the step by default: {message}");
    assert!(message.contains(&format!("store file://{root_text} does not exist")), "{message}");
    assert!(message.contains("filesystem_cache_root"), "{message}");
    assert!(message.contains("the cache step failed"), "{message}");
    assert!(!message.contains("cache miss"), "{message}");
    assert!(!root.exists(), "a restore created the cache root");

    let strict = plugin(&workspace, &[&vars[..], &[("PLUGIN_EXIT_CODE", "true")]].concat());
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
    assert!(stderr(&strict).contains("does not exist"), "{}", stderr(&strict));
    assert!(!root.exists());
}
#[test]
fn version_names_the_package_version_and_the_commit() {
    let dir = scratch();
    let output = run(chunkcache(dir.path()).arg("--version"), 0);
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.trim();
    let expected = format!("chunkcache {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&expected), "{line}");
    let commit = line.trim_start_matches(&expected).trim_end_matches(')');
    assert!(commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())), "{line}");
}

#[test]
fn a_plugin_restore_without_mount_restores_every_saved_path_as_drone_cache_does() {
    let dir = scratch();
    let workspace = work(dir.path());
    fs::create_dir_all(workspace.join("other")).unwrap();
    fs::write(workspace.join("other/b.txt"), b"world").unwrap();
    let root = dir.path().join("cache");
    let common = [
        ("PLUGIN_BACKEND", "filesystem"),
        ("PLUGIN_FILESYSTEM_CACHE_ROOT", root.to_str().unwrap()),
        ("PLUGIN_CACHE_KEY", "k"),
        ("DRONE_REPO_NAME", "app"),
    ];
    let saved =
        plugin(&workspace, &[&common[..], &[("PLUGIN_REBUILD", "true"), ("PLUGIN_MOUNT", "tree,other")]].concat());
    assert_eq!(saved.status.code(), Some(0), "{}", stderr(&saved));
    fs::remove_dir_all(workspace.join("tree")).unwrap();
    fs::remove_dir_all(workspace.join("other")).unwrap();

    let restored = plugin(&workspace, &[&common[..], &[("PLUGIN_RESTORE", "true")]].concat());
    let message = stderr(&restored);
    assert_eq!(restored.status.code(), Some(0), "{message}");
    assert!(message.contains("no mount set (PLUGIN_MOUNT): restoring every path the cache saved"), "{message}");
    assert!(message.contains("cache hit"), "{message}");
    assert_eq!(fs::read(workspace.join("tree/a.txt")).unwrap(), b"hello");
    assert_eq!(fs::read(workspace.join("other/b.txt")).unwrap(), b"world");
}
