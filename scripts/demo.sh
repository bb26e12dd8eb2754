#!/usr/bin/env bash
# The main job on the embedded default store (~/.cache/chunkcache/store, or $XDG_CACHE_HOME):
# generate a Gradle-like cache, save it, restore it elsewhere, change it, save and restore
# incrementally, and check every restore byte for byte.
#
# It writes only to the repository's own scratch folder (.scratch/demo, git-ignored) and to the
# default store, unless told otherwise: WORK=DIR puts the scratch data elsewhere (a tmpfs such as
# /dev/shm/chunkcache-demo is faster), SIZE=200M sets the cache size.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-200M}
WORK=${WORK:-$PWD/.scratch/demo}
say() { printf '== %s\n' "$*"; }

say "building chunkcache and the fixture generator (release; the first build takes a few minutes)"
cargo build --release --locked --quiet --bin chunkcache --example gradle-fixture
target=${CARGO_TARGET_DIR:-$PWD/target}
bin=$target/release/chunkcache
fixture=$target/release/examples/gradle-fixture
# Only the demo's own folder is cleared, and only when it is the demo's (it holds its marker).
if [[ -e "$WORK" && ! -e "$WORK/.chunkcache-demo" ]]; then
	echo "error: $WORK exists and was not made by this demo; set WORK to another folder" >&2
	exit 1
fi
rm -rf "$WORK" && mkdir -p "$WORK/src" && touch "$WORK/.chunkcache-demo"

say "generating a $SIZE Gradle-like cache in $WORK/src/gradle"
"$fixture" --size "$SIZE" --generation 0 "$WORK/src/gradle"
cd "$WORK/src"
key="demo/main-$(date +%s)"
say "saving it (cold) to the default store as $key-gen0"
"$bin" save --key "$key-gen0" gradle
say "restoring it into $WORK/restored"
"$bin" restore --key "$key-gen0" "$WORK/restored"
diff -r gradle "$WORK/restored/gradle" && echo "byte-exact: yes"
say "bumping ~5% of the artifacts (the next generation) and saving it as $key-gen1"
"$fixture" --size "$SIZE" --generation 1 "$WORK/src/gradle"
"$bin" save --key "$key-gen1" gradle
say "restoring gen1 incrementally over the gen0 restore"
"$bin" restore --mirror --key "$key-gen1" "$WORK/restored"
diff -r gradle "$WORK/restored/gradle" && echo "byte-exact: yes"
say "the demo's caches in the default store"
"$bin" list --prefix demo/
store="${XDG_CACHE_HOME:-$HOME/.cache}/chunkcache/store"
say "done: the trees are in $WORK (remove them with: rm -rf '$WORK')"
say "the caches are the keys demo/… in the default store $store; if you used that store only for" \
	"this demo, remove it with: rm -rf '$store'"
