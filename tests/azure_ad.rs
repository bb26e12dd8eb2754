//! Azure AD sign-in through the binary, without any account key: a plugin save and restore per flow
//! (service principal, the Harness fork's OIDC token, a federated token file, a managed identity), and the
//! CLI with the Azure SDKs' `AZURE_*` variables, all against Azurite over HTTPS in OAuth mode and a stand-in
//! identity platform that checks every credential it is sent ([`AzureAd`]). The servers' certificate is
//! trusted through the `ca_bundle` setting.

use std::path::Path;
use std::process::Output;

use crate::support::servers::AzureAd;
use crate::util::{assert_same_tree, noise, run, scratch, snapshot, stderr};

/// One plugin step on the test account with `settings` for the sign-in, and nothing of the test's
/// environment: no account key, no SAS token.
fn step(ad: &AzureAd, workspace: &Path, mode: &str, settings: &[(&str, &str)]) -> Output {
    let mut command = crate::util::plugin(workspace);
    command
        .envs([
            (mode, "true"),
            ("PLUGIN_BACKEND", "azure"),
            ("PLUGIN_ACCOUNT_NAME", "devstoreaccount1"),
            ("PLUGIN_CONTAINER", "ci-cache"),
            ("PLUGIN_ENDPOINT", ad.endpoint.as_str()),
            ("PLUGIN_CA_BUNDLE", ad.ca_bundle.to_str().unwrap()),
        ])
        .envs(crate::util::DEPS_STEP)
        .envs(settings.iter().copied());
    command.output().expect("the binary runs")
}

fn write_deps(workspace: &Path) {
    let deps = workspace.join("deps");
    std::fs::create_dir_all(deps.join("lib")).unwrap();
    std::fs::write(deps.join("lib/a.jar"), noise(300_000, 1)).unwrap();
    std::fs::write(deps.join("b.txt"), b"dependency list\n").unwrap();
}

fn assert_no_secret(output: &Output) {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), stderr(output));
    for secret in [AzureAd::CLIENT_SECRET, AzureAd::ASSERTION] {
        assert!(!text.contains(secret), "a secret was printed: {text}");
    }
}

/// Saves `deps` (creating the missing container with the token), restores it into a clean workspace, and
/// returns the flows of the tokens the identity server issued.
fn save_and_restore(ad: &AzureAd, settings: &[(&str, &str)]) -> Vec<String> {
    let dir = scratch();
    let workspace = dir.path();
    write_deps(workspace);
    let saved = snapshot(&workspace.join("deps"));
    let save = step(ad, workspace, "PLUGIN_REBUILD", settings);
    assert_eq!(save.status.code(), Some(0), "{}", stderr(&save));
    assert!(stderr(&save).contains("saved \"app/deps-main\""), "{}", stderr(&save));
    assert_no_secret(&save);

    std::fs::remove_dir_all(workspace.join("deps")).unwrap();
    let restore = step(ad, workspace, "PLUGIN_RESTORE", settings);
    assert_eq!(restore.status.code(), Some(0), "{}", stderr(&restore));
    assert!(stderr(&restore).contains("cache hit"), "{}", stderr(&restore));
    assert_same_tree(&snapshot(&workspace.join("deps")), &saved);
    assert_no_secret(&restore);
    ad.issued()
}

#[test]
fn a_service_principal_saves_and_restores_with_its_client_secret() {
    let ad = AzureAd::start();
    let issued = save_and_restore(
        &ad,
        &[
            ("PLUGIN_AZURE_CLIENT_ID", AzureAd::CLIENT_ID),
            ("PLUGIN_AZURE_CLIENT_SECRET", AzureAd::CLIENT_SECRET),
            ("PLUGIN_AZURE_TENANT_ID", AzureAd::TENANT),
            ("PLUGIN_AZURE_AUTHORITY_HOST", &ad.authority_host),
        ],
    );
    // One token per step: the sign-in check's token serves the container creation and every request.
    assert_eq!(issued, ["client_secret", "client_secret"]);

    // `debug: true` names the flow, and no secret.
    let dir = scratch();
    let settings = [
        ("PLUGIN_AZURE_CLIENT_ID", AzureAd::CLIENT_ID),
        ("PLUGIN_AZURE_CLIENT_SECRET", AzureAd::CLIENT_SECRET),
        ("PLUGIN_AZURE_TENANT_ID", AzureAd::TENANT),
        ("PLUGIN_AZURE_AUTHORITY_HOST", &ad.authority_host),
        ("PLUGIN_DEBUG", "true"),
    ];
    let debug = step(&ad, dir.path(), "PLUGIN_RESTORE", &settings);
    assert_eq!(debug.status.code(), Some(0), "{}", stderr(&debug));
    let expected = format!("Azure AD sign-in with the client secret of service principal {}", AzureAd::CLIENT_ID);
    assert!(stderr(&debug).contains(&expected), "{}", stderr(&debug));
    assert_no_secret(&debug);
}

#[test]
fn the_harness_oidc_token_saves_and_restores() {
    let ad = AzureAd::start();
    // The fork's names: `oidc_token_id` holds the token itself; client and tenant ids by their aliases.
    let issued = save_and_restore(
        &ad,
        &[
            ("PLUGIN_OIDC_TOKEN_ID", AzureAd::ASSERTION),
            ("AZURE_CLIENT_ID", AzureAd::CLIENT_ID),
            ("TENANT_ID", AzureAd::TENANT),
            ("AZURE_AUTHORITY_HOST", &ad.authority_host),
        ],
    );
    assert_eq!(issued, ["client_assertion", "client_assertion"]);
}

#[test]
fn a_federated_token_file_saves_and_restores() {
    let ad = AzureAd::start();
    let token_file = ad.dir.path().join("azure-identity-token");
    std::fs::write(&token_file, AzureAd::ASSERTION).unwrap();
    // What AKS workload identity and CI runners set in the environment.
    let issued = save_and_restore(
        &ad,
        &[
            ("AZURE_CLIENT_ID", AzureAd::CLIENT_ID),
            ("AZURE_TENANT_ID", AzureAd::TENANT),
            ("AZURE_FEDERATED_TOKEN_FILE", token_file.to_str().unwrap()),
            ("AZURE_AUTHORITY_HOST", &ad.authority_host),
        ],
    );
    assert_eq!(issued, ["client_assertion", "client_assertion"]);
}

#[test]
fn a_managed_identity_saves_and_restores_when_asked_for() {
    let ad = AzureAd::start();
    let issued = save_and_restore(
        &ad,
        &[
            ("PLUGIN_AZURE_USE_MSI", "true"),
            ("AZURE_CLIENT_ID", AzureAd::MSI_CLIENT_ID),
            ("PLUGIN_AZURE_MSI_ENDPOINT", &ad.msi_endpoint),
        ],
    );
    assert_eq!(issued, ["managed_identity", "managed_identity"]);
}

#[test]
fn a_refused_sign_in_names_the_flow_and_what_to_check() {
    let ad = AzureAd::start();
    let dir = scratch();
    write_deps(dir.path());
    let wrong_secret = [
        ("PLUGIN_AZURE_CLIENT_ID", AzureAd::CLIENT_ID),
        ("PLUGIN_AZURE_CLIENT_SECRET", "not-the-secret"),
        ("PLUGIN_AZURE_TENANT_ID", AzureAd::TENANT),
        ("PLUGIN_AZURE_AUTHORITY_HOST", &ad.authority_host),
        ("PLUGIN_EXIT_CODE", "true"),
    ];
    let save = step(&ad, dir.path(), "PLUGIN_REBUILD", &wrong_secret);
    let message = stderr(&save);
    assert_eq!(save.status.code(), Some(1), "{message}");
    assert!(
        message.contains(&format!(
            "Azure AD sign-in with the client secret of service principal {} of tenant {} failed for Azure \
             container \"ci-cache\"",
            AzureAd::CLIENT_ID,
            AzureAd::TENANT
        )),
        "{message}"
    );
    assert!(message.contains("AADSTS7000215: Invalid client secret provided"), "{message}");
    assert!(message.contains("check AZURE_CLIENT_SECRET (plugin: azure_client_secret)"), "{message}");
    assert!(!message.contains("panicked") && !message.contains("not-the-secret"), "{message}");

    // Without exit_code, a refused sign-in is logged and the build goes on, as any store failure.
    let lenient = step(&ad, dir.path(), "PLUGIN_RESTORE", &wrong_secret[..4]);
    assert_eq!(lenient.status.code(), Some(0), "{}", stderr(&lenient));
    assert!(stderr(&lenient).contains("AADSTS7000215"), "{}", stderr(&lenient));

    let wrong_token = [
        ("PLUGIN_OIDC_TOKEN_ID", "eyJ.some-other-pipeline.token"),
        ("PLUGIN_AZURE_CLIENT_ID", AzureAd::CLIENT_ID),
        ("PLUGIN_AZURE_TENANT_ID", AzureAd::TENANT),
        ("PLUGIN_AZURE_AUTHORITY_HOST", &ad.authority_host),
        ("PLUGIN_EXIT_CODE", "true"),
    ];
    let save = step(&ad, dir.path(), "PLUGIN_REBUILD", &wrong_token);
    let message = stderr(&save);
    assert_eq!(save.status.code(), Some(1), "{message}");
    assert!(message.contains("Azure AD sign-in with the OIDC token (oidc_token_id)"), "{message}");
    assert!(message.contains("AADSTS700211") && message.contains("federated credential"), "{message}");
    assert!(!message.contains("some-other-pipeline"), "{message}");
    assert!(ad.issued().is_empty(), "no token was issued for a wrong credential: {:?}", ad.issued());
}

#[test]
fn the_cli_signs_in_with_the_azure_sdk_variables() {
    let ad = AzureAd::start();
    let dir = scratch();
    let work = dir.path().join("work");
    write_deps(&work);
    let saved = snapshot(&work.join("deps"));
    // The bundle by its variable for the save, by its flag for the restore.
    let cli = |args: &[&str], ca_bundle: &Path| {
        let mut command = crate::util::chunkcache(&work);
        command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("NO_COLOR", "1");
        command.args(args).args(["--store", "az://cli-cache/ci"]);
        command.envs([
            ("AZURE_STORAGE_ACCOUNT", "devstoreaccount1"),
            ("AZURE_STORAGE_ENDPOINT", ad.endpoint.as_str()),
            ("AZURE_CLIENT_ID", AzureAd::CLIENT_ID),
            ("AZURE_CLIENT_SECRET", AzureAd::CLIENT_SECRET),
            ("AZURE_TENANT_ID", AzureAd::TENANT),
            ("AZURE_AUTHORITY_HOST", ad.authority_host.as_str()),
        ]);
        command.env("CHUNKCACHE_CA_BUNDLE", ca_bundle);
        command
    };
    assert_no_secret(&run(&mut cli(&["save", "--key", "k", "deps"], &ad.ca_bundle), 0));
    let out = dir.path().join("out");
    let missing = ad.dir.path().join("missing.pem");
    let restore = run(cli(&["restore", "--key", "k"], &missing).arg("--ca-bundle").arg(&ad.ca_bundle).arg(&out), 0);
    assert_no_secret(&restore);
    assert_same_tree(&snapshot(&out.join("deps")), &saved);
    assert_eq!(ad.issued(), ["client_secret", "client_secret"]);

    let message = stderr(&run(cli(&["restore", "--key", "k"], &missing).arg(&out), 1));
    assert!(message.contains("cannot read the CA bundle") && message.contains("CHUNKCACHE_CA_BUNDLE"), "{message}");
}
