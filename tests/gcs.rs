//! GCS through the binary, against fake-gcs-server behind a front that checks every request's credentials
//! ([`Gcs`]): a plugin save and restore with a service-account key (`json_key`).

use std::path::Path;
use std::process::{Command, Output};

use crate::support::servers::Gcs;
use crate::util::{assert_same_tree, noise, scratch, snapshot, stderr};

/// The bucket every test saves to.
const BUCKET: &str = "ci-cache";

/// One plugin step on `gcs`'s bucket with `settings` for the credentials, and nothing of the test's
/// environment that names Google credentials.
fn step(gcs: &Gcs, workspace: &Path, mode: &str, settings: &[(&str, &str)]) -> Output {
    let mut command = crate::util::plugin(workspace);
    isolate(&mut command);
    command
        .envs([
            (mode, "true"),
            ("PLUGIN_BACKEND", "gcs"),
            ("PLUGIN_BUCKET", BUCKET),
            ("PLUGIN_ENDPOINT", gcs.endpoint.as_str()),
            ("PLUGIN_MOUNT", "deps"),
            ("PLUGIN_CACHE_KEY", "deps-{{ .Commit.Branch }}"),
            ("DRONE_REPO_NAME", "app"),
            ("DRONE_COMMIT_BRANCH", "main"),
        ])
        .envs(settings.iter().copied());
    command.output().expect("the binary runs")
}

/// Removes inherited variables that would give the binary other Google credentials.
fn isolate(command: &mut Command) {
    for (name, _) in std::env::vars() {
        if name.starts_with("GOOGLE_") || name.starts_with("GCS_") || name.starts_with("CHUNKCACHE_") {
            command.env_remove(name);
        }
    }
}

fn write_deps(workspace: &Path) {
    let deps = workspace.join("deps");
    std::fs::create_dir_all(deps.join("lib")).unwrap();
    std::fs::write(deps.join("lib/a.jar"), noise(300_000, 3)).unwrap();
    std::fs::write(deps.join("b.txt"), b"dependency list\n").unwrap();
}

#[track_caller]
fn assert_no_secret(output: &Output, secrets: &[&str]) {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), stderr(output));
    for secret in secrets {
        assert!(!text.contains(secret), "a secret was printed: {text}");
    }
}

/// Saves `deps`, restores it into a clean workspace and checks it came back byte for byte.
fn save_and_restore(gcs: &Gcs, settings: &[(&str, &str)], secrets: &[&str]) {
    let dir = scratch();
    let workspace = dir.path();
    write_deps(workspace);
    let saved = snapshot(&workspace.join("deps"));
    let save = step(gcs, workspace, "PLUGIN_REBUILD", settings);
    assert_eq!(save.status.code(), Some(0), "{}", stderr(&save));
    assert!(stderr(&save).contains("saved \"app/deps-main\""), "{}", stderr(&save));
    assert_no_secret(&save, secrets);

    std::fs::remove_dir_all(workspace.join("deps")).unwrap();
    let restore = step(gcs, workspace, "PLUGIN_RESTORE", settings);
    assert_eq!(restore.status.code(), Some(0), "{}", stderr(&restore));
    assert!(stderr(&restore).contains("cache hit"), "{}", stderr(&restore));
    assert_same_tree(&snapshot(&workspace.join("deps")), &saved);
    assert_no_secret(&restore, secrets);
}

/// A service-account key file's JSON for `client_email`, with a fresh RSA key made by `openssl`.
fn service_account_key(dir: &Path, client_email: &str) -> String {
    let key = dir.join("key.pem");
    let output = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&key)
        .output()
        .expect("openssl runs");
    assert!(output.status.success(), "openssl failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::json!({
        "type": "service_account",
        "project_id": "chunkcache-test",
        "private_key_id": "0123456789abcdef",
        "private_key": std::fs::read_to_string(&key).unwrap(),
        "client_email": client_email,
        "client_id": "100000000000000000001",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string()
}

#[test]
fn gcs_saves_and_restores_with_a_service_account_key() {
    let email = "key-user@chunkcache-test.iam.gserviceaccount.com";
    let dir = scratch();
    let key = service_account_key(dir.path(), email);
    let gcs = Gcs::start(None, Some(email));
    gcs.create_bucket(BUCKET);
    save_and_restore(&gcs, &[("PLUGIN_JSON_KEY", &key), ("PLUGIN_DEBUG", "true")], &["PRIVATE KEY", &key[40..80]]);
    let authorized = gcs.authorized();
    assert!(authorized.iter().any(|line| line.starts_with(&format!("PUT /{BUCKET}/packs/"))), "{authorized:?}");
    assert!(authorized.iter().any(|line| line.starts_with(&format!("GET /{BUCKET}/packs/"))), "{authorized:?}");
    assert!(authorized.iter().all(|line| line.ends_with(" by self_signed_jwt")), "{authorized:?}");
    assert!(gcs.refused().is_empty(), "{:?}", gcs.refused());
}
