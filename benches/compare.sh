#!/usr/bin/env bash
# End-to-end comparison of chunkcache with `tar | gzip`, `tar | zstd` and restic, on the same generated
# Gradle user home, generation 0 then generation 1 (about 5-15 % of the bytes changed; see fixtures/gradle.rs).
#
# Usage (from anywhere in the repository; needs root or sudo only to apt-get install missing tools):
#   benches/compare.sh
#   SIZE=256M REPEAT=1 benches/compare.sh
#   TOOLS="tar-zstd restic" SKIP_BUILD=1 benches/compare.sh
#
# Environment:
#   SIZE=1G        fixture size (K/M/G suffixes)          SEED=1        fixture seed
#   REPEAT=3       runs per measurement; the median is reported
#   WORK=/dev/shm/chunkcache-bench   scratch directory (tmpfs: disk speed does not interfere; the page cache
#                                     cannot be dropped there, which is fine: everything stays in RAM)
#   TOOLS="chunkcache tar-gzip tar-zstd restic"   which tools to measure
#   SKIP_BUILD=1   do not run `cargo build --release` (use the existing target/release/chunkcache)
#   CHUNKCACHE=... chunkcache binary (default target/release/chunkcache)
#   FIXTURE_BIN=...  prebuilt gradle-fixture binary (default: `cargo run --release --example gradle-fixture`)
#   KEEP=1         keep the stores and restores under $WORK afterwards
#
# Measured operations, for each tool:
#   cold save       gen0 into an empty store (tar: the gen0 archive)
#   warm save       gen1 into the store that already holds gen0 (tar: the full gen1 archive)
#   cold restore    gen0 into an empty directory
#   incr restore    gen1 over an existing copy of gen0 (chunkcache --mirror; tar: full extract over it;
#                   restic: `restore --target`, with --overwrite if-changed / --delete when supported)
# Metrics: wall time, CPU (user+sys, all processes), peak RSS (largest single process, from GNU time),
# bytes added to the store (du -sb before/after; tar: archive size). Each restore is checked against the
# source tree (paths, kinds, modes, sizes, symlink targets, MD5 of every file, file mtimes). A chunkcache
# restore that is not exact fails the script; other tools' results are only reported.
#
# The markdown table goes to stdout and to $WORK/results.md; tool output goes to $WORK/logs/.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZE=${SIZE:-1G}
SEED=${SEED:-1}
REPEAT=${REPEAT:-3}
WORK=${WORK:-/dev/shm/chunkcache-bench}
TOOLS=${TOOLS:-chunkcache tar-gzip tar-zstd restic}
CHUNKCACHE=${CHUNKCACHE:-$ROOT/target/release/chunkcache}
OPS=(cold-save warm-save cold-restore incr-restore)

export RESTIC_PASSWORD=chunkcache-bench-dummy-password
export CHUNKCACHE

BENCH=compare
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a positive integer, got '$REPEAT'"
for tool in $TOOLS; do
	case $tool in
	chunkcache | tar-gzip | tar-zstd | restic) ;;
	*) die "unknown tool '$tool' in TOOLS (known: chunkcache tar-gzip tar-zstd restic)" ;;
	esac
done
wants() { [[ " $TOOLS " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------------------------
# Tools

ensure_tools() {
	local missing=()
	[[ -x /usr/bin/time ]] || missing+=(time)
	command -v zstd >/dev/null || missing+=(zstd)
	command -v gzip >/dev/null || missing+=(gzip)
	command -v tar >/dev/null || missing+=(tar)
	if wants restic; then command -v restic >/dev/null || missing+=(restic); fi
	apt_install "${missing[@]}"
}

build() {
	if [[ -z ${SKIP_BUILD:-} ]] && wants chunkcache; then
		log "cargo build --release"
		(cd "$ROOT" && cargo build --release) || die "cargo build --release failed"
	fi
	if wants chunkcache; then
		[[ -x $CHUNKCACHE ]] || die "$CHUNKCACHE not found: build it, or leave chunkcache out of TOOLS"
		CHUNKCACHE=$(realpath "$CHUNKCACHE") # absolute: the saves run in another directory
	fi
}

fixture() { # fixture GENERATION DIR
	if [[ -n ${FIXTURE_BIN:-} ]]; then
		"$FIXTURE_BIN" --size "$SIZE" --seed "$SEED" --generation "$1" "$2"
	else
		(cd "$ROOT" && cargo run --quiet --release --example gradle-fixture -- \
			--size "$SIZE" --seed "$SEED" --generation "$1" "$2")
	fi
}

# One save or restore. These run under /usr/bin/time in a child bash (hence `export -f`), so that a
# pipeline is measured as a whole. A save runs in $WORK/src, which holds the tree as `gradle`.
tool_save() { # tool_save TOOL STORE KEY
	case $1 in
	chunkcache) "$CHUNKCACHE" save --store "file://$2" --key "$3" gradle ;;
	tar-gzip) tar -cf - gradle | gzip -6 >"$2/$3.tar.gz" ;;
	tar-zstd) tar -cf - gradle | zstd -3 -T0 -q >"$2/$3.tar.zst" ;;
	restic) restic --no-cache -r "$2" backup --host bench --tag "$3" gradle ;;
	esac
}

tool_restore() { # tool_restore TOOL STORE KEY DEST cold|incr
	case $1 in
	chunkcache)
		if [[ $5 == incr ]]; then
			"$CHUNKCACHE" restore --store "file://$2" --key "$3" --mirror "$4"
		else
			"$CHUNKCACHE" restore --store "file://$2" --key "$3" "$4"
		fi
		;;
	tar-gzip) gzip -dc "$2/$3.tar.gz" | tar -C "$4" -xf - ;;
	tar-zstd) zstd -dc -q "$2/$3.tar.zst" | tar -C "$4" -xf - ;;
	restic)
		local flags=()
		if [[ $5 == incr ]]; then
			# shellcheck disable=SC2206 # deliberately split
			flags=($RESTIC_INCR_FLAGS)
		fi
		restic --no-cache -r "$2" restore latest --host bench --tag "$3" --target "$4" "${flags[@]}"
		;;
	esac
}
export -f tool_save tool_restore

tool_name() {
	case $1 in
	chunkcache) echo "chunkcache" ;;
	tar-gzip) echo "tar \\| gzip -6" ;;
	tar-zstd) echo "tar \\| zstd -3 -T0" ;;
	restic) echo "restic" ;;
	esac
}

# ---------------------------------------------------------------------------------------------------------
# Measurement

# measure TOOL OP CMD... : runs CMD under GNU time and appends "wall cpu rss_kb" to $RAW/TOOL.OP.
# A failing chunkcache stops the script; another tool's failure is recorded in $RAW/TOOL.OP.status and
# shown in the report.
measure() {
	local tool=$1 op=$2
	shift 2
	local timing=$WORK/timing.txt logfile=$LOGS/$tool.$op.log rc=0
	printf '\n### %s %s: %s\n' "$tool" "$op" "$*" >>"$logfile"
	/usr/bin/time -f '%e %U %S %M' -o "$timing" bash -c 'set -euo pipefail; "$@"' _ "$@" \
		>>"$logfile" 2>&1 || rc=$?
	if ((rc != 0)); then
		tail -n 20 "$logfile" >&2
		[[ $tool == chunkcache ]] && die "$tool $op failed (log: $logfile)"
		log "WARNING: $tool $op exited with status $rc (log: $logfile); recorded in the report"
		echo "exit $rc" >"$RAW/$tool.$op.status"
	fi
	local wall user sys rss
	# On failure GNU time writes a "Command exited with non-zero status" line first.
	read -r wall user sys rss < <(tail -n 1 "$timing")
	echo "$wall $(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }') $rss" >>"$RAW/$tool.$op"
}

store_bytes() { if [[ -e $1 ]]; then du -sb "$1" | cut -f1; else echo 0; fi; }

# col TOOL OP N: median of column N of the raw measurements.
col() { awk -v n="$3" '{ print $n }' "$RAW/$1.$2" | median; }

# The tree at $WORK/src/gradle is a generation moved in from $WORK/trees (a rename: same path for every
# save, as in CI, so restic finds its parent snapshot).
LIVE=
park() {
	if [[ -n $LIVE ]]; then
		mv "$WORK/src/gradle" "$WORK/trees/gen$LIVE/gradle"
		LIVE=
	fi
}
use_tree() {
	park
	mv "$WORK/trees/gen$1/gradle" "$WORK/src/gradle"
	LIVE=$1
}
trap park EXIT

# verify TOOL OP GENERATION DIR: compares DIR with the source tree and records the verdict.
verify() {
	local tool=$1 op=$2 want=$WORK/digest/gen$3 got=$WORK/digest/got verdict
	digest "$4" "$got"
	verdict=$(verdict "$want" "$got")
	if [[ -f $RAW/$tool.$op.status ]]; then verdict="$(cat "$RAW/$tool.$op.status"); $verdict"; fi
	echo "$verdict" >"$RAW/$tool.$op.exact"
	if [[ $tool == chunkcache && $verdict != yes ]]; then
		inexact "chunkcache $op did not reproduce gen$3 exactly ($verdict)" "$want" "$got"
	fi
}

fresh_store() { # fresh_store TOOL STORE
	rm -rf "$2"
	if [[ $1 == restic ]]; then
		restic --no-cache -q -r "$2" init >>"$LOGS/restic.init.log" 2>&1
	else
		mkdir -p "$2"
	fi
}

bench_tool() {
	local tool=$1 store=$WORK/stores/$1 dst=$WORK/dst r before
	log "$tool: cold save x$REPEAT"
	for ((r = 1; r <= REPEAT; r++)); do
		fresh_store "$tool" "$store"
		use_tree 0
		before=$(store_bytes "$store")
		(cd "$WORK/src" && measure "$tool" cold-save tool_save "$tool" "$store" gen0)
		echo $(($(store_bytes "$store") - before)) >>"$RAW/$tool.cold-save.bytes"
	done
	rm -rf "$store.gen0"
	cp -a "$store" "$store.gen0"

	log "$tool: warm save x$REPEAT"
	for ((r = 1; r <= REPEAT; r++)); do
		rm -rf "$store"
		cp -a "$store.gen0" "$store"
		use_tree 1
		before=$(store_bytes "$store")
		(cd "$WORK/src" && measure "$tool" warm-save tool_save "$tool" "$store" gen1)
		echo $(($(store_bytes "$store") - before)) >>"$RAW/$tool.warm-save.bytes"
	done
	park
	rm -rf "$store.gen0"

	log "$tool: cold restore x$REPEAT"
	for ((r = 1; r <= REPEAT; r++)); do
		rm -rf "$dst"
		mkdir -p "$dst"
		measure "$tool" cold-restore tool_restore "$tool" "$store" gen0 "$dst" cold
		if [[ $tool == chunkcache || $r == "$REPEAT" ]]; then
			verify "$tool" cold-restore 0 "$dst/gradle"
		fi
	done

	log "$tool: incremental restore x$REPEAT"
	for ((r = 1; r <= REPEAT; r++)); do
		rm -rf "$dst"
		mkdir -p "$dst"
		cp -a "$WORK/trees/gen0/gradle" "$dst/gradle"
		measure "$tool" incr-restore tool_restore "$tool" "$store" gen1 "$dst" incr
		if [[ $tool == chunkcache || $r == "$REPEAT" ]]; then
			verify "$tool" incr-restore 1 "$dst/gradle"
		fi
	done
	if [[ -z ${KEEP:-} ]]; then rm -rf "$store" "$dst"; fi
}

# ---------------------------------------------------------------------------------------------------------
# Report

ratio() { # ratio VALUE BASE
	awk -v v="$1" -v b="$2" 'BEGIN { if (b == "" || b == "nan" || v == "nan" || b + 0 == 0) print "-"; else printf "%.2f", v / b }'
}

report() {
	local cc=
	wants chunkcache && cc=chunkcache
	echo "## chunkcache vs tar/restic: Gradle user home, gen0 → gen1"
	echo
	echo "- fixture: \`gradle-fixture --size $SIZE --seed $SEED\`: gen0 $FIXTURE0, gen1 $FIXTURE1;" \
		"$CHANGED of gen1's bytes are in files that differ from gen0"
	echo "- $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), work dir $WORK ($(stat -f -c %T "$WORK"))"
	echo "- median of $REPEAT run(s); CPU = user+sys of all processes; RSS = peak of the largest process;" \
		"×cc = this tool / chunkcache"
	echo "- exact: restore == source (kinds, modes, sizes, symlink targets, MD5s, file mtimes to the ns);" \
		"\"+X/-Y entries\": listing lines only in the restore / only in the source (a changed file counts in both)"
	echo "- versions: $VERSIONS"
	[[ -n $RESTIC_NOTE ]] && echo "- $RESTIC_NOTE"
	echo
	echo "| operation | tool | wall s | wall ×cc | CPU s | CPU ×cc | peak RSS MiB | store +MiB | store ×cc | exact |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
	local op tool wall cpu rss bytes cc_wall cc_cpu cc_bytes mib exact
	for op in "${OPS[@]}"; do
		cc_wall='' cc_cpu='' cc_bytes=''
		if [[ -n $cc ]]; then
			cc_wall=$(col chunkcache "$op" 1)
			cc_cpu=$(col chunkcache "$op" 2)
			[[ -f $RAW/chunkcache.$op.bytes ]] && cc_bytes=$(median <"$RAW/chunkcache.$op.bytes")
		fi
		for tool in $TOOLS; do
			wall=$(col "$tool" "$op" 1)
			cpu=$(col "$tool" "$op" 2)
			rss=$(col "$tool" "$op" 3)
			mib='-' bytes=''
			if [[ -f $RAW/$tool.$op.bytes ]]; then
				bytes=$(median <"$RAW/$tool.$op.bytes")
				mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
			fi
			exact=$(cat "$RAW/$tool.$op.exact" 2>/dev/null || echo "-")
			printf '| %s | %s | %.2f | %s | %.2f | %s | %.0f | %s | %s | %s |\n' \
				"$op" "$(tool_name "$tool")" "$wall" "$(ratio "$wall" "$cc_wall")" \
				"$cpu" "$(ratio "$cpu" "$cc_cpu")" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" \
				"$mib" "$(if [[ -n $bytes ]]; then ratio "$bytes" "$cc_bytes"; else echo -; fi)" "$exact"
		done
	done
}

# ---------------------------------------------------------------------------------------------------------
# Main

ensure_tools
build

RESTIC_INCR_FLAGS='' RESTIC_NOTE=''
if wants restic; then
	help=$(restic restore --help)
	if grep -q -- '--overwrite' <<<"$help"; then RESTIC_INCR_FLAGS+=" --overwrite if-changed"; fi
	if grep -q -- '--delete' <<<"$help"; then RESTIC_INCR_FLAGS+=" --delete"; fi
	if [[ $RESTIC_INCR_FLAGS != *--overwrite* || $RESTIC_INCR_FLAGS != *--delete* ]]; then
		RESTIC_NOTE="$(restic version | cut -d' ' -f1-2) has no \`restore --overwrite\`/\`--delete\`:"
		RESTIC_NOTE+=" its incremental restore rewrites every file and leaves files gen1 removed"
	fi
fi
export RESTIC_INCR_FLAGS

mkdir -p "$WORK"
rm -rf "$WORK/src" "$WORK/stores" "$WORK/dst" "$WORK/raw" "$WORK/logs" "$WORK/digest"
RAW=$WORK/raw LOGS=$WORK/logs
mkdir -p "$WORK/src" "$WORK/stores" "$RAW" "$LOGS" "$WORK/digest" "$WORK/trees/gen0" "$WORK/trees/gen1"

log "fixture: gen0 and gen1, size $SIZE, seed $SEED"
fixture 0 "$WORK/trees/gen0/gradle" 2>>"$LOGS/fixture.log" || die "fixture generation failed: $LOGS/fixture.log"
# gen1 is gen0 changed in place, like a CI workspace after a build: unchanged files keep their mtimes.
rm -rf "$WORK/trees/gen1/gradle"
cp -a "$WORK/trees/gen0/gradle" "$WORK/trees/gen1/gradle"
fixture 1 "$WORK/trees/gen1/gradle" 2>>"$LOGS/fixture.log" || die "fixture generation failed: $LOGS/fixture.log"
digest_fixture

VERSIONS=
for tool in $TOOLS; do
	case $tool in
	chunkcache)
		v=$("$CHUNKCACHE" --version 2>/dev/null | head -n 1 || true)
		v="${v:-chunkcache} (commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
		;;
	tar-gzip) v="$(tar --version | head -n 1), gzip $(gzip --version | head -n 1 | awk '{ print $2 }')" ;;
	tar-zstd) v="zstd $(zstd --version | grep -o 'v[0-9.]*' | head -n 1)" ;;
	restic) v=$(restic version | cut -d' ' -f1-2) ;;
	esac
	VERSIONS+="${VERSIONS:+; }$v"
done

for tool in $TOOLS; do
	bench_tool "$tool"
done

report | tee "$WORK/results.md"
log "results in $WORK/results.md, logs in $LOGS"
