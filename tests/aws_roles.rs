//! The Harness fork's AWS role settings through the plugin, against moto with IAM enforced (issue 12):
//! `assume_role_arn` with `external_id`, `user_role_arn` with `user_role_external_id`, `oidc_token_id`, and
//! `sts_endpoint`.
//!
//! moto checks signatures and IAM policies once its auth is switched on (`/moto-api/reset-auth`). The CI user
//! here may only call `sts:AssumeRole` on one role, whose trust policy wants an external id; only the role may
//! use S3. So a save that works proves S3 was signed with the role's credentials, not the user's keys.

use std::fs;
use std::path::Path;
use std::process::Output;

use crate::remote::create_bucket;
use crate::support::servers::Moto;
use crate::util::{scratch, stderr};

/// moto's default account.
const ROLE: &str = "arn:aws:iam::123456789012:role/cache-writer";
const EXTERNAL_ID: &str = "tenant-42";

/// A moto server with IAM enforced, a bucket `cache`, the role [`ROLE`] (which may use S3, and trusts anyone
/// who gives [`EXTERNAL_ID`]) and a user `ci` (which may only assume [`ROLE`]) with its access key.
struct Aws {
    moto: Moto,
    key_id: String,
    secret: String,
}

impl Aws {
    fn start() -> Aws {
        let moto = Moto::start();
        create_bucket(&moto, "cache");
        let role_trust = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"*"}},"Action":"sts:AssumeRole","Condition":{{"StringEquals":{{"sts:ExternalId":"{EXTERNAL_ID}"}}}}}}]}}"#
        );
        let s3_for_all = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        let assume_only = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"{ROLE}"}}]}}"#
        );
        iam(
            &moto,
            &[("Action", "CreateRole"), ("RoleName", "cache-writer"), ("AssumeRolePolicyDocument", &role_trust)],
        );
        iam(
            &moto,
            &[
                ("Action", "PutRolePolicy"),
                ("RoleName", "cache-writer"),
                ("PolicyName", "s3"),
                ("PolicyDocument", s3_for_all),
            ],
        );
        iam(&moto, &[("Action", "CreateUser"), ("UserName", "ci")]);
        iam(
            &moto,
            &[
                ("Action", "PutUserPolicy"),
                ("UserName", "ci"),
                ("PolicyName", "assume"),
                ("PolicyDocument", &assume_only),
            ],
        );
        let key = iam(&moto, &[("Action", "CreateAccessKey"), ("UserName", "ci")]);
        let element = |tag: &str| {
            let start = key.find(&format!("<{tag}>")).unwrap() + tag.len() + 2;
            key[start..start + key[start..].find('<').unwrap()].to_owned()
        };
        let aws = Aws { key_id: element("AccessKeyId"), secret: element("SecretAccessKey"), moto };
        aws.enforce_auth_after(0);
        aws
    }

    /// Lets the next `actions` requests through unchecked, then checks every one (moto's `reset-auth`).
    fn enforce_auth_after(&self, actions: u32) {
        let status = block_on(
            reqwest::Client::new()
                .post(format!("{}/moto-api/reset-auth", self.moto.endpoint))
                .body(actions.to_string())
                .send(),
        )
        .unwrap()
        .status();
        assert!(status.is_success(), "reset-auth: {status}");
    }

    /// A cache step of `deps` in `workspace` on the bucket, with the STS endpoint on moto and `extra` on top,
    /// failing on any error (`exit_code`), with the debug log on so that its secrets would show if printed.
    fn step(&self, workspace: &Path, mode: &str, extra: &[(&str, &str)]) -> Output {
        let vars = [
            (mode, "true"),
            ("PLUGIN_BACKEND", "s3"),
            ("PLUGIN_BUCKET", "cache"),
            ("PLUGIN_ENDPOINT", self.moto.endpoint.as_str()),
            ("PLUGIN_STS_ENDPOINT", self.moto.endpoint.as_str()),
            ("PLUGIN_REGION", self.moto.region),
            ("PLUGIN_PATH_STYLE", "true"),
            ("PLUGIN_MOUNT", "deps"),
            ("PLUGIN_CACHE_KEY", "k"),
            ("PLUGIN_EXIT_CODE", "true"),
            ("PLUGIN_DEBUG", "true"),
            ("DRONE_REPO_NAME", "app"),
        ];
        let mut command = crate::util::plugin(workspace);
        command.envs(vars.iter().chain(extra).copied());
        command.output().unwrap()
    }

    /// The user's keys, as plugin settings.
    fn keys(&self) -> [(&'static str, &str); 2] {
        [("PLUGIN_ACCESS_KEY", self.key_id.as_str()), ("PLUGIN_SECRET_KEY", self.secret.as_str())]
    }
}

/// An IAM query call on moto, accepted while its auth is off; the response body. The `Authorization` header
/// only tells moto which service the call is for (it routes unsigned calls to S3); nothing checks it yet.
fn iam(moto: &Moto, params: &[(&str, &str)]) -> String {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("Version", "2010-05-08")].iter().chain(params))
        .finish();
    let request = reqwest::Client::new()
        .post(&moto.endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=setup/20260101/us-east-1/iam/aws4_request, Signature=0")
        .body(form);
    // One runtime for the request and its body: the connection lives on the runtime that sent the request.
    let (status, body) = block_on(async {
        let response = request.send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    });
    assert!(status.is_success(), "IAM {params:?}: {status} {body}");
    body
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

/// A workspace with `deps/` to save, and an empty one to restore into.
fn workspaces() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = scratch();
    let (saved, restored) = (dir.path().join("saved"), dir.path().join("restored"));
    fs::create_dir_all(saved.join("deps/sub")).unwrap();
    fs::write(saved.join("deps/a.txt"), "cached by the role").unwrap();
    fs::write(saved.join("deps/sub/b.bin"), crate::util::noise(100_000, 7)).unwrap();
    fs::create_dir_all(&restored).unwrap();
    (dir, saved, restored)
}

#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", stderr(output));
}

/// Asserts none of `secrets` appears in the step's output.
#[track_caller]
fn assert_no_secret(output: &Output, secrets: &[&str]) {
    let text = format!("{}{}", stderr(output), String::from_utf8_lossy(&output.stdout));
    for secret in secrets {
        assert!(!text.contains(secret), "the output holds a secret:\n{text}");
    }
}

#[test]
fn assume_role_with_an_external_id_saves_and_restores_as_the_role() {
    let aws = Aws::start();
    let (_dir, saved, restored) = workspaces();
    let keys = aws.keys();

    // The user's own keys may not touch S3.
    let as_user = aws.step(&saved, "PLUGIN_REBUILD", &keys);
    assert_exit(&as_user, 1);
    assert!(stderr(&as_user).contains("AccessDenied"), "{}", stderr(&as_user));

    let role = [("PLUGIN_ASSUME_ROLE_ARN", ROLE), ("PLUGIN_EXTERNAL_ID", EXTERNAL_ID)];
    let save = aws.step(&saved, "PLUGIN_REBUILD", &[&keys[..], &role].concat());
    assert_exit(&save, 0);
    assert!(stderr(&save).contains(&format!("assume role: {ROLE} as session \"drone-cache\"")), "{}", stderr(&save));
    let restore = aws.step(&restored, "PLUGIN_RESTORE", &[&keys[..], &role].concat());
    assert_exit(&restore, 0);
    assert_eq!(fs::read(restored.join("deps/a.txt")).unwrap(), b"cached by the role");
    assert_eq!(fs::read(restored.join("deps/sub/b.bin")).unwrap(), crate::util::noise(100_000, 7));
    for output in [&save, &restore] {
        assert_no_secret(output, &[&aws.secret]);
    }

    // The Harness fork's usual pairing: the keys, then `user_role_arn` with its own external id.
    let chained = [("PLUGIN_USER_ROLE_ARN", ROLE), ("PLUGIN_USER_ROLE_EXTERNAL_ID", EXTERNAL_ID)];
    let fresh = restored.with_file_name("chained");
    fs::create_dir_all(&fresh).unwrap();
    assert_exit(&aws.step(&fresh, "PLUGIN_RESTORE", &[&keys[..], &chained].concat()), 0);
    assert_eq!(fs::read(fresh.join("deps/a.txt")).unwrap(), b"cached by the role");
}

#[test]
fn a_refused_assume_role_fails_naming_the_setting() {
    let aws = Aws::start();
    let (_dir, saved, _) = workspaces();
    let keys = aws.keys();
    let cases = [
        // The trust policy wants the external id.
        (
            "PLUGIN_ASSUME_ROLE_ARN",
            ROLE,
            "PLUGIN_EXTERNAL_ID",
            "someone-else",
            "assume_role_arn (PLUGIN_ASSUME_ROLE_ARN)",
        ),
        // The user may not assume any other role.
        (
            "PLUGIN_ASSUME_ROLE_ARN",
            "arn:aws:iam::123456789012:role/unknown",
            "PLUGIN_EXTERNAL_ID",
            EXTERNAL_ID,
            "assume_role_arn (PLUGIN_ASSUME_ROLE_ARN)",
        ),
        ("PLUGIN_USER_ROLE_ARN", ROLE, "PLUGIN_USER_ROLE_EXTERNAL_ID", "wrong", "user_role_arn (PLUGIN_USER_ROLE_ARN)"),
    ];
    for (role_var, role, id_var, id, setting) in cases {
        let output = aws.step(&saved, "PLUGIN_REBUILD", &[&keys[..], &[(role_var, role), (id_var, id)]].concat());
        assert_exit(&output, 1);
        let message = stderr(&output);
        assert!(message.contains(&format!("STS AssumeRole for {setting} \"{role}\"")), "{message}");
        assert!(message.contains("AccessDenied"), "{message}");
        assert!(message.contains("check the role ARN, its trust policy and external id"), "{message}");
        assert!(!message.contains("panicked"), "{message}");
        assert_no_secret(&output, &[&aws.secret]);
    }

    // Nothing answers at the STS endpoint.
    let role = [("PLUGIN_ASSUME_ROLE_ARN", ROLE), ("PLUGIN_STS_ENDPOINT", "http://127.0.0.1:1")];
    let output = aws.step(&saved, "PLUGIN_REBUILD", &[&keys[..], &role].concat());
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(
        message.contains(&format!(
            "STS AssumeRole for assume_role_arn (PLUGIN_ASSUME_ROLE_ARN) \"{ROLE}\": cannot reach http://127.0.0.1:1; \
             check sts_endpoint (PLUGIN_STS_ENDPOINT)"
        )),
        "{message}"
    );
}

/// `oidc_token_id` is the token itself, as Harness hands it to the step; it is exchanged with
/// `AssumeRoleWithWebIdentity` (unsigned: no keys at all), and S3 then takes the role's credentials.
#[test]
fn an_oidc_token_is_exchanged_for_the_role() {
    let aws = Aws::start();
    let (_dir, saved, restored) = workspaces();
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwaXBlbGluZSJ9.c2lnbmF0dXJl";
    let oidc = [
        ("PLUGIN_OIDC_TOKEN_ID", token),
        ("PLUGIN_ASSUME_ROLE_ARN", ROLE),
        ("PLUGIN_ASSUME_ROLE_SESSION_NAME", "pipeline-7"),
    ];
    // moto cannot check an unsigned call once its auth is on: let that one call through, and check every S3
    // request after it.
    aws.enforce_auth_after(1);
    let save = aws.step(&saved, "PLUGIN_REBUILD", &oidc);
    assert_exit(&save, 0);
    assert!(
        stderr(&save).contains(&format!("assume role: {ROLE} as session \"pipeline-7\", with the OIDC token (set)")),
        "{}",
        stderr(&save)
    );
    aws.enforce_auth_after(1);
    let restore = aws.step(&restored, "PLUGIN_RESTORE", &oidc);
    assert_exit(&restore, 0);
    assert_eq!(fs::read(restored.join("deps/a.txt")).unwrap(), b"cached by the role");
    for output in [&save, &restore] {
        assert_no_secret(output, &[token]);
    }

    // moto checks S3 here: keys it never issued are refused.
    aws.enforce_auth_after(0);
    let unknown_keys = [("PLUGIN_ACCESS_KEY", aws.moto.access_key), ("PLUGIN_SECRET_KEY", aws.moto.secret_key)];
    assert_exit(&aws.step(&saved, "PLUGIN_REBUILD", &unknown_keys), 1);
}

/// Role settings that cannot take effect as written fail the step, naming the variable and the fix.
#[test]
fn role_settings_that_cannot_apply_are_refused() {
    let dir = scratch();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("PLUGIN_OIDC_TOKEN_ID", "eyJ-t0ken")],
            "PLUGIN_OIDC_TOKEN_ID is set, but no role to exchange the OIDC token for",
        ),
        (&[("PLUGIN_EXTERNAL_ID", "ext-1d")], "PLUGIN_EXTERNAL_ID is set, but no role is assumed with it"),
        (
            &[
                ("PLUGIN_OIDC_TOKEN_ID", "eyJ-t0ken"),
                ("PLUGIN_ASSUME_ROLE_ARN", ROLE),
                ("PLUGIN_EXTERNAL_ID", "ext-1d"),
            ],
            "PLUGIN_EXTERNAL_ID is set, but with oidc_token_id the role is assumed with AssumeRoleWithWebIdentity",
        ),
        (&[("PLUGIN_USER_ROLE_EXTERNAL_ID", "ext-1d")], "no role is assumed with it: set user_role_arn"),
    ];
    for (extra, expected) in cases {
        let mut command = crate::util::plugin(dir.path());
        command.envs([("PLUGIN_RESTORE", "true"), ("PLUGIN_BUCKET", "b"), ("PLUGIN_MOUNT", "deps")]);
        command.envs(extra.iter().copied());
        let output = command.output().unwrap();
        assert_exit(&output, 1);
        assert!(stderr(&output).contains(expected), "{extra:?}: {}", stderr(&output));
        assert!(!stderr(&output).contains("eyJ-t0ken") && !stderr(&output).contains("ext-1d"), "{}", stderr(&output));
    }
    let mut command = crate::util::plugin(dir.path());
    let filesystem = [("PLUGIN_RESTORE", "true"), ("PLUGIN_BACKEND", "filesystem"), ("PLUGIN_MOUNT", "deps")];
    command.envs(filesystem).env("PLUGIN_ASSUME_ROLE_ARN", ROLE);
    let output = command.output().unwrap();
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(message.contains("PLUGIN_ASSUME_ROLE_ARN is set, but it is an AWS role setting, for the s3 backend only"));

    // Where no role is assumed, the role's session name and STS endpoint are inert, and the log says so.
    let mut command = crate::util::plugin(dir.path());
    command.envs(filesystem).env("PLUGIN_STS_ENDPOINT", "http://sts.local");
    let output = command.output().unwrap();
    assert_exit(&output, 0);
    assert!(stderr(&output).contains("sts_endpoint change nothing without a role to assume"), "{}", stderr(&output));
}
