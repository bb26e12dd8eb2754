//! `chunkcache plugin`: the Drone/Harness plugin step (drone-cache compatible settings).
//!
//! Settings errors always fail the step: a misconfigured cache should be fixed, not ignored.
//! A miss, or a store failure at run time, is logged and the step succeeds, as with
//! drone-cache, unless `exit_code` is true. Results go to `DRONE_OUTPUT` for later steps.
//! A `gc: true` step runs `chunkcache gc` on the store (chunkcache's extension, for a scheduled
//! pipeline): its failures follow `exit_code` the same way, and nothing to do is a success.
//! A store that does not exist (a `filesystem_cache_root` with no folder) is such a store failure,
//! never a miss, since it is usually a typo; only a rebuild creates the folder. (drone-cache's
//! filesystem backend refuses a missing root for both modes: "make sure volume is mounted".)
//!
//! No panic ends the step with Rust's exit code 101: the step runs as its own task, and a panic
//! in it is reported as an internal error that follows `exit_code` like any store failure (a
//! panic while reading the settings fails the step, as an invalid setting does). The panic hook
//! prints one line with the code location only: a panic message could quote a setting.
//!
//! Requests in flight and the request timeout follow [`Config`]: `CHUNKCACHE_CONCURRENCY` and
//! `CHUNKCACHE_TIMEOUT` win over the step's settings (`backend_operation_timeout`).
//!
//! An S3 `endpoint` without a scheme means `http://`, as in drone-cache
//! ([`backend::drone_cache_endpoint`]).
//!
//! `auto_cache: true` in a workspace where no build tool is detected (and no `mount` is set) is
//! logged as an error and, like a miss, fails the step only with `exit_code: true`: the Harness fork
//! lets such a step pass, and the workspace, not a setting, is what lacks something. A save leaves
//! out detected folders that do not exist (logged), since a tool keeps only some of them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use chunkcache::core::gc::RetentionOptions;
use chunkcache::core::manifest::Mount;
use chunkcache::fs::walk::WalkOptions;
use chunkcache::fs::workspace::WorkspaceFiles;
use chunkcache::pipeline::gc::{self, GcOptions};
use chunkcache::pipeline::restore::{self, MOUNT_GLOB_OPTIONS, MountBytes, Outcome, RestoreOptions, RestoreTarget};
use chunkcache::pipeline::save::{self, SaveOptions};
use chunkcache::plugin::auto::AutoCacheError;
use chunkcache::plugin::settings::{
    GRADLE_DEFAULT_EXCLUDES, LogFormat, LogLevel, PluginSettings, StepMode, gradle_layout,
};
use chunkcache::plugin::step::{self, StepError, StepPlan};
use chunkcache::plugin::template::{Metadata, RenderContext, RenderedKey};
use chunkcache::store::backend::{self, BackendError};
use chunkcache::store::sts::RoleIdentity;

use super::config::{Config, FlagOptions};
use super::log;
use super::output::{CliProgress, flag_glob_set, gc_summary, glob_set, restore_details, save_summary};
use super::{EXIT_ERROR, describe};

/// Runs the step described by the `PLUGIN_*` variables in `env`. Invalid settings, and run-time
/// failures with `exit_code: true`, are logged (in `log_format`) and exit with status 1.
///
/// # Errors
/// None today: every failure is logged here.
pub async fn run(env: &BTreeMap<String, String>) -> Result<ExitCode> {
    std::panic::set_hook(Box::new(report_panic));
    let env = env.clone();
    match isolated(async move { run_step(&env).await }).await {
        Ok(code) => Ok(code),
        // Logged here, so that it follows log_format like every other line.
        Err(err) => {
            log::error(describe(&err));
            Ok(ExitCode::from(EXIT_ERROR))
        }
    }
}

/// Reports a panic on one line, with where it happened but without its message.
fn report_panic(info: &std::panic::PanicHookInfo<'_>) {
    let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
    log::error(format!(
        "internal error{location}: a bug in chunkcache, please report it (its message is not shown, \
         since it could quote a setting)"
    ));
}

/// Runs `work` as a task of its own, so that a panic in it becomes an error instead of ending
/// the process.
async fn isolated<T: Send + 'static>(work: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
    match tokio::spawn(work).await {
        Ok(result) => result,
        Err(join) if join.is_panic() => Err(anyhow!("internal error: the cache step crashed (a bug in chunkcache)")),
        Err(_) => Err(anyhow!("the cache step was cancelled")),
    }
}

/// `chunkcache plugin-key` (hidden): prints the key `cache_key` renders to, with `epoch` rendering
/// `epoch_seconds` when given; a template that fails to execute prints drone-cache's default key and
/// logs why.
///
/// # Errors
/// Invalid settings, or a template that does not parse.
pub fn print_key(env: &BTreeMap<String, String>, epoch_seconds: Option<u64>) -> Result<ExitCode> {
    let settings = PluginSettings::from_env(env)?;
    let workdir = std::env::current_dir().context("cannot read the working directory")?;
    let metadata = Metadata::from_env(env);
    let mut context = RenderContext::new(&metadata, Arc::new(WorkspaceFiles::new(&workdir)));
    if let Some(seconds) = epoch_seconds {
        context.now = UNIX_EPOCH + Duration::from_secs(seconds);
    }
    let rendered = step::cache_key(settings.cache_key.as_deref(), &context).map_err(StepError::from)?;
    if let RenderedKey::Fallback { error, .. } = &rendered {
        log::warn(format!("cache_key failed to render: {error}; drone-cache's default key follows"));
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(rendered.key().as_bytes()).context("cannot write the key to stdout")?;
    stdout.flush().context("cannot write the key to stdout")?;
    Ok(ExitCode::SUCCESS)
}

async fn run_step(env: &BTreeMap<String, String>) -> Result<ExitCode> {
    log::init(LogLevel::Info, LogFormat::from_env(env));
    let settings = PluginSettings::from_env(env)?;
    log::init(settings.log_level, settings.log_format);
    let workdir = std::env::current_dir().context("cannot read the working directory")?;
    let mut plan = match step::resolve(&settings, env, &workdir) {
        Err(StepError::AutoCache(nothing @ AutoCacheError::NothingDetected { .. })) if !settings.exit_code => {
            log::error(nothing);
            log::info("the cache step did nothing; the build goes on without it (set exit_code: true to fail instead)");
            write_outputs(env, &[("cache_hit", "false".to_string())])?;
            return Ok(ExitCode::SUCCESS);
        }
        plan => plan?,
    };
    for note in plan.key_notes.iter().map(String::as_str).chain(settings.notes.iter().copied()) {
        log::info(note);
    }
    if let Some(endpoint) = &plan.backend.s3.endpoint {
        let meant = backend::drone_cache_endpoint(endpoint, settings.disable_ssl);
        if meant != *endpoint {
            log::info(format!(
                "note: endpoint {endpoint:?} has no scheme: using {meant}, as drone-cache does (disable_ssl: true \
                 means http://; or write the scheme)"
            ));
            plan.backend.s3.endpoint = Some(meant);
        }
    }
    let config = Config::resolve(&FlagOptions::default(), Some(&plan), env, plan.mode == StepMode::Rebuild)?;
    if settings.debug {
        log::debug("effective settings (secrets masked):");
        for (name, value) in debug_settings(&plan, &config) {
            log::debug(format!("  {name}: {value}"));
        }
    }
    let step_plan = plan.clone();
    let override_existing = settings.override_existing;
    let outcome = isolated(async move {
        match step_plan.mode {
            StepMode::Restore => restore_step(&step_plan, &config).await,
            StepMode::Rebuild => save_step(&step_plan, &config, override_existing).await,
            StepMode::Gc => gc_step(&step_plan, &config).await,
        }
    })
    .await;
    let (mut outputs, code) = match outcome {
        Ok((outputs, Some(miss))) if settings.exit_code || settings.fail_if_key_not_present => {
            let why = if settings.exit_code { "exit_code" } else { "fail_restore_if_key_not_present" };
            log::error(format!("{miss}; failing the step because {why} is true"));
            (outputs, ExitCode::from(EXIT_ERROR))
        }
        Ok((outputs, _)) => (outputs, ExitCode::SUCCESS),
        Err(err) if settings.exit_code || is_invalid_setting(&err) => return Err(err),
        Err(err) => {
            log::error(describe(&err));
            log::info("the cache step failed; the build goes on without it (set exit_code: true to fail instead)");
            (vec![("cache_hit", "false".to_string())], ExitCode::SUCCESS)
        }
    };
    if plan.mode != StepMode::Gc {
        outputs.push(("cache_key", plan.key.clone()));
    }
    write_outputs(env, &outputs)?;
    Ok(code)
}

/// Whether `err` is a setting the store cannot be opened with (a malformed URL or endpoint, missing
/// credentials): those fail the step whatever `exit_code` says, as every invalid setting does.
fn is_invalid_setting(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<BackendError>(),
        Some(BackendError::InvalidUrl { .. } | BackendError::InvalidEndpoint { .. } | BackendError::Config(_))
    )
}

/// What `debug: true` prints: the step and the settings of the backend in use, after every
/// default and variable is applied, one per line, secrets shown only as set or not (issue 13).
fn debug_settings(plan: &StepPlan, config: &Config) -> Vec<(&'static str, String)> {
    let masked = |set: bool| if set { "*** (set)" } else { "not set" }.to_string();
    let or_unset = |value: Option<&str>| value.map_or_else(|| "not set".to_string(), str::to_string);
    let mode = match plan.mode {
        StepMode::Restore => "restore",
        StepMode::Rebuild => "rebuild",
        StepMode::Gc => "gc",
    };
    let mut lines = vec![("mode", mode.to_string()), ("store", config.store_url.clone())];
    if plan.mode == StepMode::Gc {
        let gc = &plan.gc;
        let duration = |ms: Option<u64>| ms.map_or_else(|| "not set".to_string(), |ms| format!("{}s", ms / 1000));
        lines.extend([
            ("max unused", duration(gc.max_unused_ms)),
            ("max size", gc.max_size.map_or_else(|| "not set".to_string(), |bytes| format!("{bytes} bytes"))),
            ("keep", if gc.keep.is_empty() { "none".into() } else { gc.keep.join(", ") }),
            ("grace", duration(Some(gc.grace_ms))),
            ("dry run", gc.dry_run.to_string()),
        ]);
    } else {
        let mounts: Vec<String> = plan.mounts.iter().map(|mount| mount.display().to_string()).collect();
        lines.extend([
            ("cache key", plan.key.clone()),
            (
                "restore keys",
                if plan.fallback_prefixes.is_empty() { "none".into() } else { plan.fallback_prefixes.join(", ") },
            ),
            ("mounts", mounts.join(", ")),
            ("local root", plan.root.display().to_string()),
        ]);
    }
    lines.extend([
        ("request timeout", format!("{}s", config.backend.request_timeout.as_secs())),
        ("concurrency", config.concurrency.to_string()),
    ]);
    let (scheme, rest) = config.store_url.split_once("://").unwrap_or(("file", &config.store_url));
    let bucket = rest.split('/').next().unwrap_or_default().to_string();
    let backend = &config.backend;
    match scheme {
        "az" | "azure" => {
            let azure = &backend.azure;
            let account = azure.account.as_deref();
            let endpoint = account.map(|account| azure.endpoint.clone().unwrap_or_default().account_url(account));
            lines.extend([
                ("backend", "azure".to_string()),
                ("account name", or_unset(account)),
                ("container", bucket),
                ("endpoint", or_unset(endpoint.as_deref())),
                ("account key", masked(azure.key.is_some())),
                ("SAS token", masked(azure.sas.is_some())),
                (
                    "sign-in",
                    chunkcache::store::azure_ad::AzureSignIn::choose(azure)
                        .map_or_else(|problem| problem, |sign_in| sign_in.describe()),
                ),
            ]);
        }
        "s3" => {
            let s3 = &backend.s3;
            let variable = |name: &str| s3.aws_env.get(name).map(|value| value.expose().to_string());
            let region =
                s3.region.clone().or_else(|| variable("AWS_REGION")).or_else(|| variable("AWS_DEFAULT_REGION"));
            let endpoint =
                s3.endpoint.clone().or_else(|| variable("AWS_ENDPOINT_URL")).or_else(|| variable("AWS_ENDPOINT"));
            lines.extend([
                ("backend", "s3".to_string()),
                ("bucket", bucket),
                ("region", or_unset(region.as_deref())),
                ("endpoint", or_unset(endpoint.as_deref())),
                ("path style", s3.path_style.unwrap_or(false).to_string()),
                ("access key", masked(s3.access_key.is_some() || variable("AWS_ACCESS_KEY_ID").is_some())),
                ("secret key", masked(s3.secret_key.is_some() || variable("AWS_SECRET_ACCESS_KEY").is_some())),
            ]);
            // Role ARNs and session names are not secret (they show in CloudTrail); the OIDC token is.
            for role in &s3.roles {
                let how = match &role.identity {
                    RoleIdentity::WebIdentity(_) => "with the OIDC token (set)".to_owned(),
                    RoleIdentity::Signed { external_id: Some(_) } => "with an external id".to_owned(),
                    RoleIdentity::Signed { external_id: None } => "signed with the credentials before it".to_owned(),
                };
                lines.push(("assume role", format!("{} as session {:?}, {how}", role.role_arn, role.session_name)));
            }
            if !s3.roles.is_empty() {
                lines.push(("STS endpoint", s3.sts_endpoint.clone().unwrap_or_else(|| "AWS's, in the region".into())));
            }
        }
        "gs" => {
            let gcs = &backend.gcs;
            lines.extend([
                ("backend", "gcs".to_string()),
                ("bucket", bucket),
                ("endpoint", or_unset(gcs.endpoint.as_deref())),
                ("service account key", masked(gcs.service_account_json.is_some())),
                (
                    "service account file",
                    or_unset(gcs.service_account_path.as_ref().map(|path| path.display().to_string()).as_deref()),
                ),
            ]);
            // The provider, pool, project number and service account are not secret (they show in Google's
            // audit logs); the OIDC token is.
            if let Some(federation) = &gcs.workload_identity {
                use chunkcache::store::gcp_workload_identity as wif;
                lines.extend([
                    ("credentials", format!("{}, with the OIDC token (set)", federation.describe())),
                    (
                        "Google STS endpoint",
                        federation.sts_endpoint.clone().unwrap_or_else(|| wif::DEFAULT_STS_ENDPOINT.into()),
                    ),
                    (
                        "IAM Credentials endpoint",
                        federation
                            .iam_credentials_endpoint
                            .clone()
                            .unwrap_or_else(|| wif::DEFAULT_IAM_CREDENTIALS_ENDPOINT.into()),
                    ),
                ]);
            }
        }
        _ => lines.push(("backend", "filesystem".to_string())),
    }
    lines
}

type Outputs = Vec<(&'static str, String)>;

/// Restores; returns the outputs, and a message when it was a miss.
async fn restore_step(plan: &StepPlan, config: &Config) -> Result<(Outputs, Option<String>)> {
    let store = backend::open(&config.store_url, &config.backend).await?;
    log::info(format!("restoring cache key {:?} from {}", plan.key, store.description()));
    if plan.mounts.is_empty() {
        log::info(
            "no mount set (PLUGIN_MOUNT): restoring every path the cache saved, as the Harness fork (plugins/cache) does",
        );
    }
    let options = RestoreOptions {
        key: plan.key.clone(),
        fallback_prefixes: plan.fallback_prefixes.clone(),
        target: RestoreTarget::Original(plan.root.clone()),
        mirror: false,
        concurrency: config.concurrency,
        only_mounts: (!plan.mounts.is_empty()).then(|| plan.mounts.clone()),
    };
    let progress = CliProgress::new(false);
    let report = restore::restore(&store, &options, &progress).await?;
    progress.finish();
    for warning in &report.warnings {
        log::warn(warning);
    }
    let restored = report.restored_key.clone().unwrap_or_default();
    let details = restore_details(&report);
    let mut miss = None;
    match report.outcome {
        Outcome::Hit => log::info(format!("cache hit: restored {restored:?}: {details}")),
        Outcome::FallbackHit => {
            log::info(format!("cache miss for {:?}, fallback hit: restored {restored:?}: {details}", plan.key))
        }
        Outcome::Miss => {
            let message = format!(
                "cache miss: no cache for {:?}{} in {}",
                plan.key,
                if plan.fallback_prefixes.is_empty() {
                    String::new()
                } else {
                    format!(" or prefixes {:?}", plan.fallback_prefixes)
                },
                store.description()
            );
            log::info(format!("{message}; the build goes on without it"));
            miss = Some(message);
        }
    }
    if let (Some(file), None) = (&plan.metrics_file, &miss) {
        match append_metrics(file, plan, &report.mounts) {
            Ok(()) => log::info(format!("cache metrics appended to {}", file.display())),
            Err(err) => log::warn(format!("cannot update the cache metrics file {}: {err:#}", file.display())),
        }
    }
    let outputs = vec![("cache_hit", (report.outcome == Outcome::Hit).to_string()), ("restored_key", restored)];
    Ok((outputs, miss))
}

/// Appends one `{"cache_size_bytes", "dst_path"}` object per restored mount to the JSON array in
/// `file`, as the Harness fork's `cache_intel_metrics_file` does (tab-indented; the folder is
/// created; a missing file is an empty array). `dst_path` is the mount as the step names it, or as
/// the cache recorded it when the step names none.
fn append_metrics(file: &std::path::Path, plan: &StepPlan, mounts: &[MountBytes]) -> Result<()> {
    use serde::Serialize as _;
    let mut entries: Vec<serde_json::Value> = match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).context("it is not a JSON array; fix or delete it")?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    for mount in mounts {
        let named = plan.mounts.iter().find(|given| Mount::from_path(given).path == mount.path.as_bytes());
        let dst_path = named.map_or_else(|| mount.path.clone(), |given| given.display().to_string());
        entries.push(serde_json::json!({ "cache_size_bytes": mount.bytes, "dst_path": dst_path }));
    }
    if let Some(folder) = file.parent() {
        std::fs::create_dir_all(folder)?;
    }
    let mut text = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    entries.serialize(&mut serde_json::Serializer::with_formatter(&mut text, formatter))?;
    std::fs::write(file, text)?;
    Ok(())
}

/// The Gradle default excludes for each mount laid out as a Gradle user home or its `caches/`, each
/// logged with the folder that gave it away; other mounts keep every file (a `vendor` mount keeps its
/// `yarn.lock`).
fn gradle_excludes(plan: &StepPlan, mounts: &[PathBuf]) -> Result<Vec<Option<globset::GlobSet>>> {
    if !plan.gradle_default_excludes {
        return Ok(Vec::new());
    }
    let defaults: Vec<String> = GRADLE_DEFAULT_EXCLUDES.iter().map(|pattern| (*pattern).to_owned()).collect();
    mounts
        .iter()
        .map(|mount| match gradle_layout(&plan.root.join(mount)) {
            Some(marker) => {
                log::info(format!(
                    "{} is a Gradle user home or its caches/ ({marker} inside): leaving out Gradle's per-process \
                     files (lock files, gc.properties, journal-1, cc-keystore, daemon logs; \
                     gradle_default_excludes: false keeps them)",
                    mount.display()
                ));
                glob_set(&defaults)
            }
            None => Ok(None),
        })
        .collect()
}

/// The mounts to save: entries with `**` are expanded, as drone-cache expands them (doublestar,
/// against `root`), into the folders and files they match, in order; the rest are kept as given.
fn expand_mount_globs(plan: &StepPlan) -> Result<Vec<PathBuf>> {
    let mut mounts = Vec::with_capacity(plan.mounts.len());
    for mount in &plan.mounts {
        let Some(pattern) = mount.to_str().filter(|text| text.contains("**")) else {
            mounts.push(mount.clone());
            continue;
        };
        let absolute = plan.root.join(pattern.trim_end_matches('/'));
        let absolute = absolute.to_str().context("the mount root is not UTF-8")?;
        let matched = glob::glob_with(absolute, MOUNT_GLOB_OPTIONS)
            .with_context(|| format!("mount {pattern:?} is not a valid glob"))?
            .filter_map(Result::ok)
            .filter_map(|path| path.strip_prefix(&plan.root).map(std::path::Path::to_path_buf).ok())
            .collect::<Vec<_>>();
        log::info(format!("mount {pattern:?} matches {} path(s)", matched.len()));
        mounts.extend(matched);
    }
    Ok(mounts)
}

async fn save_step(plan: &StepPlan, config: &Config, override_existing: bool) -> Result<(Outputs, Option<String>)> {
    if let Some(reason) = &plan.read_only {
        log::info(format!("not saving cache key {:?}: {reason}", plan.key));
        return Ok((Vec::new(), None));
    }
    let store = backend::open(&config.store_url, &config.backend).await?;
    let mut mounts = expand_mount_globs(plan)?;
    mounts.retain(|mount| {
        let missing = plan.detected_mounts.contains(mount) && plan.root.join(mount).symlink_metadata().is_err();
        if missing {
            log::info(format!("auto_cache: {} does not exist: nothing to save from it", mount.display()));
        }
        !missing
    });
    if mounts.is_empty() {
        log::warn("the mounts match nothing: nothing saved");
        return Ok((Vec::new(), None));
    }
    log::info(format!("saving {} as cache key {:?} to {}", mounts_text(&mounts), plan.key, store.description()));
    let options = SaveOptions {
        key: plan.key.clone(),
        mounts: mounts.clone(),
        root: plan.root.clone(),
        walk: WalkOptions {
            exclude: glob_set(&plan.exclude)?,
            skip_symlinks: plan.skip_symlinks,
            mount_exclude: gradle_excludes(plan, &mounts)?,
        },
        compression_level: plan.compression_level,
        concurrency: config.concurrency,
        chunker: None,
        skip_if_exists: !override_existing,
        parent_prefixes: plan.fallback_prefixes.clone(),
    };
    let progress = CliProgress::new(false);
    let report = save::save(&store, &options, &progress).await?;
    progress.finish();
    if report.skipped_existing {
        log::info(format!("cache key {:?} already exists and override is false: nothing saved", plan.key));
    } else {
        log::info(save_summary(&report));
    }
    Ok((Vec::new(), None))
}

/// Runs `chunkcache gc` on the step's store; its outputs are the keys expired, packs deleted and bytes
/// reclaimed. Nothing to do is no failure.
async fn gc_step(plan: &StepPlan, config: &Config) -> Result<(Outputs, Option<String>)> {
    let store = backend::open(&config.store_url, &config.backend).await?;
    let settings = &plan.gc;
    let dry_run = if settings.dry_run { " (dry run: nothing is changed)" } else { "" };
    log::info(format!("collecting garbage in {}{dry_run}", store.description()));
    let options = GcOptions {
        retention: RetentionOptions { max_unused_ms: settings.max_unused_ms, max_size: settings.max_size },
        keep: flag_glob_set("PLUGIN_KEEP (setting keep)", &settings.keep)?.unwrap_or_default(),
        grace_ms: settings.grace_ms,
        dry_run: settings.dry_run,
    };
    let report = gc::gc(&store, &options).await?;
    for key in &report.expired_keys {
        log::info(format!("would expire {key}"));
    }
    log::info(gc_summary(&report, store.description()));
    let outputs = vec![
        ("gc_keys_expired", report.expired.to_string()),
        ("gc_packs_deleted", report.sweep.deleted.to_string()),
        ("gc_bytes_reclaimed", report.bytes_reclaimed.to_string()),
    ];
    Ok((outputs, None))
}

fn mounts_text(mounts: &[PathBuf]) -> String {
    mounts.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Appends `KEY=value` lines to the file `DRONE_OUTPUT` names, if any.
fn write_outputs(env: &BTreeMap<String, String>, outputs: &[(&'static str, String)]) -> Result<()> {
    let Some(path) = env.get("DRONE_OUTPUT").filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write the step outputs to DRONE_OUTPUT={path}"))?;
    for (name, value) in outputs {
        writeln!(file, "{name}={value}").with_context(|| format!("cannot write the step outputs to {path}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_panic_in_the_step_becomes_an_error_without_its_message() {
        let err = isolated(async {
            if std::hint::black_box(true) {
                panic!("token=hunter2");
            }
            Ok(())
        })
        .await
        .unwrap_err();
        let message = super::super::describe(&err);
        assert!(message.contains("internal error"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert_eq!(isolated(async { Ok(7) }).await.unwrap(), 7);
    }

    #[test]
    fn endpoint_and_url_errors_are_invalid_settings() {
        let invalid = backend::endpoint_url("minio:9000", "S3 endpoint", "test").unwrap_err();
        assert!(is_invalid_setting(&anyhow::Error::new(invalid)));
        assert!(!is_invalid_setting(&anyhow!("a store failure")));
    }
}
