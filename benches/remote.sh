#!/usr/bin/env bash
# chunkcache against the whole-archive path on real (emulated) object stores, in one run: Azurite (Azure
# Blob) and moto (S3), both in memory on loopback, on the same generated Gradle user home, generation 0
# then generation 1 (about 5-15 % of the bytes changed; see fixtures/gradle.rs).
#
# The whole-archive path is what chunkcache replaces: `tar -cf - gradle | zstd -3 -T0` uploaded as ONE
# blob/object by the official SDK (Python azure-storage-blob `upload_blob`, max_concurrency=8; boto3
# `upload_fileobj`, multipart, 8 threads), and for a restore downloaded by the SDK into a file on tmpfs,
# then `zstd -d | tar -x`. Azure downloads in parallel ranged GETs; S3 in one GET, because moto reads the
# whole object for every ranged GET (113 s instead of 7.5 s for a 0.9 GB archive; S3_RANGED_GET=1 asks for
# boto3's parallel ranges anyway). See benches/remote_sdk.py.
#
# Usage (from anywhere in the repository; root or sudo only to apt-get install missing tools):
#   benches/remote.sh
#   SIZE=256M REPEAT=1 SERVERS=moto benches/remote.sh
#   CHUNKCACHE=/tmp/old/chunkcache benches/remote.sh      # another build of chunkcache
#
# Environment:
#   SIZE=1G          fixture size (K/M/G suffixes)       SEED=1   fixture seed
#   REPEAT=3         runs per measurement; the median is reported
#   SERVERS="azurite moto"   which emulators to measure on
#   WORK=/dev/shm/chunkcache-remote   scratch directory (tmpfs, so the disk does not interfere)
#   CHUNKCACHE=...   chunkcache binary (default target/release/chunkcache)
#   FIXTURE_BIN=...  gradle-fixture binary (default target/release/examples/gradle-fixture)
#   SDK_AZURE_BLOCK_MIB, SDK_AZURE_GET_MIB   the Azure SDK's upload block and download range sizes
#                    (default: the SDK's, 4 MiB each); S3_RANGED_GET=1: see above
#   KEEP=1           keep the generated trees under $WORK afterwards
#   When a default binary is missing it is built with
#   `flock /tmp/release-build.lock cargo build --release --bin chunkcache --example gradle-fixture`.
#   CHUNKCACHE_* variables (e.g. CHUNKCACHE_CONCURRENCY) pass through to chunkcache and are listed in the
#   report; inherited AWS_*, AZURE_* and GOOGLE_* variables are dropped, so only the emulators are used.
#
# What it installs when missing: Azurite and moto (scripts/install-test-servers.sh, under .tools/), a venv
# with azure-storage-blob and boto3 (.tools/bench-venv, pinned versions, from PyPI), and GNU time, zstd and
# tar (apt-get).
#
# Each repeat starts a fresh emulator (an empty container/bucket for the cold operations) and runs, for
# both paths in turn (chunkcache first, except for the cold restore):
#   cold save       gen0 into the empty store                     | the gen0 archive uploaded
#   cold restore    gen0 into an empty directory                  | download + zstd -d | tar -x
#   warm save       gen1 under a new key into the store with gen0 | the full gen1 archive uploaded
#   incr restore    gen1 --mirror over the restored gen0          | (no such thing: compared with its cold restore)
# Metrics: wall time and peak RSS (largest single process, GNU time), requests by kind and bytes moved.
# chunkcache's requests come from its `--json` report; the whole-archive path's are counted in the emulator's
# own access log (Azurite without --silent, moto's werkzeug log), which also counts chunkcache's requests as
# a cross-check ("log" column). Every chunkcache restore is checked against the source tree (kinds, modes,
# sizes, symlink targets, MD5 of every file, file mtimes to the ns); a mismatch fails the script. The
# archive path's last cold restore is checked the same way and only reported.
#
# The markdown tables go to stdout and to $WORK/results.md; tool and emulator output to $WORK/logs/.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZE=${SIZE:-1G}
SEED=${SEED:-1}
REPEAT=${REPEAT:-3}
SERVERS=${SERVERS:-azurite moto}
WORK=${WORK:-/dev/shm/chunkcache-remote}
CHUNKCACHE=${CHUNKCACHE:-}
FIXTURE_BIN=${FIXTURE_BIN:-}
VENV=$ROOT/.tools/bench-venv
PY=$VENV/bin/python
SDK=$ROOT/benches/remote_sdk.py
AZURITE_BIN=$ROOT/.tools/azurite/node_modules/.bin/azurite-blob
MOTO_BIN=$ROOT/.tools/moto/bin/moto_server
# The SDK versions measured; change them deliberately, the figures depend on them.
SDK_PACKAGES=(azure-storage-blob==12.31.1 boto3==1.44.8)
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
OPS=(cold-save cold-restore warm-save incr-restore)

BENCH=remote
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a positive integer, got '$REPEAT'"
[[ -n ${SERVERS// /} ]] || die "SERVERS is empty: use SERVERS=\"azurite moto\" or one of them"
for server in $SERVERS; do
	case $server in
	azurite | moto) ;;
	*) die "unknown server '$server' in SERVERS (known: azurite moto)" ;;
	esac
done

# Only the emulators: no cloud credentials from the caller's environment.
while read -r name; do
	case $name in AWS_* | AZURE_* | GOOGLE_*) unset "$name" ;; esac
done < <(compgen -e)

# ---------------------------------------------------------------------------------------------------------
# Tools

ensure_packages() {
	local missing=()
	[[ -x /usr/bin/time ]] || missing+=(time)
	command -v zstd >/dev/null || missing+=(zstd)
	command -v tar >/dev/null || missing+=(tar)
	command -v flock >/dev/null || missing+=(util-linux)
	command -v python3 >/dev/null || missing+=(python3)
	if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then missing+=(python3-venv); fi
	apt_install "${missing[@]}"
}

ensure_venv() {
	local installed=''
	# Not `pip freeze | grep -q`: grep's early exit would fail the pipeline under pipefail.
	[[ -x $PY ]] && installed=$("$PY" -m pip freeze 2>/dev/null || true)
	if grep -qxF "${SDK_PACKAGES[0]}" <<<"$installed" && grep -qxF "${SDK_PACKAGES[1]}" <<<"$installed"; then
		return
	fi
	log "installing ${SDK_PACKAGES[*]} into $VENV"
	[[ -x $PY ]] || python3 -m venv "$VENV" || die "cannot create the venv $VENV (python3 -m venv)"
	"$PY" -m pip install --quiet --disable-pip-version-check "${SDK_PACKAGES[@]}" ||
		die "pip install ${SDK_PACKAGES[*]} into $VENV failed"
}

ensure_servers() {
	local need=
	for server in $SERVERS; do
		case $server in
		azurite) [[ -x $AZURITE_BIN ]] || need=1 ;;
		moto) [[ -x $MOTO_BIN ]] || need=1 ;;
		esac
	done
	if [[ -n $need ]]; then
		log "installing the emulators (scripts/install-test-servers.sh)"
		"$ROOT/scripts/install-test-servers.sh" >&2 || die "scripts/install-test-servers.sh failed"
	fi
}

# A default binary that is missing is built (under the machine-wide release-build lock); a binary named by
# CHUNKCACHE or FIXTURE_BIN must exist.
ensure_binaries() {
	if [[ -z $CHUNKCACHE || -z $FIXTURE_BIN ]]; then
		CHUNKCACHE=${CHUNKCACHE:-$ROOT/target/release/chunkcache}
		FIXTURE_BIN=${FIXTURE_BIN:-$ROOT/target/release/examples/gradle-fixture}
		if [[ ! -x $CHUNKCACHE || ! -x $FIXTURE_BIN ]]; then
			log "building the release binaries"
			(cd "$ROOT" && flock /tmp/release-build.lock nice -n 10 \
				cargo build --release --bin chunkcache --example gradle-fixture) >&2 ||
				die "cargo build --release failed"
		fi
	fi
	[[ -x $CHUNKCACHE ]] || die "chunkcache binary $CHUNKCACHE not found: build it or set CHUNKCACHE"
	[[ -x $FIXTURE_BIN ]] || die "fixture binary $FIXTURE_BIN not found: build it or set FIXTURE_BIN"
	# Absolute: the runs happen in other directories.
	CHUNKCACHE=$(realpath "$CHUNKCACHE") FIXTURE_BIN=$(realpath "$FIXTURE_BIN")
}

# ---------------------------------------------------------------------------------------------------------
# Emulators

SERVER_PID='' SERVER_LOG='' STORE='' KIND=''

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_server SERVER RUN: a fresh, empty emulator on a free port, and the environment both paths use.
start_server() {
	local port
	port=$(free_port)
	SERVER_LOG=$LOGS/$1.$2.log
	case $1 in
	azurite)
		# Not --silent: its access log is how the SDK path's requests are counted.
		"$AZURITE_BIN" --blobHost 127.0.0.1 --blobPort "$port" --inMemoryPersistence --disableTelemetry \
			--skipApiVersionCheck --loose >"$SERVER_LOG" 2>&1 &
		SERVER_PID=$!
		export AZURE_STORAGE_ACCOUNT=$AZURITE_ACCOUNT AZURE_STORAGE_KEY=$AZURITE_KEY
		export AZURE_STORAGE_ENDPOINT=http://127.0.0.1:$port/$AZURITE_ACCOUNT
		STORE=az://cache/ci KIND=azure
		;;
	moto)
		# moto keeps an object above 5 MiB in a temporary file (on disk under /tmp): keep every object in
		# memory, as Azurite does with --inMemoryPersistence, so large objects (the archive, packs) are not
		# slowed by the disk.
		MOTO_S3_DEFAULT_KEY_BUFFER_SIZE=$((1 << 32)) TMPDIR=$WORK/tmp \
			"$MOTO_BIN" -H 127.0.0.1 -p "$port" >"$SERVER_LOG" 2>&1 &
		SERVER_PID=$!
		export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
		export AWS_ENDPOINT_URL=http://127.0.0.1:$port
		STORE=s3://cache/ci KIND=s3
		;;
	esac
	local tries=0
	until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
		kill -0 "$SERVER_PID" 2>/dev/null || die "$1 exited during start-up; its output: $SERVER_LOG"
		((++tries < 300)) || die "$1 did not accept connections on port $port within 30 s; its output: $SERVER_LOG"
		sleep 0.1
	done
	# chunkcache creates a missing Azure container itself (inside its cold save); S3 buckets are made here.
	"$PY" "$SDK" create "$KIND" archive >>"$LOGS/setup.log" 2>&1 || die "cannot create the archive container on $1: $LOGS/setup.log"
	if [[ $KIND == s3 ]]; then
		"$PY" "$SDK" create s3 cache >>"$LOGS/setup.log" 2>&1 || die "cannot create the cache bucket on $1: $LOGS/setup.log"
	fi
}

stop_server() {
	if [[ -n $SERVER_PID ]]; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
		SERVER_PID=
	fi
	unset AZURE_STORAGE_ACCOUNT AZURE_STORAGE_KEY AZURE_STORAGE_ENDPOINT
	unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_ENDPOINT_URL
}
trap stop_server EXIT

# ---------------------------------------------------------------------------------------------------------
# The two paths. These run under /usr/bin/time in a child bash (hence `export -f`), so that a pipeline is
# measured as a whole.

cc_save() { # cc_save GENERATION: run in $WORK/trees/genN, which holds the tree as `gradle`
	cd "$WORK/trees/gen$1"
	"$CHUNKCACHE" save --store "$STORE" --key "gen$1" --json gradle
}
cc_restore() { # cc_restore GENERATION DEST [--mirror]
	"$CHUNKCACHE" restore --store "$STORE" --key "gen$1" --json "${@:3}" "$2"
}
archive_save() { # archive_save GENERATION
	tar -C "$WORK/trees/gen$1" -cf - gradle | zstd -3 -T0 -q | "$PY" "$SDK" upload "$KIND" archive "gen$1.tar.zst"
}
archive_restore() { # archive_restore GENERATION DEST
	"$PY" "$SDK" download "$KIND" archive "gen$1.tar.zst" "$WORK/download.tar.zst"
	zstd -dc -q "$WORK/download.tar.zst" | tar -C "$2" -xf -
}
export -f cc_save cc_restore archive_save archive_restore
export WORK CHUNKCACHE PY SDK

# measure SERVER TOOL OP CMD...: runs CMD under GNU time with the emulator's environment and appends one
# line to $RAW/SERVER.TOOL.OP: wall s, peak RSS KiB, PUT GET HEAD LIST DELETE POST other, bytes up, bytes
# down, requests in the server log. Any failure stops the script.
measure() {
	local server=$1 tool=$2 op=$3
	shift 3
	local timing=$WORK/timing.txt out=$WORK/out.json logfile=$LOGS/$server.$tool.$op.log offset rc=0
	offset=$(stat -c %s "$SERVER_LOG")
	printf '\n### %s\n' "$*" >>"$logfile"
	/usr/bin/time -f '%e %M' -o "$timing" env STORE="$STORE" KIND="$KIND" \
		bash -c 'set -euo pipefail; "$@"' _ "$@" >"$out" 2>>"$logfile" || rc=$?
	cat "$out" >>"$logfile"
	if ((rc != 0)); then
		tail -n 20 "$logfile" >&2
		die "$tool $op on $server failed with status $rc (log: $logfile, emulator: $SERVER_LOG)"
	fi
	# The emulators log a request once its answer is sent; give the last line time to reach the file.
	sleep 0.3
	local wall rss logged counts
	read -r wall rss < <(tail -n 1 "$timing")
	logged=$("$PY" "$SDK" requests "$SERVER_LOG" "$offset")
	if [[ $tool == chunkcache ]]; then
		counts=$("$PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))["requests"]
kinds = ["put", "get", "head", "list", "delete"]
other = sum(v for k, v in r.items() if k not in kinds and not k.startswith("bytes_"))
print(*[r.get(k, 0) for k in kinds], 0, other, r["bytes_uploaded"], r["bytes_downloaded"])' "$out")
	else
		local size generation=0
		[[ $op == warm-save ]] && generation=1
		size=$("$PY" "$SDK" size "$KIND" archive "gen$generation.tar.zst")
		counts=$("$PY" -c '
import json, sys
r = json.loads(sys.argv[1])
up, down = (sys.argv[2], 0) if sys.argv[3] == "save" else (0, sys.argv[2])
print(*[r[k] for k in ["put", "get", "head", "list", "delete", "post", "other"]], up, down)' \
			"$logged" "$size" "${op#*-}")
	fi
	echo "$wall $rss $counts $("$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["total"])' "$logged")" \
		>>"$RAW/$server.$tool.$op"
}

# ---------------------------------------------------------------------------------------------------------
# Checking restores (as benches/compare.sh does)

# verify SERVER TOOL OP GENERATION DIR: compares DIR with the source tree and records the verdict; a
# chunkcache restore that is not exact stops the script.
verify() {
	local server=$1 tool=$2 op=$3 want=$WORK/digest/gen$4 got=$WORK/digest/got verdict
	digest "$5" "$got"
	verdict=$(verdict "$want" "$got")
	echo "$verdict" >"$RAW/$server.$tool.$op.exact"
	if [[ $tool == chunkcache && $verdict != yes ]]; then
		inexact "chunkcache $op on $server did not reproduce gen$4 exactly ($verdict)" "$want" "$got"
	fi
}

# ---------------------------------------------------------------------------------------------------------
# One server

bench_server() {
	local server=$1 r dst=$WORK/dst/chunkcache adst=$WORK/dst/archive
	for ((r = 1; r <= REPEAT; r++)); do
		log "$server: run $r of $REPEAT"
		start_server "$server" "$r"
		rm -rf "$dst" "$adst"
		mkdir -p "$dst" "$adst"

		measure "$server" chunkcache cold-save cc_save 0
		measure "$server" archive cold-save archive_save 0

		# The archive's restore first, so that its download and tree are gone before chunkcache's tree
		# lands: one copy of the tree less in memory (tmpfs) at the peak.
		measure "$server" archive cold-restore archive_restore 0 "$adst"
		rm -f "$WORK/download.tar.zst"
		if ((r == REPEAT)); then verify "$server" archive cold-restore 0 "$adst/gradle"; fi
		rm -rf "$adst"
		measure "$server" chunkcache cold-restore cc_restore 0 "$dst"
		verify "$server" chunkcache cold-restore 0 "$dst/gradle"

		measure "$server" chunkcache warm-save cc_save 1
		measure "$server" archive warm-save archive_save 1

		measure "$server" chunkcache incr-restore cc_restore 1 "$dst" --mirror
		verify "$server" chunkcache incr-restore 1 "$dst/gradle"
		stop_server
	done
	rm -rf "$dst"
}

# ---------------------------------------------------------------------------------------------------------
# Report

# col SERVER TOOL OP N: median of column N of the raw measurements.
col() { awk -v n="$4" '{ print $n }' "$RAW/$1.$2.$3" | median; }

# group NUMBER: rounded to an integer, with thousands separators (5,933).
group() {
	local n out=''
	n=$(printf '%.0f' "$1")
	while ((${#n} > 3)); do
		out=",${n: -3}$out"
		n=${n:0:${#n}-3}
	done
	echo "$n$out"
}

ratio() { awk -v v="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", v / b }'; }

# requests SERVER TOOL OP: "5,933 PUT + 2 GET + ..." from the medians of each kind.
requests() {
	local kinds=(PUT GET HEAD LIST DELETE POST other) i n text=''
	for i in "${!kinds[@]}"; do
		n=$(col "$1" "$2" "$3" $((i + 3)))
		if [[ $n != 0 ]]; then text+="${text:+ + }$(group "$n") ${kinds[i]}"; fi
	done
	echo "${text:-0}"
}

# per_gb SERVER TOOL OP: requests (sum of the kind medians) per GB (10^9 bytes) moved: uploaded by a save,
# downloaded by a restore.
per_gb() {
	local total=0 i bytes
	for i in 3 4 5 6 7 8 9; do total=$(awk -v t="$total" -v n="$(col "$1" "$2" "$3" "$i")" 'BEGIN { print t + n }'); done
	if [[ $3 == *save ]]; then bytes=$(col "$1" "$2" "$3" 10); else bytes=$(col "$1" "$2" "$3" 11); fi
	if [[ $bytes == 0 ]]; then echo -; else group "$(awk -v t="$total" -v b="$bytes" 'BEGIN { print t / (b / 1e9) }')"; fi
}

moved_mib() { # moved_mib SERVER TOOL OP
	local n=10
	[[ $3 == *restore ]] && n=11
	awk -v b="$(col "$1" "$2" "$3" "$n")" 'BEGIN { printf "%.1f", b / 1048576 }'
}

report_server() {
	local server=$1 op aop cw aw
	echo "### $server ($(server_version "$server"))"
	echo
	echo "| operation | chunkcache s | whole-archive s | ratio | chunkcache RSS MiB | whole-archive RSS MiB |" \
		"chunkcache requests (--json) | per GB | log | whole-archive requests (server log) | per GB |" \
		"chunkcache MiB moved | whole-archive MiB moved | chunkcache exact |"
	echo "|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---|"
	for op in "${OPS[@]}"; do
		# The whole-archive path has no incremental restore: it downloads everything again.
		aop=$op
		[[ $op == incr-restore ]] && aop=cold-restore
		cw=$(col "$server" chunkcache "$op" 1)
		aw=$(col "$server" archive "$aop" 1)
		printf '| %s | %.2f | %.2f%s | **%s** | %.0f | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
			"$op" "$cw" "$aw" "$([[ $op == incr-restore ]] && echo ' (its cold restore)')" "$(ratio "$cw" "$aw")" \
			"$(awk -v k="$(col "$server" chunkcache "$op" 2)" 'BEGIN { print k / 1024 }')" \
			"$(awk -v k="$(col "$server" archive "$aop" 2)" 'BEGIN { print k / 1024 }')" \
			"$(requests "$server" chunkcache "$op")" "$(per_gb "$server" chunkcache "$op")" \
			"$(group "$(col "$server" chunkcache "$op" 12)")" \
			"$(requests "$server" archive "$aop")" "$(per_gb "$server" archive "$aop")" \
			"$(moved_mib "$server" chunkcache "$op")" "$(moved_mib "$server" archive "$aop")" \
			"$(cat "$RAW/$server.chunkcache.$op.exact" 2>/dev/null || echo -)"
	done
	echo
	echo "whole-archive cold restore exact: $(cat "$RAW/$server.archive.cold-restore.exact")"
	echo
}

server_version() {
	case $1 in
	azurite) echo "Azurite $("$AZURITE_BIN" --version 2>/dev/null | tail -n 1), in memory" ;;
	moto) echo "moto $("$ROOT/.tools/moto/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))'), objects in memory: MOTO_S3_DEFAULT_KEY_BUFFER_SIZE=4 GiB" ;;
	esac
}

report() {
	local v
	v=$("$CHUNKCACHE" --version 2>/dev/null | head -n 1 || true)
	echo "## chunkcache vs the whole-archive path on object-store emulators: Gradle user home, gen0 → gen1"
	echo
	echo "- fixture: \`gradle-fixture --size $SIZE --seed $SEED\`: gen0 $FIXTURE0, gen1 $FIXTURE1;" \
		"$CHANGED of gen1's bytes are in files that differ from gen0"
	echo "- $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), work dir $WORK ($(stat -f -c %T "$WORK")), emulators on loopback"
	echo "- load average (1/5/15 min) at the start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg)" \
		"(on a shared machine, other work slows both paths: they alternate within each run)"
	echo "- chunkcache: ${v:-$CHUNKCACHE} ($CHUNKCACHE)${CC_ENV:+; environment: $CC_ENV}"
	echo "- whole-archive path: \`tar -cf - gradle | zstd -3 -T0\` ($(zstd --version | grep -o 'v[0-9.]*' | head -n 1)) uploaded as one" \
		"blob/object by $(sdk_versions) (8 in parallel); restore = SDK download into a tmpfs file, then" \
		"\`zstd -d | tar -x\`; Azure uploads $AZURE_BLOCK_MIB MiB blocks and downloads in parallel $AZURE_GET_MIB MiB" \
		"ranges after a first 32 MiB GET, S3 $S3_GET_NOTE"
	echo "- median of $REPEAT run(s), each on a fresh emulator; RSS = peak of the largest process (GNU time);" \
		"ratio = chunkcache / whole-archive (incr restore: / whole-archive cold restore)"
	echo "- requests: chunkcache's from its \`--json\` report, the whole-archive path's from the emulator's access log;" \
		"\"log\" = chunkcache's requests in that log (cross-check); per GB = requests per 10^9 bytes uploaded" \
		"(saves) or downloaded (restores); POST = S3 multipart start and completion"
	echo "- exact: restore == source (kinds, modes, sizes, symlink targets, MD5s, file mtimes to the ns)"
	echo
	for server in $SERVERS; do report_server "$server"; done
}

sdk_versions() {
	"$PY" -c 'import importlib.metadata as m; print("azure-storage-blob", m.version("azure-storage-blob") + ",", "boto3", m.version("boto3"))'
}

# ---------------------------------------------------------------------------------------------------------
# Main

ensure_packages
ensure_venv
ensure_servers
ensure_binaries
CC_ENV=$(compgen -e | grep '^CHUNKCACHE_' | while read -r n; do printf '%s=%s ' "$n" "${!n}"; done || true)
CC_ENV=${CC_ENV% }

if [[ ${S3_RANGED_GET:-} == 1 ]]; then
	S3_GET_NOTE="in parallel 8 MiB ranges (S3_RANGED_GET=1)"
else
	S3_GET_NOTE="in one GET (moto reads the whole object for each ranged GET: 15x slower here)"
fi
export S3_RANGED_GET SDK_AZURE_BLOCK_MIB SDK_AZURE_GET_MIB
AZURE_BLOCK_MIB=${SDK_AZURE_BLOCK_MIB:-4} AZURE_GET_MIB=${SDK_AZURE_GET_MIB:-4}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$WORK"
rm -rf "$WORK/trees" "$WORK/dst" "$WORK/raw" "$WORK/logs" "$WORK/tmp" "$WORK/digest"
RAW=$WORK/raw LOGS=$WORK/logs
mkdir -p "$RAW" "$LOGS" "$WORK/tmp" "$WORK/digest" "$WORK/trees/gen0" "$WORK/trees/gen1" "$WORK/dst"

log "fixture: gen0 and gen1, size $SIZE, seed $SEED"
"$FIXTURE_BIN" --size "$SIZE" --seed "$SEED" --generation 0 "$WORK/trees/gen0/gradle" 2>>"$LOGS/fixture.log" ||
	die "fixture generation failed: $LOGS/fixture.log"
# gen1 is gen0 changed in place, like a CI workspace after a build: unchanged files keep their mtimes.
cp -a "$WORK/trees/gen0/gradle" "$WORK/trees/gen1/gradle"
"$FIXTURE_BIN" --size "$SIZE" --seed "$SEED" --generation 1 "$WORK/trees/gen1/gradle" 2>>"$LOGS/fixture.log" ||
	die "fixture generation failed: $LOGS/fixture.log"
digest_fixture

for server in $SERVERS; do
	bench_server "$server"
done

report | tee "$WORK/results.md"
# The trees take twice SIZE of memory (tmpfs): gone unless asked for.
if [[ -z ${KEEP:-} ]]; then rm -rf "$WORK/trees" "$WORK/tmp" "$WORK/digest"; fi
log "results in $WORK/results.md, logs in $LOGS"
