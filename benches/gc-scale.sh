#!/usr/bin/env bash
# GC at scale (issue 10's figures): a generated store of KEYS keys (default 1,000) and about
# 200 new chunks per key (>= 200,000 chunks), then `chunkcache gc` on it: wall time, peak RSS
# (GNU time), requests by kind, keys expired, packs condemned and deleted, bytes reclaimed; and
# peak RSS per referenced chunk (the issue's bound: 64 bytes).
#
# Usage (from anywhere in the repository):
#   benches/gc-scale.sh                                   # local file:// store on /dev/shm
#   KEYS=100 AZURITE=1 benches/gc-scale.sh                # the same on Azurite (smaller)
#
# Environment:
#   KEYS=1000        keys saved, one generation each
#   FILES=25         files per tree        FILE_KB=1000  size of each file (noise: nothing compresses)
#   CHUNK=4K         average chunk size of the store (small, so that chunks are many and cheap)
#   WORK=/dev/shm/chunkcache-gc-scale      tree, store and logs (removed first)
#   CHUNKCACHE=...   binary (default target/release/chunkcache; build it under
#                    `flock /tmp/release-build.lock cargo build --release` on a shared machine)
#   AZURITE=1        run on a fresh in-memory Azurite from .tools/ instead of a local folder
#   GENERATE_WITH=... binary for the saves that generate the store (default CHUNKCACHE): a debug
#                    build generates while the release build waits for its lock
#
# The 4K chunker averages about 4.8 KiB: the defaults give about 210,000 chunks.
#
# How the store is generated cheaply: one tree of FILES x FILE_KB (25 MB by default); key
# `scale/N` is the tree after generation N rewrote one file with fresh noise, saved with the
# previous key as its parent, so each save uploads one file's chunks (about 210 at 4K) in one
# pack, and references all 5,300 chunks of its tree: 1,000 keys are 25.6 GB of logical data in
# a store of about 1 GiB. GC then runs three times:
#   1. --dry-run, every key live: peak RSS against the referenced chunks (GC and verify count them);
#   2. --max-size of half the keys' sizes, --grace 1s: the least recently used half expires and
#      the packs only they referenced are condemned;
#   3. a grace later: the condemned packs are deleted.
# A baseline dry run on a one-key store gives the RSS that does not depend on the store.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KEYS=${KEYS:-1000}
FILES=${FILES:-25}
FILE_KB=${FILE_KB:-1000}
CHUNK=${CHUNK:-4K}
WORK=${WORK:-/dev/shm/chunkcache-gc-scale}
CHUNKCACHE=${CHUNKCACHE:-$ROOT/target/release/chunkcache}
AZURITE=${AZURITE:-}

BENCH=gc-scale
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

[[ -x /usr/bin/time ]] || die "GNU time is missing: apt-get install time"
[[ -x $CHUNKCACHE ]] || die "$CHUNKCACHE not found: cargo build --release (or set CHUNKCACHE)"
CHUNKCACHE=$(realpath "$CHUNKCACHE")
GENERATE_WITH=$(realpath "${GENERATE_WITH:-$CHUNKCACHE}")
command -v jq >/dev/null || die "jq is missing: apt-get install jq"
rm -rf "$WORK"
mkdir -p "$WORK/tree" "$WORK/logs"

if [[ -n $AZURITE ]]; then
	azurite=$ROOT/.tools/azurite/node_modules/.bin/azurite-blob
	[[ -x $azurite ]] || die "Azurite is not installed: scripts/install-test-servers.sh"
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	"$azurite" --blobHost 127.0.0.1 --blobPort "$port" --inMemoryPersistence --disableTelemetry \
		--skipApiVersionCheck --loose --silent >"$WORK/logs/azurite.log" 2>&1 &
	azurite_pid=$!
	trap 'kill $azurite_pid 2>/dev/null || true' EXIT
	for _ in $(seq 100); do
		(echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
		sleep 0.1
	done
	export AZURE_STORAGE_ACCOUNT=devstoreaccount1
	export AZURE_STORAGE_KEY=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==
	export AZURE_STORAGE_ENDPOINT=http://127.0.0.1:$port/devstoreaccount1
	STORE=az://scale/ci
	BASELINE_STORE=az://baseline/ci
else
	STORE=file://$WORK/store
	BASELINE_STORE=file://$WORK/baseline
fi

cc() { "$GENERATE_WITH" "$@"; }

# measure NAME COMMAND...: runs COMMAND under GNU time, its stdout (JSON) to logs/NAME.json;
# prints "seconds peak_rss_kib".
measure() {
	local name=$1
	shift
	/usr/bin/time -f "%e %M" -o "$WORK/logs/$name.time" "$@" >"$WORK/logs/$name.json" 2>"$WORK/logs/$name.err" || {
		local code=$?
		# gc exits 5 when there was nothing to do: not a failure here.
		[[ $code -eq 5 ]] || die "$* failed ($code): see $WORK/logs/$name.err"
	}
	tail -n 1 "$WORK/logs/$name.time"
}

log "generating $KEYS keys of $FILES x $FILE_KB KB (chunks of $CHUNK) in $STORE"
for n in $(seq 0 $((FILES - 1))); do
	head -c $((FILE_KB * 1024)) /dev/urandom >"$WORK/tree/f$n"
done
started=$(date +%s)
for key in $(seq 1 "$KEYS"); do
	head -c $((FILE_KB * 1024)) /dev/urandom >"$WORK/tree/f$((key % FILES))"
	# The key's folder gives the parent: the newest key under scale/, the previous generation.
	(cd "$WORK" && cc save --store "$STORE" --key "scale/$(printf %05d "$key")" --chunk-size "$CHUNK" tree 2>/dev/null)
	if ((key % 100 == 0)); then log "  $key keys saved ($(($(date +%s) - started)) s)"; fi
done
head -c 100000 /dev/urandom >"$WORK/tree/f0"
(cd "$WORK" && cc save --store "$BASELINE_STORE" --key one --chunk-size "$CHUNK" tree/f0 2>/dev/null)

log "verify --read-data: the distinct chunks the keys reference"
read -r verify_s verify_kb < <(measure verify "$CHUNKCACHE" verify --store "$STORE" --read-data --json)
chunks=$(jq .chunks_verified "$WORK/logs/verify.json")
packs=$(jq .packs "$WORK/logs/verify.json")
logical=$(cc list --store "$STORE" --json 2>/dev/null | jq '[.[].bytes] | add' 2>/dev/null || echo "?")

log "gc runs"
read -r base_s base_kb < <(measure baseline "$CHUNKCACHE" gc --store "$BASELINE_STORE" --dry-run --json)
read -r dry_s dry_kb < <(measure dry "$CHUNKCACHE" gc --store "$STORE" --dry-run --json)
key_bytes=$(jq '.store_bytes_before' "$WORK/logs/dry.json")
# Each key is counted at its own stored size (its tree): half of them fit in half the sum.
half=$((KEYS / 2 * FILES * FILE_KB * 1024 + FILES * FILE_KB * 1024 / 2))
read -r first_s first_kb < <(measure first "$CHUNKCACHE" gc --store "$STORE" --max-size "$half" --grace 1s --json)
sleep 2.1
read -r second_s second_kb < <(measure second "$CHUNKCACHE" gc --store "$STORE" --max-size "$half" --grace 1s --json)
read -r _ _ < <(measure verify-after "$CHUNKCACHE" verify --store "$STORE" --json)
[[ $(jq '.damaged | length' "$WORK/logs/verify-after.json") -eq 0 ]] || die "verify found damaged keys after GC"

row() { # row NAME SECONDS KB: one table row from logs/NAME.json
	jq -r --arg name "$1" --arg s "$2" --arg kb "$3" '"| \($name) | \($s) s | \(($kb|tonumber)/1024*10|floor/10) MiB | \(.keys) | \(.expired) | \(.condemned) | \(.deleted) | \(.bytes_reclaimed/1048576*10|floor/10) MiB | \(.waste_bytes/1048576*10|floor/10) MiB | \(.requests.list) LIST, \(.requests.get) GET, \(.requests.head) HEAD, \(.requests.put) PUT, \(.requests.delete) DELETE |"' "$WORK/logs/$1.json"
}

echo "store: $STORE: $KEYS keys, $packs packs, $chunks distinct chunks referenced, $((key_bytes / 1048576)) MiB of packs, logical ${logical} bytes"
echo "verify --read-data: ${verify_s} s, peak RSS $((verify_kb / 1024)) MiB"
echo
echo "| run | wall | peak RSS | keys | expired | condemned | deleted | reclaimed | waste in live packs | requests |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
row baseline "$base_s" "$base_kb"
row dry "$dry_s" "$dry_kb"
row first "$first_s" "$first_kb"
row second "$second_s" "$second_kb"
echo
referenced=$(jq .referenced_chunks "$WORK/logs/dry.json")
# GC counts chunk locations (a chunk stored in two packs counts twice), verify distinct ids.
[[ $referenced -eq $chunks ]] || log "note: gc counted $referenced referenced chunk locations, verify $chunks distinct chunks"
per_chunk=$(((dry_kb - base_kb) * 1024 / referenced))
echo "peak RSS above the one-key baseline, per referenced chunk (dry run, every key live): $per_chunk bytes (bound: 64)"
# Below 100,000 chunks the fixed costs (one decoded manifest, buffers) outweigh the chunks.
if ((referenced >= 100000)); then
	[[ $per_chunk -le 64 ]] || die "more than 64 bytes per referenced chunk"
else
	log "only $referenced referenced chunks: fixed costs dominate, the 64-byte bound is not checked"
fi
