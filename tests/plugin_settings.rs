//! drone-cache's plugin settings mean what they mean there (issue 12): each is honoured, or refused
//! with a message that says what to do, never parsed and dropped.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use futures::TryStreamExt as _;

use crate::remote::create_bucket;
use crate::support::servers::{Moto, tools_dir};
use crate::util::{scratch, stderr};

/// The plugin in `workspace` with only `vars` (and `PATH`) in its environment.
fn plugin(workspace: &Path, vars: &[(&str, &str)]) -> Output {
    let mut command = crate::util::plugin(workspace);
    command.envs(vars.iter().copied());
    command.output().unwrap()
}

/// A scratch folder with a workspace (`ws`) holding `files`, and a cache root for steps on the
/// filesystem backend.
struct Local {
    dir: tempfile::TempDir,
    workspace: PathBuf,
    root: String,
}

impl Local {
    fn new(files: &[(&str, &str)]) -> Self {
        let dir = scratch();
        let workspace = dir.path().join("ws");
        fs::create_dir_all(&workspace).unwrap();
        for (path, content) in files {
            fs::create_dir_all(workspace.join(path).parent().unwrap()).unwrap();
            fs::write(workspace.join(path), content).unwrap();
        }
        let root = dir.path().join("cache");
        fs::create_dir_all(&root).unwrap();
        Local { root: root.to_str().unwrap().to_owned(), workspace, dir }
    }

    /// A step in `cwd` caching `mount` under `key` in this cache root, with `extra` settings on top.
    fn step_in(&self, cwd: &Path, mount: &str, key: &str, extra: &[(&str, &str)]) -> Output {
        let base = [
            ("PLUGIN_BACKEND", "filesystem"),
            ("PLUGIN_FILESYSTEM_CACHE_ROOT", self.root.as_str()),
            ("PLUGIN_MOUNT", mount),
            ("PLUGIN_CACHE_KEY", key),
            ("DRONE_REPO_NAME", "app"),
        ];
        plugin(cwd, &[&base[..], extra].concat())
    }

    /// The same step in the workspace.
    fn step(&self, mount: &str, key: &str, extra: &[(&str, &str)]) -> Output {
        self.step_in(&self.workspace, mount, key, extra)
    }

    /// An empty folder beside the workspace, to restore into.
    fn fresh(&self, name: &str) -> PathBuf {
        let folder = self.dir.path().join(name);
        fs::create_dir_all(&folder).unwrap();
        folder
    }
}

/// Asserts `output` exited with `code`, showing its log if not.
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", stderr(output));
}

const REBUILD: (&str, &str) = ("PLUGIN_REBUILD", "true");
const RESTORE: (&str, &str) = ("PLUGIN_RESTORE", "true");

#[test]
fn skip_symlinks_leaves_links_out_of_the_cache() {
    let local = Local::new(&[("deps/real.txt", "content")]);
    symlink("real.txt", local.workspace.join("deps/link")).unwrap();
    for (skip, key, link_restored) in [("true", "skipping", false), ("false", "keeping", true)] {
        assert_exit(&local.step("deps", key, &[REBUILD, ("PLUGIN_SKIP_SYMLINKS", skip)]), 0);
        let fresh = local.fresh(key);
        let restored = local.step_in(&fresh, "deps", key, &[RESTORE]);
        assert_exit(&restored, 0);
        assert_eq!(fs::read(fresh.join("deps/real.txt")).unwrap(), b"content");
        let link = fresh.join("deps/link");
        assert_eq!(link.symlink_metadata().is_ok(), link_restored, "skip_symlinks={skip}: {}", stderr(&restored));
    }
}

/// A rebuild of `deps` as key `k` to S3 `bucket`, failing on any store error, with `extra` settings on top.
fn s3_step(workspace: &Path, bucket: &str, extra: &[(&str, &str)]) -> Output {
    let vars = [
        REBUILD,
        ("PLUGIN_BACKEND", "s3"),
        ("PLUGIN_BUCKET", bucket),
        ("PLUGIN_PATH_STYLE", "true"),
        ("PLUGIN_MOUNT", "deps"),
        ("PLUGIN_CACHE_KEY", "k"),
        ("PLUGIN_EXIT_CODE", "true"),
        ("DRONE_REPO_NAME", "app"),
    ];
    plugin(workspace, &[&vars[..], extra].concat())
}

/// The plugin settings that reach `moto`: endpoint, keys and region.
fn on_moto(moto: &Moto) -> [(&'static str, &str); 4] {
    [
        ("PLUGIN_ENDPOINT", moto.endpoint.as_str()),
        ("PLUGIN_ACCESS_KEY", moto.access_key),
        ("PLUGIN_SECRET_KEY", moto.secret_key),
        ("PLUGIN_REGION", moto.region),
    ]
}

/// `encryption` asks S3 for server-side encryption of every object written, as drone-cache's
/// `ServerSideEncryption` does; what moto records for the objects is the reference.
#[test]
fn s3_encryption_is_applied_to_every_object_written() {
    let moto = Moto::start();
    create_bucket(&moto, "sealed");
    let local = Local::new(&[]);
    fs::create_dir_all(local.workspace.join("deps")).unwrap();
    fs::write(local.workspace.join("deps/a.bin"), crate::util::noise(300_000, 1)).unwrap();
    let saved =
        s3_step(&local.workspace, "sealed", &[&on_moto(&moto)[..], &[("PLUGIN_ENCRYPTION", "AES256")]].concat());
    assert_eq!(saved.status.code(), Some(0), "{}", stderr(&saved));

    // What moto recorded, read with the official SDK (boto3, from moto's own environment).
    let script = r#"
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="test", aws_secret_access_key="test",
                  region_name="us-east-1")
for o in s3.list_objects_v2(Bucket="sealed")["Contents"]:
    print(o["Key"], s3.head_object(Bucket="sealed", Key=o["Key"]).get("ServerSideEncryption"))
"#;
    let python = tools_dir().join("moto/bin/python");
    let listed = Command::new(python).args(["-c", script, &moto.endpoint]).output().unwrap();
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed = String::from_utf8(listed.stdout).unwrap();
    let objects: Vec<(&str, &str)> = listed.lines().filter_map(|line| line.split_once(' ')).collect();
    assert!(objects.iter().any(|(key, _)| key.starts_with("packs/")), "{listed}");
    assert!(objects.iter().any(|(key, _)| key.starts_with("manifests/")), "{listed}");
    for (key, sse) in objects {
        assert_eq!(sse, "AES256", "{key} was stored without server-side encryption");
    }
}

/// Security settings chunkcache cannot honour fail the step before anything is written, saying
/// what to do instead, even with `exit_code` off.
#[test]
fn s3_settings_that_cannot_be_honoured_are_refused() {
    let moto = Moto::start();
    create_bucket(&moto, "strict");
    let local = Local::new(&[("deps/a.txt", "a")]);
    let workspace = &local.workspace;
    let refused = [
        (("PLUGIN_ACL", "public-read"), "S3 acl \"public-read\" is not supported"),
        (("PLUGIN_ENCRYPTION", "rot13"), "S3 encryption \"rot13\" is not supported"),
    ];
    for ((name, value), expected) in refused {
        let extra = [(name, value), ("PLUGIN_EXIT_CODE", "false")];
        let output = s3_step(workspace, "strict", &[&on_moto(&moto)[..], &extra].concat());
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{name}={value}: {message}");
        assert!(message.contains(expected), "{name}={value}: {message}");
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let written: Vec<_> = runtime.block_on(moto.object_store("strict").list(None).try_collect()).unwrap();
    assert!(written.is_empty(), "a refused step wrote {written:?}");
    // drone-cache's default acl, `private`, is what S3 gives an object written without one.
    let output = s3_step(workspace, "strict", &[&on_moto(&moto)[..], &[("PLUGIN_ACL", "private")]].concat());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// Gradle's per-process files are left out of a mount laid out as a Gradle user home or its
/// `caches/`, and only there: a `vendor` mount keeps its `yarn.lock`.
#[test]
fn gradle_default_excludes_apply_only_to_gradle_mounts() {
    let local = Local::new(&[
        ("gradle/caches/modules-2/files-2.1/g/a.jar", "jar"),
        ("gradle/caches/modules-2/modules-2.lock", "lock"),
        ("gradle/caches/journal-1/file-access.bin", "journal"),
        ("vendor/yarn.lock", "yarn"),
        ("vendor/pkg/index.js", "js"),
    ]);
    let mounts = "gradle/caches/,vendor";
    let saved = local.step(mounts, "k", &[REBUILD]);
    assert_exit(&saved, 0);
    let log = stderr(&saved);
    assert!(log.contains("gradle/caches/ is a Gradle user home or its caches/ (modules-2 inside)"), "{log}");
    assert!(!log.contains("vendor is a Gradle"), "{log}");

    let fresh = local.fresh("fresh");
    assert_exit(&local.step_in(&fresh, mounts, "k", &[RESTORE]), 0);
    assert_eq!(fs::read_to_string(fresh.join("vendor/yarn.lock")).unwrap(), "yarn");
    assert_eq!(fs::read_to_string(fresh.join("gradle/caches/modules-2/files-2.1/g/a.jar")).unwrap(), "jar");
    assert!(!fresh.join("gradle/caches/modules-2/modules-2.lock").exists());
    assert!(!fresh.join("gradle/caches/journal-1/file-access.bin").exists());
}

/// The plugin's own settings win, and the `AWS_*` variables fill in the rest, as the AWS SDK's
/// default chain does for drone-cache: here the endpoint and region come from the environment only.
#[test]
fn aws_variables_reach_the_s3_store_in_plugin_mode() {
    let moto = Moto::start();
    create_bucket(&moto, "from-env");
    let local = Local::new(&[("deps/a.txt", "a")]);
    let workspace = &local.workspace;
    let vars = [
        ("AWS_ACCESS_KEY_ID", moto.access_key),
        ("AWS_SECRET_ACCESS_KEY", moto.secret_key),
        ("AWS_SESSION_TOKEN", "session-token-from-the-environment"),
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", moto.region),
    ];
    let output = s3_step(workspace, "from-env", &vars);
    assert_exit(&output, 0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let written: Vec<_> = runtime.block_on(moto.object_store("from-env").list(None).try_collect()).unwrap();
    assert!(!written.is_empty(), "nothing reached moto");
    assert!(!stderr(&output).contains("session-token-from-the-environment"));
}

/// A scheme-less S3 endpoint means https, as in drone-cache and the Harness fork; `disable_ssl`
/// makes it http.
#[test]
fn a_scheme_less_endpoint_means_https_unless_disable_ssl() {
    let moto = Moto::start();
    create_bucket(&moto, "plain");
    let local = Local::new(&[("deps/a.txt", "a")]);
    let workspace = &local.workspace;
    let bare = format!("127.0.0.1:{}", moto.port);
    let tls = s3_step(workspace, "plain", &[&on_moto(&moto)[..], &[("PLUGIN_ENDPOINT", &bare)]].concat());
    assert_eq!(tls.status.code(), Some(1), "https to a plain-http server must fail: {}", stderr(&tls));
    assert!(stderr(&tls).contains(&format!("using https://{bare}")), "{}", stderr(&tls));
    let plain_http = [("PLUGIN_ENDPOINT", bare.as_str()), ("PLUGIN_DISABLESSL", "true")];
    let plain = s3_step(workspace, "plain", &[&on_moto(&moto)[..], &plain_http].concat());
    assert_eq!(plain.status.code(), Some(0), "{}", stderr(&plain));
    assert!(stderr(&plain).contains(&format!("using http://{bare}")), "{}", stderr(&plain));
}

/// Settings of drone-cache or its Harness fork that chunkcache cannot honour fail the step, naming
/// the variable and what to do instead; those that change nothing here are logged as such.
#[test]
fn unsupported_fork_settings_fail_and_inert_ones_are_logged() {
    let local = Local::new(&[("deps/a.txt", "a")]);
    for (var, value) in [("PLUGIN_GCS_ENCRYPTION_KEY", "k3y"), ("GCP_API_KEY", "AIza-k3y")] {
        let output = local.step("deps", "k", &[RESTORE, (var, value)]);
        assert_exit(&output, 1);
        let message = stderr(&output);
        assert!(message.contains(&format!("{var} is set, but chunkcache does not support it")), "{message}");
        assert!(!message.contains(value), "{message}");
    }
    // GCS workload identity is honoured on the gcs backend (tests/gcs.rs), and refused on any other.
    let output = local.step("deps", "k", &[RESTORE, ("PLUGIN_POOL_ID", "p00l")]);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(
        message.contains("PLUGIN_POOL_ID is set, but it is a GCS workload identity setting, for the gcs backend only")
    );
    assert!(!message.contains("p00l"), "{message}");
    for (var, note) in [
        ("PLUGIN_STRICT_KEY_MATCHING", "strict_key_matching: false changes nothing"),
        ("PLUGIN_ENABLE_SEPARATOR", "enable_separator changes nothing"),
        ("PLUGIN_PRESERVE_METADATA", "preserve_metadata: chunkcache always restores mode and modification time"),
    ] {
        let value = if var == "PLUGIN_STRICT_KEY_MATCHING" { "false" } else { "true" };
        let output = local.step("deps", "k", &[RESTORE, (var, value)]);
        assert_exit(&output, 0);
        assert!(stderr(&output).contains(note), "{var}: {}", stderr(&output));
    }
}

/// The Harness fork's `fail_restore_if_key_not_present`: a miss fails the step even with
/// `exit_code` off; a hit does not.
#[test]
fn fail_restore_if_key_not_present_fails_a_miss() {
    let local = Local::new(&[("deps/a.txt", "a")]);
    let strict = [RESTORE, ("PLUGIN_FAIL_RESTORE_IF_KEY_NOT_PRESENT", "true")];
    let miss = local.step("deps", "k", &strict);
    assert_exit(&miss, 1);
    assert!(stderr(&miss).contains("failing the step because fail_restore_if_key_not_present is true"));
    assert_exit(&local.step("deps", "k", &[RESTORE]), 0);
    assert_exit(&local.step("deps", "k", &[REBUILD]), 0);
    assert_exit(&local.step("deps", "k", &strict), 0);
}

/// The Harness fork's `cache_intel_metrics_file`: each restore that finds a cache appends one
/// `{"cache_size_bytes", "dst_path"}` object per mount to a tab-indented JSON array; a miss
/// writes nothing; a file that is not a JSON array is left alone with a warning.
#[test]
fn restores_append_cache_metrics_as_the_harness_fork_does() {
    let local = Local::new(&[("deps/a.txt", "12345"), ("deps/sub/b.txt", "123"), ("more/c.txt", "1")]);
    let metrics = local.workspace.join("metrics/cache.json");
    let restore = [RESTORE, ("PLUGIN_CACHE_INTEL_METRICS_FILE", "metrics/cache.json")];
    assert_exit(&local.step("deps/,more", "k", &restore), 0);
    assert!(!metrics.exists(), "a miss wrote metrics");
    assert_exit(&local.step("deps/,more", "k", &[REBUILD]), 0);
    for _ in 0..2 {
        assert_exit(&local.step("deps/,more", "k", &restore), 0);
    }
    let text = fs::read_to_string(&metrics).unwrap();
    assert!(text.starts_with("[\n\t{\n\t\t\"cache_size_bytes\": 8,\n\t\t\"dst_path\": \"deps/\"\n\t},"), "{text}");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let expected = serde_json::json!({ "cache_size_bytes": 1, "dst_path": "more" });
    assert_eq!(entries.len(), 4, "{text}");
    assert_eq!(entries[1], expected);
    assert_eq!(entries[3], expected);

    fs::write(&metrics, "not json").unwrap();
    let hit = local.step("deps/,more", "k", &restore);
    assert_exit(&hit, 0);
    assert!(stderr(&hit).contains("cannot update the cache metrics file"), "{}", stderr(&hit));
    assert_eq!(fs::read_to_string(&metrics).unwrap(), "not json");
}

/// `log_format` (json, logfmt) shapes every line the step logs, and `log_level` filters them, as
/// in drone-cache; an unknown level is refused (drone-cache panics on one).
#[test]
fn log_format_and_log_level_shape_the_log() {
    let local = Local::new(&[("deps/a.txt", "a")]);
    let step = |extra: &[(&str, &str)]| local.step("deps", "k", extra);
    let saved = step(&[REBUILD, ("PLUGIN_LOG_FORMAT", "json"), ("PLUGIN_LOG_LEVEL", "debug")]);
    assert_exit(&saved, 0);
    let lines: Vec<serde_json::Value> =
        stderr(&saved).lines().map(|line| serde_json::from_str(line).expect(line)).collect();
    assert!(lines.iter().any(|l| l["level"] == "debug" && l["msg"].as_str().unwrap().contains("effective settings")));
    assert!(lines.iter().any(|l| l["level"] == "info" && l["msg"].as_str().unwrap().starts_with("saved")));

    let quiet = step(&[RESTORE, ("LOG_LEVEL", "error"), ("LOG_FORMAT", "logfmt")]);
    assert_exit(&quiet, 0);
    assert_eq!(stderr(&quiet), "", "log_level error logs no info lines");
    let broken = step(&[RESTORE, ("LOG_FORMAT", "logfmt"), ("PLUGIN_BACKEND", "dropbox")]);
    assert_exit(&broken, 1);
    assert!(stderr(&broken).starts_with("level=error msg=\"PLUGIN_BACKEND=\\\"dropbox\\\""), "{}", stderr(&broken));
    let logfmt = step(&[RESTORE, ("LOG_FORMAT", "logfmt")]);
    assert!(stderr(&logfmt).lines().all(|l| l.starts_with("level=info msg=")), "{}", stderr(&logfmt));

    let unknown = step(&[RESTORE, ("PLUGIN_LOG_LEVEL", "verbose")]);
    assert_exit(&unknown, 1);
    assert!(
        stderr(&unknown).contains("PLUGIN_LOG_LEVEL=\"verbose\" is not a log level: use error, warn, info or debug")
    );
}

/// drone-cache's `s3_bucket_public`: without keys, requests go unsigned (moto serves them), where
/// chunkcache would otherwise refuse a step without credentials.
#[test]
fn s3_bucket_public_sends_unsigned_requests() {
    let moto = Moto::start();
    create_bucket(&moto, "open");
    let local = Local::new(&[("deps/a.txt", "a")]);
    let workspace = &local.workspace;
    let vars = [("PLUGIN_ENDPOINT", moto.endpoint.as_str()), ("PLUGIN_REGION", moto.region)];
    let refused = s3_step(workspace, "open", &vars);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("has no credentials"), "{}", stderr(&refused));
    let public = s3_step(workspace, "open", &[&vars[..], &[("PLUGIN_S3_BUCKET_PUBLIC", "true")]].concat());
    assert_eq!(public.status.code(), Some(0), "{}", stderr(&public));
}

/// `mount` entries as drone-cache and the Harness fork read them: `**` globs are expanded on save
/// and match the cache's mounts on restore; `~` and `$VAR` are expanded.
#[test]
fn mount_globs_home_and_variables_are_expanded() {
    let files = ["a/node_modules/x.js", "b/c/node_modules/y.js", "other/z.js", "deps/d.txt"].map(|path| (path, path));
    let local = Local::new(&files);
    let saved = local.step("**/node_modules", "k", &[REBUILD]);
    assert_exit(&saved, 0);
    assert!(stderr(&saved).contains("mount \"**/node_modules\" matches 2 path(s)"), "{}", stderr(&saved));
    let fresh = local.fresh("fresh");
    assert_exit(&local.step_in(&fresh, "**/node_modules", "k", &[RESTORE]), 0);
    assert_eq!(fs::read_to_string(fresh.join("a/node_modules/x.js")).unwrap(), "a/node_modules/x.js");
    assert_eq!(fs::read_to_string(fresh.join("b/c/node_modules/y.js")).unwrap(), "b/c/node_modules/y.js");
    assert!(!fresh.join("other").exists());

    let home = local.workspace.to_str().unwrap();
    let saved = local.step("~/deps,${SUB}/z.js", "home", &[REBUILD, ("HOME", home), ("SUB", "other")]);
    assert_exit(&saved, 0);
    assert!(stderr(&saved).contains(&format!("saving {home}/deps, other/z.js as cache key")), "{}", stderr(&saved));
}

/// A miss falls back to the branch's newest cache by default, and says so; `restore_fallback:
/// false` turns that off.
#[test]
fn restore_fallback_can_be_turned_off() {
    let local = Local::new(&[("deps/a.txt", "a"), ("deps.lock", "v1")]);
    let key = "deps-{{ .Commit.Branch }}-{{ checksum \"deps.lock\" }}";
    let branch = ("DRONE_COMMIT_BRANCH", "main");
    assert_exit(&local.step("deps", key, &[REBUILD, branch]), 0);
    fs::write(local.workspace.join("deps.lock"), b"v2").unwrap();
    let fallback = local.step("deps", key, &[RESTORE, branch]);
    assert!(stderr(&fallback).contains("fallback hit: restored \"app/deps-main-"), "{}", stderr(&fallback));
    let miss = local.step("deps", key, &[RESTORE, branch, ("PLUGIN_RESTORE_FALLBACK", "false")]);
    assert_exit(&miss, 0);
    assert!(stderr(&miss).contains("cache miss: no cache for"), "{}", stderr(&miss));
    assert!(!stderr(&miss).contains("fallback hit"), "{}", stderr(&miss));
}

/// `cache_read_only`: restore always, save only where allowed, so pull requests and feature
/// branches stop evicting the default branch's cache.
#[test]
fn cache_read_only_saves_only_where_allowed() {
    let local = Local::new(&[("deps/a.txt", "a")]);
    let keys = || {
        let listed = crate::util::run_json(
            crate::util::chunkcache(&local.workspace).args(["list", "--store", local.root.as_str()]),
            0,
        );
        listed.as_array().map_or(0, Vec::len)
    };
    for (policy, branch, event, saves) in [
        ("true", "main", "push", false),
        ("not-default-branch", "feature", "push", false),
        ("not-default-branch", "main", "pull_request", false),
        ("not-default-branch", "main", "push", true),
        ("false", "feature", "push", true),
    ] {
        let before = keys();
        let key = format!("{policy}-{branch}-{event}");
        let vars = [
            REBUILD,
            ("PLUGIN_CACHE_READ_ONLY", policy),
            ("DRONE_REPO_BRANCH", "main"),
            ("DRONE_COMMIT_BRANCH", branch),
            ("DRONE_BUILD_EVENT", event),
        ];
        let output = local.step("deps", &key, &vars);
        assert_exit(&output, 0);
        assert_eq!(keys() > before, saves, "{key}: {}", stderr(&output));
        assert_eq!(stderr(&output).contains("not saving cache key"), !saves, "{key}: {}", stderr(&output));
    }
    let bad = local.step("deps", "k", &[REBUILD, ("PLUGIN_CACHE_READ_ONLY", "sometimes")]);
    assert_exit(&bad, 1);
    assert!(stderr(&bad).contains("use true, false or not-default-branch"), "{}", stderr(&bad));
}
