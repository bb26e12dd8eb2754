//! `chunkcache analyze`: the flags, the table on stdout and the `--html` page.
//!
//! The figures come from [`chunkcache::pipeline::analyze`]; this file only checks the flags and
//! presents the report. The page is one self-contained file: inline CSS and inline SVG charts,
//! no scripts, fonts or links, so it can be mailed or attached to a ticket as it is.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chunkcache::core::chunker::ChunkerParams;
use chunkcache::core::units;
use chunkcache::fs::walk::WalkOptions;
use chunkcache::pipeline::analyze::{self, AnalyzeOptions, AnalyzeReport, DirectoryUse, Prices, SizeReport};
use clap::Args;

use crate::cli::output::{self, CliProgress, human_bytes, print_json};

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Directories or files to analyze, as they would be given to `save`.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// The same directories as an earlier build left them, one per PATH in the same order:
    /// adds what an incremental save would upload and a restore over them would fetch.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    previous: Vec<PathBuf>,
    /// Average chunk sizes to compare, comma-separated [default: 128K,256K,512K,1M,2M; the
    /// store default is 512K].
    #[arg(long, value_name = "SIZE[,SIZE...]", value_delimiter = ',', value_parser = units::parse_size)]
    chunk_size: Vec<u64>,
    /// zstd level for compressible chunks (1–19), as for `save`.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    level: i32,
    /// Leave out paths matching this glob (relative to each PATH; repeatable), as for `save`.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Leave symlinks out, as `save --skip-symlinks` does.
    #[arg(long)]
    skip_symlinks: bool,
    /// Price of 1,000 PUT requests, for a monthly cost (with --price-get and --price-gb-month).
    #[arg(long, value_name = "PRICE")]
    price_put: Option<f64>,
    /// Price of 1,000 GET requests.
    #[arg(long, value_name = "PRICE")]
    price_get: Option<f64>,
    /// Price of storing 1 GB for a month.
    #[arg(long, value_name = "PRICE")]
    price_gb_month: Option<f64>,
    /// Builds a month (each one restore and one save), for the monthly cost.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    builds_per_month: u64,
    /// Also write a self-contained HTML page with charts to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Print a machine-readable JSON report on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs `analyze`: checks the flags, measures, prints, writes the page.
pub async fn run(args: AnalyzeArgs) -> Result<ExitCode> {
    let options = options(&args)?;
    let progress = CliProgress::new(args.json);
    let report = tokio::task::block_in_place(|| analyze::analyze(&options, &progress))
        .context("analyze failed; nothing was written")?;
    progress.finish();
    if args.json {
        print_json(&report)?;
    } else {
        print!("{}", table(&report));
    }
    if let Some(page) = &args.html {
        std::fs::write(page, html(&report))
            .with_context(|| format!("cannot write the page to {}; check --html FILE", page.display()))?;
    }
    eprintln!(
        "analyzed {}, {} at {}: recommended chunk size {}, {:.1}s{}",
        output::count(report.files, "file"),
        human_bytes(report.bytes),
        output::count(report.sizes.len() as u64, "chunk size"),
        human_bytes(u64::from(report.recommendation.chunk_size)),
        report.elapsed_ms as f64 / 1000.0,
        args.html.as_ref().map(|page| format!("; page written to {}", page.display())).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

fn options(args: &AnalyzeArgs) -> Result<AnalyzeOptions> {
    if !args.previous.is_empty() && args.previous.len() != args.paths.len() {
        bail!(
            "--previous names {} but {} given; give one previous path per PATH, in the same order",
            output::count(args.previous.len() as u64, "path"),
            output::count(args.paths.len() as u64, "PATH")
        );
    }
    let chunk_sizes = if args.chunk_size.is_empty() {
        analyze::DEFAULT_SWEEP.to_vec()
    } else {
        args.chunk_size
            .iter()
            .map(|&size| {
                let average = u32::try_from(size).unwrap_or(u32::MAX) & !1;
                ChunkerParams::with_average(average)
                    .validate()
                    .map(|()| average)
                    .map_err(|err| anyhow::anyhow!("--chunk-size {size}: {err}; give sizes such as 256K,512K,1M"))
            })
            .collect::<Result<Vec<u32>>>()?
    };
    let prices = match (args.price_put, args.price_get, args.price_gb_month) {
        (Some(put_per_1000), Some(get_per_1000), Some(gb_month)) => {
            Some(Prices { put_per_1000, get_per_1000, gb_month, builds_per_month: args.builds_per_month })
        }
        (None, None, None) => None,
        _ => bail!("--price-put, --price-get and --price-gb-month go together; give all three (0 is a price)"),
    };
    Ok(AnalyzeOptions {
        paths: args.paths.clone(),
        previous: args.previous.clone(),
        chunk_sizes,
        compression_level: args.level,
        walk: WalkOptions {
            exclude: output::glob_set(&args.exclude)?,
            skip_symlinks: args.skip_symlinks,
            ..WalkOptions::default()
        },
        prices,
    })
}

/// The report as text: the sweep table, the whole-archive comparison, the directories and the
/// recommendation.
fn table(report: &AnalyzeReport) -> String {
    let mut out = String::new();
    let previous = report
        .previous
        .map(|p| format!(" (previous: {}, {})", output::count(p.files, "file"), human_bytes(p.bytes)))
        .unwrap_or_default();
    let _ = writeln!(out, "{}, {}{previous}\n", output::count(report.files, "file"), human_bytes(report.bytes));
    let _ = writeln!(
        out,
        "{:<10} {:>9} {:>9} {:>6} {:>10} {:>10} {:>6} {:>21} {:>21} {:>21}",
        "chunk",
        "chunks",
        "unique",
        "dedup",
        "unique",
        "stored",
        "packs",
        "chunk min/p50/max",
        "save uploads",
        "restore fetches"
    );
    for row in &report.sizes {
        let upload = row
            .upload
            .map(|u| format!("{} in {}", human_bytes(u.stored_bytes), output::count(u.objects, "pack")))
            .unwrap_or_else(|| "-".into());
        let restore = row
            .restore
            .map(|r| format!("{} in {}", human_bytes(r.stored_bytes), output::count(r.requests, "GET")))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<10} {:>9} {:>9} {:>5.1}% {:>10} {:>10} {:>6} {:>21} {:>21} {:>21}",
            format!("{}{}", human_bytes(u64::from(row.chunk_size)), if row.store_default { "*" } else { "" }),
            row.chunks,
            row.unique_chunks,
            row.dedup_percent,
            human_bytes(row.unique_bytes),
            human_bytes(row.stored_bytes),
            row.objects,
            format!(
                "{}/{}/{}",
                human_bytes(row.chunk_bytes.min),
                human_bytes(row.chunk_bytes.p50),
                human_bytes(row.chunk_bytes.max)
            ),
            upload,
            restore
        );
    }
    let _ = writeln!(out, "* the store default\n");
    let archive = &report.archive;
    let _ = writeln!(
        out,
        "whole archive, moved by every save and every restore: tar {}, tar.gz {}, tar.zst {}",
        human_bytes(archive.tar_bytes),
        human_bytes(archive.tar_gzip_bytes),
        human_bytes(archive.tar_zstd_bytes)
    );
    let _ = writeln!(out, "\nrequests (PUT + GET):");
    for row in &report.sizes {
        let r = &row.requests;
        let show = |requests: Option<analyze::Requests>| {
            requests.map_or_else(|| "-".to_string(), |r| format!("{} + {}", r.put, r.get))
        };
        let cost = row.monthly_cost.map(|cost| format!(", {cost:.2} a month")).unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<9} cold save {}, warm save {}, cold restore {}, restore over previous {}{cost}",
            human_bytes(u64::from(row.chunk_size)),
            show(Some(r.cold_save)),
            show(r.warm_save),
            show(Some(r.cold_restore)),
            show(r.warm_restore)
        );
    }
    let directories = &report.directories;
    for (title, rows, churn) in [
        ("largest directories", &directories.by_size, false),
        ("most churn (uploaded by a save)", &directories.by_churn, true),
    ] {
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}, {} levels deep:", directories.depth);
        for row in rows.iter() {
            let figure = if churn { row.churn_bytes.unwrap_or(0) } else { row.bytes };
            let _ = writeln!(out, "  {:>10}  {} ({})", human_bytes(figure), row.path, output::count(row.files, "file"));
        }
    }
    let _ = writeln!(out, "\nrecommended chunk size {}", report.recommendation.reason);
    out
}

/// The page: the sweep as charts and a table, the directories as bar charts.
fn html(report: &AnalyzeReport) -> String {
    let size_label = |row: &SizeReport| human_bytes(u64::from(row.chunk_size));
    let labels: Vec<String> = report.sizes.iter().map(size_label).collect();
    let warm = report.sizes.iter().all(|row| row.upload.is_some());
    let mut charts = String::new();
    if warm {
        let uploaded: Vec<u64> = report.sizes.iter().map(|r| r.upload.map_or(0, |u| u.stored_bytes)).collect();
        charts += &bar_chart("Bytes a save uploads after the previous build", &labels, &uploaded, true, Layout::Half);
        let fetched: Vec<u64> = report.sizes.iter().map(|r| r.restore.map_or(0, |f| f.stored_bytes)).collect();
        charts += &bar_chart("Bytes a restore over the previous build fetches", &labels, &fetched, true, Layout::Half);
        let requests: Vec<u64> = report
            .sizes
            .iter()
            .map(|r| r.requests.warm_save.map_or(0, |s| s.total()) + r.requests.warm_restore.map_or(0, |s| s.total()))
            .collect();
        charts += &bar_chart("Requests of one build (save and restore)", &labels, &requests, false, Layout::Half);
    } else {
        let stored: Vec<u64> = report.sizes.iter().map(|r| r.stored_bytes).collect();
        charts += &bar_chart("Bytes a cold save uploads", &labels, &stored, true, Layout::Half);
    }
    let objects: Vec<u64> = report.sizes.iter().map(|r| r.objects).collect();
    charts += &bar_chart("Packs (objects) the store holds", &labels, &objects, false, Layout::Half);
    let chunks: Vec<u64> = report.sizes.iter().map(|r| r.unique_chunks).collect();
    charts += &bar_chart("Distinct chunks (manifest entries)", &labels, &chunks, false, Layout::Half);
    let directory_chart = |title: &str, rows: &[DirectoryUse], figure: fn(&DirectoryUse) -> u64| {
        let labels: Vec<String> = rows.iter().map(|r| r.path.clone()).collect();
        let values: Vec<u64> = rows.iter().map(figure).collect();
        bar_chart(title, &labels, &values, true, Layout::Wide)
    };
    let directories = &report.directories;
    let mut by_directory = directory_chart("Largest directories", &directories.by_size, |r| r.bytes);
    if !directories.by_churn.is_empty() {
        by_directory += &directory_chart(
            &format!(
                "Churn: bytes a save uploads, by directory ({} chunks)",
                human_bytes(u64::from(directories.chunk_size))
            ),
            &directories.by_churn,
            |r| r.churn_bytes.unwrap_or(0),
        );
    }
    let mut rows = String::new();
    for row in &report.sizes {
        let _ = write!(
            rows,
            "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&size_label(row)),
            if row.store_default { " (default)" } else { "" },
            row.chunks,
            row.unique_chunks,
            row.dedup_percent,
            human_bytes(row.stored_bytes),
            row.objects,
            row.upload.map_or_else(
                || "-".into(),
                |u| format!("{} in {}", human_bytes(u.stored_bytes), output::count(u.objects, "pack"))
            ),
            row.restore.map_or_else(
                || "-".into(),
                |f| format!("{} in {}", human_bytes(f.stored_bytes), output::count(f.requests, "GET"))
            ),
        );
    }
    let archive = &report.archive;
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>chunkcache analyze</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 980px; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; }}
table {{ border-collapse: collapse; font-size: 0.9em; margin-top: 1em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1em; }}
.recommendation {{ background: #eef6ee; border-left: 4px solid #3a7; padding: 0.6em 1em; }}
svg text {{ font-size: 12px; fill: #222; }}
</style></head><body>
<h1>chunkcache analyze</h1>
<p>{files}, {bytes}{previous}. Whole archive, moved by every save and every restore: tar.gz {gzip}, tar.zst {zstd}.</p>
<p class="recommendation">Recommended chunk size {reason}</p>
<h2>By chunk size</h2>
<div class="charts">{charts}</div>
<table><tr><th>chunk size</th><th>chunks</th><th>distinct</th><th>dedup</th><th>stored</th><th>packs</th><th>save uploads</th><th>restore fetches</th></tr>
{rows}</table>
<h2>By directory ({depth} levels deep)</h2>
<div class="charts">{by_directory}</div>
</body></html>
"#,
        files = output::count(report.files, "file"),
        bytes = human_bytes(report.bytes),
        previous = report
            .previous
            .map(|p| format!(", after a previous build of {}", human_bytes(p.bytes)))
            .unwrap_or_default(),
        gzip = human_bytes(archive.tar_gzip_bytes),
        zstd = human_bytes(archive.tar_zstd_bytes),
        reason = escape(&report.recommendation.reason),
        depth = directories.depth,
    )
}

/// How wide a chart and its labels are.
#[derive(Clone, Copy)]
enum Layout {
    /// Half the page: short labels (chunk sizes).
    Half,
    /// The whole page: long labels (directories).
    Wide,
}

/// A horizontal bar chart as inline SVG: one labelled bar per value.
fn bar_chart(title: &str, labels: &[String], values: &[u64], bytes: bool, layout: Layout) -> String {
    const ROW: usize = 22;
    let (width, label_width, label_chars) = match layout {
        Layout::Half => (470, 110, 14),
        Layout::Wide => (940, 520, 80),
    };
    let bar_space = width - label_width - 90;
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let height = 30 + ROW * values.len();
    let mut svg = format!(
        r#"<svg width="{width}" height="{height}" role="img"><title>{title}</title><text x="0" y="16" style="font-weight:bold">{title}</text>"#,
        title = escape(title)
    );
    for (index, (label, &value)) in labels.iter().zip(values).enumerate() {
        let y = 26 + index * ROW;
        let bar = (value as f64 / max as f64 * bar_space as f64).round().max(1.0);
        let shown = if bytes { human_bytes(value) } else { value.to_string() };
        let short: String = if label.chars().count() > label_chars {
            let tail: Vec<char> = label.chars().rev().take(label_chars - 1).collect();
            format!("…{}", tail.into_iter().rev().collect::<String>())
        } else {
            label.clone()
        };
        let _ = write!(
            svg,
            r##"<text x="{x}" y="{ty}" text-anchor="end">{label}</text><rect x="{label_width}" y="{y}" width="{bar}" height="{h}" fill="#4a7fb5"/><text x="{vx}" y="{ty}">{shown}</text>"##,
            x = label_width - 6,
            ty = y + 14,
            label = escape(&short),
            h = ROW - 6,
            vx = label_width as f64 + bar + 4.0,
        );
    }
    svg + "</svg>"
}

/// Escapes text for HTML and SVG.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_their_labels() {
        let svg = bar_chart("a <b>", &["x&y".to_string()], &[3], false, Layout::Half);
        assert!(svg.contains("a &lt;b&gt;") && svg.contains("x&amp;y") && svg.ends_with("</svg>"), "{svg}");
    }
}
