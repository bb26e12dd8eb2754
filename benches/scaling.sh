#!/usr/bin/env bash
# Scaling of one cold save and one cold restore with the size of the cache: wall time and peak RSS
# (GNU time) on generated Gradle homes of several sizes, to a local `file://` store. This is the README's
# scaling table; it shows whether memory stays flat as the tree grows (issue 9).
#
# Usage (from anywhere in the repository):
#   benches/scaling.sh
#   SIZES="512M 2G" benches/scaling.sh
#   SIZES=8G STORE_DIR=/work/scratch/scaling RESTORE_DIR=/dev/shm/cc-restored benches/scaling.sh   # when /dev/shm is short
#
# Environment:
#   SIZES="512M 2G 8G"   fixture sizes (K/M/G suffixes)          SEED=1   fixture seed
#   WORK=/dev/shm/chunkcache-scaling   where the trees are generated (kept between runs: generation
#                                      is the slow part, and a tree of a given size and seed never changes)
#   STORE_DIR=$WORK    where the store goes (a disk path if tmpfs is short: packs are few large files)
#   RESTORE_DIR=$STORE_DIR   where the restored tree goes (keep it on tmpfs: file creation on a disk costs
#                      about 1 ms a file)
#   CHUNKCACHE=...     chunkcache binary (default target/release/chunkcache; build it first, under
#                      `flock /tmp/release-build.lock` on a shared machine)
#   FIXTURE_BIN=...    gradle-fixture binary (default target/release/examples/gradle-fixture)
#
# Each restore is checked against its source: the same number of regular files and of bytes in them.
# The markdown table goes to stdout.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZES=${SIZES:-512M 2G 8G}
SEED=${SEED:-1}
WORK=${WORK:-/dev/shm/chunkcache-scaling}
STORE_DIR=${STORE_DIR:-$WORK}
RESTORE_DIR=${RESTORE_DIR:-$STORE_DIR}
CHUNKCACHE=${CHUNKCACHE:-$ROOT/target/release/chunkcache}
FIXTURE_BIN=${FIXTURE_BIN:-$ROOT/target/release/examples/gradle-fixture}

BENCH=scaling
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

[[ -x /usr/bin/time ]] || die "GNU time is missing: apt-get install time"
[[ -x $CHUNKCACHE ]] || die "$CHUNKCACHE not found: cargo build --release (or set CHUNKCACHE)"
[[ -x $FIXTURE_BIN ]] || die "$FIXTURE_BIN not found: cargo build --release --example gradle-fixture (or set FIXTURE_BIN)"
mkdir -p "$WORK" "$STORE_DIR" "$RESTORE_DIR"

# measure LOG COMMAND...: runs COMMAND under GNU time; prints "seconds max_rss_kib".
measure() {
	local log=$1
	shift
	/usr/bin/time -v -o "$log.time" "$@" >"$log" 2>&1 || die "$* failed: see $log"
	awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i] }
		/Maximum resident/ { rss = $2 } END { printf "%.1f %d\n", s, rss }' "$log.time"
}

summary() { # summary DIR: "files bytes" of its regular files (a directory's own size depends on its history)
	find "$1" -type f -printf '%s\n' | awk '{ n++; b += $1 } END { printf "%d %.0f\n", n, b }'
}

echo "| size | files | save | save peak RSS | restore | restore peak RSS |"
echo "|---|---|---|---|---|---|"
for size in $SIZES; do
	tree=$WORK/tree-$size-$SEED
	if [[ ! -d $tree/gradle ]]; then
		log "generating $size (seed $SEED) in $tree"
		"$FIXTURE_BIN" --size "$size" --seed "$SEED" "$tree/gradle" 2>"$tree.fixture.log" ||
			die "fixture generation failed: $tree.fixture.log"
	fi
	store=$STORE_DIR/store-$size
	restored=$RESTORE_DIR/restored-$size
	rm -rf "$store" "$restored"
	log "$size: cold save"
	read -r save_s save_kib < <(cd "$tree" && measure "$STORE_DIR/save-$size.log" "$CHUNKCACHE" save --store "file://$store" --key scaling gradle) || true
	[[ -n ${save_kib:-} ]] || die "$size: the save failed: see $STORE_DIR/save-$size.log"
	log "$size: cold restore"
	read -r restore_s restore_kib < <(measure "$STORE_DIR/restore-$size.log" "$CHUNKCACHE" restore --store "file://$store" --key scaling "$restored") || true
	[[ -n ${restore_kib:-} ]] || die "$size: the restore failed: see $STORE_DIR/restore-$size.log"
	read -r files bytes < <(summary "$tree/gradle")
	[[ "$(summary "$restored/gradle")" == "$files $bytes" ]] || die "$size: the restore differs from the source"
	rm -rf "$store" "$restored"
	printf '| %s (%.2f GB) | %s | %s s | %d MiB | %s s | %d MiB |\n' "$size" "$(awk -v b="$bytes" 'BEGIN { print b / 1e9 }')" "$files" \
		"$save_s" "$((save_kib / 1024))" "$restore_s" "$((restore_kib / 1024))"
done
