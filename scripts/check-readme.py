#!/usr/bin/env python3
"""Runs the README's install and quick-start commands verbatim in a fresh clone, and checks that
the demo prints what the README shows.

A fresh `git clone` of this checkout's HEAD (so only committed work counts, as in CI) runs:
- the `cargo install --locked --path .` line of "## Install", installing into a scratch
  CARGO_INSTALL_ROOT; the installed `chunkcache --version` must name the clone's commit;
- every command of the "## Quick start" block except `scripts/test.sh` (this script is part of
  it), with HOME pointing at a scratch folder so the default store is a fresh one;
- the demo's output must contain a line of the same shape (numbers, timestamps and the store
  path aside) as every output line of the README's demo transcript under "## The CLI", except
  the lines the README says came from a separate run.

The clone shares this checkout's target folder (CARGO_TARGET_DIR), so nothing is compiled
twice. Usage: scripts/check-readme.py (from anywhere); exits non-zero naming what differs.
"""

import os
import re
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def section(readme: str, heading: str) -> str:
    start = readme.index(f"\n## {heading}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end >= 0 else len(readme)]


def fenced(text: str, language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", text, re.S)
    if not match:
        sys.exit(f"check-readme: no ```{language} block found")
    return match.group(1)


def shape(line: str) -> re.Pattern:
    """A README output line as a pattern: numbers and the demo key's timestamp vary."""
    pattern = re.escape(line.strip())
    pattern = pattern.replace(r"demo/main\-gen", r"demo/main\-\d+\-gen")
    pattern = re.sub(r"file:///\S+", r"file:///\\S+", pattern)
    pattern = re.sub(r"(?<![A-Za-z\\])\d+(?:\\\.\d+)?", r"\\d+(?:\\.\\d+)?", pattern)
    pattern = re.sub(r"(?:\\\t|\\ )+", r"\\s+", pattern)
    for plural in ("packs", "reads", "keys", "chunks", "files"):
        pattern = pattern.replace(plural, plural + "?")
    return re.compile(pattern)


def run(command: str, cwd: str, env: dict) -> str:
    print(f"check-readme: $ {command}", flush=True)
    # Summaries go to stderr and data to stdout, as in a terminal: check both, in order.
    result = subprocess.run(
        command, shell=True, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    sys.stdout.write(result.stdout)
    if result.returncode != 0:
        sys.exit(f"check-readme: `{command}` exited {result.returncode}")
    return result.stdout


def main() -> None:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    install = re.search(r"`(cargo install --locked --path \.)`", section(readme, "Install"))
    if not install:
        sys.exit("check-readme: the Install section has no `cargo install --locked --path .`")
    quick = [
        line.strip()
        for line in fenced(section(readme, "Quick start"), "sh").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    transcript = fenced(section(readme, "The CLI"), "console").splitlines()

    with tempfile.TemporaryDirectory(prefix="check-readme-") as scratch:
        clone = os.path.join(scratch, "clone")
        subprocess.run(["git", "clone", "--quiet", ROOT, clone], check=True)
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, text=True, capture_output=True, check=True)
        env = dict(os.environ)
        env.pop("XDG_CACHE_HOME", None)
        env["HOME"] = os.path.join(scratch, "home")
        env["CARGO_HOME"] = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
        env["RUSTUP_HOME"] = os.environ.get("RUSTUP_HOME", os.path.expanduser("~/.rustup"))
        env["CARGO_TARGET_DIR"] = os.path.join(ROOT, "target")
        env["CARGO_INSTALL_ROOT"] = os.path.join(scratch, "install")
        os.makedirs(env["HOME"])

        run(install.group(1), clone, env)
        version = run(f"{shlex.quote(env['CARGO_INSTALL_ROOT'])}/bin/chunkcache --version", clone, env)
        if head.stdout.strip()[:7] not in version:
            sys.exit(f"check-readme: --version {version.strip()!r} does not name the clone's commit {head.stdout}")

        output = ""
        for command in quick:
            if command == "scripts/test.sh":
                continue  # this check is part of it
            output += run(command, clone, env)

        lines = output.splitlines()
        missing = []
        for expected in transcript:
            # Commands, the separate run's fallback line, and the elided JSON are not demo output.
            if not expected.strip() or expected.startswith("$") or "…" in expected:
                continue
            if not any(shape(expected).fullmatch(line.strip()) for line in lines):
                missing.append(expected)
        if missing:
            sys.exit("check-readme: the demo printed no line like these README lines:\n  " + "\n  ".join(missing))
        if output.count("byte-exact: yes") != 2:
            sys.exit("check-readme: the demo did not report two byte-exact restores")
        print(f"check-readme: install, --version and the quick start ran in a fresh clone; "
              f"{sum(1 for e in transcript if e.strip() and not e.startswith('$') and '…' not in e)} README "
              f"output lines matched the demo's")


if __name__ == "__main__":
    main()
