//! The `chunkcache` binary: parses flags, runs one command, maps the outcome to an exit code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    tune_allocator();
    let args = <cli::Cli as clap::Parser>::parse();
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    match cli::run(args, &env) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", cli::describe(&err));
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}

/// Makes glibc's allocator keep a save's or a restore's peak memory near what is live (issue 9).
///
/// Both move data in large buffers: 16 MiB packs (a save reuses its own), 8 MiB ranged reads
/// and 0.5–2 MiB chunks. glibc serves an allocation above its mapping threshold with a mapping
/// of its own, but raises the threshold each time one is freed, so large buffers soon come from
/// the heap, whose freed space is rarely returned, and each thread gets an arena of its own: a
/// 1 GiB cold save peaked at 205 MiB of RSS and a restore at 238 MiB. A fixed 4 MiB threshold
/// (larger buffers are mapped and unmapped; chunks stay on the heap) and two arenas took them
/// to about 115 and 150 MiB (`benches/RESULTS.md`). Variables the user set
/// (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_ARENA_MAX`) win: glibc read them before `main`.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: libc::c_int = 4 << 20;
        const ARENAS: libc::c_int = 2;
        // SAFETY: mallopt only sets allocator parameters; it is called before any thread exists.
        #[allow(unsafe_code)]
        unsafe {
            if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
            if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
                libc::mallopt(libc::M_ARENA_MAX, ARENAS);
            }
        }
    }
}
