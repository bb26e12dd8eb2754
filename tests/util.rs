//! Test utilities: the real binary, temporary trees on tmpfs, and tree snapshots.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch directory, on tmpfs when there is one (file creation on disk is slow).
pub fn scratch() -> tempfile::TempDir {
    let base = Path::new("/dev/shm");
    if base.is_dir() { tempfile::Builder::new().prefix("cc-test-").tempdir_in(base) } else { tempfile::tempdir() }
        .expect("scratch dir")
}

/// The binary under test, run in `cwd`.
pub fn chunkcache(cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chunkcache"));
    command.current_dir(cwd).env_remove("CHUNKCACHE_STORE").env("NO_COLOR", "1");
    command
}

/// The binary in `cwd` with nothing of the test's environment but `PATH`, and `vars`: no
/// credential or setting of the machine running the tests leaks in.
pub fn isolated(cwd: &Path, vars: &[(&str, &str)]) -> Command {
    let mut command = chunkcache(cwd);
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).envs(vars.iter().copied());
    command
}

/// `chunkcache plugin` in `cwd`, [`isolated`]: the step sees only the variables a test gives it,
/// as in a pipeline.
pub fn plugin(cwd: &Path) -> Command {
    let mut command = isolated(cwd, &[]);
    command.arg("plugin");
    command
}

/// A plugin step's settings for a `deps` folder under a per-branch key, and the build's
/// variables, as a pipeline on branch `main` of repository `app` passes them.
pub const DEPS_STEP: [(&str, &str); 4] = [
    ("PLUGIN_MOUNT", "deps"),
    ("PLUGIN_CACHE_KEY", "deps-{{ .Commit.Branch }}"),
    ("DRONE_REPO_NAME", "app"),
    ("DRONE_COMMIT_BRANCH", "main"),
];

/// The binary in `cwd` with `args`, on the local store folder `store`.
pub fn chunkcache_on(cwd: &Path, store: &Path, args: &[&str]) -> Command {
    let mut command = chunkcache(cwd);
    command.args(args).arg("--store").arg(store_url(store));
    command
}

/// Runs, asserts the exit code, returns the output.
pub fn run(command: &mut Command, code: i32) -> Output {
    let output = command.output().expect("binary runs");
    assert_eq!(
        output.status.code(),
        Some(code),
        "{command:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs with `--json`, asserts the exit code, parses stdout.
pub fn run_json(command: &mut Command, code: i32) -> serde_json::Value {
    let output = run(command.arg("--json"), code);
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

/// Stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Whether `name` is a restore's staging file, which never carries a final name (`.ccpart-PID-N`;
/// any name containing `ccpart` counts, so that the check survives a change of the exact form).
pub fn is_staging_name(name: &OsStr) -> bool {
    name.as_bytes().windows(b"ccpart".len()).any(|window| window == b"ccpart")
}

/// `file:///...` for a folder.
pub fn store_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// Everything about a tree that a restore must reproduce: per relative path, the kind, mode,
/// mtime (ns) and content or link target. The root's own metadata is included.
pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, path: &Path, out: &mut BTreeMap<Vec<u8>, String>) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let relative = path.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
    let what = if meta.file_type().is_symlink() {
        format!("link {:?}", std::fs::read_link(path).unwrap())
    } else if meta.is_dir() {
        let mut children: Vec<PathBuf> = std::fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).collect();
        children.sort();
        for child in children {
            walk(root, &child, out);
        }
        "dir".to_string()
    } else {
        format!("file {}", blake3::hash(&std::fs::read(path).unwrap()).to_hex())
    };
    let mtime = if meta.file_type().is_symlink() {
        String::new()
    } else {
        format!("{}.{:09}", meta.mtime(), meta.mtime_nsec())
    };
    out.insert(relative, format!("{what} mode={:o} mtime={mtime}", meta.mode() & 0o7777));
}

/// The pack objects of a local store.
pub fn pack_objects(store: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(dirs) = std::fs::read_dir(store.join("packs")) {
        for dir in dirs {
            for object in std::fs::read_dir(dir.unwrap().path()).unwrap() {
                found.push(object.unwrap().path());
            }
        }
    }
    found.sort();
    found
}

/// The chunks of a local store as its packs' own indexes list them, with the pack file each is in.
pub fn stored_chunks(store: &Path) -> Vec<(PathBuf, chunkcache::core::pack::PackEntry)> {
    let mut chunks = Vec::new();
    for path in pack_objects(store) {
        let name = path.file_name().unwrap().to_str().unwrap();
        let id = chunkcache::core::id::PackId::from_hex(name).expect("packs are named by their hash");
        let entries = chunkcache::core::pack::read_index(id, &std::fs::read(&path).unwrap()).unwrap();
        chunks.extend(entries.into_iter().map(|entry| (path.clone(), entry)));
    }
    chunks
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Asserts two snapshots are equal, printing only the entries that differ.
#[track_caller]
pub fn assert_same_tree(actual: &BTreeMap<Vec<u8>, String>, expected: &BTreeMap<Vec<u8>, String>) {
    let mut differences = Vec::new();
    for key in actual.keys().chain(expected.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (a, e) = (actual.get(key), expected.get(key));
        if a != e {
            differences.push(format!("{:?}: got {a:?}, expected {e:?}", String::from_utf8_lossy(key)));
        }
    }
    assert!(
        differences.is_empty(),
        "{} entries differ:\n{}",
        differences.len(),
        differences[..differences.len().min(20)].join("\n")
    );
}

/// Runs `f` on the local store folder `store` through the library, as a hostile or damaged
/// store's writer would (paths follow whatever key encoding the store uses).
pub fn on_store<T>(store: &Path, f: impl AsyncFnOnce(&chunkcache::store::Store) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = chunkcache::store::backend::open(&store_url(store), &Default::default()).await.unwrap();
        f(&store).await
    })
}

/// Rewrites the manifest of `key` in the local store `store` with `edit` (re-encoded, so it
/// passes the integrity check, as a hostile writer's would).
pub fn edit_manifest(store: &Path, key: &str, edit: impl FnOnce(&mut chunkcache::core::manifest::Manifest)) {
    on_store(store, async |store| {
        let bytes = store.get_manifest(key).await.unwrap().expect("manifest exists");
        let mut manifest = chunkcache::core::manifest::Manifest::decode(key, &bytes).unwrap();
        edit(&mut manifest);
        store.put_manifest(key, manifest.encode()).await.unwrap();
    });
}
