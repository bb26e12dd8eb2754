//! The object store: layout, chunk and manifest I/O, request accounting.
//!
//! Everything lives under one prefix of one container, bucket or folder:
//!
//! ```text
//! chunkcache.json            store config: format version and chunker parameters
//! chunks/<2 hex>/<64 hex>    one chunk object each (see codec.rs), named by BLAKE3
//! manifests/<encoded key>    the latest manifest of a key, written last (the commit point)
//! used/<encoded key>         empty marker rewritten by every restore: its last-modified time is
//!                            the key's "last used", readable for all keys with one listing
//! ```
//! A cache key is `/`-separated segments; [`keyed_path`] checks one rule for every backend and
//! encodes the key into an object name that every backend stores as is: each segment keeps
//! ASCII letters, digits, `-`, `_` and `.` (but not a final `.`, which Azure drops) and
//! percent-encodes every other byte (`a#1` → `a%231`), and the last segment gets a `~`, which
//! is encoded everywhere else (`p` → `p~`, `p/q` → `p/q~`). So names are ASCII, no file
//! system or object store rewrites them, and a key never names the folder of a longer key.
//! All I/O goes through `object_store`, so local folders, memory, Azure, S3 and GCS share one
//! code path. Chunk uploads are create-if-absent puts, so concurrent savers never clobber each
//! other and a chunk, once written, never changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::id::ChunkId;

/// The store layout version this build writes, and the newest it can use.
pub const STORE_FORMAT: u16 = 1;
const CONFIG_PATH: &str = "chunkcache.json";

/// The store-wide settings, kept in `chunkcache.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// Layout version.
    pub format: u16,
    /// The chunker every writer of this store must use.
    pub chunker: ChunkerParams,
}

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend refused or failed a request.
    #[error("{operation} {path} in {store} failed{hint}")]
    Backend {
        /// What we tried.
        operation: &'static str,
        /// The object involved.
        path: String,
        /// The store's description (never its credentials).
        store: String,
        /// How to fix it, when the cause is recognised (starts with `: `), else empty.
        hint: &'static str,
        /// The backend's error (boxed: it is large and errors are rare).
        source: Box<object_store::Error>,
    },
    /// The store was written by a newer chunkcache.
    #[error("{store} has store format {found}, but this chunkcache supports up to {STORE_FORMAT}: upgrade chunkcache")]
    TooNew {
        /// The store's description.
        store: String,
        /// The format found.
        found: u16,
    },
    /// The client asked for other chunker parameters than the store uses.
    #[error(
        "{store} uses chunker parameters {store_params:?}, but {requested:?} were requested: \
         dedup needs every writer to cut alike, so drop --chunk-size or use another store"
    )]
    ParamsMismatch {
        /// The store's description.
        store: String,
        /// What the store holds.
        store_params: ChunkerParams,
        /// What the client asked for.
        requested: ChunkerParams,
    },
    /// `chunkcache.json` is unreadable or invalid.
    #[error("{store} has an invalid chunkcache.json: {reason}")]
    BadConfig {
        /// The store's description.
        store: String,
        /// What is wrong.
        reason: String,
    },
    /// A cache key that cannot name an object.
    #[error(
        "invalid cache key {key:?}: {reason} (keys are `/`-separated names without `.`/`..` \
         segments or control characters)"
    )]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Requests sent, by kind, and payload bytes moved.
#[derive(Debug, Default)]
pub struct RequestCounts {
    put: AtomicU64,
    get: AtomicU64,
    head: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    bytes_uploaded: AtomicU64,
    bytes_downloaded: AtomicU64,
}

/// A copy of [`RequestCounts`] for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RequestSnapshot {
    /// PUT requests (chunks, manifests, markers, config).
    pub put: u64,
    /// GET requests.
    pub get: u64,
    /// HEAD requests.
    pub head: u64,
    /// LIST calls (a call may fetch several pages).
    pub list: u64,
    /// DELETE requests.
    pub delete: u64,
    /// Payload bytes uploaded.
    pub bytes_uploaded: u64,
    /// Payload bytes downloaded.
    pub bytes_downloaded: u64,
}

impl RequestCounts {
    /// The counts so far.
    pub fn snapshot(&self) -> RequestSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RequestSnapshot {
            put: load(&self.put),
            get: load(&self.get),
            head: load(&self.head),
            list: load(&self.list),
            delete: load(&self.delete),
            bytes_uploaded: load(&self.bytes_uploaded),
            bytes_downloaded: load(&self.bytes_downloaded),
        }
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// A listed manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ManifestInfo {
    /// The cache key.
    pub key: String,
    /// Size of the encoded manifest.
    pub size: u64,
    /// When it was written, in milliseconds since the Unix epoch.
    pub modified_ms: i64,
}

/// A chunkcache store over any `object_store` backend.
#[derive(Clone, Debug)]
pub struct Store {
    objects: Arc<dyn ObjectStore>,
    description: String,
    requests: Arc<RequestCounts>,
}

impl Store {
    /// Wraps a backend. `description` names it in messages and must not hold secrets.
    pub fn new(objects: Arc<dyn ObjectStore>, description: impl Into<String>) -> Self {
        Self { objects, description: description.into(), requests: Arc::default() }
    }

    /// How the store is named in messages.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Requests sent so far through this store (and its clones).
    pub fn requests(&self) -> RequestSnapshot {
        self.requests.snapshot()
    }

    fn backend_error(&self, operation: &'static str, path: &Path, source: object_store::Error) -> StoreError {
        StoreError::Backend {
            operation,
            path: path.to_string(),
            store: self.description.clone(),
            hint: hint_for(&source),
            source: Box::new(source),
        }
    }

    async fn get_optional(&self, path: &Path) -> Result<Option<Bytes>, StoreError> {
        bump(&self.requests.get, 1);
        let result = match self.objects.get(path).await {
            Ok(result) => result.bytes().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(bytes) => {
                bump(&self.requests.bytes_downloaded, bytes.len() as u64);
                Ok(Some(bytes))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.backend_error("GET", path, e)),
        }
    }

    /// Puts an object; with `create_only`, an existing object is left alone and `Ok(false)`
    /// returned.
    async fn put(&self, path: &Path, payload: Bytes, create_only: bool) -> Result<bool, StoreError> {
        bump(&self.requests.put, 1);
        let len = payload.len() as u64;
        let mode = if create_only { PutMode::Create } else { PutMode::Overwrite };
        let options = PutOptions { mode, ..PutOptions::default() };
        match self.objects.put_opts(path, PutPayload::from_bytes(payload), options).await {
            Ok(_) => {
                bump(&self.requests.bytes_uploaded, len);
                Ok(true)
            }
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. })
                if create_only =>
            {
                Ok(false)
            }
            Err(e) => Err(self.backend_error("PUT", path, e)),
        }
    }

    /// Reads the store config, or `None` for a store nothing was saved to yet.
    ///
    /// # Errors
    /// Backend failures, an unreadable config, or a store format newer than this build.
    pub async fn config(&self) -> Result<Option<StoreConfig>, StoreError> {
        let Some(bytes) = self.get_optional(&Path::from(CONFIG_PATH)).await? else {
            return Ok(None);
        };
        let config: StoreConfig = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::BadConfig { store: self.description.clone(), reason: e.to_string() })?;
        if config.format > STORE_FORMAT {
            return Err(StoreError::TooNew { store: self.description.clone(), found: config.format });
        }
        config
            .chunker
            .validate()
            .map_err(|reason| StoreError::BadConfig { store: self.description.clone(), reason })?;
        Ok(Some(config))
    }

    /// Reads the store config, creating it with `requested` (or the defaults) if the store is
    /// new. Two savers racing to create it agree: the loser reads the winner's.
    ///
    /// # Errors
    /// As [`Store::config`], plus [`StoreError::ParamsMismatch`] when `requested` differs
    /// from what the store uses.
    pub async fn config_or_init(&self, requested: Option<ChunkerParams>) -> Result<StoreConfig, StoreError> {
        let config = match self.config().await? {
            Some(config) => config,
            None => {
                let fresh = StoreConfig { format: STORE_FORMAT, chunker: requested.unwrap_or_default() };
                let json = serde_json::to_vec_pretty(&fresh).expect("config serializes");
                if self.put(&Path::from(CONFIG_PATH), json.into(), true).await? {
                    fresh
                } else {
                    Box::pin(self.config()).await?.unwrap_or(fresh)
                }
            }
        };
        match requested {
            Some(requested) if requested != config.chunker => Err(StoreError::ParamsMismatch {
                store: self.description.clone(),
                store_params: config.chunker,
                requested,
            }),
            _ => Ok(config),
        }
    }

    /// Every chunk in the store with its stored size, from one listing.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn list_chunks(&self) -> Result<HashMap<ChunkId, u32>, StoreError> {
        bump(&self.requests.list, 1);
        let prefix = Path::from("chunks");
        let mut ids = HashMap::new();
        let mut listing = self.objects.list(Some(&prefix));
        while let Some(meta) = listing.try_next().await.map_err(|e| self.backend_error("LIST", &prefix, e))? {
            if let Some(id) = meta.location.filename().and_then(ChunkId::from_hex) {
                ids.insert(id, u32::try_from(meta.size).unwrap_or(u32::MAX));
            }
        }
        Ok(ids)
    }

    /// Uploads an encoded chunk unless the store has it. `Ok(false)` if it was already there.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn put_chunk(&self, id: ChunkId, object: Bytes) -> Result<bool, StoreError> {
        self.put(&chunk_path(id), object, true).await
    }

    /// Downloads an encoded chunk; `None` if the store lacks it.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn get_chunk(&self, id: ChunkId) -> Result<Option<Bytes>, StoreError> {
        self.get_optional(&chunk_path(id)).await
    }

    /// Writes (replaces) the manifest of `key`, atomically.
    ///
    /// # Errors
    /// An invalid key, or backend failures.
    pub async fn put_manifest(&self, key: &str, manifest: Vec<u8>) -> Result<(), StoreError> {
        self.put(&keyed_path("manifests", key)?, manifest.into(), false).await.map(drop)
    }

    /// Reads the manifest bytes of `key`; `None` if there is none.
    ///
    /// # Errors
    /// An invalid key, or backend failures.
    pub async fn get_manifest(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.get_optional(&keyed_path("manifests", key)?).await
    }

    /// Whether `key` has a manifest, without downloading it.
    ///
    /// # Errors
    /// An invalid key, or backend failures.
    pub async fn has_manifest(&self, key: &str) -> Result<bool, StoreError> {
        let path = keyed_path("manifests", key)?;
        bump(&self.requests.head, 1);
        match self.objects.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.backend_error("HEAD", &path, e)),
        }
    }

    /// Lists manifests whose key starts with `prefix` (plain string prefix), newest first.
    /// Objects whose names are not encoded keys (such as manifests of format 1, stored under
    /// the bare key) are skipped.
    ///
    /// # Errors
    /// A prefix with an invalid segment before its last `/`, or backend failures.
    pub async fn list_manifests(&self, prefix: &str) -> Result<Vec<ManifestInfo>, StoreError> {
        // Object stores list by whole path segments, so list the prefix's directory and filter.
        let mut directory = String::from("manifests");
        if let Some(slash) = prefix.rfind('/') {
            let invalid = |reason| StoreError::InvalidKey { key: prefix.to_string(), reason };
            for segment in prefix[..slash].split('/') {
                directory.push('/');
                encode_segment(segment, &mut directory).map_err(invalid)?;
            }
        }
        let directory = Path::parse(&directory)
            .map_err(|e| StoreError::InvalidKey { key: prefix.to_string(), reason: e.to_string() })?;
        bump(&self.requests.list, 1);
        let mut found = Vec::new();
        let mut listing = self.objects.list(Some(&directory));
        loop {
            let meta = match listing.try_next().await {
                Ok(Some(meta)) => meta,
                Ok(None) => break,
                // A container or bucket that does not exist holds no caches: a miss, not a failure.
                Err(e) if is_missing_bucket(&e) => return Ok(Vec::new()),
                Err(e) => return Err(self.backend_error("LIST", &directory, e)),
            };
            let Some(key) = meta.location.as_ref().strip_prefix("manifests/").and_then(decode_key) else {
                continue;
            };
            if key.starts_with(prefix) {
                found.push(ManifestInfo { key, size: meta.size, modified_ms: meta.last_modified.timestamp_millis() });
            }
        }
        found.sort_by(|a, b| b.modified_ms.cmp(&a.modified_ms).then_with(|| a.key.cmp(&b.key)));
        Ok(found)
    }

    /// Records that `key` was just used (restored). GC reads these with one listing.
    ///
    /// # Errors
    /// An invalid key, or backend failures.
    pub async fn mark_used(&self, key: &str) -> Result<(), StoreError> {
        self.put(&keyed_path("used", key)?, Bytes::new(), false).await.map(drop)
    }
}

/// A fix for the failures users meet most: wrong credentials, missing container or bucket,
/// unreachable endpoint. Matched on the backend's own error text, which names the cause.
fn hint_for(error: &object_store::Error) -> &'static str {
    let text = format!("{error:?}");
    if ["AuthorizationPermissionMismatch", "AuthorizationResourceTypeMismatch", "AuthorizationServiceMismatch"]
        .iter()
        .any(|needle| text.contains(needle))
    {
        ": the store refused the credentials for this operation: they are valid but lack a permission it \
         needs (a SAS token used for saves needs sp=racwl); check AZURE_STORAGE_SAS_TOKEN (plugin sas_token)"
    } else if matches!(
        error,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || [
        "AuthenticationFailed",
        "AuthorizationFailure",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "403 Forbidden",
    ]
    .iter()
    .any(|needle| text.contains(needle))
    {
        ": the store refused the credentials; check the account key or SAS token (AZURE_STORAGE_KEY or \
         AZURE_STORAGE_SAS_TOKEN, plugin account_key or sas_token) or the AWS keys \
         (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, plugin access_key/secret_key)"
    } else if is_missing_bucket(error) {
        ": the container or bucket does not exist; create it, or for Azure give an account key so chunkcache \
         can create it"
    } else if ["Connection refused", "dns error", "error trying to connect", "tcp connect", "timed out", "Timeout"]
        .iter()
        .any(|needle| text.contains(needle))
    {
        ": the endpoint cannot be reached; check the endpoint URL, the network and the timeout"
    } else {
        ""
    }
}

fn is_missing_bucket(error: &object_store::Error) -> bool {
    let text = format!("{error:?}");
    ["ContainerNotFound", "NoSuchBucket"].iter().any(|needle| text.contains(needle))
}

fn chunk_path(id: ChunkId) -> Path {
    let hex = id.to_hex();
    Path::from(format!("chunks/{}/{hex}", &hex[..2]))
}

/// The longest encoded key: an object name is at most 1024 bytes on S3, Azure and GCS, and this
/// leaves 214 of them for `manifests/` and the store's own prefix.
pub const MAX_ENCODED_KEY_LEN: usize = 800;
/// The longest encoded segment, the leaf's `~` included: a file name is at most 255 bytes, and
/// a local store stages writes under the name plus `#N`.
pub const MAX_ENCODED_SEGMENT_LEN: usize = 240;
/// The most segments a key may have (Azure allows 254 in a whole blob name).
pub const MAX_KEY_SEGMENTS: usize = 64;
/// Ends the encoded name of a key; encoded everywhere else.
const LEAF_MARK: char = '~';
/// How the limits are counted, for messages.
const ENCODED_LENGTH_RULE: &str =
    "once encoded for the store, where every byte other than ASCII letters, digits, `-`, `_` and `.` takes 3";

/// Checks a cache key against the one rule every backend shares and returns its object path
/// under `area` (see the module docs for the encoding).
///
/// # Errors
/// [`StoreError::InvalidKey`] for an empty key, an empty, `.` or `..` segment, a control
/// character, or a key or segment too long once encoded; the message says the limit.
pub fn keyed_path(area: &str, key: &str) -> Result<Path, StoreError> {
    let invalid = |reason: String| StoreError::InvalidKey { key: key.to_string(), reason };
    let encoded = encode_key(key).map_err(invalid)?;
    Path::parse(format!("{area}/{encoded}")).map_err(|e| invalid(e.to_string()))
}

/// The object name of a valid key, below its area.
fn encode_key(key: &str) -> Result<String, String> {
    if key.is_empty() {
        return Err("it is empty".into());
    }
    let segments = key.split('/').count();
    if segments > MAX_KEY_SEGMENTS {
        return Err(format!("it has {segments} segments, more than the limit of {MAX_KEY_SEGMENTS}"));
    }
    let mut encoded = String::with_capacity(key.len() + 1);
    for (index, segment) in key.split('/').enumerate() {
        if index > 0 {
            encoded.push('/');
        }
        let start = encoded.len();
        encode_segment(segment, &mut encoded)?;
        if index + 1 == segments {
            encoded.push(LEAF_MARK);
        }
        let length = encoded.len() - start;
        if length > MAX_ENCODED_SEGMENT_LEN {
            return Err(format!(
                "its segment {segment:?} takes {length} bytes {ENCODED_LENGTH_RULE}, more than the limit of \
                 {MAX_ENCODED_SEGMENT_LEN}: shorten it"
            ));
        }
    }
    if encoded.len() > MAX_ENCODED_KEY_LEN {
        return Err(format!(
            "it takes {} bytes {ENCODED_LENGTH_RULE}, more than the limit of {MAX_ENCODED_KEY_LEN}: shorten it",
            encoded.len()
        ));
    }
    Ok(encoded)
}

/// Appends one encoded key segment, or says why `segment` cannot be one.
fn encode_segment(segment: &str, out: &mut String) -> Result<(), String> {
    match segment {
        "" => return Err("it has an empty segment (a leading, trailing or doubled `/`)".into()),
        "." | ".." => return Err(format!("it has a `{segment}` segment")),
        _ => {}
    }
    if let Some(control) = segment.chars().find(|c| c.is_control()) {
        return Err(format!("it contains the control character {control:?}"));
    }
    let bytes = segment.as_bytes();
    for (index, &byte) in bytes.iter().enumerate() {
        let last = index + 1 == bytes.len();
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' || (byte == b'.' && !last) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(())
}

/// The key an object name (below its area) encodes, or `None` when it is not the exact
/// encoding of a valid key.
fn decode_key(name: &str) -> Option<String> {
    let bytes = name.strip_suffix(LEAF_MARK)?.as_bytes();
    let mut key = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
            key.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            key.push(bytes[at]);
            at += 1;
        }
    }
    let key = String::from_utf8(key).ok()?;
    // Only the canonical spelling: one name per key, so listings never show a key twice.
    (encode_key(&key).ok()? == name).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn memory() -> Store {
        Store::new(Arc::new(InMemory::new()), "memory://")
    }

    #[tokio::test]
    async fn config_is_created_once_and_mismatches_are_refused() {
        let store = memory();
        assert_eq!(store.config().await.unwrap(), None);
        let config = store.config_or_init(None).await.unwrap();
        assert_eq!(config.chunker, ChunkerParams::default());
        assert_eq!(store.config_or_init(None).await.unwrap(), config);
        let err = store.config_or_init(Some(ChunkerParams::with_average(4096))).await.unwrap_err();
        assert!(err.to_string().contains("--chunk-size"), "{err}");
    }

    #[tokio::test]
    async fn chunks_are_create_if_absent() {
        let store = memory();
        let id = ChunkId::of(b"x");
        assert!(store.put_chunk(id, Bytes::from_static(b"one")).await.unwrap());
        assert!(!store.put_chunk(id, Bytes::from_static(b"two")).await.unwrap());
        assert_eq!(store.get_chunk(id).await.unwrap().unwrap(), Bytes::from_static(b"one"));
        assert_eq!(store.list_chunks().await.unwrap(), HashMap::from([(id, 3)]));
        assert_eq!(store.get_chunk(ChunkId::of(b"y")).await.unwrap(), None);
        let requests = store.requests();
        assert_eq!((requests.put, requests.get, requests.list), (2, 2, 1));
    }

    #[tokio::test]
    async fn manifests_list_by_string_prefix() {
        let store = memory();
        for key in ["repo/main-1", "repo/main2-1", "repo/dev-1", "other"] {
            store.put_manifest(key, b"m".to_vec()).await.unwrap();
        }
        let keys: Vec<String> = store.list_manifests("repo/main").await.unwrap().into_iter().map(|m| m.key).collect();
        assert_eq!(keys.len(), 2);
        assert!(keys.contains(&"repo/main-1".to_string()));
        assert_eq!(store.list_manifests("").await.unwrap().len(), 4);
        assert!(store.has_manifest("other").await.unwrap());
        assert!(!store.has_manifest("repo").await.unwrap());
    }

    #[test]
    fn bad_keys_are_refused() {
        for key in ["", "/a", "a/", "a//b", "a/../b", "a/./b", "..", "a\nb", "a\u{7f}", "a\u{85}b"] {
            assert!(keyed_path("manifests", key).is_err(), "{key:?}");
        }
        assert!(keyed_path("manifests", "container/pipe/main-abc123").is_ok());
        let err = keyed_path("manifests", "a\tb").unwrap_err().to_string();
        assert!(err.contains("control character '\\t'"), "{err}");
    }

    /// The longest key: four segments, 800 bytes once encoded with the leaf mark.
    fn longest_key() -> String {
        ["a".repeat(239), "b".repeat(239), "c".repeat(239), "d".repeat(79)].join("/")
    }

    #[test]
    fn keys_encode_to_names_every_backend_keeps() {
        let name = |key: &str| keyed_path("manifests", key).unwrap().as_ref().to_string();
        assert_eq!(name("p"), "manifests/p~");
        assert_eq!(name("p/q"), "manifests/p/q~");
        assert_eq!(name("repo/main-1.2_x"), "manifests/repo/main-1.2_x~");
        assert_eq!(name("a#1"), "manifests/a%231~");
        assert_eq!(name("a#1/b"), "manifests/a%231/b~");
        assert_eq!(name("50%/x~y z"), "manifests/50%25/x%7Ey%20z~");
        assert_eq!(name("é"), "manifests/%C3%A9~");
        assert_eq!(name("v1./w."), "manifests/v1%2E/w%2E~");
        assert_eq!(name("..."), "manifests/..%2E~");
        assert_eq!(name(&longest_key()).len(), "manifests/".len() + MAX_ENCODED_KEY_LEN);
    }

    #[test]
    fn too_long_keys_are_refused_with_the_limit() {
        let too_long = format!("{}e", longest_key());
        let err = keyed_path("manifests", &too_long).unwrap_err().to_string();
        assert!(err.contains("it takes 801 bytes once encoded") && err.contains("limit of 800: shorten it"), "{err}");
        let err = keyed_path("manifests", &"s".repeat(240)).unwrap_err().to_string();
        assert!(err.contains("takes 241 bytes") && err.contains("limit of 240"), "{err}");
        // 100 two-byte characters are 200 bytes, but 600 once encoded.
        let err = keyed_path("manifests", &"é".repeat(100)).unwrap_err().to_string();
        assert!(err.contains("takes 601 bytes") && err.contains("takes 3"), "{err}");
        let err = keyed_path("manifests", &vec!["s"; 65].join("/")).unwrap_err().to_string();
        assert!(err.contains("65 segments, more than the limit of 64"), "{err}");
        assert!(keyed_path("manifests", &vec!["s"; 64].join("/")).is_ok());
    }

    #[tokio::test]
    async fn listings_skip_objects_that_are_not_encoded_keys() {
        let store = memory();
        for name in
            ["manifests/old", "manifests/p/old", "manifests/%61~", "manifests/%e9~", "manifests/x%2~", "manifests/a.~"]
        {
            store.objects.put(&Path::parse(name).unwrap(), PutPayload::from_static(b"m")).await.unwrap();
        }
        store.put_manifest("p/new", b"m".to_vec()).await.unwrap();
        store.put_manifest("a.", b"m".to_vec()).await.unwrap();
        let keys: Vec<String> = store.list_manifests("").await.unwrap().into_iter().map(|m| m.key).collect();
        assert_eq!(keys, ["a.", "p/new"]);
    }

    proptest::proptest! {
        #[test]
        fn valid_keys_round_trip_through_their_names(key in "([a-zA-Z0-9 ._~%#é😀\\-]{1,12}/){0,3}[a-zA-Z0-9 ._~%#é😀\\-]{1,12}") {
            let Ok(name) = encode_key(&key) else {
                // Only `.` and `..` segments are refused among these.
                proptest::prop_assert!(key.split('/').any(|s| s == "." || s == ".."));
                return Ok(());
            };
            proptest::prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.%/~".contains(&b)), "{}", name);
            proptest::prop_assert!(!name.split('/').any(|s| s.ends_with('.')), "{}", name);
            proptest::prop_assert_eq!(decode_key(&name), Some(key.clone()));
            // No key's name is the folder of another key's name.
            let longer = encode_key(&format!("{key}/x")).unwrap();
            let folder = format!("{name}/");
            proptest::prop_assert!(!longer.starts_with(&folder));
        }

        #[test]
        fn any_string_is_refused_or_round_trips(key in proptest::prelude::any::<String>()) {
            if let Ok(name) = encode_key(&key) {
                proptest::prop_assert_eq!(decode_key(&name), Some(key.clone()));
            }
            let _ = decode_key(&key);
        }
    }
}
