//! The first hour of a new user (issue 13): numbers that mean what they say, and errors a user
//! can act on.

use std::fs;

use crate::util::{chunkcache_on, isolated, noise, run, run_json, scratch, stderr, stored_chunks};

/// `list` shows each cache's tree (files and bytes) and its manifest's size, in text and in
/// JSON, and counts keys in the singular when there is one.
#[test]
fn list_shows_tree_and_manifest_sizes() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/a"), noise(10_000, 1)).unwrap();
    fs::write(work.join("tree/b"), noise(2_000, 2)).unwrap();
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "one", "tree"]), 0);

    let output = run(&mut chunkcache_on(&work, &store, &["list"]), 0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let columns: Vec<&str> = stdout.trim_end().split('\t').collect();
    assert_eq!(columns[..3], ["one", "2 files", "11.7 KiB"], "{stdout}");
    assert!(columns[3].starts_with("manifest ") && columns[3].ends_with(" B"), "{stdout}");
    assert!(stderr(&output).starts_with("1 key in "), "{}", stderr(&output));

    let listed = run_json(&mut chunkcache_on(&work, &store, &["list"]), 0);
    let entry = &listed[0];
    assert_eq!(
        (entry["key"].as_str(), entry["files"].as_u64(), entry["bytes"].as_u64()),
        (Some("one"), Some(2), Some(12_000))
    );
    let manifest_bytes = entry["manifest_bytes"].as_u64().unwrap();
    let shown = run_json(&mut chunkcache_on(&work, &store, &["show", "--key", "one"]), 0);
    assert_eq!(shown["manifest_bytes"].as_u64(), Some(manifest_bytes));
}

/// A restore's "chunks fetched (X)" counts the stored bytes of the chunks only, not the manifest
/// and store config it also downloads (900 random bytes: one chunk, stored in under 1 KiB).
#[test]
fn restore_counts_chunk_bytes_only() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/a"), noise(900, 3)).unwrap();
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "tree"]), 0);
    let chunk_bytes: u64 = stored_chunks(&store).iter().map(|(_, chunk)| u64::from(chunk.stored_len)).sum();

    let report = run_json(chunkcache_on(&work, &store, &["restore", "--key", "k"]).arg(dir.path().join("json")), 0);
    assert_eq!(report["bytes_fetched"].as_u64(), Some(chunk_bytes));
    assert!(report["requests"]["bytes_downloaded"].as_u64().unwrap() > chunk_bytes, "{report}");

    let output = run(chunkcache_on(&work, &store, &["restore", "--key", "k"]).arg(dir.path().join("text")), 0);
    let expected = format!("1 chunk fetched ({chunk_bytes} B)");
    assert!(stderr(&output).contains(&expected), "{}", stderr(&output));
}

/// `show` ends, as every command does, with one summary line on stderr (text and `--json`).
#[test]
fn show_ends_with_a_summary_line() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/a"), noise(900, 4)).unwrap();
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "k", "tree"]), 0);
    for json in [false, true] {
        let mut command = chunkcache_on(&work, &store, &["show", "--key", "k"]);
        if json {
            command.arg("--json");
        }
        let output = run(&mut command, 0);
        let text = stderr(&output);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert!(lines[0].starts_with("key \"k\" in ") && lines[0].ends_with(": 1 file, 900 B, 1 chunk"), "{text}");
    }
}

/// A chunker-parameter mismatch names the sizes on both sides, not Rust debug structs, and how
/// to fix it.
#[test]
fn params_mismatch_prints_sizes() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/f"), b"x").unwrap();
    run(&mut chunkcache_on(&work, &store, &["save", "--key", "a", "--chunk-size", "64K", "tree"]), 0);
    let output = run(&mut chunkcache_on(&work, &store, &["save", "--key", "b", "--chunk-size", "1M", "tree"]), 1);
    let text = stderr(&output);
    assert!(text.contains("chunker parameters of 64 KiB average (16 KiB min, 256 KiB max)"), "{text}");
    assert!(text.contains("but 1 MiB average (256 KiB min, 4 MiB max) were requested"), "{text}");
    assert!(text.contains("drop --chunk-size") && text.contains("CHUNKCACHE_STORE"), "{text}");
    assert!(!text.contains("ChunkerParams") && !text.contains('{'), "{text}");
}

/// S3 without credentials is refused before any request (the endpoint is a closed port, so a
/// request would fail otherwise), naming the variables and plugin settings to set; half a key
/// pair says which half is missing.
#[test]
fn s3_without_credentials_names_what_to_set() {
    let dir = scratch();
    let args = ["list", "--store", "s3://cache/ci", "--endpoint", "http://127.0.0.1:9"];
    let output = run(isolated(dir.path(), &[]).args(args), 1);
    let text = stderr(&output);
    assert!(text.contains("S3 bucket \"cache\" at http://127.0.0.1:9 has no credentials"), "{text}");
    assert!(
        text.contains("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plugin: access_key and secret_key)"),
        "{text}"
    );
    assert!(!text.contains("403") && !text.contains("metadata endpoint"), "{text}");
    let output = run(isolated(dir.path(), &[("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")]).args(args), 1);
    assert!(stderr(&output).contains("has an access key id but no secret access key"), "{}", stderr(&output));
}

/// GCS without a service account is refused before any request, naming the variables and the
/// plugin's `json_key`.
#[test]
fn gcs_without_credentials_names_what_to_set() {
    let dir = scratch();
    let output = run(isolated(dir.path(), &[]).args(["list", "--store", "gs://cache/ci"]), 1);
    let text = stderr(&output);
    assert!(text.contains("GCS bucket \"cache\" has no credentials"), "{text}");
    assert!(text.contains("GOOGLE_SERVICE_ACCOUNT") && text.contains("GOOGLE_SERVICE_ACCOUNT_KEY"), "{text}");
    assert!(text.contains("(plugin: json_key)"), "{text}");
}

/// With `debug: true` the plugin lists the effective settings of the backend in use, Azure here
/// (account name, container, endpoint, key masked), one per line, and nothing of S3 or GCS; no
/// secret appears, not even those of the other backends. The endpoint is a closed port: the
/// store failure that follows is logged and the step succeeds, as `exit_code` is false.
#[test]
fn plugin_debug_lists_the_backend_in_use_with_secrets_masked() {
    let dir = scratch();
    fs::create_dir_all(dir.path().join("deps")).unwrap();
    let (azure_key, s3_secret, gcs_key) =
        ("YXp1cmUtc2VjcmV0LWtleQ==", "s3-secret-value", "{\"private_key\":\"gcs-secret\"}");
    let output = isolated(
        dir.path(),
        &[
            ("PLUGIN_RESTORE", "true"),
            ("PLUGIN_BACKEND", "azure"),
            ("PLUGIN_MOUNT", "deps"),
            ("PLUGIN_CACHE_KEY", "deps-1"),
            ("PLUGIN_ACCOUNT_NAME", "devstoreaccount1"),
            ("PLUGIN_ACCOUNT_KEY", azure_key),
            ("PLUGIN_CONTAINER", "ci-cache"),
            ("PLUGIN_ENDPOINT", "http://127.0.0.1:9"),
            ("PLUGIN_DEBUG", "true"),
            ("AWS_SECRET_ACCESS_KEY", s3_secret),
            ("PLUGIN_JSON_KEY", gcs_key),
            ("CHUNKCACHE_TIMEOUT", "1"),
        ],
    )
    .arg("plugin")
    .output()
    .unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&output.stdout), stderr(&output));
    assert_eq!(output.status.code(), Some(0), "{all}");
    let debug: Vec<&str> = all.lines().filter(|line| line.starts_with("debug:")).collect();
    for expected in [
        "debug:   backend: azure",
        "debug:   account name: devstoreaccount1",
        "debug:   container: ci-cache",
        "debug:   endpoint: http://127.0.0.1:9/devstoreaccount1",
        "debug:   account key: *** (set)",
    ] {
        assert!(debug.contains(&expected), "{expected:?} missing from {all}");
    }
    let debug_text = debug.join("\n");
    for other in ["bucket", "secret key", "access key", "service account", "S3", "GCS", "{", "Some("] {
        assert!(!debug_text.contains(other), "{other:?} in {debug_text}");
    }
    for secret in [azure_key, &azure_key[..12], s3_secret, "gcs-secret"] {
        assert!(!all.contains(secret), "{secret:?} leaked: {all}");
    }
}

/// In the plugin, an S3 backend without credentials names the plugin's settings as well as the
/// variables, before any request (no endpoint is reachable from a test).
#[test]
fn plugin_s3_without_credentials_names_the_settings() {
    let dir = scratch();
    fs::create_dir_all(dir.path().join("deps")).unwrap();
    let vars = [
        ("PLUGIN_REBUILD", "true"),
        ("PLUGIN_BACKEND", "s3"),
        ("PLUGIN_BUCKET", "cache"),
        ("PLUGIN_MOUNT", "deps"),
        ("PLUGIN_CACHE_KEY", "deps-1"),
        ("PLUGIN_ENDPOINT", "http://127.0.0.1:9"),
        ("PLUGIN_EXIT_CODE", "true"),
    ];
    let output = run(isolated(dir.path(), &vars).arg("plugin"), 1);
    let text = stderr(&output);
    assert!(text.contains("has no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"), "{text}");
    assert!(text.contains("(plugin: access_key and secret_key)") && !text.contains("Connection refused"), "{text}");
}
