//! The plugin step through the binary, with the env Harness passes for the page
//! `seeds/harness-azure-cache.md`, against a real Azurite.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use chunkcache::core::chunker::ChunkerParams;
use chunkcache::core::id::PackId;
use chunkcache::core::pack::read_index;
use chunkcache::core::secret::Secret;
use chunkcache::store::Store;
use chunkcache::store::backend::{self, BackendOptions, BlobEndpoint};

use crate::gradle::{GradleTreeOptions, generate};
use crate::support::servers::Azurite;
use crate::util::{assert_same_tree, scratch, snapshot, stderr};

/// The Harness page's cache key, after Harness substituted its pipeline variables.
const KEY_TEMPLATE: &str = "somecontainer/pipelineid/{{ .Commit.Branch }}-{{ checksum \"gradle-examples/some-gradle-examples/build.gradle\" }}";

struct Workspace {
    _dir: tempfile::TempDir,
    root: PathBuf,
    gradle: PathBuf,
    outputs: PathBuf,
}

impl Workspace {
    fn new() -> Self {
        let dir = scratch();
        let root = dir.path().join("harness");
        let gradle = root.join("gradle");
        fs::create_dir_all(root.join("gradle-examples/some-gradle-examples")).unwrap();
        let outputs = dir.path().join("outputs.env");
        Self { _dir: dir, root, gradle, outputs }
    }

    fn set_build_gradle(&self, text: &str) {
        fs::write(self.root.join("gradle-examples/some-gradle-examples/build.gradle"), text).unwrap();
    }

    /// Runs one plugin step with exactly the settings of the page's YAML (`restore: true` or
    /// `rebuild: true`), plus the Azurite endpoint and Drone metadata.
    fn step(&self, azurite: &Azurite, mode: &str, extra: &[(&str, &str)]) -> Output {
        let _ = fs::remove_file(&self.outputs);
        let mut command = crate::util::plugin(&self.root);
        let mount = format!("{}/caches/", self.gradle.display());
        let settings = [
            (mode, "true"),
            ("PLUGIN_CACHE_KEY", KEY_TEMPLATE),
            ("PLUGIN_ARCHIVE_FORMAT", "gzip"),
            ("PLUGIN_MOUNT", &mount),
            ("PLUGIN_REGION", "us-west-2"),
            ("PLUGIN_ACCOUNT_KEY", azurite.key),
            ("PLUGIN_ACCOUNT_NAME", azurite.account),
            ("PLUGIN_BACKEND", "azure"),
            ("AZURE_BLOB_STORAGE_URL", &azurite.endpoint),
            ("DRONE_REPO_NAME", "gradle-examples"),
            ("DRONE_COMMIT_BRANCH", "main"),
            ("DRONE_OUTPUT", self.outputs.to_str().unwrap()),
        ];
        command.envs(settings.iter().copied()).envs(extra.iter().copied());
        command.output().unwrap()
    }

    fn outputs(&self) -> BTreeMap<String, String> {
        fs::read_to_string(&self.outputs)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

fn assert_code(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "stderr: {}", stderr(output));
}

async fn store(azurite: &Azurite) -> Store {
    let mut options = BackendOptions::default();
    options.azure.account = Some(azurite.account.to_string());
    options.azure.key = Some(Secret::new(azurite.key));
    options.azure.endpoint = Some(BlobEndpoint::Url(azurite.endpoint.clone()));
    backend::open("az://somecontainer", &options).await.unwrap()
}

/// Chunks in the container, as the packs' own indexes list them (not as any manifest says).
async fn chunk_count(azurite: &Azurite) -> usize {
    use futures::TryStreamExt as _;
    use object_store::{ObjectStore as _, ObjectStoreExt as _};
    let raw = object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(azurite.account)
        .with_access_key(azurite.key)
        .with_endpoint(azurite.endpoint.clone())
        .with_allow_http(true)
        .with_container_name("somecontainer")
        .build()
        .unwrap();
    let packs: Vec<_> = raw.list(Some(&"packs".into())).try_collect().await.unwrap();
    let mut count = 0;
    for meta in packs {
        let id = PackId::from_hex(meta.location.filename().unwrap()).expect("packs are named by their hash");
        let bytes = raw.get(&meta.location).await.unwrap().bytes().await.unwrap();
        count += read_index(id, &bytes).unwrap().len();
    }
    count
}

/// Removes the per-process files the plugin excludes by default (GRADLE_DEFAULT_EXCLUDES), but one, so the tree can be
/// compared whole and the exclusion checked.
fn drop_gradle_volatile_files(dir: &Path, keep: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() && !path.is_symlink() {
            drop_gradle_volatile_files(&path, keep);
        } else if (name.ends_with(".lock") || name == "gc.properties" || in_excluded_dir(&path)) && path != keep {
            fs::remove_file(&path).unwrap();
        }
    }
}

fn in_excluded_dir(path: &Path) -> bool {
    path.components().any(|c| matches!(c.as_os_str().to_str(), Some("journal-1" | "cc-keystore")))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_harness_azure_page_works_as_written() {
    let azurite = Azurite::start();
    let ws = Workspace::new();
    ws.set_build_gradle("plugins { id 'java' }\n");
    // Small chunks for a small tree, so "only what changed" is measurable. The store holds the
    // chunker parameters; every saver, the plugin included, uses them.
    store(&azurite).await.config_or_init(Some(ChunkerParams::with_average(64 << 10))).await.unwrap();

    // 1. The restore step before any save: a miss, and the step succeeds.
    let miss = ws.step(&azurite, "PLUGIN_RESTORE", &[]);
    assert_code(&miss, 0);
    assert!(stderr(&miss).contains("cache miss"), "{}", stderr(&miss));
    assert_eq!(ws.outputs()["cache_hit"], "false");

    // 2. The build fills the Gradle home; the save step stores it.
    let options = GradleTreeOptions { size_bytes: 12 << 20, seed: 7, generation: 0 };
    generate(&ws.gradle, &options).unwrap();
    let lock = ws.gradle.join("caches/modules-2/modules-2.lock");
    fs::write(&lock, b"held by a daemon").unwrap();
    drop_gradle_volatile_files(&ws.gradle, &lock);
    let saved_tree = {
        let mut tree = snapshot(&ws.gradle.join("caches"));
        tree.remove(&b"modules-2/modules-2.lock"[..]).expect("the lock file is in the tree");
        tree
    };
    let save = ws.step(&azurite, "PLUGIN_REBUILD", &[]);
    assert_code(&save, 0);
    assert!(stderr(&save).contains("saved \"gradle-examples/pipelineid/main-"), "{}", stderr(&save));
    let key = ws.outputs()["cache_key"].clone();
    // The container came from the key; keys are namespaced by the repository (remote_root).
    let prefix = "gradle-examples/pipelineid/main-";
    assert!(key.starts_with(prefix) && key.len() == prefix.len() + 32, "{key}");
    let chunks_gen0 = chunk_count(&azurite).await;

    // `override: false` skips a save whose key exists, before any work.
    let skipped = ws.step(&azurite, "PLUGIN_REBUILD", &[("PLUGIN_OVERRIDE", "false")]);
    assert_code(&skipped, 0);
    assert!(stderr(&skipped).contains("already exists and override is false"), "{}", stderr(&skipped));

    // 3. A clean workspace restores it byte for byte; the excluded lock file is not restored.
    fs::remove_dir_all(ws.gradle.join("caches")).unwrap();
    let hit = ws.step(&azurite, "PLUGIN_RESTORE", &[]);
    assert_code(&hit, 0);
    assert!(stderr(&hit).contains("cache hit"), "{}", stderr(&hit));
    assert_eq!(ws.outputs()["cache_hit"], "true");
    assert_eq!(ws.outputs()["restored_key"], key);
    assert_same_tree(&snapshot(&ws.gradle.join("caches")), &saved_tree);

    // 4. The dependencies change (a new build.gradle, so a new key): only new chunks go up.
    generate(&ws.gradle, &GradleTreeOptions { generation: 1, ..options }).unwrap();
    drop_gradle_volatile_files(&ws.gradle, Path::new("/none"));
    ws.set_build_gradle("plugins { id 'java' }\ndependencies { implementation 'x:y:2' }\n");
    let gen1_tree = snapshot(&ws.gradle.join("caches"));
    let save = ws.step(&azurite, "PLUGIN_REBUILD", &[]);
    assert_code(&save, 0);
    let key_gen1 = ws.outputs()["cache_key"].clone();
    assert_ne!(key_gen1, key);
    let new_chunks = chunk_count(&azurite).await - chunks_gen0;
    let reported: usize = stderr(&save).split(" new, ").next().unwrap().rsplit('(').next().unwrap().parse().unwrap();
    assert_eq!(reported, new_chunks, "{}", stderr(&save));
    assert!(new_chunks > 0 && new_chunks * 2 < chunks_gen0, "{new_chunks} new of {chunks_gen0}");

    // 5. Yet another build.gradle has no cache: the branch's newest cache is the fallback.
    ws.set_build_gradle("plugins { id 'java' }\n// edited\n");
    fs::remove_dir_all(ws.gradle.join("caches")).unwrap();
    let fallback = ws.step(&azurite, "PLUGIN_RESTORE", &[]);
    assert_code(&fallback, 0);
    assert!(stderr(&fallback).contains("fallback hit"), "{}", stderr(&fallback));
    assert_eq!(ws.outputs()["cache_hit"], "false");
    assert_eq!(ws.outputs()["restored_key"], key_gen1);
    assert_same_tree(&snapshot(&ws.gradle.join("caches")), &gen1_tree);
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_appear_even_with_debug_and_exit_code_fails_a_miss() {
    let azurite = Azurite::start();
    store(&azurite).await; // creates the container: a miss, not a missing store
    let ws = Workspace::new();
    ws.set_build_gradle("x");
    let run = ws.step(&azurite, "PLUGIN_RESTORE", &[("PLUGIN_DEBUG", "true"), ("PLUGIN_EXIT_CODE", "true")]);
    assert_code(&run, 1);
    let all = format!("{}{}", String::from_utf8_lossy(&run.stdout), stderr(&run));
    assert!(all.contains("debug:") && all.contains("cache miss"), "{all}");
    assert!(!all.contains(azurite.key), "the account key leaked: {all}");
    assert!(!all.contains(&azurite.key[..20]), "part of the account key leaked: {all}");

    // A wrong key fails clearly, names no secret, and is not fatal without exit_code.
    let wrong = "d3JvbmcgYnV0IHZhbGlkIGJhc2U2NA==";
    let run = ws.step(&azurite, "PLUGIN_REBUILD", &[("PLUGIN_ACCOUNT_KEY", wrong), ("PLUGIN_DEBUG", "true")]);
    assert_code(&run, 0);
    let all = stderr(&run);
    assert!(all.contains("account key") && !all.contains(wrong), "{all}");
}

#[test]
fn bad_settings_always_fail_with_the_variable_named() {
    let azurite = Azurite::start();
    let ws = Workspace::new();
    let both = ws.step(&azurite, "PLUGIN_RESTORE", &[("PLUGIN_REBUILD", "true")]);
    assert_code(&both, 1);
    assert!(stderr(&both).contains("PLUGIN_REBUILD"), "{}", stderr(&both));
    let template = ws.step(&azurite, "PLUGIN_RESTORE", &[("PLUGIN_CACHE_KEY", "{{ .Commit.Branch ")]);
    assert_code(&template, 1);
    assert!(stderr(&template).contains("PLUGIN_CACHE_KEY"), "{}", stderr(&template));
}

#[test]
fn a_restore_writes_only_into_the_mounts_the_step_names() {
    let azurite = Azurite::start();
    let ws = Workspace::new();
    ws.set_build_gradle("x");
    fs::create_dir_all(ws.gradle.join("caches/modules-2")).unwrap();
    fs::write(ws.gradle.join("caches/modules-2/a.bin"), b"cached").unwrap();
    assert_code(&ws.step(&azurite, "PLUGIN_REBUILD", &[]), 0);
    fs::remove_dir_all(ws.gradle.join("caches")).unwrap();

    let elsewhere = format!("{}/other/", ws.root.display());
    let restore = ws.step(&azurite, "PLUGIN_RESTORE", &[("PLUGIN_MOUNT", &elsewhere)]);
    assert_code(&restore, 0);
    assert!(stderr(&restore).contains("skipped the cache's mount"), "{}", stderr(&restore));
    assert!(!ws.gradle.join("caches").exists(), "a mount the step does not name was restored");

    // The same mount written with or without a trailing slash is the same mount.
    let mount = format!("{}/caches", ws.gradle.display());
    assert_code(&ws.step(&azurite, "PLUGIN_RESTORE", &[("PLUGIN_MOUNT", &mount)]), 0);
    assert_eq!(fs::read(ws.gradle.join("caches/modules-2/a.bin")).unwrap(), b"cached");
}

#[test]
fn the_filesystem_backend_with_relative_mounts_and_local_root() {
    let dir = scratch();
    let (workspace, cache_root) = (dir.path().join("drone/src"), dir.path().join("cache"));
    fs::create_dir_all(workspace.join("project/.gradle/caches")).unwrap();
    fs::write(workspace.join("project/.gradle/caches/dep.jar"), b"jar bytes").unwrap();
    let step = |mode: &str| {
        let mut command = crate::util::plugin(&workspace);
        command.envs([
            (mode, "true"),
            ("PLUGIN_BACKEND", "filesystem"),
            ("PLUGIN_FILESYSTEM_CACHE_ROOT", cache_root.to_str().unwrap()),
            ("PLUGIN_LOCAL_ROOT", "project"),
            ("PLUGIN_MOUNT", ".gradle/caches"),
            ("PLUGIN_CACHE_KEY", "gradle-{{ .Commit.Branch }}"),
            ("DRONE_REPO_NAME", "app"),
            ("DRONE_COMMIT_BRANCH", "dev"),
        ]);
        command.output().unwrap()
    };
    assert_code(&step("PLUGIN_REBUILD"), 0);
    assert!(cache_root.join("manifests/app/gradle-dev~").is_file(), "keys are namespaced by the repository");
    fs::remove_dir_all(workspace.join("project/.gradle")).unwrap();
    let restored = step("PLUGIN_RESTORE");
    assert_code(&restored, 0);
    assert!(stderr(&restored).contains("cache hit"), "{}", stderr(&restored));
    assert_eq!(fs::read(workspace.join("project/.gradle/caches/dep.jar")).unwrap(), b"jar bytes");
}
