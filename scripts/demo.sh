#!/usr/bin/env bash
# The main job on the embedded default store (a folder under ~/.cache/chunkcache): generate a
# Gradle-like cache, save it, restore it elsewhere, change it, save and restore incrementally,
# and check every restore byte for byte.  SIZE=200M by default; WORK defaults to tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-200M}
WORK=${WORK:-$( [ -d /dev/shm ] && echo /dev/shm/chunkcache-demo || echo /tmp/chunkcache-demo )}
rm -rf "$WORK" && mkdir -p "$WORK/src"
cargo build --release --locked --quiet --bin chunkcache --example gradle-fixture
bin=$PWD/target/release/chunkcache
fixture=$PWD/target/release/examples/gradle-fixture

echo "== generating a $SIZE Gradle-like cache in $WORK/src/gradle"
"$fixture" --size "$SIZE" --generation 0 "$WORK/src/gradle"
cd "$WORK/src"
key="demo/main-$(date +%s)"
echo "== save (cold) to the default store"
"$bin" save --key "$key-gen0" gradle
echo "== restore into $WORK/restored"
"$bin" restore --key "$key-gen0" "$WORK/restored"
diff -r gradle "$WORK/restored/gradle" && echo "byte-exact: yes"
echo "== next generation: ~5% of artifacts bumped"
"$fixture" --size "$SIZE" --generation 1 "$WORK/src/gradle"
"$bin" save --key "$key-gen1" gradle
echo "== incremental restore of gen1 over gen0"
"$bin" restore --mirror --key "$key-gen1" "$WORK/restored"
diff -r gradle "$WORK/restored/gradle" && echo "byte-exact: yes"
"$bin" list --prefix demo/
