//! `chunkcache stats`: the flags, the per-key table and the store totals.
//!
//! The figures come from [`chunkcache::pipeline::stats`] (what each means is in
//! [`chunkcache::core::stats`]); this file only presents them. Like `list` and `verify`, it
//! opens the store read-only: a store that does not exist is refused, never created.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chunkcache::pipeline::stats::{self, StatsOptions, StatsReport};
use clap::Args;

use super::output::{self, CliProgress, count, human_age, human_bytes, print_json};
use super::{StoreArgs, open_store, resolve_config};

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    common: StoreArgs,
    /// Rows only for keys matching this glob (repeatable; `*` stops at `/`, `**` crosses it).
    /// Unique bytes and the totals still count every key of the store.
    #[arg(long, value_name = "GLOB")]
    key: Vec<String>,
}

/// Runs `stats`: reads the store, prints a row per key and the totals.
pub async fn run(args: StatsArgs, env: &BTreeMap<String, String>) -> Result<ExitCode> {
    let store = open_store(&resolve_config(&args.common, None, env, false)?).await?;
    let options = StatsOptions { keys: output::flag_glob_set("--key", &args.key)? };
    let progress = CliProgress::new(args.common.json);
    let report = stats::stats(&store, &options, &progress)
        .await
        .with_context(|| format!("stats of {} failed", store.description()))?;
    progress.finish();
    if args.common.json {
        print_json(&report)?;
    } else {
        print!("{}", table(&report));
    }
    for row in report.keys.iter().filter(|row| row.error.is_some()) {
        eprintln!(
            "warning: cannot read the manifest of {:?}: {}; its chunks count as unreferenced (save the key again, \
             or let gc expire it)",
            row.key,
            row.error.as_deref().unwrap_or_default()
        );
    }
    let totals = &report.store;
    let shown = match report.keys.len() as u64 {
        all if all == report.keys_total => String::new(),
        some => format!(" ({some} shown)"),
    };
    eprintln!(
        "stats: {}{shown}, {} referenced ({} unique, {} shared) of {} stored in {}, {} unreferenced; {} objects; \
         {:.1}s, {}",
        count(report.keys_total, "key"),
        human_bytes(totals.referenced_bytes),
        human_bytes(totals.unique_bytes),
        human_bytes(totals.shared_bytes),
        human_bytes(totals.stored_bytes),
        count(totals.packs, "pack"),
        human_bytes(totals.unreferenced_bytes),
        totals.packs + totals.manifests + totals.other_objects,
        report.elapsed_ms as f64 / 1000.0,
        store.description()
    );
    Ok(ExitCode::SUCCESS)
}

/// The rows, one per key, then the store's totals.
fn table(report: &StatsReport) -> String {
    let mut out = String::new();
    let size = |bytes: Option<u64>| bytes.map_or_else(|| "?".to_string(), human_bytes);
    let _ = writeln!(
        out,
        "{:<40} {:>7} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "key", "files", "size", "stored", "unique", "shared", "last used", "age"
    );
    for row in &report.keys {
        let _ = writeln!(
            out,
            "{:<40} {:>7} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}",
            row.key,
            row.files.map_or_else(|| "?".to_string(), |files| files.to_string()),
            size(row.bytes),
            size(row.stored_bytes),
            size(row.unique_bytes),
            size(row.shared_bytes),
            human_age(row.age_ms - (row.last_used_ms - row.saved_at_ms)),
            human_age(row.age_ms)
        );
    }
    let totals = &report.store;
    let _ = writeln!(out, "\nstored:       {} in {}", human_bytes(totals.stored_bytes), count(totals.packs, "pack"));
    let _ = writeln!(
        out,
        "referenced:   {} in {} ({} unique to one key, {} shared), pack framing {}",
        human_bytes(totals.referenced_bytes),
        count(totals.referenced_chunks, "chunk"),
        human_bytes(totals.unique_bytes),
        human_bytes(totals.shared_bytes),
        human_bytes(totals.framing_bytes)
    );
    let _ = writeln!(
        out,
        "unreferenced: {} in {} ({} wholly unreferenced, {} partly)",
        human_bytes(totals.unreferenced_bytes),
        count(totals.unreferenced_chunks, "chunk"),
        count(totals.unreferenced_packs, "pack"),
        totals.partly_referenced_packs
    );
    if totals.missing_packs > 0 {
        let _ = writeln!(
            out,
            "missing:      {} referenced but not in the store ({}); `chunkcache verify` names the keys",
            count(totals.missing_packs, "pack"),
            human_bytes(totals.missing_bytes)
        );
    }
    let _ = writeln!(
        out,
        "objects:      {}, {}, {} other ({} of metadata)",
        count(totals.packs, "pack"),
        count(totals.manifests, "manifest"),
        totals.other_objects,
        human_bytes(totals.metadata_bytes)
    );
    out
}
