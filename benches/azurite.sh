#!/bin/bash
# Save and restore a Gradle-like tree (SIZE, default 512M) against a local Azurite, printing wall
# time, requests by kind and bytes moved for: cold save, cold restore, warm save of the next
# generation, incremental restore, and a re-save under the same key.
# Needs scripts/install-test-servers.sh and `cargo build --release --bin chunkcache --example gradle-fixture`.
set -e
R=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd); B=$R/target/release/chunkcache; F=$R/target/release/examples/gradle-fixture
W=/dev/shm/azfig; rm -rf $W; mkdir -p $W/src
PORT=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
$R/.tools/azurite/node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort $PORT --inMemoryPersistence --disableTelemetry --skipApiVersionCheck --loose --silent > $W/azurite.log 2>&1 &
AZ=$!
trap "kill $AZ" EXIT
sleep 3
export AZURE_STORAGE_ACCOUNT=devstoreaccount1 AZURE_STORAGE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==' AZURE_STORAGE_ENDPOINT=http://127.0.0.1:$PORT/devstoreaccount1
S=az://cache/ci
$F --size ${SIZE:-512M} --generation 0 $W/src/gradle 2>/dev/null
cd $W/src
summ() { python3 -c "import json,sys; r=json.load(open('$1')); q=r['requests']; print('$2', 'wall %.2fs'%(r['elapsed_ms']/1000), 'PUT',q['put'],'GET',q['get'],'HEAD',q['head'],'LIST',q['list'],'up %.1f MiB'%(q['bytes_uploaded']/2**20),'down %.1f MiB'%(q['bytes_downloaded']/2**20), 'new_chunks', r.get('new_chunks','-'), 'fetched', r.get('chunks_fetched','-'))"; }
/usr/bin/time -f "%e s, %M KB" $B save --store $S --key gen0 gradle --json > $W/s0.json 2> $W/s0.err; tail -1 $W/s0.err; summ $W/s0.json "cold save  "
/usr/bin/time -f "%e s, %M KB" $B restore --store $S --key gen0 $W/dst --json > $W/r0.json 2> $W/r0.err; tail -1 $W/r0.err; summ $W/r0.json "cold restore"
$F --size ${SIZE:-512M} --generation 1 $W/src/gradle 2>/dev/null
/usr/bin/time -f "%e s, %M KB" $B save --store $S --key gen1 gradle --json > $W/s1.json 2> $W/s1.err; tail -1 $W/s1.err; summ $W/s1.json "warm save  "
/usr/bin/time -f "%e s, %M KB" $B restore --mirror --store $S --key gen1 $W/dst --json > $W/r1.json 2> $W/r1.err; tail -1 $W/r1.err; summ $W/r1.json "incr restore"
/usr/bin/time -f "%e s, %M KB" $B save --store $S --key gen1 gradle --json > $W/s2.json 2> $W/s2.err; tail -1 $W/s2.err; summ $W/s2.json "same-key resave"
diff -r $W/src/gradle $W/dst/gradle && echo "byte-exact: yes"
