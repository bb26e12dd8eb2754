//! GCS through the binary, against fake-gcs-server behind a front that checks every request's credentials
//! ([`Gcs`]): a plugin save and restore with a service-account key (`json_key`), and with the Harness fork's
//! workload identity federation (`project_number`, `pool_id`, `provider_id`, `service_account_email`,
//! `oidc_token_id`) through stand-ins for Google STS and IAM Credentials that check every field they are sent
//! ([`GoogleIdentity`]). A refused exchange, a refused impersonation and incomplete settings fail the step
//! with a message that names the setting, and no token is ever printed, even with `debug`.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::servers::{Gcs, GoogleIdentity};
use crate::util::{assert_same_tree, noise, scratch, snapshot, stderr};

/// The bucket every test saves to.
const BUCKET: &str = "ci-cache";

/// One plugin step on `gcs`'s bucket with `settings` for the credentials (and nothing of the test's
/// environment: no Google credentials of the machine running it).
fn step(gcs: &Gcs, workspace: &Path, mode: &str, settings: &[(&str, &str)]) -> Output {
    let mut command = crate::util::plugin(workspace);
    command
        .envs([
            (mode, "true"),
            ("PLUGIN_BACKEND", "gcs"),
            ("PLUGIN_BUCKET", BUCKET),
            ("PLUGIN_ENDPOINT", gcs.endpoint.as_str()),
        ])
        .envs(crate::util::DEPS_STEP)
        .envs(settings.iter().copied());
    command.output().expect("the binary runs")
}

/// The settings of the workload identity federation the stand-ins serve, with their endpoints, and
/// `debug: true` so that a token would show if anything printed it.
fn federation(identity: &GoogleIdentity) -> Vec<(&'static str, String)> {
    vec![
        ("PLUGIN_PROJECT_NUMBER", GoogleIdentity::PROJECT_NUMBER.into()),
        ("PLUGIN_POOL_ID", GoogleIdentity::POOL.into()),
        ("PLUGIN_PROVIDER_ID", GoogleIdentity::PROVIDER.into()),
        ("PLUGIN_SERVICE_ACCOUNT_EMAIL", GoogleIdentity::SERVICE_ACCOUNT.into()),
        ("PLUGIN_OIDC_TOKEN_ID", GoogleIdentity::OIDC_TOKEN.into()),
        ("PLUGIN_GCP_STS_ENDPOINT", identity.sts_endpoint.clone()),
        ("PLUGIN_GCP_IAM_CREDENTIALS_ENDPOINT", identity.iam_endpoint.clone()),
        ("PLUGIN_DEBUG", "true".into()),
    ]
}

fn borrowed<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    settings.iter().map(|(name, value)| (*name, value.as_str())).collect()
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

/// The tokens of the federation, none of which may be printed.
const TOKENS: [&str; 3] = [GoogleIdentity::OIDC_TOKEN, GoogleIdentity::FEDERATED_TOKEN, GoogleIdentity::ACCESS_TOKEN];

/// Saves `deps`, restores it into a clean workspace and checks it came back byte for byte.
fn save_and_restore(gcs: &Gcs, settings: &[(&str, &str)], secrets: &[&str]) -> [Output; 2] {
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
    [save, restore]
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

/// The fork's flow end to end: STS exchanges the OIDC token for the pool provider's audience, IAM
/// Credentials gives the service account's token for it, and every storage request carries that token
/// (the front refuses anything else).
#[test]
fn gcs_workload_identity_saves_and_restores_as_the_service_account() {
    let identity = GoogleIdentity::start();
    let gcs = Gcs::start(Some(GoogleIdentity::ACCESS_TOKEN), None);
    gcs.create_bucket(BUCKET);
    let settings = federation(&identity);
    let [save, _] = save_and_restore(&gcs, &borrowed(&settings), &TOKENS);

    // One exchange and one impersonation per step: the token is cached for the step's requests.
    let exchange = format!(
        "audience={} scope=https://www.googleapis.com/auth/cloud-platform \
         subject_token_type=urn:ietf:params:oauth:token-type:id_token \
         requested_token_type=urn:ietf:params:oauth:token-type:access_token",
        GoogleIdentity::audience()
    );
    assert_eq!(identity.exchanged(), [exchange.clone(), exchange]);
    let issued = format!(
        "service_account={} scope=https://www.googleapis.com/auth/cloud-platform",
        GoogleIdentity::SERVICE_ACCOUNT
    );
    assert_eq!(identity.issued(), [issued.clone(), issued]);
    assert!(identity.refused().is_empty(), "{:?}", identity.refused());

    let authorized = gcs.authorized();
    for request in [format!("PUT /{BUCKET}/packs/"), format!("PUT /{BUCKET}/manifests/"), format!("GET /{BUCKET}/")] {
        assert!(authorized.iter().any(|line| line.starts_with(&request)), "no {request}: {authorized:?}");
    }
    assert!(authorized.iter().all(|line| line.ends_with(" by access_token")), "{authorized:?}");
    assert!(gcs.refused().is_empty(), "{:?}", gcs.refused());

    // `debug: true` names the flow and its endpoints, never a token.
    let log = stderr(&save);
    let flow = format!(
        "GCS workload identity federation through provider {} as service account {}, with the OIDC token (set)",
        GoogleIdentity::audience(),
        GoogleIdentity::SERVICE_ACCOUNT
    );
    assert!(log.contains(&flow), "{log}");
    assert!(log.contains(&identity.sts_endpoint) && log.contains(&identity.iam_endpoint), "{log}");
}

/// A refused exchange or impersonation fails the step (with `exit_code`), naming the call, the setting to
/// check and Google's error; without `exit_code` it is logged and the build goes on, as any store failure.
#[test]
fn a_refused_gcs_workload_identity_names_the_setting_and_googles_error() {
    let identity = GoogleIdentity::start();
    let gcs = Gcs::start(Some(GoogleIdentity::ACCESS_TOKEN), None);
    gcs.create_bucket(BUCKET);
    let dir = scratch();
    write_deps(dir.path());
    let with = |changes: &[(&'static str, &str)]| {
        let mut settings = federation(&identity);
        for (name, value) in changes {
            settings.retain(|(existing, _)| existing != name);
            settings.push((name, (*value).to_owned()));
        }
        settings
    };

    // Another pipeline's token: the provider does not accept it.
    let other_token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvdGhlciJ9.another-pipelines-token";
    let settings = with(&[("PLUGIN_OIDC_TOKEN_ID", other_token), ("PLUGIN_EXIT_CODE", "true")]);
    let save = step(&gcs, dir.path(), "PLUGIN_REBUILD", &borrowed(&settings));
    let message = stderr(&save);
    assert_eq!(save.status.code(), Some(1), "{message}");
    assert!(
        message.contains(&format!(
            "GCS workload identity federation through provider {} as service account {} failed for GCS bucket \
             \"{BUCKET}\": Google STS at {}/v1/token refused to exchange the OIDC token (oidc_token_id, \
             PLUGIN_OIDC_TOKEN_ID) for the workload identity provider {}: HTTP 400: invalid_grant: The audience in \
             ID Token [chunkcache-test] does not match the expected audience.; check project_number \
             (PLUGIN_PROJECT_NUMBER), pool_id (PLUGIN_POOL_ID) and provider_id (PLUGIN_PROVIDER_ID)",
            GoogleIdentity::audience(),
            GoogleIdentity::SERVICE_ACCOUNT,
            identity.sts_endpoint,
            GoogleIdentity::audience(),
        )),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
    assert_no_secret(&save, &[&TOKENS[..], &[other_token]].concat());

    // A pool that does not exist.
    let settings = with(&[("PLUGIN_POOL_ID", "no-such-pool"), ("PLUGIN_EXIT_CODE", "true")]);
    let save = step(&gcs, dir.path(), "PLUGIN_REBUILD", &borrowed(&settings));
    let message = stderr(&save);
    assert_eq!(save.status.code(), Some(1), "{message}");
    assert!(message.contains("workloadIdentityPools/no-such-pool/providers/harness-provider"), "{message}");
    assert!(message.contains("HTTP 400: invalid_target: The target service indicated by"), "{message}");
    assert_no_secret(&save, &TOKENS);

    // A service account the pool may not impersonate.
    let other_account = "someone-else@chunkcache-test.iam.gserviceaccount.com";
    let settings = with(&[("PLUGIN_SERVICE_ACCOUNT_EMAIL", other_account), ("PLUGIN_EXIT_CODE", "true")]);
    let save = step(&gcs, dir.path(), "PLUGIN_REBUILD", &borrowed(&settings));
    let message = stderr(&save);
    assert_eq!(save.status.code(), Some(1), "{message}");
    assert!(
        message.contains(&format!(
            "IAM Credentials at {}/v1/projects/-/serviceAccounts/{other_account}:generateAccessToken refused an \
             access token for service_account_email (PLUGIN_SERVICE_ACCOUNT_EMAIL) {other_account}: HTTP 403: \
             PERMISSION_DENIED: Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not \
             exist).; check the email, and that the pool's identities may impersonate it",
            identity.iam_endpoint
        )),
        "{message}"
    );
    assert_no_secret(&save, &TOKENS);

    // Without exit_code, a refused exchange is logged and the build goes on.
    let settings = with(&[("PLUGIN_OIDC_TOKEN_ID", other_token)]);
    let lenient = step(&gcs, dir.path(), "PLUGIN_RESTORE", &borrowed(&settings));
    assert_eq!(lenient.status.code(), Some(0), "{}", stderr(&lenient));
    assert!(stderr(&lenient).contains("invalid_grant"), "{}", stderr(&lenient));
    assert_no_secret(&lenient, &[&TOKENS[..], &[other_token]].concat());

    // Nothing reached the bucket, and only the one good token was ever issued (for the wrong account, refused).
    assert!(gcs.authorized().is_empty() && gcs.refused().is_empty(), "{:?}", gcs.authorized());
    assert!(identity.issued().is_empty(), "{:?}", identity.issued());
    assert_eq!(identity.exchanged().len(), 1, "only the wrong account's step had its token exchanged");
}

/// The fork uses the federation only when all five settings are set, and silently falls back otherwise;
/// here an incomplete set fails the step before anything is sent, naming the missing setting.
#[test]
fn incomplete_gcs_workload_identity_settings_are_refused() {
    let dir = scratch();
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[
                ("PLUGIN_PROJECT_NUMBER", GoogleIdentity::PROJECT_NUMBER),
                ("PLUGIN_POOL_ID", GoogleIdentity::POOL),
                ("PLUGIN_SERVICE_ACCOUNT_EMAIL", GoogleIdentity::SERVICE_ACCOUNT),
                ("PLUGIN_OIDC_TOKEN_ID", GoogleIdentity::OIDC_TOKEN),
            ],
            "PLUGIN_PROJECT_NUMBER is set, but GCS workload identity federation also needs provider_id \
             (PLUGIN_PROVIDER_ID): it takes project_number, pool_id, provider_id, service_account_email and \
             oidc_token_id together",
        ),
        (
            &[("PLUGIN_OIDC_TOKEN_ID", GoogleIdentity::OIDC_TOKEN)],
            "PLUGIN_OIDC_TOKEN_ID is set, but GCS workload identity federation also needs project_number \
             (PLUGIN_PROJECT_NUMBER)",
        ),
        (
            &[
                ("PLUGIN_PROJECT_NUMBER", GoogleIdentity::PROJECT_NUMBER),
                ("PLUGIN_POOL_ID", GoogleIdentity::POOL),
                ("PLUGIN_PROVIDER_ID", GoogleIdentity::PROVIDER),
                ("PLUGIN_SERVICE_ACCOUNT_EMAIL", GoogleIdentity::SERVICE_ACCOUNT),
            ],
            "PLUGIN_PROJECT_NUMBER is set, but GCS workload identity federation also needs oidc_token_id \
             (PLUGIN_OIDC_TOKEN_ID), the OIDC token",
        ),
    ];
    for (settings, expected) in cases {
        let mut command = crate::util::plugin(dir.path());
        command.envs([
            ("PLUGIN_RESTORE", "true"),
            ("PLUGIN_BACKEND", "gcs"),
            ("PLUGIN_BUCKET", BUCKET),
            ("PLUGIN_ENDPOINT", "http://127.0.0.1:9"),
            ("PLUGIN_MOUNT", "deps"),
        ]);
        command.envs(settings.iter().copied());
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{settings:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(expected), "{settings:?}: {}", stderr(&output));
        assert_no_secret(&output, &[GoogleIdentity::OIDC_TOKEN]);
    }
}
