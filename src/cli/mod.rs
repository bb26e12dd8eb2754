//! Command-line interface: flag definitions, config resolution and the commands.
//!
//! Precedence, resolved once per run ([`config::Config`]): flags, then `CHUNKCACHE_*` environment
//! variables, then defaults. Data goes to stdout (`--json` for machines), messages to stderr.

mod analyze;
mod config;
mod log;
mod output;
mod plugin;
mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chunkcache::core::chunker::ChunkerParams;
use chunkcache::core::gc::RetentionOptions;
use chunkcache::core::manifest::Manifest;
use chunkcache::core::time::now_ms;
use chunkcache::core::units;
use chunkcache::fs::walk::WalkOptions;
use chunkcache::pipeline::gc::{self, GcOptions};
use chunkcache::pipeline::restore::{self, Outcome, RestoreOptions, RestoreTarget};
use chunkcache::pipeline::save::{self, SaveOptions};
use chunkcache::pipeline::verify::{self, VerifyOptions};
use chunkcache::store::backend;
use chunkcache::store::{ManifestInfo, Store};
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;

use config::{Config, FlagOptions};
use output::{
    CliProgress, DryRunReport, human_bytes, plan_details, print_json, print_plan_paths, print_warnings,
    restore_details, save_summary,
};

/// Exit code for errors.
pub const EXIT_ERROR: u8 = 1;
/// Exit code of `restore` when a fallback prefix matched instead of the exact key.
const EXIT_FALLBACK_HIT: u8 = 3;
/// Exit code of `restore` when nothing matched.
const EXIT_MISS: u8 = 4;
/// Exit code of `gc` when there was nothing to do.
const EXIT_NOTHING_TO_DO: u8 = 5;
/// Exit code of `verify` when a key would not restore.
const EXIT_DAMAGED: u8 = 6;

/// `--version`: the package version and the git commit it was built from (`unknown` when built
/// outside a git checkout; see `build.rs`).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("CHUNKCACHE_GIT_COMMIT"), ")");

/// A content-addressed, deduplicating cache for CI pipelines.
///
/// chunkcache splits directories into content-defined chunks named by their BLAKE3 hash,
/// uploads only the chunks a store lacks, and restores only the files that differ.
#[derive(Debug, Parser)]
#[command(
    version = VERSION,
    about,
    long_about,
    after_help = "Docs and examples: README.md. Store URL: --store, else CHUNKCACHE_STORE, else a folder under the user's cache directory."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Save directories under a cache key (uploads only chunks the store lacks).
    Save(SaveArgs),
    /// Restore a cache key (or the newest key matching a fallback prefix).
    ///
    /// Without DEST, every path goes back where it was saved from, absolute paths included: the
    /// cache decides where files land, so do that only with a store whose writers you trust.
    /// With DEST, nothing is written outside DEST.
    ///
    /// With --dry-run, prints what a restore would do (files to write, unchanged and to remove,
    /// chunks to fetch) and changes nothing, on disk or in the store.
    ///
    /// Exit status: 0 exact hit, 3 fallback hit, 4 miss, 1 error.
    Restore(RestoreArgs),
    /// List cache keys with their size and age.
    List(ListArgs),
    /// Show a manifest's summary.
    Show(ShowArgs),
    /// Measure what caching folders would cost, locally and without a store: per chunk size
    /// the chunks, dedup, stored bytes and packs; with --previous, what an incremental save
    /// would upload and a restore would fetch, against a tar.gz or tar.zst of the whole tree;
    /// the largest directories; requests; and a recommended chunk size.
    Analyze(analyze::AnalyzeArgs),
    /// Show what each cache key holds of a store and where the store's bytes go: per key the
    /// files, size, stored bytes, bytes no other key holds (unique) and shared, last use and
    /// age; for the store the stored and referenced bytes, the unreferenced bytes and chunks, and
    /// the objects.
    ///
    /// Reads listings, manifests and the footers of packs holding unreferenced chunks (no chunk
    /// data), and changes nothing.
    Stats(stats::StatsArgs),
    /// Expire old cache keys and delete packs no key references, safely while pipelines save
    /// and restore (the operator's cron job).
    ///
    /// A pack is deleted only when no live manifest references it and an earlier run, at least
    /// --grace ago, recorded it as unreferenced (lists under gc/ in the store). Saves longer than
    /// half the grace refuse to commit, so the grace must be more than twice the longest save.
    ///
    /// Exit status: 0 something was done, 5 nothing to do, 1 error.
    Gc(GcArgs),
    /// Check that every cache would restore: the packs each manifest names exist, and with
    /// --read-data that every chunk reads back and matches its BLAKE3.
    ///
    /// Exit status: 0 all sound, 6 damaged keys found (named on stdout), 1 error.
    Verify(VerifyArgs),
    /// Run as a Drone/Harness plugin step: settings come from PLUGIN_* variables, as for
    /// meltwater/drone-cache (restore, rebuild, mount, cache_key, backend, account_name, …).
    ///
    /// A miss or a store failure is logged and the step succeeds unless PLUGIN_EXIT_CODE is true.
    /// With DRONE_OUTPUT set, cache_hit, cache_key and restored_key are written there.
    Plugin,
    /// Prints the key that the plugin step's cache_key (PLUGIN_CACHE_KEY) renders to, as drone-cache's key
    /// generator forms it, before it is normalised and namespaced; for comparing with drone-cache (the
    /// template differential test). Hidden: not part of the interface users rely on.
    #[command(hide = true)]
    PluginKey(PluginKeyArgs),
}

#[derive(Debug, Args)]
struct PluginKeyArgs {
    /// The Unix time `epoch` renders, instead of the clock.
    #[arg(long, value_name = "SECONDS")]
    epoch: Option<u64>,
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// Store URL: file:///PATH, az://CONTAINER/PREFIX, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX [env: CHUNKCACHE_STORE]
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Endpoint of the store's service: Azure blob endpoint (Azurite:
    /// http://127.0.0.1:10000/devstoreaccount1), S3-compatible or GCS emulator URL.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// S3 region (overrides AWS_REGION).
    #[arg(long)]
    region: Option<String>,
    /// S3 path-style requests (ENDPOINT/BUCKET/KEY), as MinIO and moto need.
    #[arg(long)]
    path_style: bool,
    /// PEM file of CA certificates to trust in addition to the system's, for private endpoints and
    /// TLS-inspecting proxies [env: CHUNKCACHE_CA_BUNDLE].
    #[arg(long, value_name = "FILE")]
    ca_bundle: Option<std::path::PathBuf>,
    /// Seconds one store request may take before it is retried or fails [default: 60] [env: CHUNKCACHE_TIMEOUT].
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Print a machine-readable JSON report on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct SaveArgs {
    #[command(flatten)]
    common: StoreArgs,
    /// The cache key, e.g. `gradle/main-3f2a…`.
    #[arg(long)]
    key: String,
    /// Directories or files to save; restored at the same relative paths.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Leave out paths matching this glob (relative to each PATH; repeatable), e.g. `**/*.lock`.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Leave symlinks out instead of saving them.
    #[arg(long)]
    skip_symlinks: bool,
    /// zstd level for compressible chunks (1–19).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    level: i32,
    /// Uploads in flight at once [env: CHUNKCACHE_CONCURRENCY].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Average chunk size for a new store (e.g. 1M); an existing store must match.
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    chunk_size: Option<u64>,
    /// Do nothing if the key already exists.
    #[arg(long)]
    skip_existing: bool,
    /// Also learn what the store holds from the newest cache under this key prefix (repeatable;
    /// matched as restore's --restore-key). A save always learns from the key's previous save;
    /// without --parent, a new key learns from the newest key in its folder (the text up to its
    /// last `/`). Chunks it learns of are not uploaded again.
    #[arg(long = "parent", value_name = "PREFIX")]
    parents: Vec<String>,
    /// Report what a save would upload (new chunks, raw and stored bytes, dedup) without
    /// uploading or writing anything: the store is only read, and a missing store folder,
    /// container or config is not created.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct RestoreArgs {
    #[command(flatten)]
    common: StoreArgs,
    /// The cache key to restore.
    #[arg(long)]
    key: String,
    /// Fallback key prefix when the key is missing (repeatable, tried in order; newest wins).
    /// `main` matches `main-3f2a` or `main/x` but not `main2-…`.
    #[arg(long = "restore-key", value_name = "PREFIX")]
    restore_keys: Vec<String>,
    /// Also delete files under the restored paths that the cache does not have.
    #[arg(long)]
    mirror: bool,
    /// Downloads in flight at once [env: CHUNKCACHE_CONCURRENCY].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Print what the restore would do and change nothing: no file is written or removed, and
    /// nothing is written to the store (not even the key's last-use marker).
    #[arg(long)]
    dry_run: bool,
    /// Restore under this directory instead of the saved paths (`/a/b` lands in `DEST/a/b`);
    /// nothing is written outside it, whatever the store holds.
    #[arg(value_name = "DEST")]
    destination: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    common: StoreArgs,
    /// Only keys starting with this prefix.
    #[arg(long, default_value = "")]
    prefix: String,
}

#[derive(Debug, Args)]
struct ShowArgs {
    #[command(flatten)]
    common: StoreArgs,
    /// The cache key.
    #[arg(long)]
    key: String,
}

#[derive(Debug, Args)]
struct GcArgs {
    #[command(flatten)]
    common: StoreArgs,
    /// Expire keys neither saved nor restored for this long (e.g. 14d, 12h).
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration_ms)]
    max_unused: Option<u64>,
    /// Then expire least recently used keys until the rest fit in this size (each key counted at
    /// its own stored size), e.g. 50G.
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    max_size: Option<u64>,
    /// Never expire keys matching this glob (repeatable; `*` stops at `/`, `**` crosses it).
    #[arg(long, value_name = "GLOB")]
    keep: Vec<String>,
    /// How long a pack stays recorded as unreferenced before it is deleted; must be more than
    /// twice the longest save. Recorded in the store; a shorter grace than the recorded one
    /// takes effect from the next run.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration_ms, default_value = "24h")]
    grace: u64,
    /// Report what would be expired and deleted (naming the keys) and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    common: StoreArgs,
    /// Only keys matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    key: Vec<String>,
    /// Also read every referenced chunk and check its BLAKE3 (reads all the data).
    #[arg(long)]
    read_data: bool,
}

/// An error and its causes on one line, as `main` and the plugin print it.
pub fn describe(err: &anyhow::Error) -> String {
    chunkcache::core::error::one_line(err.as_ref())
}

/// Runs one command.
///
/// # Errors
/// Anything that stops the command; printed by `main` with its causes.
pub fn run(cli: Cli, env: &BTreeMap<String, String>) -> Result<ExitCode> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Save(args) => run_save(args, env).await,
            Command::Restore(args) => run_restore(args, env).await,
            Command::List(args) => run_list(args, env).await,
            Command::Show(args) => run_show(args, env).await,
            Command::Analyze(args) => analyze::run(args).await,
            Command::Stats(args) => stats::run(args, env).await,
            Command::Gc(args) => run_gc(args, env).await,
            Command::Verify(args) => run_verify(args, env).await,
            Command::Plugin => plugin::run(env).await,
            Command::PluginKey(args) => plugin::print_key(env, args.epoch),
        }
    })
}

/// Resolves the configuration of a command from its flags and `env` ([`Config::resolve`]).
/// Only saves create a missing Azure container or local store folder.
fn resolve_config(
    args: &StoreArgs,
    concurrency: Option<usize>,
    env: &BTreeMap<String, String>,
    for_save: bool,
) -> Result<Config> {
    let flags = FlagOptions {
        store: args.store.clone(),
        endpoint: args.endpoint.clone(),
        region: args.region.clone(),
        path_style: args.path_style,
        ca_bundle: args.ca_bundle.clone(),
        timeout: args.timeout,
        concurrency,
    };
    Ok(Config::resolve(&flags, None, env, for_save)?)
}

/// Opens the store a command's configuration names.
async fn open_store(config: &Config) -> Result<Store> {
    Ok(backend::open(&config.store_url, &config.backend).await?)
}

/// Opens the store for a save's dry run, which creates nothing: a local store folder that does
/// not exist yet is read as the empty store a real save would create, since "everything would be
/// uploaded" is the true answer for it (and the dry run keeps its one summary line).
async fn open_store_for_save_dry_run(config: &Config) -> Result<Store> {
    match backend::open(&config.store_url, &config.backend).await {
        Err(backend::BackendError::Missing { .. }) => {
            Ok(backend::open("memory://", &backend::BackendOptions::default()).await?)
        }
        opened => Ok(opened?),
    }
}

async fn run_save(args: SaveArgs, env: &BTreeMap<String, String>) -> Result<ExitCode> {
    let config = resolve_config(&args.common, args.concurrency, env, !args.dry_run)?;
    let store = if args.dry_run { open_store_for_save_dry_run(&config).await? } else { open_store(&config).await? };
    let exclude = output::glob_set(&args.exclude)?;
    let chunker = args
        .chunk_size
        .map(|avg| {
            let params = ChunkerParams::with_average(u32::try_from(avg).unwrap_or(u32::MAX) & !1);
            params.validate().map(|()| params).map_err(|e| anyhow::anyhow!("--chunk-size {avg}: {e}"))
        })
        .transpose()?;
    let options = SaveOptions {
        key: args.key,
        mounts: args.paths,
        root: PathBuf::from("."),
        walk: WalkOptions { exclude, skip_symlinks: args.skip_symlinks, ..WalkOptions::default() },
        compression_level: args.level,
        concurrency: config.concurrency,
        chunker,
        skip_if_exists: args.skip_existing,
        parent_prefixes: args.parents,
    };
    let progress = CliProgress::new(args.common.json);
    let report = if args.dry_run {
        save::save_dry_run(&store, &options, &progress)
            .await
            .with_context(|| format!("dry run of saving {:?} to {} failed", options.key, config.store_url))?
    } else {
        save::save(&store, &options, &progress).await.with_context(|| {
            format!("saving {:?} to {} failed; nothing was committed", options.key, store.description())
        })?
    };
    progress.finish();
    if args.common.json {
        print_json(&report)?;
    }
    if report.skipped_existing {
        let skip = if report.dry_run { "a save would skip it" } else { "skipped" };
        eprintln!("key {:?} already exists in {}; {skip}", report.key, store.description());
    } else {
        eprintln!("{}", save_summary(&report));
    }
    for skipped in &report.skipped_special {
        eprintln!("warning: skipped {skipped}: sockets, FIFOs and devices cannot be cached");
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_restore(args: RestoreArgs, env: &BTreeMap<String, String>) -> Result<ExitCode> {
    let config = resolve_config(&args.common, args.concurrency, env, false)?;
    let store = open_store(&config).await?;
    let options = RestoreOptions {
        key: args.key,
        fallback_prefixes: args.restore_keys,
        target: args.destination.map_or(RestoreTarget::Original(PathBuf::from(".")), RestoreTarget::Under),
        mirror: args.mirror,
        concurrency: config.concurrency,
        only_mounts: None,
    };
    let failed = || format!("restoring {:?} from {} failed", options.key, store.description());
    let (outcome, key, restored_key, warnings, details) = if args.dry_run {
        let plan = restore::prepare(&store, &options).await.with_context(failed)?;
        if args.common.json {
            print_json(&DryRunReport::new(&plan))?;
        } else {
            print_plan_paths(&plan);
        }
        (plan.outcome, plan.key.clone(), plan.restored_key.clone(), plan.warnings.clone(), plan_details(&plan))
    } else {
        let progress = CliProgress::new(args.common.json);
        let report = restore::restore(&store, &options, &progress).await.with_context(failed)?;
        progress.finish();
        if args.common.json {
            print_json(&report)?;
        }
        let details = restore_details(&report);
        (report.outcome, report.key, report.restored_key, report.warnings, details)
    };
    print_warnings(&warnings);
    let restored = restored_key.as_deref().unwrap_or_default();
    let (would, restored_word) = if args.dry_run { ("dry run, ", "would restore") } else { ("", "restored") };
    Ok(match outcome {
        Outcome::Hit => {
            eprintln!("{would}cache hit: {restored:?}: {details}");
            ExitCode::SUCCESS
        }
        Outcome::FallbackHit => {
            eprintln!("{would}fallback hit: {restored_word} {restored:?} for missing key {key:?}: {details}");
            ExitCode::from(EXIT_FALLBACK_HIT)
        }
        Outcome::Miss => {
            let tried = if options.fallback_prefixes.is_empty() {
                String::new()
            } else {
                format!(" or prefixes {:?}", options.fallback_prefixes)
            };
            eprintln!("{would}cache miss: no manifest for {key:?}{tried} in {}; nothing restored", store.description());
            ExitCode::from(EXIT_MISS)
        }
    })
}

/// Manifests `list` downloads at once: enough to hide latency, few enough to stay bounded.
const LIST_CONCURRENCY: usize = 8;

/// One row of `list`: a key, the size of its tree and of its manifest, and its age.
#[derive(serde::Serialize)]
struct ListEntry {
    key: String,
    /// Regular files in the tree (`None` when the manifest could not be read).
    files: Option<u64>,
    /// Bytes of file content in the tree.
    bytes: Option<u64>,
    /// Size of the encoded manifest.
    manifest_bytes: u64,
    modified_ms: i64,
}

/// Reads the manifest of `info` for its tree's size; a manifest that vanished since the listing
/// is left out, and one that cannot be read is a row with unknown sizes and a warning.
async fn list_entry(store: &Store, info: ManifestInfo) -> Option<ListEntry> {
    let summary = match store.get_manifest(&info.key).await {
        Ok(None) => return None,
        Ok(Some(bytes)) => Manifest::decode(&info.key, &bytes).map(|m| m.summary()).map_err(anyhow::Error::from),
        Err(err) => Err(err.into()),
    };
    let summary = summary
        .map_err(|err| eprintln!("warning: cannot read the manifest of {:?}: {}", info.key, describe(&err)))
        .ok();
    Some(ListEntry {
        files: summary.as_ref().map(|s| s.files),
        bytes: summary.as_ref().map(|s| s.bytes),
        manifest_bytes: info.size,
        modified_ms: info.modified_ms,
        key: info.key,
    })
}

async fn run_list(args: ListArgs, env: &BTreeMap<String, String>) -> Result<ExitCode> {
    let store = open_store(&resolve_config(&args.common, None, env, false)?).await?;
    let manifests = store.list_manifests(&args.prefix).await?;
    let mut rows = futures::stream::iter(manifests)
        .map(|info| list_entry(&store, info))
        .buffered(LIST_CONCURRENCY)
        .filter_map(std::future::ready);
    let (mut listed, mut json_rows) = (0u64, Vec::new());
    let now = now_ms() as i64;
    while let Some(row) = rows.next().await {
        listed += 1;
        if args.common.json {
            json_rows.push(row);
        } else {
            let unknown = || "?".to_string();
            println!(
                "{}\t{}\t{}\tmanifest {}\t{}",
                row.key,
                row.files.map_or_else(unknown, |files| output::count(files, "file")),
                row.bytes.map_or_else(unknown, human_bytes),
                human_bytes(row.manifest_bytes),
                output::human_age(now - row.modified_ms)
            );
        }
    }
    if args.common.json {
        print_json(&json_rows)?;
    }
    eprintln!("{} in {}", output::count(listed, "key"), store.description());
    Ok(ExitCode::SUCCESS)
}

async fn run_show(args: ShowArgs, env: &BTreeMap<String, String>) -> Result<ExitCode> {
    let store = open_store(&resolve_config(&args.common, None, env, false)?).await?;
    let bytes = store.get_manifest(&args.key).await?.with_context(|| {
        format!("no manifest for key {:?} in {}; `chunkcache list` shows the keys", args.key, store.description())
    })?;
    let manifest = Manifest::decode(&args.key, &bytes)?;
    let summary = manifest.summary();
    let mounts: Vec<String> = manifest.mounts.iter().map(|m| String::from_utf8_lossy(&m.path).into_owned()).collect();
    if args.common.json {
        print_json(&serde_json::json!({
            "key": manifest.key,
            "started_at_ms": manifest.started_at_ms,
            "finished_at_ms": manifest.finished_at_ms,
            "tool_version": manifest.tool_version,
            "chunker": manifest.chunker,
            "mounts": mounts,
            "manifest_bytes": bytes.len(),
            "summary": summary,
        }))?;
    } else {
        println!("key:        {}", manifest.key);
        println!("mounts:     {}", mounts.join(", "));
        println!(
            "saved:      {} ago, by chunkcache {}",
            output::human_age(now_ms() as i64 - manifest.finished_at_ms as i64),
            manifest.tool_version
        );
        println!(
            "entries:    {}, {}, {}",
            output::count(summary.files, "file"),
            output::count(summary.dirs, "dir"),
            output::count(summary.symlinks, "symlink")
        );
        println!("content:    {}", human_bytes(summary.bytes));
        println!(
            "chunks:     {} ({} distinct, {} stored)",
            summary.chunks,
            summary.unique_chunks,
            human_bytes(summary.stored_bytes)
        );
        println!("manifest:   {}", human_bytes(bytes.len() as u64));
    }
    eprintln!(
        "key {:?} in {}: {}, {}, {}",
        manifest.key,
        store.description(),
        output::count(summary.files, "file"),
        human_bytes(summary.bytes),
        output::count(summary.chunks, "chunk")
    );
    Ok(ExitCode::SUCCESS)
}

async fn run_gc(args: GcArgs, env: &BTreeMap<String, String>) -> Result<ExitCode> {
    let store = open_store(&resolve_config(&args.common, None, env, false)?).await?;
    let options = GcOptions {
        retention: RetentionOptions { max_unused_ms: args.max_unused, max_size: args.max_size },
        keep: output::flag_glob_set("--keep", &args.keep)?.unwrap_or_default(),
        grace_ms: args.grace,
        dry_run: args.dry_run,
    };
    let report = gc::gc(&store, &options).await?;
    if args.common.json {
        print_json(&report)?;
    } else {
        for key in &report.expired_keys {
            println!("would expire\t{key}");
        }
    }
    eprintln!("{}", output::gc_summary(&report, store.description()));
    Ok(if report.nothing_to_do { ExitCode::from(EXIT_NOTHING_TO_DO) } else { ExitCode::SUCCESS })
}

async fn run_verify(args: VerifyArgs, env: &BTreeMap<String, String>) -> Result<ExitCode> {
    let store = open_store(&resolve_config(&args.common, None, env, false)?).await?;
    let options = VerifyOptions { keys: output::flag_glob_set("--key", &args.key)?, read_data: args.read_data };
    let report = verify::verify(&store, &options).await?;
    if args.common.json {
        print_json(&report)?;
    } else {
        for damaged in &report.damaged {
            let mut problems: Vec<String> = damaged.manifest_error.iter().cloned().collect();
            problems.extend(damaged.missing_packs.iter().map(|pack| format!("missing pack {pack}")));
            problems
                .extend(damaged.corrupt_chunks.iter().map(|c| format!("corrupt chunk {} in pack {}", c.chunk, c.pack)));
            println!("{}\t{}", damaged.key, problems.join("; "));
        }
    }
    eprintln!(
        "verify: {} checked, {} damaged, {} in the store{}; {:.1}s",
        output::count(report.keys, "key"),
        report.damaged.len(),
        output::count(report.packs, "pack"),
        if args.read_data {
            format!(", {} read and verified", output::count(report.chunks_verified, "chunk"))
        } else {
            String::new()
        },
        report.elapsed_ms as f64 / 1000.0
    );
    if !report.damaged.is_empty() {
        eprintln!(
            "damaged keys do not restore: save them again (a save uploads what is missing) or let gc expire them"
        );
        return Ok(ExitCode::from(EXIT_DAMAGED));
    }
    Ok(ExitCode::SUCCESS)
}
