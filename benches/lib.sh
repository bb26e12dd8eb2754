# Shared by the benchmark scripts: `source` it after setting BENCH, the name their log lines carry.
# shellcheck shell=bash

log() { printf '[%s] %s\n' "$BENCH" "$*" >&2; }
die() {
	printf '[%s] ERROR: %s\n' "$BENCH" "$*" >&2
	exit 1
}

# apt_install PACKAGE...: installs the Debian packages named (nothing when none is), with sudo when not root.
apt_install() {
	(($# > 0)) || return 0
	log "installing $*"
	local sudo=()
	if ((EUID != 0)); then
		command -v sudo >/dev/null || die "missing $*, and not root (no sudo) to install them"
		sudo=(sudo)
	fi
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null
}

median() { # median < numbers
	sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# digest DIR OUT: OUT.list (kind, mode, size, path; symlink targets), OUT.sums (MD5 of every file),
# OUT.mtime (mtimes of regular files, in ns).
digest() {
	(
		cd "$1"
		find . \( -type d -printf 'd %m %p\n' \) -o \( -type l -printf 'l %p -> %l\n' \) \
			-o \( -type f -printf 'f %m %s %p\n' \) -o -printf '? %p\n' | LC_ALL=C sort >"$2.list"
		find . -type f -print0 | xargs -0 -r -P "$(nproc)" -n 256 md5sum | LC_ALL=C sort >"$2.sums"
		find . -type f -printf '%T@ %p\n' | LC_ALL=C sort -k2 >"$2.mtime"
	)
}

# verdict WANT GOT: how the digest GOT compares with WANT: "yes", "no: mtimes", or what differs.
verdict() {
	local want=$1 got=$2
	if cmp -s "$want.list" "$got.list" && cmp -s "$want.sums" "$got.sums"; then
		if cmp -s "$want.mtime" "$got.mtime"; then echo yes; else echo "no: mtimes"; fi
	else
		local extra missing changed
		extra=$(LC_ALL=C comm -13 "$want.list" "$got.list" | wc -l)
		missing=$(LC_ALL=C comm -23 "$want.list" "$got.list" | wc -l)
		changed=$(LC_ALL=C comm -13 "$want.sums" "$got.sums" | wc -l)
		echo "no: +$extra/-$missing entries, $changed contents"
	fi
}

# inexact WHAT WANT GOT: stops the script on a chunkcache restore that is not exact, showing the first
# differences between the digests WANT and GOT.
inexact() {
	{
		echo "$1. First differences:"
		diff "$2.list" "$3.list" | head -n 20 || true
		diff "$2.sums" "$3.sums" | head -n 10 || true
		diff "$2.mtime" "$3.mtime" | head -n 10 || true
	} >&2
	die "chunkcache restore is not byte-exact"
}

# describe LIST: "N files, M MiB" of a digest's list.
describe() { awk '$1 == "f" { n++; b += $3 } END { printf "%d files, %.1f MiB", n, b / 1048576 }' "$1"; }

# digest_fixture: digests of the generations in $WORK/trees/gen{0,1}/gradle into $WORK/digest/gen{0,1}, and
# FIXTURE0, FIXTURE1 (their sizes) and CHANGED (the share of gen1's bytes in files whose path and content
# are not in gen0) for the report.
digest_fixture() {
	digest "$WORK/trees/gen0/gradle" "$WORK/digest/gen0"
	digest "$WORK/trees/gen1/gradle" "$WORK/digest/gen1"
	FIXTURE0=$(describe "$WORK/digest/gen0.list")
	FIXTURE1=$(describe "$WORK/digest/gen1.list")
	CHANGED=$(LC_ALL=C comm -13 "$WORK/digest/gen0.sums" "$WORK/digest/gen1.sums" | cut -c35- |
		(cd "$WORK/trees/gen1/gradle" && tr '\n' '\0' | xargs -0 -r stat -c %s) |
		awk -v total="$(awk '$1 == "f" { b += $3 } END { print b }' "$WORK/digest/gen1.list")" \
			'{ b += $1 } END { printf "%.1f %%", 100 * b / total }')
}
