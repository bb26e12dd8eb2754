//! `chunkcache plugin`: the Drone/Harness plugin step (drone-cache compatible settings).
//!
//! Settings errors always fail the step: a misconfigured cache should be fixed, not ignored.
//! A miss, or a store failure at run time, is logged and the step succeeds, as with
//! drone-cache, unless `exit_code` is true. Results go to `DRONE_OUTPUT` for later steps.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chunkcache::backend;
use chunkcache::plugin::settings::{PluginSettings, StepMode};
use chunkcache::plugin::step::{self, StepPlan};
use chunkcache::restore::{self, Outcome, RestoreOptions, RestoreTarget};
use chunkcache::save::{self, SaveOptions};
use chunkcache::walk::WalkOptions;

use super::output::{CliProgress, glob_set, print_warnings, restore_details, save_summary};
use super::{EXIT_ERROR, describe};

/// Runs the step described by the `PLUGIN_*` variables in `env`.
///
/// # Errors
/// Invalid settings; run-time failures are errors only with `exit_code: true`.
pub async fn run(env: &BTreeMap<String, String>) -> Result<ExitCode> {
    let settings = PluginSettings::from_env(env)?;
    if settings.debug {
        eprintln!("debug: settings (secrets hidden): {settings:#?}");
    }
    let workdir = std::env::current_dir().context("cannot read the working directory")?;
    let plan = step::resolve(&settings, env, &workdir)?;
    if settings.debug {
        eprintln!("debug: step (secrets hidden): {plan:#?}");
    }
    let outcome = match plan.mode {
        StepMode::Restore => restore_step(&plan).await,
        StepMode::Rebuild => save_step(&plan, settings.override_existing).await,
    };
    let (mut outputs, code) = match outcome {
        Ok((outputs, Some(miss))) if settings.exit_code => {
            eprintln!("error: {miss}; failing the step because exit_code is true");
            (outputs, ExitCode::from(EXIT_ERROR))
        }
        Ok((outputs, _)) => (outputs, ExitCode::SUCCESS),
        Err(err) if settings.exit_code => return Err(err),
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            eprintln!("the cache step failed; the build goes on without it (set exit_code: true to fail instead)");
            (vec![("cache_hit", "false".to_string())], ExitCode::SUCCESS)
        }
    };
    outputs.push(("cache_key", plan.key.clone()));
    write_outputs(env, &outputs)?;
    Ok(code)
}

type Outputs = Vec<(&'static str, String)>;

/// Restores; returns the outputs, and a message when it was a miss.
async fn restore_step(plan: &StepPlan) -> Result<(Outputs, Option<String>)> {
    let store = backend::open(&plan.store_url, &plan.backend).await?;
    eprintln!("restoring cache key {:?} from {}", plan.key, store.description());
    let options = RestoreOptions {
        key: plan.key.clone(),
        fallback_prefixes: plan.fallback_prefixes.clone(),
        target: RestoreTarget::Original(plan.root.clone()),
        mirror: false,
        concurrency: 16,
        only_mounts: (!plan.mounts.is_empty()).then(|| plan.mounts.clone()),
    };
    let progress = CliProgress::new(false);
    let report = restore::restore(&store, &options, &progress).await?;
    progress.finish();
    print_warnings(&report.warnings);
    let restored = report.restored_key.clone().unwrap_or_default();
    let details = restore_details(&report);
    let mut miss = None;
    match report.outcome {
        Outcome::Hit => eprintln!("cache hit: restored {restored:?}: {details}"),
        Outcome::FallbackHit => {
            eprintln!("cache miss for {:?}, fallback hit: restored {restored:?}: {details}", plan.key)
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
            eprintln!("{message}; the build goes on without it");
            miss = Some(message);
        }
    }
    let outputs = vec![("cache_hit", (report.outcome == Outcome::Hit).to_string()), ("restored_key", restored)];
    Ok((outputs, miss))
}

async fn save_step(plan: &StepPlan, override_existing: bool) -> Result<(Outputs, Option<String>)> {
    let store = backend::open(&plan.store_url, &plan.backend).await?;
    eprintln!("saving {} as cache key {:?} to {}", mounts_text(&plan.mounts), plan.key, store.description());
    let options = SaveOptions {
        key: plan.key.clone(),
        mounts: plan.mounts.clone(),
        root: plan.root.clone(),
        walk: WalkOptions { exclude: glob_set(&plan.exclude)?, skip_symlinks: false },
        compression_level: plan.compression_level,
        concurrency: 16,
        chunker: None,
        skip_if_exists: !override_existing,
    };
    let progress = CliProgress::new(false);
    let report = save::save(&store, &options, &progress).await?;
    progress.finish();
    if report.skipped_existing {
        eprintln!("cache key {:?} already exists and override is false: nothing saved", plan.key);
    } else {
        eprintln!("{}", save_summary(&report));
    }
    Ok((Vec::new(), None))
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
