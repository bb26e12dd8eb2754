#!/usr/bin/env bash
# Installs the storage emulators the integration tests start themselves, locally under .tools/
# (git-ignored), and Go, system-wide with apt-get (the only global install):
#   - Azurite (Azure Blob Storage emulator) from npm  -> .tools/azurite/node_modules/.bin/azurite-blob
#   - moto server (S3 emulator) from PyPI, in a venv  -> .tools/moto/bin/moto_server
#   - Go (Debian golang-go, with apt-get; skipped if `go` is on PATH) for the key-template reference
# Idempotent: a tool whose binary is already present (at the pinned version; Go at any version) is skipped.
# Needs node >= 20 with npm, and python3 >= 3.9 with the venv module.
set -euo pipefail

# Azurite 3.36+ requires node >= 21/22; 3.35.0 is the newest that supports node 20.
AZURITE_VERSION="3.35.0"
MOTO_VERSION="5.2.5"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$repo_root/.tools"
mkdir -p "$tools"

# --- Azurite ---------------------------------------------------------------------------------
azurite_dir="$tools/azurite"
azurite_bin="$azurite_dir/node_modules/.bin/azurite-blob"
azurite_pkg="$azurite_dir/node_modules/azurite/package.json"
installed_azurite=""
if [[ -x "$azurite_bin" && -f "$azurite_pkg" ]]; then
    installed_azurite="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$azurite_pkg" | head -n1)"
fi
if [[ "$installed_azurite" == "$AZURITE_VERSION" ]]; then
    echo "azurite $AZURITE_VERSION: already installed"
else
    command -v npm >/dev/null || { echo "error: npm not found (install node >= 20 with npm)" >&2; exit 1; }
    echo "azurite $AZURITE_VERSION: installing into .tools/azurite ..."
    mkdir -p "$azurite_dir"
    npm install --prefix "$azurite_dir" --no-audit --no-fund --loglevel=error \
        "azurite@$AZURITE_VERSION" >/dev/null
    [[ -x "$azurite_bin" ]] || { echo "error: $azurite_bin missing after npm install" >&2; exit 1; }
    echo "azurite $AZURITE_VERSION: installed"
fi

# --- moto server -----------------------------------------------------------------------------
moto_dir="$tools/moto"
moto_bin="$moto_dir/bin/moto_server"
installed_moto=""
if [[ -x "$moto_bin" && -x "$moto_dir/bin/python" ]]; then
    installed_moto="$("$moto_dir/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || true)"
fi
if [[ "$installed_moto" == "$MOTO_VERSION" ]]; then
    echo "moto $MOTO_VERSION: already installed"
else
    command -v python3 >/dev/null || { echo "error: python3 not found" >&2; exit 1; }
    echo "moto $MOTO_VERSION: installing into .tools/moto ..."
    if [[ ! -x "$moto_dir/bin/python" ]]; then
        python3 -m venv "$moto_dir"
    fi
    "$moto_dir/bin/python" -m pip install --quiet --disable-pip-version-check \
        "moto[server]==$MOTO_VERSION"
    [[ -x "$moto_bin" ]] || { echo "error: $moto_bin missing after pip install" >&2; exit 1; }
    echo "moto $MOTO_VERSION: installed"
fi

# --- Go (the reference for the cache-key template differential test) --------------------------
# tests/template_diff.rs builds tests/support/gotemplate (standard library only) with it.
if command -v go >/dev/null; then
    echo "go: already installed ($(go version))"
else
    command -v apt-get >/dev/null || { echo "error: go not found and no apt-get (install Go >= 1.19)" >&2; exit 1; }
    echo "go: installing Debian's golang-go ..."
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
    command -v go >/dev/null || { echo "error: go missing after apt-get install golang-go" >&2; exit 1; }
    echo "go: installed ($(go version))"
fi
