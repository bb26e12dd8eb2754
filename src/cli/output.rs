//! Terminal output: progress (a bar on a terminal, quiet lines in CI), sizes, ages, JSON.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result};
use chunkcache::core::units::binary_units;
use chunkcache::pipeline::progress::Progress;
use chunkcache::pipeline::restore::{Outcome, RestorePlan, RestoreReport, RestoreStats};
use chunkcache::pipeline::save::SaveReport;
use indicatif::{ProgressBar, ProgressStyle};

/// Progress for the CLI: a bar when stderr is a terminal (and output is not JSON), nothing
/// otherwise — CI logs get the one summary line each command prints.
pub struct CliProgress {
    bar: Option<ProgressBar>,
}

impl CliProgress {
    /// A bar if stderr is a terminal and `json` is off.
    pub fn new(json: bool) -> Self {
        let bar = (!json && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self { bar }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for CliProgress {
    fn phase(&self, name: &'static str, total_bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_message(name);
            bar.set_length(total_bytes);
            bar.set_position(0);
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    match binary_units(bytes) {
        (_, "B") => format!("{bytes} B"),
        (value, unit) => format!("{value:.1} {unit}"),
    }
}

/// `1, "key"` → `1 key`; `2, "key"` → `2 keys`: every count in a summary line goes through here.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Milliseconds → `5m`, `3h`, `2d`.
pub fn human_age(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// Compiles `--exclude` globs.
pub fn glob_set(patterns: &[String]) -> Result<Option<globset::GlobSet>> {
    flag_glob_set("--exclude", patterns)
}

/// Compiles the globs of `flag` (`*` stops at `/`, `**` crosses it).
pub fn flag_glob_set(flag: &str, patterns: &[String]) -> Result<Option<globset::GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = globset::GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(
            globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .with_context(|| format!("{flag} {pattern:?} is not a valid glob"))?,
        );
    }
    Ok(Some(builder.build()?))
}

/// The one line a save (or its dry run) ends with.
pub fn save_summary(report: &SaveReport) -> String {
    if report.dry_run {
        return format!(
            "dry run: saving {:?} would upload {} of {} ({} raw, {} stored, in {}); {}, {}, dedup {:.1}%; \
             nothing was written, {:.1}s",
            report.key,
            count(report.new_chunks, "new chunk"),
            report.saved.chunks,
            human_bytes(report.new_bytes),
            human_bytes(report.new_stored_bytes),
            count(report.new_packs, "pack"),
            count(report.saved.files, "file"),
            human_bytes(report.saved.bytes),
            report.dedup_percent,
            report.elapsed_ms as f64 / 1000.0
        );
    }
    format!(
        "saved {:?}: {}, {}, {} ({} new, {} uploaded in {}), dedup {:.1}%, {:.1}s",
        report.key,
        count(report.saved.files, "file"),
        human_bytes(report.saved.bytes),
        count(report.saved.chunks, "chunk"),
        report.new_chunks,
        human_bytes(report.requests.bytes_uploaded),
        count(report.new_packs, "pack"),
        report.dedup_percent,
        report.elapsed_ms as f64 / 1000.0
    )
}

/// What a restore did, for the line it ends with.
pub fn restore_details(report: &RestoreReport) -> String {
    format!(
        "{}, {} ({} written, {} unchanged, {} removed), {} fetched ({}) in {}, {:.1}s",
        count(report.files, "file"),
        human_bytes(report.bytes),
        report.files_written,
        report.files_unchanged,
        report.removed,
        count(report.chunks_fetched, "chunk"),
        human_bytes(report.bytes_fetched),
        count(report.ranges_fetched, "ranged read"),
        report.elapsed_ms as f64 / 1000.0
    )
}

/// What a restore plan would do, for the line a dry run ends with.
pub fn plan_details(plan: &RestorePlan) -> String {
    let stats = &plan.stats;
    format!(
        "{}, {}: would write {} ({}), keep {} unchanged, remove {}, fetch {} ({}) in {}",
        count(stats.files, "file"),
        human_bytes(stats.bytes),
        stats.files_written,
        human_bytes(stats.bytes_written),
        stats.files_unchanged,
        stats.removed,
        count(stats.chunks_fetched, "chunk"),
        human_bytes(stats.bytes_fetched),
        count(stats.ranges_fetched, "ranged read")
    )
}

/// Paths listed per category on stderr by a dry run without `--json` (`--json` lists all).
const PATHS_SHOWN: usize = 10;

/// Prints up to [`PATHS_SHOWN`] paths to write and to remove on stderr.
pub fn print_plan_paths(plan: &RestorePlan) {
    for (verb, paths) in
        [("write", plan.paths_to_write().collect::<Vec<_>>()), ("remove", plan.paths_to_remove().collect())]
    {
        for path in paths.iter().take(PATHS_SHOWN) {
            eprintln!("would {verb} {}", path.display());
        }
        if paths.len() > PATHS_SHOWN {
            eprintln!("… and {} more to {verb} (--json lists them all)", paths.len() - PATHS_SHOWN);
        }
    }
}

/// The `--json` output of `restore --dry-run`: the plan's statistics under the names the
/// real restore reports, and every path to write and to remove.
#[derive(serde::Serialize)]
pub struct DryRunReport<'a> {
    /// Always true, so the output cannot be mistaken for a restore's report.
    pub dry_run: bool,
    /// Hit, fallback hit or miss.
    pub outcome: Outcome,
    /// The key asked for.
    pub key: &'a str,
    /// The key that would be restored.
    pub restored_key: Option<&'a str>,
    /// What the restore would do, in numbers.
    #[serde(flatten)]
    pub stats: &'a RestoreStats,
    /// Files to write.
    pub write: Vec<String>,
    /// Entries to remove.
    pub remove: Vec<String>,
    /// Problems that would not fail the restore.
    pub warnings: &'a [String],
}

impl<'a> DryRunReport<'a> {
    /// The report of `plan`.
    pub fn new(plan: &'a RestorePlan) -> Self {
        let text = |path: std::path::PathBuf| path.to_string_lossy().into_owned();
        Self {
            dry_run: true,
            outcome: plan.outcome,
            key: &plan.key,
            restored_key: plan.restored_key.as_deref(),
            stats: &plan.stats,
            write: plan.paths_to_write().map(text).collect(),
            remove: plan.paths_to_remove().map(text).collect(),
            warnings: &plan.warnings,
        }
    }
}

/// Prints a report's warnings on stderr.
pub fn print_warnings(warnings: &[String]) {
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
}

/// Writes `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The one line a GC run ends with.
pub fn gc_summary(report: &chunkcache::pipeline::gc::GcReport, store: &str) -> String {
    let requests = &report.requests;
    format!(
        "gc{}: {} of {} expired; packs: {} condemned, {} revived, {} deleted ({} reclaimed), {} pending; \
         store {} -> {} ({} wasted in live packs); requests: {} list, {} get, {} put, {} head, {} delete; \
         {:.1}s, {}{}",
        if report.dry_run { " (dry run, nothing changed)" } else { "" },
        count(report.expired, "key"),
        report.keys,
        report.sweep.condemned,
        report.sweep.revived,
        report.sweep.deleted,
        human_bytes(report.bytes_reclaimed),
        report.condemned_total,
        human_bytes(report.store_bytes_before),
        human_bytes(report.store_bytes_after),
        human_bytes(report.sweep.waste_bytes),
        requests.list,
        requests.get,
        requests.put,
        requests.head,
        requests.delete,
        report.elapsed_ms as f64 / 1000.0,
        store,
        if report.nothing_to_do { "; nothing to do" } else { "" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_counts_print() {
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_age(90_000), "1m");
        assert_eq!(count(1, "key"), "1 key");
        assert_eq!(count(0, "key"), "0 keys");
        assert_eq!(count(2, "new chunk"), "2 new chunks");
    }
}
