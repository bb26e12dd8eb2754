//! Endpoints and store URLs through the binary: a malformed one is a clear one-line error or, in the
//! plugin, a logged store failure that follows `exit_code`; never a panic (exit code 101).

use std::process::Output;

use crate::util::{isolated, scratch, stderr};

/// Rust's exit code for a panic.
const PANIC_EXIT: i32 = 101;

#[track_caller]
fn assert_clean_failure(what: &str, output: &Output, code: i32) {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{what}: {message}");
    assert_ne!(output.status.code(), Some(PANIC_EXIT), "{what}: {message}");
    assert!(!message.contains("panicked"), "{what}: {message}");
}

/// The plugin settings of an S3 step whose endpoint has no scheme, as drone-cache's examples write it.
/// Port 9 on loopback: nothing listens there, so the store fails fast.
fn s3_step(mode: &str, mount: &str, outputs: &str, exit_code: &str) -> Vec<(String, String)> {
    [
        (mode, "true"),
        ("PLUGIN_BACKEND", "s3"),
        ("PLUGIN_BUCKET", "cache"),
        ("PLUGIN_ENDPOINT", "127.0.0.1:9"),
        ("PLUGIN_PATH_STYLE", "true"),
        ("PLUGIN_ACCESS_KEY", "AKIAEXAMPLE"),
        ("PLUGIN_SECRET_KEY", "s3cr3t-never-printed"),
        ("PLUGIN_REGION", "us-east-1"),
        ("PLUGIN_MOUNT", mount),
        ("PLUGIN_CACHE_KEY", "deps-{{ .Commit.Branch }}"),
        ("PLUGIN_EXIT_CODE", exit_code),
        ("DRONE_REPO_NAME", "repo"),
        ("DRONE_COMMIT_BRANCH", "main"),
        ("DRONE_OUTPUT", outputs),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn plugin_with_a_scheme_less_s3_endpoint_fails_as_a_store_failure_not_a_panic() {
    let dir = scratch();
    let work = dir.path();
    std::fs::create_dir_all(work.join("deps")).unwrap();
    std::fs::write(work.join("deps/a.txt"), b"content").unwrap();
    let outputs = work.join("outputs.env");
    for mode in ["PLUGIN_RESTORE", "PLUGIN_REBUILD"] {
        for (exit_code, expected) in [("false", 0), ("true", 1)] {
            let _ = std::fs::remove_file(&outputs);
            let vars = s3_step(mode, "deps", outputs.to_str().unwrap(), exit_code);
            let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let output = isolated(work, &vars).arg("plugin").output().unwrap();
            let what = format!("{mode}, exit_code {exit_code}");
            assert_clean_failure(&what, &output, expected);
            let message = stderr(&output);
            assert!(message.contains("using https://127.0.0.1:9, as drone-cache does"), "{what}: {message}");
            assert!(message.contains("127.0.0.1:9") && message.contains("cannot be reached"), "{what}: {message}");
            assert!(!message.contains("s3cr3t-never-printed"), "{what}: {message}");
            if exit_code == "false" {
                assert!(message.contains("the build goes on without it"), "{what}: {message}");
                let written = std::fs::read_to_string(&outputs).unwrap_or_default();
                assert!(written.contains("cache_hit=false"), "{what}: outputs {written:?}");
            }
        }
    }
}

#[test]
fn plugin_with_an_unusable_endpoint_fails_as_an_invalid_setting() {
    let dir = scratch();
    let vars = [
        ("PLUGIN_RESTORE", "true"),
        ("PLUGIN_BACKEND", "gcs"),
        ("PLUGIN_BUCKET", "cache"),
        ("PLUGIN_ENDPOINT", "fake-gcs:4443"),
        ("PLUGIN_MOUNT", "deps"),
        ("PLUGIN_EXIT_CODE", "false"),
        ("DRONE_REPO_NAME", "repo"),
    ];
    let output = isolated(dir.path(), &vars).arg("plugin").output().unwrap();
    assert_clean_failure("gcs endpoint without a scheme", &output, 1);
    let message = stderr(&output);
    assert!(message.contains("invalid GCS endpoint \"fake-gcs:4443\""), "{message}");
    assert!(message.contains("plugin's endpoint setting") && message.contains("http://fake-gcs:4443"), "{message}");
}

#[test]
fn cli_endpoints_without_a_scheme_are_one_line_errors() {
    let dir = scratch();
    std::fs::create_dir_all(dir.path().join("d")).unwrap();
    struct Case {
        what: &'static str,
        vars: &'static [(&'static str, &'static str)],
        args: &'static [&'static str],
        expected: &'static str,
    }
    let cases = [
        Case {
            what: "AWS_ENDPOINT_URL",
            vars: &[("AWS_ENDPOINT_URL", "minio:9000"), ("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "y")],
            args: &["save", "--key", "k", "--store", "s3://cache/ci", "d"],
            expected: "invalid S3 endpoint \"minio:9000\" (from AWS_ENDPOINT_URL): it has no scheme: write \
                       http://minio:9000",
        },
        Case {
            what: "--endpoint",
            vars: &[("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "y")],
            args: &["list", "--store", "s3://cache", "--endpoint", "minio:9000"],
            expected: "write http://minio:9000",
        },
        Case {
            what: "AZURE_STORAGE_ENDPOINT",
            vars: &[
                ("AZURE_STORAGE_ACCOUNT", "devstoreaccount1"),
                ("AZURE_STORAGE_KEY", "c2VjcmV0"),
                ("AZURE_STORAGE_ENDPOINT", "azurite:10000"),
            ],
            args: &["restore", "--key", "k", "--store", "az://cache"],
            expected: "invalid Azure blob endpoint \"azurite:10000\"",
        },
    ];
    for Case { what, vars, args, expected } in cases {
        let output = isolated(dir.path(), vars).args(args).output().unwrap();
        assert_clean_failure(what, &output, 1);
        let message = stderr(&output);
        assert!(message.contains(expected), "{what}: {message}");
        assert_eq!(message.trim_end().lines().count(), 1, "{what}: one line: {message}");
    }
}

#[test]
fn a_mistyped_store_scheme_is_named() {
    let dir = scratch();
    let output = isolated(dir.path(), &[]).args(["list", "--store", "fiel:///tmp/x"]).output().unwrap();
    assert_clean_failure("fiel:///", &output, 1);
    let message = stderr(&output);
    assert!(message.contains("unknown scheme \"fiel\" (did you mean file://?)"), "{message}");
    assert!(message.contains("file, memory, az (or azure), s3 and gs"), "{message}");
    assert!(!message.contains("container or bucket name is missing"), "{message}");
}
