//! The `chunkcache` binary: parses flags, runs one command, maps the outcome to an exit code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
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
