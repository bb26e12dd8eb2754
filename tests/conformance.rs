//! Storage conformance suite: the same checks on every backend.
//!
//! The checks are written once against [`Store`] and run on `memory://`, a local folder, Azurite
//! (`az://`) and moto (`s3://`), one test per backend, so a failure names the backend. Every check
//! opens its own prefix, so request counts start at zero and are asserted exactly. Where the
//! backend has a place outside chunkcache to look (folder, container, bucket), the object layout is
//! checked through a raw `object_store` handle too.
//!
//! The error tests at the end give Azure and S3 wrong credentials, a closed port and a missing
//! container or bucket, and require a message that names the cause within seconds.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chunkcache::core::chunker::ChunkerParams;
use chunkcache::core::codec;
use chunkcache::core::id::{ChunkId, PackId};
use chunkcache::core::pack::PackBuilder;
use chunkcache::core::secret::Secret;
use chunkcache::store::backend::{self, BackendOptions, BlobEndpoint};
use chunkcache::store::{ChunkReadError, PackRange, STORE_FORMAT, Store, StoreConfig, StoreError, keyed_path};
use futures::StreamExt as _;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _};

use crate::support::servers::{Azurite, Moto};
use crate::util::{noise, scratch};

/// Errors must come back within this, retries included.
const FAIL_FAST: Duration = Duration::from_secs(15);

/// One backend under test.
struct Backend {
    name: &'static str,
    /// Store URL without the prefix (`az://container`, `file:///dir`); `memory://` has no prefixes.
    base_url: String,
    options: BackendOptions,
    /// The container, bucket or folder itself, bypassing chunkcache; `None` for memory.
    raw: Option<Arc<dyn ObjectStore>>,
}

impl Backend {
    /// A store under `prefix` (for memory: a fresh empty store).
    async fn open(&self, prefix: &str) -> Store {
        let url = self.url(prefix);
        backend::open(&url, &self.options).await.unwrap_or_else(|e| panic!("{}: cannot open {url}: {e}", self.name))
    }

    fn url(&self, prefix: &str) -> String {
        if self.raw.is_none() { self.base_url.clone() } else { format!("{}/{prefix}", self.base_url) }
    }

    /// The raw object at `prefix/path`, if the backend can be looked at directly.
    async fn raw_object(&self, prefix: &str, path: &str) -> Option<Option<Bytes>> {
        let raw = self.raw.as_ref()?;
        let location = ObjectPath::parse(format!("{prefix}/{path}")).unwrap();
        Some(match raw.get(&location).await {
            Ok(result) => Some(result.bytes().await.unwrap()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("{}: raw GET {location}: {e}", self.name),
        })
    }
}

/// Waits until the wall clock is in a new second, so that the next write gets a later
/// last-modified time even on backends that keep whole seconds (Azure, S3).
async fn next_second() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into_second = Duration::from_nanos(u64::from(now.subsec_nanos()));
    tokio::time::sleep(Duration::from_secs(1) - into_second + Duration::from_millis(30)).await;
}

/// Runs every check on one backend.
async fn conformance(backend: &Backend) {
    let started = Instant::now();
    config_is_created_once_and_mismatches_are_refused(backend).await;
    packs_are_create_if_absent_and_read_by_ranges(backend).await;
    damaged_and_truncated_packs_are_refused_and_replaced(backend).await;
    racing_pack_uploads_store_it_once(backend).await;
    manifest_listing_returns_every_key(backend).await;
    manifests_overwrite_and_list_by_string_prefix_newest_first(backend).await;
    has_manifest_and_mark_used(backend).await;
    invalid_keys_are_refused_without_requests(backend).await;
    awkward_keys_work_and_a_key_and_a_longer_one_coexist(backend).await;
    prefixes_are_isolated_and_persistent(backend).await;
    eprintln!("{}: conformance suite passed in {:.2?}", backend.name, started.elapsed());
}

async fn config_is_created_once_and_mismatches_are_refused(backend: &Backend) {
    let name = backend.name;
    let store = backend.open("config").await;
    assert_eq!(store.config().await.unwrap(), None, "{name}: a new store has no config");
    let created = store.config_or_init(None).await.unwrap();
    assert_eq!(
        created,
        StoreConfig { format: STORE_FORMAT, chunker: ChunkerParams::default(), gc_grace_ms: None },
        "{name}"
    );
    assert_eq!(store.config().await.unwrap().as_ref(), Some(&created), "{name}");
    assert_eq!(store.config_or_init(None).await.unwrap(), created, "{name}");
    assert_eq!(store.config_or_init(Some(ChunkerParams::default())).await.unwrap(), created, "{name}");
    let err = store.config_or_init(Some(ChunkerParams::with_average(64 * 1024))).await.unwrap_err();
    assert!(matches!(err, StoreError::ParamsMismatch { .. }), "{name}: {err}");
    assert!(err.to_string().contains("--chunk-size"), "{name}: {err}");
    assert_eq!(store.config().await.unwrap().as_ref(), Some(&created), "{name}: a refused request changed the config");
    let requests = store.requests();
    // GETs: config, init (miss), config, init, init, refused init, config; one PUT: the creation.
    assert_eq!((requests.get, requests.put, requests.head, requests.list, requests.delete), (7, 1, 0, 0, 0), "{name}");
    assert_eq!(requests.bytes_downloaded, 5 * requests.bytes_uploaded, "{name}: {requests:?}");
    if let Some(raw) = backend.raw_object("config", "chunkcache.json").await {
        let json: serde_json::Value = serde_json::from_slice(&raw.expect("chunkcache.json under the prefix")).unwrap();
        assert_eq!(json["format"], STORE_FORMAT, "{name}: {json}");
    }

    // A new store takes the requested parameters, and a second handle (another process) sees them.
    let small = ChunkerParams::with_average(64 * 1024);
    let store = backend.open("config-64k").await;
    assert_eq!(store.config_or_init(Some(small)).await.unwrap().chunker, small, "{name}");
    if backend.raw.is_some() {
        let again = backend.open("config-64k").await;
        assert_eq!(again.config_or_init(None).await.unwrap().chunker, small, "{name}: reopened");
        assert!(again.config_or_init(Some(ChunkerParams::default())).await.is_err(), "{name}");
    }

    // Savers racing to create the config agree on one: those that asked for nothing or for the stored
    // parameters get it, those that asked for others a mismatch; a refused racer never leaves its own config.
    let store = backend.open("config-race").await;
    let requested: Vec<Option<ChunkerParams>> =
        (0..9).map(|i| [None, Some(small), Some(ChunkerParams::default())][i % 3]).collect();
    let results = futures::future::join_all(requested.iter().map(|r| store.config_or_init(*r))).await;
    let stored = store.config().await.unwrap().expect("config after the race");
    for (request, result) in requested.iter().zip(results) {
        match (request, result) {
            (_, Ok(config)) => {
                assert_eq!(config, stored, "{name}: a racer got a config that is not the stored one");
                assert!(request.is_none_or(|r| r == stored.chunker), "{name}: {request:?} accepted, {stored:?} stored");
            }
            (Some(wanted), Err(StoreError::ParamsMismatch { store_params, .. })) => {
                assert_eq!(store_params, stored.chunker, "{name}");
                assert_ne!(*wanted, stored.chunker, "{name}: refused although it asked for the stored parameters");
            }
            (_, Err(e)) => panic!("{name}: racing config_or_init({request:?}) failed: {e}"),
        }
    }
}

/// A sealed pack of encoded `raws`, and for each chunk its id, offset and stored length.
fn pack_of(raws: &[Vec<u8>]) -> (PackId, Bytes, Vec<(ChunkId, u32, u32)>) {
    let mut builder = PackBuilder::new();
    let chunks = raws
        .iter()
        .map(|raw| {
            let (id, object) = (ChunkId::of(raw), codec::encode(raw, 3));
            (id, builder.push(id, &object), object.len() as u32)
        })
        .collect();
    let (id, bytes) = builder.finish();
    (id, bytes, chunks)
}

fn range_of(pack: PackId, chunks: &[(ChunkId, u32, u32)]) -> PackRange {
    let end = chunks.iter().map(|&(_, offset, len)| offset + len).max().unwrap();
    PackRange { pack, start: chunks[0].1, end, chunks: chunks.to_vec() }
}

async fn packs_are_create_if_absent_and_read_by_ranges(backend: &Backend) {
    let name = backend.name;
    let store = backend.open("packs").await;
    // Sizes from one byte to the default maximum chunk (4 MiB); noise stays raw, so stored
    // lengths are the sizes plus a 12-byte header.
    let sizes = [1usize, 7, 1000, 65_536, 300_001, 4 << 20];
    let raws: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &size)| noise(size, i as u64 + 100)).collect();
    let (pack, bytes, chunks) = pack_of(&raws);
    store.put_pack(pack, bytes.clone()).await.unwrap();
    // Each chunk alone, from the middle of the pack; then all of them in one read.
    for (index, chunk) in chunks.iter().enumerate() {
        let read = store.read_range(&range_of(pack, std::slice::from_ref(chunk))).await.unwrap();
        assert!(read.unwrap() == [raws[index].as_slice()], "{name}: chunk {index} came back different");
    }
    let all = store.read_range(&range_of(pack, &chunks)).await.unwrap().unwrap();
    assert!(all == raws, "{name}: the whole-pack read came back different");
    let missing = PackRange { pack: PackId::of(b"no such pack"), ..range_of(pack, &chunks[..1]) };
    assert_eq!(store.read_range(&missing).await.unwrap(), None, "{name}: missing pack");
    // A second upload of the same pack meets it, checks it, and keeps it.
    store.put_pack(pack, bytes.clone()).await.unwrap();

    let total: u64 = sizes.iter().map(|&s| s as u64 + 12).sum();
    let requests = store.requests();
    assert_eq!((requests.put, requests.get, requests.list, requests.head), (2, 9, 0, 0), "{name}: {requests:?}");
    assert_eq!(requests.bytes_uploaded, bytes.len() as u64, "{name}: the refused put must not count as uploaded");
    assert_eq!(requests.bytes_downloaded, 2 * total + bytes.len() as u64, "{name}: ranged reads read their ranges");

    if backend.raw.is_some() {
        let hex = pack.to_hex();
        let raw = backend.raw_object("packs", &format!("packs/{}/{hex}", &hex[..2])).await.unwrap();
        assert!(raw == Some(bytes), "{name}: pack not at packs/<2 hex>/<64 hex> under the prefix");
    }
}

async fn damaged_and_truncated_packs_are_refused_and_replaced(backend: &Backend) {
    let Some(raw_store) = &backend.raw else {
        return;
    };
    let name = backend.name;
    let store = backend.open("bad-packs").await;
    let raws: Vec<Vec<u8>> = (0..3u64).map(|i| noise(100_000, i + 7)).collect();
    let (pack, bytes, chunks) = pack_of(&raws);
    let hex = pack.to_hex();
    let location = ObjectPath::from(format!("bad-packs/packs/{}/{hex}", &hex[..2]));
    let mut flipped = bytes.to_vec();
    flipped[chunks[1].1 as usize + 50] ^= 1;
    let cut = bytes.slice(..chunks[1].1 as usize + 10);
    let past_the_end = bytes.slice(..4);
    for (what, damaged) in
        [("a flipped bit", Bytes::from(flipped)), ("cut short", cut), ("cut before the range", past_the_end)]
    {
        raw_store.put(&location, damaged.into()).await.unwrap();
        let err = store.read_range(&range_of(pack, &chunks)).await.unwrap_err();
        assert!(matches!(err, ChunkReadError::Corrupt(_)), "{name}: {what}: {err}");
        // The first read that failed names its chunk.
        let bad = if what == "cut before the range" { chunks[0].0 } else { chunks[1].0 };
        assert!(err.to_string().contains(&bad.to_string()), "{name}: {what}: {err}");
        store.put_pack(pack, bytes.clone()).await.unwrap();
        assert!(
            store.read_range(&range_of(pack, &chunks)).await.unwrap().unwrap() == raws,
            "{name}: {what}: not repaired"
        );
    }
}

async fn racing_pack_uploads_store_it_once(backend: &Backend) {
    let name = backend.name;
    let store = backend.open("pack-race").await;
    let (pack, bytes, chunks) = pack_of(&[noise(10_000, 1), noise(20_000, 2)]);
    let results = futures::future::join_all((0..8).map(|_| store.put_pack(pack, bytes.clone()))).await;
    for result in results {
        result.unwrap_or_else(|e| panic!("{name}: racing put failed: {e}"));
    }
    let read = store.read_range(&range_of(pack, &chunks)).await.unwrap().unwrap();
    assert!(read == [noise(10_000, 1), noise(20_000, 2)], "{name}");
    assert_eq!(store.requests().bytes_uploaded, bytes.len() as u64, "{name}: one create won, the rest were refused");
}

async fn manifest_listing_returns_every_key(backend: &Backend) {
    let name = backend.name;
    let store = backend.open("many-keys").await;
    // More than one S3 listing page (1000 keys).
    const COUNT: u64 = 1100;
    let started = Instant::now();
    futures::stream::iter(0..COUNT)
        .map(|n| {
            let store = store.clone();
            async move { store.put_manifest(&format!("k/{n}"), n.to_string().into_bytes()).await.unwrap() }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let uploaded = started.elapsed();
    let listed: HashMap<String, u64> =
        store.list_manifests("k/").await.unwrap().into_iter().map(|info| (info.key, info.size)).collect();
    assert_eq!(listed.len() as u64, COUNT, "{name}: list_manifests");
    for n in 0..COUNT {
        assert_eq!(listed.get(&format!("k/{n}")), Some(&(n.to_string().len() as u64)), "{name}: key {n}");
    }
    let requests = store.requests();
    assert_eq!((requests.put, requests.list, requests.get), (COUNT, 1, 0), "{name}: one LIST call however many pages");
    eprintln!("{name}: {COUNT} manifest puts in {uploaded:.2?}, listed in {:.2?}", started.elapsed() - uploaded);
}

async fn manifests_overwrite_and_list_by_string_prefix_newest_first(backend: &Backend) {
    let name = backend.name;
    let store = backend.open("manifests").await;
    let keys = |infos: Vec<chunkcache::store::ManifestInfo>| infos.into_iter().map(|m| m.key).collect::<Vec<_>>();
    assert!(store.list_manifests("").await.unwrap().is_empty(), "{name}");
    assert_eq!(store.get_manifest("repo/main-1").await.unwrap(), None, "{name}");

    for key in ["repo/main-1", "repo/main2-1", "repo/dev-1", "other", "repo/deeper/main-1"] {
        store.put_manifest(key, format!("manifest of {key}").into_bytes()).await.unwrap();
    }
    next_second().await;
    store.put_manifest("repo/main-2", b"second".to_vec()).await.unwrap();
    next_second().await;
    // Overwriting makes repo/main-1 the newest.
    let rewritten = noise(50_000, 5);
    store.put_manifest("repo/main-1", rewritten.clone()).await.unwrap();
    assert_eq!(store.get_manifest("repo/main-1").await.unwrap().as_deref(), Some(&rewritten[..]), "{name}");
    assert_eq!(store.get_manifest("repo/main2-1").await.unwrap().as_deref(), Some(&b"manifest of repo/main2-1"[..]));

    let main = store.list_manifests("repo/main").await.unwrap();
    // A plain string prefix: `repo/main` matches `repo/main2-1` too, and it is the oldest.
    assert_eq!(keys(main.clone()), ["repo/main-1", "repo/main-2", "repo/main2-1"], "{name}: newest first: {main:?}");
    assert_eq!(main[0].size, 50_000, "{name}");
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    for info in &main {
        assert!((now_ms - info.modified_ms).abs() < 120_000, "{name}: implausible modified time {info:?}");
    }
    assert!(main[0].modified_ms > main[1].modified_ms, "{name}: {main:?}");
    assert_eq!(keys(store.list_manifests("repo/main-").await.unwrap()), ["repo/main-1", "repo/main-2"], "{name}");
    assert_eq!(keys(store.list_manifests("repo/main2").await.unwrap()), ["repo/main2-1"], "{name}");
    assert_eq!(keys(store.list_manifests("repo/ma").await.unwrap()).len(), 3, "{name}");
    assert_eq!(keys(store.list_manifests("repo/deeper/").await.unwrap()), ["repo/deeper/main-1"], "{name}");
    assert_eq!(keys(store.list_manifests("repo/").await.unwrap()).len(), 5, "{name}");
    assert!(store.list_manifests("nothing/here").await.unwrap().is_empty(), "{name}");
    assert!(store.list_manifests("repo/mainx").await.unwrap().is_empty(), "{name}");
    let all = keys(store.list_manifests("").await.unwrap());
    assert_eq!(all[..2], ["repo/main-1", "repo/main-2"], "{name}: {all:?}");
    let all: BTreeSet<String> = all.into_iter().collect();
    let expected = ["other", "repo/deeper/main-1", "repo/dev-1", "repo/main-1", "repo/main-2", "repo/main2-1"];
    assert_eq!(all, expected.iter().map(|k| k.to_string()).collect(), "{name}");

    let requests = store.requests();
    assert_eq!((requests.put, requests.get, requests.list, requests.head), (7, 3, 10, 0), "{name}: {requests:?}");
    if backend.raw.is_some() {
        let raw =
            backend.raw_object("manifests", keyed_path("manifests", "repo/main-1").unwrap().as_ref()).await.unwrap();
        assert_eq!(raw.as_deref(), Some(&rewritten[..]), "{name}: manifest not at manifests/<key>");
    }
}

async fn has_manifest_and_mark_used(backend: &Backend) {
    let name = backend.name;
    let store = backend.open("used").await;
    assert!(!store.has_manifest("repo/main-1").await.unwrap(), "{name}");
    store.put_manifest("repo/main-1", b"m".to_vec()).await.unwrap();
    assert!(store.has_manifest("repo/main-1").await.unwrap(), "{name}");
    assert!(!store.has_manifest("repo").await.unwrap(), "{name}: a key's parent \"directory\" is no manifest");
    assert!(!store.has_manifest("repo/main").await.unwrap(), "{name}: a key's string prefix is no manifest");

    store.mark_used("repo/main-1").await.unwrap();
    store.mark_used("repo/main-1").await.unwrap();
    let requests = store.requests();
    assert_eq!((requests.put, requests.head, requests.get), (3, 4, 0), "{name}: {requests:?}");
    assert_eq!(requests.bytes_uploaded, 1, "{name}: markers are empty");
    // Markers are not manifests.
    let listed: Vec<String> = store.list_manifests("").await.unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(listed, ["repo/main-1"], "{name}");
    if backend.raw.is_some() {
        let marker = backend.raw_object("used", keyed_path("used", "repo/main-1").unwrap().as_ref()).await.unwrap();
        assert_eq!(marker.as_deref(), Some(&b""[..]), "{name}: marker not at used/<key>");
    }
}

async fn invalid_keys_are_refused_without_requests(backend: &Backend) {
    let name = backend.name;
    let store = backend.open("bad-keys").await;
    for key in ["", "/a", "a/", "a//b", "a/../b", "./a", "a\nb"] {
        let check = |result: Result<(), StoreError>, what: &str| match result {
            Err(StoreError::InvalidKey { .. }) => {}
            other => panic!("{name}: {what}({key:?}) gave {other:?}"),
        };
        check(store.put_manifest(key, b"m".to_vec()).await, "put_manifest");
        check(store.get_manifest(key).await.map(drop), "get_manifest");
        check(store.has_manifest(key).await.map(drop), "has_manifest");
        check(store.mark_used(key).await, "mark_used");
    }
    assert_eq!(store.requests(), Default::default(), "{name}: invalid keys were sent");
}

/// One key rule for every backend: keys that need encoding (`#`, `%`, `~`, spaces, unicode, a
/// trailing `.`), a key beside longer keys under it, and the longest key all work.
async fn awkward_keys_work_and_a_key_and_a_longer_one_coexist(backend: &Backend) {
    let name = backend.name;
    let store = backend.open("keys").await;
    let longest = ["a".repeat(239), "b".repeat(239), "c".repeat(239), "d".repeat(79)].join("/");
    let keys = ["a#1", "p", "p/q", "p/q/r", "é/ü-ß", "100%", "%41", "~", "a~/b~", "with space", "v1.", "x/a#1"];
    let keys: Vec<&str> = keys.into_iter().chain([longest.as_str()]).collect();
    for key in &keys {
        store.put_manifest(key, format!("manifest of {key}").into_bytes()).await.unwrap();
        store.mark_used(key).await.unwrap();
    }
    for key in &keys {
        let manifest = store.get_manifest(key).await.unwrap();
        assert_eq!(manifest.as_deref(), Some(format!("manifest of {key}").as_bytes()), "{name}: {key}");
        assert!(store.has_manifest(key).await.unwrap(), "{name}: {key}");
    }
    assert!(!store.has_manifest("a").await.unwrap() && !store.has_manifest("x").await.unwrap(), "{name}");
    let listed = |prefix: &'static str| {
        let store = store.clone();
        async move {
            let mut keys: Vec<String> =
                store.list_manifests(prefix).await.unwrap().into_iter().map(|m| m.key).collect();
            keys.sort();
            keys
        }
    };
    let mut all: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    all.sort();
    assert_eq!(listed("").await, all, "{name}");
    assert_eq!(listed("p").await, ["p", "p/q", "p/q/r"], "{name}");
    assert_eq!(listed("p/").await, ["p/q", "p/q/r"], "{name}");
    assert_eq!(listed("p/q/").await, ["p/q/r"], "{name}");
    assert_eq!(listed("a").await, ["a#1", longest.as_str(), "a~/b~"], "{name}");
    assert_eq!(listed("a~/").await, ["a~/b~"], "{name}");
    assert_eq!(listed("é/").await, ["é/ü-ß"], "{name}");
    assert_eq!(listed("%").await, ["%41"], "{name}");
    for key in ["p", "p/q", "a#1", longest.as_str()] {
        let path = keyed_path("manifests", key).unwrap();
        if let Some(raw) = backend.raw_object("keys", path.as_ref()).await {
            assert_eq!(raw.as_deref(), Some(format!("manifest of {key}").as_bytes()), "{name}: {key} at {path}");
        }
    }
}

async fn prefixes_are_isolated_and_persistent(backend: &Backend) {
    if backend.raw.is_none() {
        return;
    }
    let name = backend.name;
    let a = backend.open("iso/a").await;
    a.config_or_init(None).await.unwrap();
    let (pack, bytes, chunks) = pack_of(&[b"chunk".to_vec()]);
    a.put_pack(pack, bytes.clone()).await.unwrap();
    a.put_manifest("k", b"manifest".to_vec()).await.unwrap();

    let b = backend.open("iso/b").await;
    assert_eq!(b.config().await.unwrap(), None, "{name}");
    assert_eq!(b.read_range(&range_of(pack, &chunks)).await.unwrap(), None, "{name}");
    assert!(b.list_manifests("").await.unwrap().is_empty(), "{name}");
    assert_eq!(b.get_manifest("k").await.unwrap(), None, "{name}");
    // A prefix that only shares a string prefix with another sees nothing of it either.
    let sibling = backend.open("iso/a2").await;
    assert_eq!(sibling.read_range(&range_of(pack, &chunks)).await.unwrap(), None, "{name}");
    assert!(sibling.list_manifests("").await.unwrap().is_empty(), "{name}");

    // A new handle on the same prefix (another process) sees everything, and a trailing slash is the same prefix.
    for prefix in ["iso/a", "iso/a/"] {
        let again = backend.open(prefix).await;
        assert!(again.config().await.unwrap().is_some(), "{name}: {prefix}");
        let read = again.read_range(&range_of(pack, &chunks)).await.unwrap();
        assert_eq!(read, Some(vec![Bytes::from_static(b"chunk")]), "{name}: {prefix}");
        assert_eq!(again.get_manifest("k").await.unwrap().as_deref(), Some(&b"manifest"[..]), "{name}: {prefix}");
        again.put_pack(pack, bytes.clone()).await.unwrap();
        assert_eq!(again.requests().bytes_uploaded, 0, "{name}: {prefix}: the pack was there already");
    }
}

// ---- the backends -----------------------------------------------------------------------------------------

fn azure_options(azurite: &Azurite) -> BackendOptions {
    let mut options = BackendOptions::default();
    options.azure.account = Some(azurite.account.to_string());
    options.azure.key = Some(Secret::new(azurite.key));
    options.azure.endpoint = Some(BlobEndpoint::Url(azurite.endpoint.clone()));
    options.azure.create_container = true;
    options
}

fn raw_azure(azurite: &Azurite, container: &str) -> Arc<dyn ObjectStore> {
    let raw = MicrosoftAzureBuilder::new()
        .with_account(azurite.account)
        .with_access_key(azurite.key)
        .with_endpoint(azurite.endpoint.clone())
        .with_allow_http(true)
        .with_container_name(container)
        .build()
        .unwrap();
    Arc::new(raw)
}

fn s3_options(moto: &Moto) -> BackendOptions {
    let mut options = BackendOptions::default();
    options.s3.access_key = Some(moto.access_key.to_string());
    options.s3.secret_key = Some(Secret::new(moto.secret_key));
    options.s3.region = Some(moto.region.to_string());
    options.s3.endpoint = Some(moto.endpoint.clone());
    options.s3.path_style = Some(true);
    options
}

/// Creates a bucket in moto (it accepts an unsigned CreateBucket).
async fn create_bucket(moto: &Moto, bucket: &str) {
    let response = reqwest::Client::new().put(format!("{}/{bucket}", moto.endpoint)).send().await.unwrap();
    assert!(response.status().is_success(), "CreateBucket {bucket}: {}", response.status());
}

/// A loopback port nothing listens on (bound a moment ago, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread")]
async fn memory() {
    let backend =
        Backend { name: "memory", base_url: "memory://".into(), options: BackendOptions::default(), raw: None };
    conformance(&backend).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_folder() {
    let dir = scratch();
    let root = dir.path().join("store root");
    std::fs::create_dir_all(&root).unwrap();
    let backend = Backend {
        name: "file",
        base_url: format!("file://{}", root.display()),
        options: BackendOptions::default(),
        raw: Some(Arc::new(LocalFileSystem::new_with_prefix(&root).unwrap())),
    };
    conformance(&backend).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn azurite() {
    let azurite = Azurite::start();
    // open() creates the container: it does not exist before.
    let backend = Backend {
        name: "azure",
        base_url: "az://conformance".into(),
        options: azure_options(&azurite),
        raw: Some(raw_azure(&azurite, "conformance")),
    };
    conformance(&backend).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn moto() {
    let moto = Moto::start();
    create_bucket(&moto, "conformance").await;
    let backend = Backend {
        name: "s3",
        base_url: "s3://conformance".into(),
        options: s3_options(&moto),
        raw: Some(moto.object_store("conformance")),
    };
    conformance(&backend).await;
}

// ---- errors -------------------------------------------------------------------------------------------------

/// Runs `attempt`, asserts it fails within [`FAIL_FAST`], and returns the message.
async fn fails_fast<T: std::fmt::Debug, E: std::fmt::Display>(
    what: &str,
    attempt: impl Future<Output = Result<T, E>>,
) -> String {
    let started = Instant::now();
    let result = attempt.await;
    let elapsed = started.elapsed();
    let message = match result {
        Ok(value) => panic!("{what}: succeeded with {value:?}"),
        Err(e) => e.to_string(),
    };
    assert!(elapsed < FAIL_FAST, "{what}: took {elapsed:?}: {message}");
    eprintln!("{what}: failed after {elapsed:.2?}: {message}");
    message
}

const WRONG_AZURE_KEY: &str =
    "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk6Kw==";

#[tokio::test(flavor = "multi_thread")]
async fn azure_wrong_key_is_reported_as_such() {
    let azurite = Azurite::start();
    let mut options = azure_options(&azurite);
    backend::open("az://exists/ci", &options).await.unwrap();
    options.azure.key = Some(Secret::new(WRONG_AZURE_KEY));

    // Saves open with container creation: refused there.
    let message = fails_fast("azure open, wrong key", backend::open("az://exists/ci", &options)).await;
    assert!(message.contains("account key is wrong"), "{message}");
    assert!(!message.contains(WRONG_AZURE_KEY) && !message.contains(azurite.key), "{message}");

    // Restores open without: refused at the first request.
    options.azure.create_container = false;
    let store = backend::open("az://exists/ci", &options).await.unwrap();
    let message = fails_fast("azure config, wrong key", store.config_or_init(None)).await;
    assert!(message.contains("refused the credentials") && message.contains("AZURE_STORAGE_KEY"), "{message}");
    assert!(!message.contains(WRONG_AZURE_KEY) && !message.contains(azurite.key), "{message}");
    let message = fails_fast("azure list, wrong key", store.damaged_packs()).await;
    assert!(message.contains("refused the credentials"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_unreachable_endpoint_is_named() {
    let port = closed_port();
    let mut options = BackendOptions::default();
    options.azure.account = Some(Azurite::ACCOUNT.into());
    options.azure.key = Some(Secret::new(Azurite::KEY));
    options.azure.endpoint = Some(BlobEndpoint::Url(format!("http://127.0.0.1:{port}/{}", Azurite::ACCOUNT)));
    let endpoint = format!("127.0.0.1:{port}");

    let message = fails_fast("azure open, closed port", backend::open("az://cache/ci", &options)).await;
    assert!(message.contains(&endpoint), "{message}");

    options.azure.create_container = false;
    let store = backend::open("az://cache/ci", &options).await.unwrap();
    let message = fails_fast("azure config, closed port", store.config_or_init(None)).await;
    assert!(message.contains(&endpoint) && message.contains("cannot be reached"), "{message}");
    assert!(!message.contains(Azurite::KEY), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_missing_container_is_named() {
    let azurite = Azurite::start();
    let mut options = azure_options(&azurite);
    options.azure.create_container = false;
    let store = backend::open("az://missing/ci", &options).await.unwrap();
    let message = fails_fast("azure save, missing container", store.config_or_init(None)).await;
    assert!(message.contains("\"missing\"") && message.contains("does not exist"), "{message}");
    // Reads name the missing container too: a typo must not look like a cold cache.
    let message = fails_fast("azure get, missing container", store.get_manifest("k")).await;
    assert!(message.contains("\"missing\"") && message.contains("does not exist"), "{message}");
    let message = fails_fast("azure list, missing container", store.list_manifests("")).await;
    assert!(message.contains("\"missing\"") && message.contains("check the store URL"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_wrong_credentials_are_reported_as_such() {
    let moto = Moto::start();
    create_bucket(&moto, "locked").await;
    // From now on moto checks every request against its IAM users; there are none.
    let response =
        reqwest::Client::new().post(format!("{}/moto-api/reset-auth", moto.endpoint)).body("0").send().await.unwrap();
    assert!(response.status().is_success(), "moto reset-auth: {}", response.status());
    let mut options = s3_options(&moto);
    options.s3.access_key = Some("AKIAWRONGWRONGWRONG1".into());
    options.s3.secret_key = Some(Secret::new("wrong-secret-wrong-secret-wrong-secret"));
    let store = backend::open("s3://locked/ci", &options).await.unwrap();
    let message = fails_fast("s3 config, wrong credentials", store.config_or_init(None)).await;
    assert!(message.contains("refused the credentials") && message.contains("AWS_ACCESS_KEY_ID"), "{message}");
    assert!(!message.contains("wrong-secret-wrong-secret"), "{message}");
    let message = fails_fast("s3 list, wrong credentials", store.damaged_packs()).await;
    assert!(message.contains("refused the credentials"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_unreachable_endpoint_is_named() {
    let port = closed_port();
    let mut options = BackendOptions::default();
    options.s3.access_key = Some("test".into());
    options.s3.secret_key = Some(Secret::new("test"));
    options.s3.region = Some("us-east-1".into());
    options.s3.endpoint = Some(format!("http://127.0.0.1:{port}"));
    let store = backend::open("s3://cache/ci", &options).await.unwrap();
    let message = fails_fast("s3 config, closed port", store.config_or_init(None)).await;
    assert!(message.contains(&format!("127.0.0.1:{port}")) && message.contains("cannot be reached"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_missing_bucket_is_named() {
    let moto = Moto::start();
    let store = backend::open("s3://missing/ci", &s3_options(&moto)).await.unwrap();
    let message = fails_fast("s3 save, missing bucket", store.config_or_init(None)).await;
    assert!(message.contains("\"missing\"") && message.contains("does not exist"), "{message}");
    // A restore's first read names the missing bucket: a typo must not look like a cold cache.
    let message = fails_fast("s3 get, missing bucket", store.get_manifest("k")).await;
    assert!(message.contains("\"missing\"") && message.contains("check the store URL"), "{message}");
}
