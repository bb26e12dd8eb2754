//! `chunkcache verify` through the binary: missing packs, corrupt chunks, key filters.

use std::fs;

use chunkcache::core::manifest::Manifest;

use crate::util::{chunkcache_on, noise, on_store, run, run_json, scratch};

#[test]
fn verify_names_keys_with_missing_packs_and_corrupt_chunks() {
    let dir = scratch();
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    for (n, name) in ["a", "b"].iter().enumerate() {
        fs::create_dir_all(work.join(name)).unwrap();
        fs::write(work.join(name).join("data"), noise(500_000, n as u64 + 1)).unwrap();
        run(&mut chunkcache_on(&work, &store, &["save", "--key", name, name]), 0);
    }
    let clean = run_json(&mut chunkcache_on(&work, &store, &["verify", "--read-data"]), 0);
    assert_eq!((clean["keys"].as_u64(), clean["damaged"].as_array().map(Vec::len)), (Some(2), Some(0)), "{clean}");
    assert!(clean["chunks_verified"].as_u64().unwrap() >= 2, "{clean}");

    let pack_of = |key: &str| {
        on_store(&store, async |store| {
            let bytes = store.get_manifest(key).await.unwrap().unwrap();
            Manifest::decode(key, &bytes).unwrap().packs[0]
        })
    };
    let (a, b) = (pack_of("a"), pack_of("b"));
    let path = |id: chunkcache::core::id::PackId| store.join("packs").join(&id.to_hex()[..2]).join(id.to_hex());

    // A byte flipped inside b's pack: only reading the data finds it.
    let mut bytes = fs::read(path(b)).unwrap();
    bytes[100] ^= 1;
    fs::write(path(b), bytes).unwrap();
    run(&mut chunkcache_on(&work, &store, &["verify"]), 0);
    let corrupt = run_json(&mut chunkcache_on(&work, &store, &["verify", "--read-data"]), 6);
    assert_eq!(corrupt["damaged"][0]["key"], "b", "{corrupt}");
    assert_eq!(corrupt["damaged"][0]["corrupt_chunks"][0]["pack"], b.to_hex(), "{corrupt}");

    // a's pack gone: named without reading data.
    fs::remove_file(path(a)).unwrap();
    let missing = run(&mut chunkcache_on(&work, &store, &["verify", "--key", "a"]), 6);
    let stdout = String::from_utf8_lossy(&missing.stdout);
    assert_eq!(stdout.trim(), format!("a\tmissing pack {}", a.to_hex()));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("save them again"));
    run(&mut chunkcache_on(&work, &store, &["verify", "--key", "c*"]), 0);
}
