//! Save and restore through the binary against real emulators (Azurite, moto).
//!
//! Each test starts its own emulator and passes credentials to the binary only through the child's
//! environment (inherited `AWS_*`, `AZURE_*`, `GOOGLE_*` and `CHUNKCACHE_*` variables are removed), so the
//! binary never looks for cloud credentials elsewhere and only talks to loopback.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use filetime::FileTime;
use serde_json::Value;

use crate::support::servers::{Azurite, Moto};
use crate::util::{chunkcache, noise, run, run_json, scratch, snapshot, stderr};

/// Average chunk size of the stores these tests create: small, so that upload counts are sharp.
const CHUNK_SIZE: &str = "64K";
/// The largest chunk at that average (4 × 64 KiB).
const MAX_CHUNK: u64 = 256 * 1024;

/// A running emulator and how the binary reaches it.
pub(crate) struct Remote {
    pub(crate) name: &'static str,
    /// Store URL, e.g. `az://cache/ci`.
    url: String,
    /// The only credential variables the binary sees.
    env: Vec<(&'static str, String)>,
    _server: Box<dyn std::any::Any>,
}

impl Remote {
    pub(crate) fn azure(azurite: Azurite) -> Remote {
        Remote {
            name: "azure",
            url: "az://cache/ci".into(),
            env: vec![
                ("AZURE_STORAGE_ACCOUNT", azurite.account.to_string()),
                ("AZURE_STORAGE_KEY", azurite.key.to_string()),
                ("AZURE_STORAGE_ENDPOINT", azurite.endpoint.clone()),
            ],
            _server: Box::new(azurite),
        }
    }

    pub(crate) fn s3(moto: Moto) -> Remote {
        create_bucket(&moto, "cache");
        Remote {
            name: "s3",
            url: "s3://cache/ci".into(),
            env: vec![
                ("AWS_ACCESS_KEY_ID", moto.access_key.to_string()),
                ("AWS_SECRET_ACCESS_KEY", moto.secret_key.to_string()),
                ("AWS_REGION", moto.region.to_string()),
                ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
            ],
            _server: Box::new(moto),
        }
    }

    /// Runs `f` on this remote's store, opened in-process with the same credentials as [`Remote::command`].
    pub(crate) fn on_store<T>(&self, f: impl AsyncFnOnce(&chunkcache::store::Store) -> T) -> T {
        let env: BTreeMap<String, String> = self.env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let options = chunkcache::store::backend::BackendOptions::from_env(&env).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = chunkcache::store::backend::open(&self.url, &options).await.unwrap();
            f(&store).await
        })
    }

    /// `chunkcache ARGS… --store URL` in `cwd`, with this remote's credentials and no inherited ones.
    pub(crate) fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut command = isolated(cwd);
        command.args(args).args(["--store", &self.url]).envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }
}

/// The binary in `cwd` without any inherited credential or chunkcache variable.
fn isolated(cwd: &Path) -> Command {
    let mut command = chunkcache(cwd);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if ["AWS_", "AZURE_", "GOOGLE_", "CHUNKCACHE_"].iter().any(|p| name.starts_with(p)) {
            command.env_remove(&*name);
        }
    }
    command
}

/// Creates a bucket in moto with an unsigned `PUT /BUCKET`, which moto accepts.
pub(crate) fn create_bucket(moto: &Moto, bucket: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = format!("{}/{bucket}", moto.endpoint);
    // Under load moto can accept a probe connection before its HTTP server answers: retry the
    // connection (not the request's outcome) for a few seconds.
    let status = runtime.block_on(async {
        let mut attempts = 0;
        loop {
            match reqwest::Client::new().put(&url).send().await {
                Ok(response) => break response.status(),
                Err(err) if err.is_connect() && attempts < 50 => attempts += 1,
                Err(err) => panic!("CreateBucket {bucket}: {err}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    assert!(status.is_success(), "CreateBucket {bucket}: {status}");
}

/// Asserts two snapshots are equal, printing only the entries that differ.
#[track_caller]
fn assert_same_tree(what: &str, actual: &BTreeMap<Vec<u8>, String>, expected: &BTreeMap<Vec<u8>, String>) {
    let mut differences = Vec::new();
    for key in actual.keys().chain(expected.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (a, e) = (actual.get(key), expected.get(key));
        if a != e {
            differences.push(format!("{:?}: got {a:?}, expected {e:?}", String::from_utf8_lossy(key)));
        }
    }
    assert!(differences.is_empty(), "{what}: {} entries differ:\n{}", differences.len(), differences.join("\n"));
}

/// About 4 MB of distinct content (`noise` seeds differ in more than the lowest bit) in nested directories, with an executable, a symlink and an empty directory.
fn build_tree(tree: &Path) {
    fs::create_dir_all(tree.join("lib")).unwrap();
    fs::create_dir_all(tree.join("src/deep")).unwrap();
    fs::create_dir_all(tree.join("bin")).unwrap();
    fs::create_dir_all(tree.join("empty/nested")).unwrap();
    fs::write(tree.join("lib/a.jar"), noise(1_500_000, 11)).unwrap();
    fs::write(tree.join("lib/b.jar"), noise(800_000, 13)).unwrap();
    fs::write(tree.join("lib/c.jar"), noise(900_000, 15)).unwrap();
    fs::write(tree.join("src/deep/x.bin"), noise(600_000, 17)).unwrap();
    fs::write(tree.join("src/main.rs"), b"fn main() {}\n").unwrap();
    fs::write(tree.join("src/notes.txt"), b"to be deleted\n").unwrap();
    fs::write(tree.join("bin/tool.sh"), b"#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(tree.join("bin/tool.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("../lib/a.jar", tree.join("bin/a.jar")).unwrap();
    for (i, entry) in ["lib/a.jar", "src/main.rs", "bin", "empty/nested", ""].iter().enumerate() {
        let time = FileTime::from_unix_time(1_700_000_000 + i as i64, 987_654_321 - i as u32);
        filetime::set_file_mtime(tree.join(entry), time).unwrap();
    }
}

fn number(report: &Value, field: &str) -> u64 {
    report[field].as_u64().unwrap_or_else(|| panic!("no {field} in {report}"))
}

fn requests(report: &Value) -> (u64, u64, u64, u64) {
    let r = &report["requests"];
    let n = |f: &str| r[f].as_u64().unwrap_or_else(|| panic!("no requests.{f} in {report}"));
    (n("put"), n("get"), n("head"), n("list"))
}

/// The whole cycle: cold save, restore, unchanged save, incremental save, incremental mirror restore.
fn save_restore_cycle(remote: &Remote) {
    let name = remote.name;
    let dir = scratch();
    let work = dir.path().join("work");
    let tree = work.join("tree");
    build_tree(&tree);
    let saved_k1 = snapshot(&tree);

    // Cold save: everything is new; the config, the packs holding every chunk and the manifest
    // are uploaded: a few requests, not one per chunk.
    let started = Instant::now();
    let cold = run_json(&mut remote.command(&work, &["save", "--key", "k1", "--chunk-size", CHUNK_SIZE, "tree"]), 0);
    eprintln!("{name}: cold save in {:.2?}: {}", started.elapsed(), cold["requests"]);
    assert_eq!((number(&cold, "files"), number(&cold, "symlinks")), (7, 1), "{name}: {cold}");
    let chunks = number(&cold, "unique_chunks");
    assert!(chunks >= 30, "{name}: 3.8 MB at 64 KiB average gave {chunks} chunks");
    assert_eq!(number(&cold, "new_chunks"), chunks, "{name}: {cold}");
    let (put, _, head, _) = requests(&cold);
    let packs = number(&cold, "new_packs");
    assert!((1..=4).contains(&packs), "{name}: 3.8 MB fit in one pack per lane: {cold}");
    assert_eq!(put, packs + 2, "{name}: config + packs + manifest: {cold}");
    assert_eq!(head, 0, "{name}: {cold}");

    // Restore into a fresh directory: byte-exact, with modes, mtimes, the symlink and the empty dirs.
    let out = dir.path().join("out");
    let restored = run_json(remote.command(&work, &["restore", "--key", "k1"]).arg(&out), 0);
    assert_eq!(restored["outcome"], "hit", "{name}: {restored}");
    assert_eq!(number(&restored, "chunks_fetched"), chunks, "{name}: {restored}");
    let (_, get, _, _) = requests(&restored);
    assert!(get <= 2 * packs + 2, "{name}: a few ranged reads per pack, not one per chunk: {restored}");
    assert_same_tree(&format!("{name}: restore of k1"), &snapshot(&out.join("tree")), &saved_k1);

    // An unchanged tree saved again uploads only the manifest, and needs no HEAD and no listing
    // of chunks: it learns them from its own previous manifest, and its two LISTs are of the
    // (normally empty) `damaged/` markers restores leave and of GC's condemned lists.
    let started = Instant::now();
    let unchanged = run_json(&mut remote.command(&work, &["save", "--key", "k1", "tree"]), 0);
    eprintln!("{name}: unchanged save in {:.2?}: {}", started.elapsed(), unchanged["requests"]);
    assert_eq!((number(&unchanged, "new_chunks"), number(&unchanged, "new_bytes")), (0, 0), "{name}: {unchanged}");
    let (put, _, head, list) = requests(&unchanged);
    assert_eq!((put, head, list), (1, 0, 2), "{name}: only the manifest: {unchanged}");

    // Change one file, add one, delete one; save under a new key.
    fs::write(tree.join("src/deep/x.bin"), noise(600_000, 41)).unwrap();
    fs::write(tree.join("lib/new.jar"), noise(200_000, 51)).unwrap();
    fs::remove_file(tree.join("src/notes.txt")).unwrap();
    let saved_k2 = snapshot(&tree);
    let started = Instant::now();
    let warm = run_json(&mut remote.command(&work, &["save", "--key", "k2", "tree"]), 0);
    eprintln!("{name}: warm save in {:.2?}: new_chunks {} {}", started.elapsed(), warm["new_chunks"], warm["requests"]);
    let (new_chunks, new_bytes) = (number(&warm, "new_chunks"), number(&warm, "new_bytes"));
    // 800 KB of new data, plus at most the chunks that straddle the edited files' edges.
    let changed_bytes = 800_000;
    assert!(new_bytes >= changed_bytes && new_bytes <= changed_bytes + 4 * MAX_CHUNK, "{name}: {warm}");
    assert!(new_chunks > 0 && new_chunks <= 30 && new_chunks * 2 < chunks, "{name}: {new_chunks} new of {chunks}");
    let (put, _, head, list) = requests(&warm);
    assert_eq!(warm["parents"], serde_json::json!(["k1"]), "{name}: a new key learns from its newest sibling: {warm}");
    assert_eq!(put, number(&warm, "new_packs") + 1, "{name}: new packs + manifest: {warm}");
    assert!(number(&warm, "new_packs") <= 4, "{name}: {warm}");
    assert_eq!(head, 0, "{name}: {warm}");
    assert_eq!(
        list, 3,
        "{name}: a new key lists the keys of its folder once, the damaged markers and GC's condemned lists: {warm}"
    );

    // Restore k2 over the k1 restore: only the changed and added files are written.
    let mirrored = run_json(remote.command(&work, &["restore", "--mirror", "--key", "k2"]).arg(&out), 0);
    assert_eq!(mirrored["outcome"], "hit", "{name}: {mirrored}");
    assert_eq!(number(&mirrored, "files_written"), 2, "{name}: {mirrored}");
    assert_eq!(number(&mirrored, "removed"), 1, "{name}: the deleted file goes: {mirrored}");
    let fetched = number(&mirrored, "chunks_fetched");
    // Every chunk a written file needs holds new bytes, so it is one of the new chunks.
    assert!(fetched > 0 && fetched <= new_chunks, "{name}: fetched {fetched}, {new_chunks} new: {mirrored}");
    assert_same_tree(&format!("{name}: mirror restore of k2"), &snapshot(&out.join("tree")), &saved_k2);

    // And the new key, unchanged, costs one manifest upload too.
    let again = run_json(&mut remote.command(&work, &["save", "--key", "k2", "tree"]), 0);
    let (put, _, head, list) = requests(&again);
    assert_eq!((number(&again, "new_chunks"), put, head, list), (0, 1, 0, 2), "{name}: {again}");
}

#[test]
fn azure_save_restore_cycle() {
    save_restore_cycle(&Remote::azure(Azurite::start()));
}

#[test]
fn s3_save_restore_cycle() {
    save_restore_cycle(&Remote::s3(Moto::start()));
}

#[test]
fn azure_connection_string_is_enough() {
    let azurite = Azurite::start();
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName={};AccountKey={};BlobEndpoint={};",
        azurite.account, azurite.key, azurite.endpoint
    );
    let dir = scratch();
    let work = dir.path().join("work");
    build_tree(&work.join("tree"));
    let saved = snapshot(&work.join("tree"));
    let with_connection = |args: &[&str]| {
        let mut command = isolated(&work);
        command.args(args).args(["--store", "az://from-connection/ci"]);
        command.env("AZURE_STORAGE_CONNECTION_STRING", &connection);
        command
    };
    let report = run_json(&mut with_connection(&["save", "--key", "k", "tree"]), 0);
    assert_eq!(number(&report, "files"), 7, "{report}");
    let out = dir.path().join("out");
    let restored = run_json(with_connection(&["restore", "--key", "k"]).arg(&out), 0);
    assert_eq!(restored["outcome"], "hit", "{restored}");
    assert_same_tree("connection string restore", &snapshot(&out.join("tree")), &saved);
}

#[test]
fn azure_wrong_key_fails_clearly_without_printing_it() {
    let azurite = Azurite::start();
    let dir = scratch();
    let work = dir.path().join("work");
    build_tree(&work.join("tree"));
    // Valid base64 of the right length, but not the account's key.
    let wrong = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk6Kw==";
    let mut remote = Remote::azure(azurite);
    for (name, value) in &mut remote.env {
        if *name == "AZURE_STORAGE_KEY" {
            *value = wrong.to_string();
        }
    }

    let started = Instant::now();
    let output = run(&mut remote.command(&work, &["save", "--key", "k", "tree"]), 1);
    let elapsed = started.elapsed();
    let message = stderr(&output);
    assert!(elapsed < Duration::from_secs(15), "save with a wrong key took {elapsed:?}: {message}");
    assert!(message.contains("account key is wrong"), "{message}");
    assert_eq!(message.trim_end().lines().count(), 1, "one line: {message}");
    assert!(!message.contains(wrong) && !message.contains(Azurite::KEY), "{message}");
    assert!(output.stdout.is_empty(), "nothing on stdout on failure");

    // A restore does not create containers: its first read is refused.
    let output = run(remote.command(&work, &["restore", "--key", "k"]).arg(dir.path().join("out")), 1);
    let message = stderr(&output);
    assert!(message.contains("refused the credentials") && message.contains("AZURE_STORAGE_KEY"), "{message}");
    assert!(!message.contains(wrong), "{message}");
    // Azurite's 403 body is multi-line XML: only its code and the first line of its message remain.
    assert_eq!(message.trim_end().lines().count(), 1, "one line: {message}");
    assert!(message.contains("403 Forbidden: AuthorizationFailure: Server failed to authenticate"), "{message}");
    assert!(!message.contains('<') && !message.contains("RequestId"), "{message}");
    assert!(!dir.path().join("out").exists(), "a failed restore created its destination");
}

/// `YYYY-MM-DDThh:mm:ssZ` in UTC, the form SAS `st`/`se` take.
fn iso8601_utc(time: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// An account SAS for the blob service (`ss=b`, `srt=sco`), valid for an hour, signed with the account key
/// as "Create an account SAS" describes for version 2020-12-06 and later. Returned as the query string a
/// user copies from the portal: every value form-encoded (`sig`'s `+`, `/`, `=` and the times' `:`).
fn account_sas(account: &str, key_base64: &str, permissions: &str) -> String {
    use base64::Engine as _;
    const VERSION: &str = "2021-08-06";
    let expiry = iso8601_utc(std::time::SystemTime::now() + Duration::from_secs(3600));
    let (services, resource_types) = ("b", "sco");
    // account, permissions, services, resource types, start, expiry, IP, protocol, version, encryption scope,
    // each followed by a newline.
    let string_to_sign =
        format!("{account}\n{permissions}\n{services}\n{resource_types}\n\n{expiry}\n\n\n{VERSION}\n\n");
    let key = base64::engine::general_purpose::STANDARD.decode(key_base64).unwrap();
    let signature = chunkcache::store::azure_admin::sign(&key, &string_to_sign);
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", VERSION)
        .append_pair("ss", services)
        .append_pair("srt", resource_types)
        .append_pair("sp", permissions)
        .append_pair("se", &expiry)
        .append_pair("sig", &signature)
        .finish()
}

#[test]
fn iso8601_utc_dates() {
    let at = |s: u64| iso8601_utc(std::time::UNIX_EPOCH + Duration::from_secs(s));
    // Expected values from Python's datetime.fromtimestamp(t, timezone.utc).
    assert_eq!(at(0), "1970-01-01T00:00:00Z");
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
}

/// A SAS token alone (no account key anywhere in the binary's environment) saves and restores, with or
/// without a leading `?`, encoded or not; a read-only one restores but cannot save; a forged one is refused.
/// Neither the key nor the signature is ever printed.
#[test]
fn azure_sas_token_without_key() {
    let azurite = Azurite::start();
    // A SAS cannot create containers, and chunkcache only creates them with the key: create it here.
    let endpoint = url::Url::parse(&azurite.endpoint).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let created = runtime
        .block_on(chunkcache::store::azure_admin::ensure_container(
            &endpoint,
            azurite.account,
            azurite.key,
            "sas",
            Duration::from_secs(10),
        ))
        .unwrap();
    assert!(created, "the container was new");

    let dir = scratch();
    let work = dir.path().join("work");
    build_tree(&work.join("tree"));
    let saved = snapshot(&work.join("tree"));
    let with_sas = |sas: &str, args: &[&str]| {
        let mut command = isolated(&work);
        command.args(args).args(["--store", "az://sas/ci"]);
        command.env("AZURE_STORAGE_ACCOUNT", azurite.account);
        command.env("AZURE_STORAGE_SAS_TOKEN", sas);
        command.env("AZURE_STORAGE_ENDPOINT", &azurite.endpoint);
        command
    };
    let no_secrets = |what: &str, output: &std::process::Output, sas: &str| {
        let signature = sas.rsplit_once("sig=").unwrap().1;
        let decoded = signature.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=");
        for text in [String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)] {
            assert!(!text.contains(azurite.key), "{what} printed the account key: {text}");
            assert!(!text.contains(signature) && !text.contains(&decoded), "{what} printed the SAS signature: {text}");
        }
    };

    let full = account_sas(azurite.account, azurite.key, "rwdlac");
    let output = run(&mut with_sas(&full, &["save", "--key", "k", "--chunk-size", CHUNK_SIZE, "tree", "--json"]), 0);
    no_secrets("save", &output, &full);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((number(&report, "files"), number(&report, "symlinks")), (7, 1), "{report}");
    assert_eq!(number(&report, "new_chunks"), number(&report, "unique_chunks"), "{report}");

    // The same token with the leading `?` the portal sometimes shows.
    let out = dir.path().join("out");
    let output = run(with_sas(&format!("?{full}"), &["restore", "--key", "k", "--json"]).arg(&out), 0);
    no_secrets("restore", &output, &full);
    let restored: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(restored["outcome"], "hit", "{restored}");
    assert_eq!(restored["warnings"], serde_json::json!([]), "{restored}");
    assert_same_tree("SAS restore", &snapshot(&out.join("tree")), &saved);

    // Read and list only: a restore works, and only recording the use (a write) is refused, as a warning.
    // This one is given unencoded (`se=…T12:00:00Z&sig=…=`), as some tools print it.
    let read_only = account_sas(azurite.account, azurite.key, "rl");
    let read_only: String = url::form_urlencoded::parse(read_only.as_bytes())
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&");
    assert!(read_only.contains(':') && read_only.ends_with('='), "{read_only}");
    let out = dir.path().join("out-read-only");
    let output = run(with_sas(&read_only, &["restore", "--key", "k", "--json"]).arg(&out), 0);
    no_secrets("read-only restore", &output, &read_only);
    let restored: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(restored["outcome"], "hit", "{restored}");
    assert_same_tree("read-only SAS restore", &snapshot(&out.join("tree")), &saved);
    let warnings = restored["warnings"].to_string();
    assert!(warnings.contains("could not record that \\\"k\\\" was used"), "{restored}");

    // A save needs writes: it fails, says the credentials were refused, and prints nothing on stdout.
    fs::write(work.join("tree/lib/new.jar"), noise(100_000, 61)).unwrap();
    let output = run(&mut with_sas(&read_only, &["save", "--key", "k2", "tree"]), 1);
    no_secrets("read-only save", &output, &read_only);
    let message = stderr(&output);
    assert!(message.contains("the store refused the credentials") && message.contains("SAS token"), "{message}");
    assert!(message.contains("AuthorizationPermissionMismatch"), "Azure's reason is kept: {message}");
    assert_eq!(message.trim_end().lines().count(), 1, "one line: {message}");
    assert!(output.stdout.is_empty(), "nothing on stdout on failure");

    // A well-formed SAS signed with another key is refused on the first read: Azurite checks signatures.
    let forged = account_sas(
        azurite.account,
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk6Kw==",
        "rwdlac",
    );
    let output = run(with_sas(&forged, &["restore", "--key", "k"]).arg(dir.path().join("out-forged")), 1);
    no_secrets("forged restore", &output, &forged);
    let message = stderr(&output);
    assert!(message.contains("the store refused the credentials"), "{message}");
    assert!(!dir.path().join("out-forged").exists(), "a failed restore created its destination");
}

/// A typo in a remote store URL never looks like a cold cache: read-only commands on a container
/// or bucket that does not exist fail naming the store and say how to create it, and create nothing.
fn read_only_commands_on_a_missing_bucket_fail_naming_it(mut remote: Remote) {
    remote.url = remote.url.replace("cache", "cahce");
    let dir = scratch();
    let work = dir.path().join("work");
    fs::create_dir_all(&work).unwrap();
    for args in [&["list"][..], &["show", "--key", "k"], &["restore", "--key", "k", "out"], &["verify"], &["gc"]] {
        let output = run(&mut remote.command(&work, args), 1);
        let message = stderr(&output);
        assert!(
            message.contains("cahce") && message.contains("does not exist"),
            "{}: {args:?}: {message}",
            remote.name
        );
        assert!(message.contains("check the store URL"), "{}: {args:?}: {message}", remote.name);
        assert!(!message.contains("cache miss"), "{}: {args:?}: a typo is not a miss: {message}", remote.name);
        assert_eq!(message.trim().lines().count(), 1, "{}: {args:?}: one line: {message}", remote.name);
        assert!(!work.join("out").exists(), "{}: {args:?}", remote.name);
    }
    // Nothing was created: listing still fails (an Azure container, if created, would list empty).
    run(&mut remote.command(&work, &["list"]), 1);
}

#[test]
fn azure_read_only_commands_on_a_missing_container_fail_naming_it() {
    read_only_commands_on_a_missing_bucket_fail_naming_it(Remote::azure(Azurite::start()));
}

#[test]
fn s3_read_only_commands_on_a_missing_bucket_fail_naming_it() {
    read_only_commands_on_a_missing_bucket_fail_naming_it(Remote::s3(Moto::start()));
}

/// In the plugin, a restore from a bucket that does not exist is a store error (exit code per
/// `exit_code`), not a miss.
#[test]
fn a_plugin_restore_from_a_missing_bucket_is_a_store_error_not_a_miss() {
    let moto = Moto::start();
    let dir = scratch();
    let workspace = dir.path().join("workspace");
    fs::create_dir_all(&workspace).unwrap();
    let vars = [
        ("PLUGIN_RESTORE", "true"),
        ("PLUGIN_BACKEND", "s3"),
        ("PLUGIN_BUCKET", "no-such-bucket"),
        ("PLUGIN_ENDPOINT", moto.endpoint.as_str()),
        ("PLUGIN_PATH_STYLE", "true"),
        ("PLUGIN_ACCESS_KEY", moto.access_key),
        ("PLUGIN_SECRET_KEY", moto.secret_key),
        ("PLUGIN_REGION", moto.region),
        ("PLUGIN_MOUNT", "tree"),
        ("PLUGIN_CACHE_KEY", "k"),
        ("DRONE_REPO_NAME", "app"),
    ];
    let plugin = |extra: &[(&str, &str)]| {
        let mut command = crate::util::plugin(&workspace);
        command.envs(vars.iter().copied()).envs(extra.iter().copied());
        command.output().unwrap()
    };
    let output = plugin(&[]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "store errors do not fail the step by default: {message}");
    assert!(message.contains("no-such-bucket") && message.contains("does not exist"), "{message}");
    assert!(message.contains("the cache step failed"), "{message}");
    assert!(!message.contains("cache miss"), "{message}");
    let strict = plugin(&[("PLUGIN_EXIT_CODE", "true")]);
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
}
