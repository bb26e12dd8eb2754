//! `save --dry-run` through the real binary: it writes nothing to the store, and it reports
//! exactly what the real save then does.

use std::fs;
use std::path::Path;

use chunkcache::core::id::PackId;
use chunkcache::core::manifest::Manifest;
use chunkcache::core::secret::Secret;
use chunkcache::store::backend::{self, BackendOptions, BlobEndpoint};

use crate::support::servers::Azurite;
use crate::util::{chunkcache, chunkcache_on, noise, on_store, run, run_json, scratch, snapshot, stderr};

/// The counts a dry run must predict.
/// The figures a dry run predicts exactly. Not `new_packs`: a chunk that occurs twice is packed
/// by whichever part of the stream met it first, so a save may write one pack more or less.
fn counts(report: &serde_json::Value) -> [&serde_json::Value; 7] {
    ["new_chunks", "new_bytes", "new_stored_bytes", "unique_chunks", "chunks", "bytes", "files"].map(|f| &report[f])
}

fn dry_run(work: &Path, store: &Path, args: &[&str]) -> serde_json::Value {
    let report = run_json(chunkcache_on(work, store, &["save", "--dry-run"]).args(args), 0);
    assert_eq!(report["dry_run"], true, "{report}");
    report
}

fn save(work: &Path, store: &Path, args: &[&str]) -> serde_json::Value {
    let report = run_json(chunkcache_on(work, store, &["save"]).args(args), 0);
    assert_eq!(report["dry_run"], false, "{report}");
    report
}

#[test]
fn a_dry_run_writes_nothing_and_predicts_the_next_save_exactly() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree/sub")).unwrap();
    fs::write(work.join("tree/a.bin"), noise(900_000, 1)).unwrap();
    fs::write(work.join("tree/sub/a-again.bin"), noise(900_000, 1)).unwrap();
    fs::write(work.join("tree/sub/text"), "line\n".repeat(50_000)).unwrap();
    let args = ["--key", "k", "--chunk-size", "64K", "tree"];

    // A fresh store: the folder is not even created.
    let predicted = dry_run(&work, &store, &args);
    assert!(!store.exists(), "a dry run created the store folder");
    assert!(predicted["new_chunks"].as_u64().unwrap() >= 10, "{predicted}");
    assert!(predicted["new_bytes"].as_u64().unwrap() < predicted["bytes"].as_u64().unwrap(), "dedup: {predicted}");
    assert!(predicted["new_stored_bytes"].as_u64().unwrap() < predicted["new_bytes"].as_u64().unwrap());
    assert_eq!(predicted["requests"]["put"], 0, "{predicted}");
    let saved = save(&work, &store, &args);
    assert_eq!(counts(&predicted), counts(&saved), "dry run {predicted}\nsave {saved}");

    // A changed tree on an existing store: the store stays byte for byte the same.
    fs::write(work.join("tree/sub/text"), "line\n".repeat(60_000)).unwrap();
    fs::write(work.join("tree/new.bin"), noise(300_000, 2)).unwrap();
    let before = snapshot(&store);
    let predicted = dry_run(&work, &store, &args);
    assert_eq!(snapshot(&store), before, "a dry run changed the store");
    assert!(predicted["new_chunks"].as_u64().unwrap() > 0, "{predicted}");
    let saved = save(&work, &store, &args);
    assert_eq!(counts(&predicted), counts(&saved), "dry run {predicted}\nsave {saved}");

    // Nothing changed: nothing to upload, and still nothing written.
    let before = snapshot(&store);
    let predicted = dry_run(&work, &store, &args);
    assert_eq!(snapshot(&store), before, "a dry run changed the store");
    assert_eq!((&predicted["new_chunks"], &predicted["new_bytes"]), (&0.into(), &0.into()), "{predicted}");
}

/// The packs the manifest of `key` names.
fn packs_of(store: &Path, key: &str) -> Vec<PackId> {
    on_store(store, async |store| {
        let bytes = store.get_manifest(key).await.unwrap().unwrap();
        Manifest::decode(key, &bytes).unwrap().packs
    })
}

#[test]
fn a_dry_run_counts_chunks_of_damaged_packs_as_the_save_uploads_them_again() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/a.bin"), noise(500_000, 3)).unwrap();
    save(&work, &store, &["--key", "k", "tree"]);
    let damaged = packs_of(&store, "k")[0];
    on_store(&store, async |store| store.mark_damaged(damaged).await.unwrap());

    let before = snapshot(&store);
    let predicted = dry_run(&work, &store, &["--key", "k2", "--parent", "k", "tree"]);
    assert_eq!(snapshot(&store), before, "a dry run changed the store");
    assert_eq!((&predicted["new_chunks"], &predicted["new_packs"]), (&1.into(), &1.into()), "{predicted}");
    let saved = save(&work, &store, &["--key", "k2", "--parent", "k", "tree"]);
    assert_eq!(counts(&predicted), counts(&saved), "dry run {predicted}\nsave {saved}");
    // The chunk went up again in a pack of its own: here the very same pack (the marker was a
    // false alarm), which the save found sound, so the marker is gone.
    assert_eq!(saved["requests"]["put"], 2, "the pack and the manifest: {saved}");
    assert_eq!(packs_of(&store, "k2"), [damaged]);
    assert!(on_store(&store, async |store| store.damaged_packs().await.unwrap()).is_empty());
}

#[test]
fn a_dry_run_prints_one_summary_line_and_is_documented() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/f"), b"some content").unwrap();
    let output = run(&mut chunkcache_on(&work, &store, &["save", "--dry-run", "--key", "k", "tree"]), 0);
    let line = stderr(&output);
    assert!(line.starts_with("dry run: saving \"k\" would upload 1 new chunk of"), "{line}");
    assert!(line.contains("nothing was written"), "{line}");
    assert!(!store.exists());

    let help = run(chunkcache(&work).args(["save", "--help"]), 0);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--dry-run") && help.contains("without uploading or writing anything"), "{help}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_on_a_missing_azure_container_creates_nothing_and_predicts_the_save() {
    let azurite = Azurite::start();
    let dir = scratch();
    let work = dir.path().join("work");
    fs::create_dir_all(work.join("tree")).unwrap();
    fs::write(work.join("tree/a.bin"), noise(400_000, 4)).unwrap();
    let on_azure = |extra: &[&str]| {
        let mut command = chunkcache(&work);
        command
            .args(["save", "--key", "k", "--store", "az://fresh/ci"])
            .args(extra)
            .arg("tree")
            .env("AZURE_STORAGE_ACCOUNT", azurite.account)
            .env("AZURE_STORAGE_KEY", azurite.key)
            .env("AZURE_STORAGE_ENDPOINT", &azurite.endpoint);
        command
    };

    // With an account key a save would create the container; its dry run must not.
    let predicted = run_json(&mut on_azure(&["--dry-run"]), 0);
    assert_eq!(predicted["dry_run"], true, "{predicted}");
    assert!(predicted["new_chunks"].as_u64().unwrap() > 0, "{predicted}");
    let mut options = BackendOptions::default();
    options.azure.account = Some(azurite.account.into());
    options.azure.key = Some(Secret::new(azurite.key));
    options.azure.endpoint = Some(BlobEndpoint::Url(azurite.endpoint.clone()));
    options.azure.create_container = false;
    let store = backend::open("az://fresh/ci", &options).await.unwrap();
    let missing = store.config_or_init(None).await.expect_err("the container was created");
    assert!(missing.to_string().contains("does not exist"), "{missing}");

    let saved = run_json(&mut on_azure(&[]), 0);
    assert_eq!(counts(&predicted), counts(&saved), "dry run {predicted}\nsave {saved}");
}
