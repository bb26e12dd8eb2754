//! Build script: records the git commit the binary is built from, for `chunkcache --version`.
//!
//! `CHUNKCACHE_GIT_COMMIT` is `git rev-parse --short HEAD`, or `unknown` outside a git checkout
//! (a source tarball, a Docker build without `.git`) or without git. The script reruns when
//! HEAD moves: on the HEAD file, on the branch ref it points at, and on `packed-refs`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Only this crate's own checkout counts, not a repository that merely contains its sources.
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).and_then(|dir| dir.canonicalize().ok());
    let own_checkout = git(&["rev-parse", "--show-toplevel"])
        .and_then(|top| PathBuf::from(top).canonicalize().ok())
        .is_some_and(|top| Some(top) == manifest_dir);
    let commit =
        own_checkout.then(|| git(&["rev-parse", "--short", "HEAD"])).flatten().unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=CHUNKCACHE_GIT_COMMIT={commit}");
    // In a worktree HEAD lives in the worktree's git dir and refs in the common one.
    let git_dir = git(&["rev-parse", "--git-dir"]).map(PathBuf::from);
    let common_dir = git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from);
    let head_ref = git(&["symbolic-ref", "-q", "HEAD"]);
    let watched = [
        git_dir.map(|dir| dir.join("HEAD")),
        common_dir.as_ref().zip(head_ref).map(|(dir, reference)| dir.join(reference)),
        common_dir.map(|dir| dir.join("packed-refs")),
    ];
    // A path that does not exist would make cargo rerun the script on every build.
    for path in watched.into_iter().flatten().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The trimmed output of a successful `git` command, if any.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (output.status.success() && !text.is_empty()).then_some(text)
}
