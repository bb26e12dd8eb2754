//! The plugin step in gc mode (`gc: true`) through the binary, on a `filesystem` store: keys
//! expire, packs are deleted a grace later, and the step's exit code follows `exit_code`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::thread;
use std::time::Duration;

use crate::util::{chunkcache, noise, pack_objects, scratch, stderr};

struct Pipeline {
    _dir: tempfile::TempDir,
    workdir: PathBuf,
    store: PathBuf,
    outputs: PathBuf,
}

impl Pipeline {
    fn new() -> Self {
        let dir = scratch();
        let workdir = dir.path().join("workspace");
        fs::create_dir_all(&workdir).unwrap();
        let (store, outputs) = (dir.path().join("cache"), dir.path().join("outputs.env"));
        Self { workdir, store, outputs, _dir: dir }
    }

    /// Runs the plugin with `settings` (and the filesystem backend on this pipeline's store).
    fn step(&self, settings: &[(&str, &str)]) -> Output {
        let _ = fs::remove_file(&self.outputs);
        let mut command = crate::util::plugin(&self.workdir);
        command.envs([
            ("PLUGIN_BACKEND", "filesystem"),
            ("PLUGIN_FILESYSTEM_CACHE_ROOT", self.store.to_str().unwrap()),
            ("DRONE_REPO_NAME", "repo"),
            ("DRONE_OUTPUT", self.outputs.to_str().unwrap()),
        ]);
        command.envs(settings.iter().copied()).output().unwrap()
    }

    /// Saves `files` files of noise from `seed` as `key` (stored as `repo/KEY`).
    fn save(&self, key: &str, seed: u64) {
        let data = self.workdir.join("data");
        let _ = fs::remove_dir_all(&data);
        fs::create_dir_all(&data).unwrap();
        for n in 0..4 {
            fs::write(data.join(format!("f{n}")), noise(200_000, 2 * (seed * 100 + n) + 1)).unwrap();
        }
        let saved = self.step(&[("PLUGIN_REBUILD", "true"), ("PLUGIN_MOUNT", "data"), ("PLUGIN_CACHE_KEY", key)]);
        assert_code(&saved, 0);
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

#[track_caller]
fn assert_code(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "stderr: {}", stderr(output));
}

fn pack_count(store: &Path) -> usize {
    pack_objects(store).len()
}

#[test]
fn a_gc_step_expires_unused_keys_and_deletes_their_packs_a_grace_later() {
    let pipeline = Pipeline::new();
    pipeline.save("old", 1);
    let old_packs = pack_count(&pipeline.store);
    pipeline.save("main", 2);
    let all_packs = pack_count(&pipeline.store);
    assert!(old_packs > 0 && all_packs > old_packs);
    thread::sleep(Duration::from_millis(1100));
    let gc = [("PLUGIN_GC", "true"), ("PLUGIN_MAX_UNUSED", "1s"), ("PLUGIN_GRACE", "1s"), ("PLUGIN_KEEP", "repo/main")];

    // A dry run names the key and changes nothing.
    let dry = pipeline.step(&[gc.as_slice(), &[("PLUGIN_DRY_RUN", "true"), ("PLUGIN_DEBUG", "true")]].concat());
    assert_code(&dry, 0);
    assert!(stderr(&dry).contains("would expire repo/old"), "{}", stderr(&dry));
    for line in ["debug:   mode: gc", "debug:   max unused: 1s", "debug:   keep: repo/main", "debug:   dry run: true"] {
        assert!(stderr(&dry).lines().any(|l| l == line), "{line:?} missing: {}", stderr(&dry));
    }
    assert!(!stderr(&dry).contains("cache key"), "a gc step has no key: {}", stderr(&dry));
    assert!(!pipeline.store.join("gc").exists(), "a dry run writes nothing");

    let first = pipeline.step(&gc);
    assert_code(&first, 0);
    assert_eq!(pipeline.outputs()["gc_keys_expired"], "1", "{}", stderr(&first));
    assert_eq!(pipeline.outputs()["gc_packs_deleted"], "0", "condemned, not deleted yet");
    assert!(!pipeline.outputs().contains_key("cache_key"), "a gc step has no key");
    assert_eq!(pack_count(&pipeline.store), all_packs);

    // Within the grace: nothing to do, and still exit 0 (a step that did nothing did not fail).
    let idle = pipeline.step(&gc);
    assert_code(&idle, 0);
    assert_eq!(pipeline.outputs()["gc_packs_deleted"], "0");

    thread::sleep(Duration::from_millis(1100));
    let second = pipeline.step(&gc);
    assert_code(&second, 0);
    assert_eq!(pipeline.outputs()["gc_packs_deleted"], old_packs.to_string(), "{}", stderr(&second));
    let reclaimed: u64 = pipeline.outputs()["gc_bytes_reclaimed"].parse().unwrap();
    assert!(reclaimed > 700_000, "4 files of 200 KB of noise: {reclaimed}");
    assert_eq!(pack_count(&pipeline.store), all_packs - old_packs);

    let restore = |key: &str| {
        let _ = fs::remove_dir_all(pipeline.workdir.join("data"));
        let restored =
            pipeline.step(&[("PLUGIN_RESTORE", "true"), ("PLUGIN_CACHE_KEY", key), ("PLUGIN_EXIT_CODE", "true")]);
        restored.status.code()
    };
    assert_eq!(restore("main"), Some(0), "the kept key restores");
    assert_eq!(restore("old"), Some(1), "the expired key is a miss (a failure with exit_code)");
    let verify =
        chunkcache(&pipeline.workdir).args(["verify", "--read-data", "--store"]).arg(&pipeline.store).output().unwrap();
    assert_code(&verify, 0);
}

#[test]
fn gc_with_restore_or_rebuild_and_gc_settings_elsewhere_are_refused() {
    let pipeline = Pipeline::new();
    for mode in ["PLUGIN_RESTORE", "PLUGIN_REBUILD"] {
        let refused = pipeline.step(&[("PLUGIN_GC", "true"), (mode, "true"), ("PLUGIN_MOUNT", "data")]);
        assert_code(&refused, 1);
        let message = stderr(&refused);
        assert!(message.contains("PLUGIN_GC") && message.contains(mode) && message.contains("own step"), "{message}");
    }
    let refused = pipeline.step(&[("PLUGIN_RESTORE", "true"), ("PLUGIN_MAX_UNUSED", "14d")]);
    assert_code(&refused, 1);
    assert!(stderr(&refused).contains("PLUGIN_MAX_UNUSED is a setting of gc steps only"), "{}", stderr(&refused));
    let refused = pipeline.step(&[("PLUGIN_GC", "true"), ("PLUGIN_MAX_SIZE", "lots")]);
    assert_code(&refused, 1);
    assert!(stderr(&refused).contains("PLUGIN_MAX_SIZE=\"lots\" is invalid"), "{}", stderr(&refused));
}

#[test]
fn a_failed_gc_step_follows_exit_code() {
    let pipeline = Pipeline::new();
    // No store folder: a typo in filesystem_cache_root, say.
    let failed = pipeline.step(&[("PLUGIN_GC", "true")]);
    assert_code(&failed, 0);
    assert!(stderr(&failed).contains("does not exist"), "{}", stderr(&failed));
    let failed = pipeline.step(&[("PLUGIN_GC", "true"), ("PLUGIN_EXIT_CODE", "true")]);
    assert_code(&failed, 1);
    assert!(stderr(&failed).contains("does not exist"), "{}", stderr(&failed));
}
