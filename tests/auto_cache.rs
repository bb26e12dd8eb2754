//! `auto_cache: true` through the plugin binary (issue 12, "Beyond both"): the build tools of the
//! workspace are detected, their folders saved and restored under a key derived from the files
//! that define their dependencies. Every step runs on the filesystem backend with `HOME` in a
//! scratch folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::{scratch, stderr};

/// A scratch folder with a home folder, a cache root and workspaces, each step's outputs read
/// from its `DRONE_OUTPUT` file.
struct Pipeline {
    dir: tempfile::TempDir,
    home: PathBuf,
    root: String,
}

impl Pipeline {
    fn new() -> Self {
        let dir = scratch();
        let home = dir.path().join("home");
        let root = dir.path().join("cache");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&root).unwrap();
        Pipeline { root: root.to_str().unwrap().to_owned(), home, dir }
    }

    /// A workspace folder `name` holding `files` (path, content).
    fn workspace(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let workspace = self.dir.path().join(name);
        write_files(&workspace, files);
        workspace
    }

    /// An `auto_cache: true` step on branch `main` in `workspace`, with `extra` settings on top; returns
    /// its output and the outputs it wrote.
    fn step(&self, workspace: &Path, extra: &[(&str, &str)]) -> (Output, String) {
        let outputs = self.dir.path().join("outputs.env");
        let _ = fs::remove_file(&outputs);
        let base = [
            ("PLUGIN_AUTO_CACHE", "true"),
            ("PLUGIN_BACKEND", "filesystem"),
            ("PLUGIN_FILESYSTEM_CACHE_ROOT", self.root.as_str()),
            ("DRONE_REPO_NAME", "app"),
            ("DRONE_COMMIT_BRANCH", "main"),
            ("HOME", self.home.to_str().unwrap()),
            ("DRONE_OUTPUT", outputs.to_str().unwrap()),
        ];
        let output = crate::util::plugin(workspace).envs([&base[..], extra].concat()).output().unwrap();
        (output, fs::read_to_string(&outputs).unwrap_or_default())
    }
}

fn write_files(folder: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = folder.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
}

/// Asserts `output` exited with `code`, showing its log if not; returns the log.
fn log_of(output: &Output, code: i32) -> String {
    let log = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{log}");
    log
}

/// The value of `name` in a `DRONE_OUTPUT` file.
fn output_value<'a>(outputs: &'a str, name: &str) -> &'a str {
    outputs.lines().find_map(|line| line.strip_prefix(&format!("{name}="))).unwrap_or_else(|| panic!("{outputs}"))
}

const REBUILD: (&str, &str) = ("PLUGIN_REBUILD", "true");
const RESTORE: (&str, &str) = ("PLUGIN_RESTORE", "true");

const GRADLE_PROJECT: &[(&str, &str)] = &[
    ("settings.gradle.kts", "include(\"app\")\n"),
    ("app/build.gradle.kts", "dependencies { implementation(\"com.google.guava:guava:33.0.0-jre\") }\n"),
    ("gradle/wrapper/gradle-wrapper.properties", "distributionUrl=gradle-8.5-bin.zip\n"),
    ("app/src/main/java/Main.java", "class Main {}\n"),
];

const GRADLE_HOME: &[(&str, &str)] = &[
    (".gradle/caches/modules-2/files-2.1/com.google.guava/guava/33.0.0-jre/abc/guava-33.0.0-jre.jar", "jar"),
    (".gradle/caches/modules-2/modules-2.lock", "held by the process that saved"),
    (".gradle/wrapper/dists/gradle-8.5-bin/abc/gradle-8.5-bin.zip", "distribution"),
];

/// A Gradle project saved with `auto_cache` restores the Gradle user home's `caches` and `wrapper` in a
/// fresh workspace (without Gradle's per-process files); a changed build file changes the key, and
/// the restore then falls back to the branch's newest cache.
#[test]
fn a_gradle_project_restores_the_gradle_home_in_a_fresh_workspace() {
    let pipeline = Pipeline::new();
    write_files(&pipeline.home, GRADLE_HOME);
    let first = pipeline.workspace("first", GRADLE_PROJECT);
    let (saved, outputs) = pipeline.step(&first, &[REBUILD]);
    let log = log_of(&saved, 0);
    let home = pipeline.home.display();
    assert!(log.contains("auto_cache: detected gradle (app/build.gradle.kts, settings.gradle.kts)"), "{log}");
    assert!(log.contains(&format!("auto_cache: caching {home}/.gradle/caches, {home}/.gradle/wrapper")), "{log}");
    assert!(log.contains("of 3 file(s): app/build.gradle.kts, gradle/wrapper/gradle-wrapper.properties"), "{log}");
    assert!(log.contains("as cache key \"app/auto-cache/gradle/main-"), "{log}");
    assert!(outputs.contains("cache_key=app/auto-cache/gradle/main-"), "{outputs}");
    let key = output_value(&outputs, "cache_key").to_owned();

    fs::remove_dir_all(pipeline.home.join(".gradle")).unwrap();
    let fresh = pipeline.workspace("fresh", GRADLE_PROJECT);
    let (restored, outputs) = pipeline.step(&fresh, &[RESTORE]);
    let log = log_of(&restored, 0);
    assert!(log.contains("cache hit"), "{log}");
    assert_eq!(output_value(&outputs, "cache_key"), key);
    assert_eq!(output_value(&outputs, "cache_hit"), "true");
    for (path, content) in GRADLE_HOME.iter().filter(|(path, _)| !path.ends_with(".lock")) {
        assert_eq!(fs::read_to_string(pipeline.home.join(path)).unwrap(), *content, "{path}");
    }
    assert!(!pipeline.home.join(".gradle/caches/modules-2/modules-2.lock").exists());
    assert!(!fresh.join("app/build").exists() && !fresh.join(".gradle").exists(), "nothing lands in the workspace");

    // A new dependency: another key, and the branch's newest cache as the fallback.
    let bumped = "dependencies { implementation(\"com.google.guava:guava:33.1.0-jre\") }\n";
    let changed = pipeline.workspace("changed", &[GRADLE_PROJECT, &[("app/build.gradle.kts", bumped)]].concat());
    let (restored, outputs) = pipeline.step(&changed, &[RESTORE]);
    let log = log_of(&restored, 0);
    let new_key = output_value(&outputs, "cache_key");
    assert!(new_key.starts_with("app/auto-cache/gradle/main-") && new_key != key, "{new_key} vs {key}");
    assert_eq!(output_value(&outputs, "cache_hit"), "false");
    assert_eq!(output_value(&outputs, "restored_key"), key);
    assert!(log.contains("fallback hit"), "{log}");
}

/// A lock file is the key: changing it changes the key; changing a source file does not.
#[test]
fn a_lock_file_change_changes_the_key() {
    let pipeline = Pipeline::new();
    let key_of = |name: &str, files: &[(&str, &str)]| {
        let workspace = pipeline.workspace(name, files);
        let (output, outputs) = pipeline.step(&workspace, &[RESTORE]);
        log_of(&output, 0);
        output_value(&outputs, "cache_key").to_owned()
    };
    let project = [("package.json", "{}"), ("package-lock.json", "{\"lockfileVersion\": 3}"), ("index.js", "1")];
    let key = key_of("a", &project);
    assert!(key.starts_with("app/auto-cache/npm/main-"), "{key}");
    assert_eq!(key_of("b", &[&project[..], &[("index.js", "2")]].concat()), key);
    let relocked = key_of("c", &[&project[..], &[("package-lock.json", "{\"lockfileVersion\": 2}")]].concat());
    assert!(relocked.starts_with("app/auto-cache/npm/main-") && relocked != key, "{relocked}");
}

/// `mount` is cached besides the detected folders, `cache_key` replaces the derived key, and a
/// detected folder that does not exist is left out of the save with a note.
#[test]
fn mount_adds_to_the_detected_folders_and_cache_key_replaces_the_key() {
    let pipeline = Pipeline::new();
    write_files(&pipeline.home, &[(".m2/repository/g/a/1/a-1.jar", "maven jar")]);
    let project = [("pom.xml", "<project/>"), ("go.mod", "module x\n"), ("extra/data.txt", "extra")];
    let workspace = pipeline.workspace("ws", &project);
    let custom = [("PLUGIN_MOUNT", "extra"), ("PLUGIN_CACHE_KEY", "custom-{{ .Commit.Branch }}")];
    let (saved, outputs) = pipeline.step(&workspace, &[&[REBUILD][..], &custom].concat());
    let log = log_of(&saved, 0);
    assert!(log.contains("auto_cache: detected maven (pom.xml), go (go.mod)"), "{log}");
    assert!(log.contains("auto_cache: mount is set: caching it besides the detected folders"), "{log}");
    assert!(log.contains("auto_cache: cache_key is set: using it instead of the key derived"), "{log}");
    assert!(!log.contains("auto_cache: key hash"), "the derived key is not used: {log}");
    let home = pipeline.home.display();
    assert!(log.contains(&format!("auto_cache: {home}/go/pkg/mod does not exist: nothing to save from it")), "{log}");
    assert_eq!(output_value(&outputs, "cache_key"), "app/custom-main");

    fs::remove_dir_all(pipeline.home.join(".m2")).unwrap();
    let fresh = pipeline.workspace("fresh", &project[..2]);
    let (restored, _) = pipeline.step(&fresh, &[&[RESTORE][..], &custom].concat());
    log_of(&restored, 0);
    assert_eq!(fs::read_to_string(fresh.join("extra/data.txt")).unwrap(), "extra");
    assert_eq!(fs::read_to_string(pipeline.home.join(".m2/repository/g/a/1/a-1.jar")).unwrap(), "maven jar");
}

/// No build tool and no `mount`: a clear message; the step passes unless `exit_code` is true.
#[test]
fn nothing_detected_is_explained_and_follows_exit_code() {
    let pipeline = Pipeline::new();
    let workspace = pipeline.workspace("ws", &[("README.md", "docs"), ("main.py", "print()")]);
    for mode in [RESTORE, REBUILD] {
        let (output, outputs) = pipeline.step(&workspace, &[mode]);
        let log = log_of(&output, 0);
        assert!(log.contains(&format!("auto_cache found no build tool in {}", workspace.display())), "{log}");
        assert!(log.contains("set mount (and cache_key) to its folders, or remove auto_cache"), "{log}");
        assert!(log.contains("set exit_code: true to fail instead"), "{log}");
        assert_eq!(output_value(&outputs, "cache_hit"), "false");
        let (output, _) = pipeline.step(&workspace, &[mode, ("PLUGIN_EXIT_CODE", "true")]);
        assert!(log_of(&output, 1).contains("auto_cache found no build tool"));
    }
    // With a mount, the step caches it as without auto_cache.
    write_files(&workspace, &[("deps/a.txt", "a")]);
    let (output, _) = pipeline.step(&workspace, &[REBUILD, ("PLUGIN_MOUNT", "deps")]);
    assert!(log_of(&output, 0).contains("auto_cache: no build tool detected: caching mount only"));
}
