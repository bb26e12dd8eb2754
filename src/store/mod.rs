//! The object store: layout, chunk and manifest I/O, request accounting.
//!
//! Everything lives under one prefix of one container, bucket or folder:
//!
//! ```text
//! chunkcache.json            store config: format version (2) and chunker parameters
//! packs/<2 hex>/<64 hex>     immutable packs of chunk objects (see core/pack.rs), named by the
//!                            BLAKE3 of their bytes
//! manifests/<encoded key>    the latest manifest of a key, written last (the commit point); it
//!                            says where every chunk lies (pack, offset, length)
//! used/<encoded key>         empty marker rewritten by every restore: its last-modified time is
//!                            the key's "last used", readable for all keys with one listing
//! damaged/<64 hex>           empty marker: a restore found this pack missing or a chunk in it
//!                            corrupt, so no save reuses chunks from it (they are uploaded again)
//! gc/clock                   empty; GC writes it and reads its last-modified as the server's time
//! gc/condemned/<run>.json    packs a GC run found unreferenced, with when (see gc.rs and
//!                            pipeline/gc.rs); saves read these lists and reuse none of those packs
//! ```
//! Store format 1 kept one object per chunk under `chunks/`. A save to a format-1 store rewrites
//! `chunkcache.json` to format 2 and saves into packs; its old manifests are refused with advice
//! to save again ([`crate::core::manifest::ManifestError::Outdated`]), and the `chunks/` objects
//! are left for the operator to delete (nothing of format 2 refers to them).
//! A cache key names its objects through [`keyed_path`]: the key rule and its encoding into an
//! object name every backend stores as is live in [`crate::core::key`] (`p` → `manifests/p~`).
//! All I/O goes through `object_store`, so local folders, memory, Azure, S3 and GCS share one
//! code path. Pack uploads are create-if-absent puts of content-named objects, so concurrent
//! savers never clobber each other and a pack, once written, never changes. Only GC and verify
//! list the packs: a save learns what exists from parent manifests, and a restore reads the
//! ranges its manifest names.
//!
//! Every backend is wrapped the same way, whatever it is ([`Store::with_retry`], or
//! [`Store::with_batched_deletes`] where deletes go in batches):
//!
//! ```text
//! Store ─▶ RetryStore (retries transient failures, reads GET bodies whole) ─▶ CountingStore ─▶ backend
//! ```
//! The counter ([`counting::CountingStore`]) sits below the retries, so [`Store::requests`] counts
//! every attempt that was sent, deletes included.
//! Backend errors are reported on one line ([`BackendCause`]): an XML error body is reduced to its
//! `<Code>` and the first line of its `<Message>`.

pub mod azure_ad;
pub mod azure_admin;
pub mod backend;
pub mod counting;
pub mod gc;
pub mod gcp_workload_identity;
pub mod retry;
pub mod sts;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::core::chunker::ChunkerParams;
use crate::core::codec::{self, CorruptChunk};
use crate::core::id::{ChunkId, PackId};
use crate::core::key::{self, InvalidKey};
use crate::core::pack::{self, MAX_PACK_LEN};
use crate::store::counting::CountingStore;
use crate::store::retry::{RetryPolicy, RetryStore};

pub use counting::{RequestCounts, RequestSnapshot};

/// The store layout version this build writes, and the newest it can use.
pub const STORE_FORMAT: u16 = 2;
const CONFIG_PATH: &str = "chunkcache.json";
/// `chunkcache.json` is a few hundred bytes; more is not a config.
const MAX_CONFIG_LEN: u64 = 64 << 10;

/// The store-wide settings, kept in `chunkcache.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// Layout version.
    pub format: u16,
    /// The chunker every writer of this store must use.
    pub chunker: ChunkerParams,
    /// The GC grace period in ms, recorded by the first `chunkcache gc` run (absent before):
    /// a save refuses to commit once half of it has passed since it read the condemned lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc_grace_ms: Option<u64>,
}

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An object is larger than any object chunkcache writes there: the store is damaged or
    /// hostile.
    #[error(
        "{path} in {store} is larger than {limit} bytes, more than chunkcache ever writes there: the store is \
         damaged or was written by something else; delete the object (or save the cache again)"
    )]
    TooLarge {
        /// The object.
        path: String,
        /// The store's description.
        store: String,
        /// The most chunkcache reads of such an object.
        limit: u64,
    },
    /// The backend refused or failed a request. The message is one line: the backend's error
    /// comes summarised ([`BackendCause`]), not as a source chain that may end in a server's
    /// multi-line XML.
    #[error("{operation} {path} in {store} failed: {cause}{hint}")]
    Backend {
        /// What we tried.
        operation: &'static str,
        /// The object involved.
        path: String,
        /// The store's description (never its credentials).
        store: String,
        /// How to fix it, when the cause is recognised (starts with `; `), else empty.
        hint: &'static str,
        /// The backend's error, and its one-line summary.
        cause: BackendCause,
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
        "{store} uses chunker parameters of {}, but {} were requested: dedup needs every writer \
         to cut alike, so drop --chunk-size (a save then takes the store's) or use another store \
         (--store or CHUNKCACHE_STORE)",
        describe_params(store_params),
        describe_params(requested)
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
    /// The container or bucket a read found missing: almost always a typo in the store URL, which
    /// must not look like an empty (cold) cache. Reads never create it; a save does where it can.
    #[error(
        "store {store} does not exist (its container or bucket is missing): check the store URL (--store or \
         CHUNKCACHE_STORE; the plugin's bucket or container setting) for a typo, or create it: `chunkcache \
         save` creates an Azure container when it has the account key; create an S3 or GCS bucket with your \
         cloud's tools"
    )]
    MissingBucket {
        /// The store's description.
        store: String,
    },
    /// A cache key that cannot name an object ([`crate::core::key`]'s rule).
    #[error(transparent)]
    InvalidKey(#[from] InvalidKey),
}

/// A backend error with its one-line summary: the error's causes joined with `: ` (a cause whose
/// text the one before already holds is left out, and so are `object_store`'s "Generic … error"
/// wrappers), an XML error body reduced to its `<Code>` and the first line of its `<Message>`,
/// whitespace collapsed, and the whole cut at [`BackendCause::MAX_LEN`] characters.
#[derive(Debug)]
pub struct BackendCause {
    summary: String,
    error: Box<object_store::Error>,
}

impl BackendCause {
    /// The longest summary kept, in characters.
    pub const MAX_LEN: usize = 600;

    /// Summarises `error`.
    pub fn new(error: object_store::Error) -> Self {
        let mut summary = String::new();
        let mut previous = String::new();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(current) = cause {
            // "Generic S3 error: {source}" only adds the backend's name: its source says the rest.
            let generic = matches!(current.downcast_ref(), Some(object_store::Error::Generic { .. }));
            let text = if generic { String::new() } else { one_line(&current.to_string()) };
            if !text.is_empty() && !previous.contains(&text) {
                if !summary.is_empty() {
                    summary.push_str(": ");
                }
                summary.push_str(&text);
                previous = text;
            }
            cause = current.source();
        }
        if summary.chars().count() > Self::MAX_LEN {
            summary = summary.chars().take(Self::MAX_LEN).collect::<String>() + "…";
        }
        Self { summary, error: Box::new(error) }
    }

    /// The backend's error itself.
    pub fn error(&self) -> &object_store::Error {
        &self.error
    }
}

impl fmt::Display for BackendCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)
    }
}

/// `text` on one line: an XML error body (`<?xml …><Error><Code>…</Code><Message>…</Message>…`)
/// becomes `Code: first line of the message`, and runs of whitespace become one space.
fn one_line(text: &str) -> String {
    let text = match text.find("<?xml").or_else(|| text.find("<Error")) {
        Some(start) => {
            let body = &text[start..];
            let code = xml_element(body, "Code");
            let message = xml_element(body, "Message").and_then(|m| m.lines().next()).map(str::trim);
            let summary = match (code, message) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                (None, Some(message)) => message.to_string(),
                (None, None) => "(an XML error body without a code)".to_string(),
            };
            let before = text[..start].trim_end_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
            format!("{before} {summary}")
        }
        None => text.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text between the first `<tag>` and the following `</tag>`.
pub(crate) fn xml_element<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].trim()).filter(|s| !s.is_empty())
}

/// Chunks that could not be read: the store failed, or a chunk stayed corrupt when read again.
#[derive(Debug, thiserror::Error)]
pub enum ChunkReadError {
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A chunk failed verification on each of [`CHUNK_READS`] reads.
    #[error(transparent)]
    Corrupt(#[from] CorruptChunk),
}

/// How many times [`Store::read_range`] reads a range whose chunks fail verification before it
/// reports one corrupt. A body cut short without any error (a proxy that rewrote the length, say)
/// can only be noticed by the content check, so it is read again rather than reported at once.
pub const CHUNK_READS: u32 = 3;

/// A run of neighbouring chunk objects of one pack, read with one ranged GET.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackRange {
    /// The pack.
    pub pack: PackId,
    /// The bytes read: `start..end` of the pack.
    pub start: u32,
    /// See `start`.
    pub end: u32,
    /// The chunks wanted from those bytes, each once: id, offset in the pack, stored length.
    pub chunks: Vec<(ChunkId, u32, u32)>,
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

/// `512 KiB average (128 KiB min, 2 MiB max)`, for messages.
fn describe_params(params: &ChunkerParams) -> String {
    let size = |bytes: u32| match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    };
    format!("{} average ({} min, {} max)", size(params.avg_size), size(params.min_size), size(params.max_size))
}

/// A chunkcache store over any `object_store` backend.
#[derive(Clone, Debug)]
pub struct Store {
    objects: Arc<dyn ObjectStore>,
    description: String,
    requests: Arc<RequestCounts>,
    /// The folder of a `file://` store, where GC sweeps staging files the listing hides.
    local_root: Option<std::path::PathBuf>,
}

impl Store {
    /// Wraps a backend with the default [`RetryPolicy`]. `description` names it in messages and
    /// must not hold secrets.
    pub fn new(backend: Arc<dyn ObjectStore>, description: impl Into<String>) -> Self {
        Self::with_retry(backend, description, RetryPolicy::default())
    }

    /// Wraps a backend: retries (`policy`) over request counting over `backend` (see the module
    /// docs), for a backend that deletes one object per request. Every store is built this way
    /// or by [`Store::with_batched_deletes`] ([`crate::store::backend::open`]'s Azure and S3
    /// stores).
    pub fn with_retry(backend: Arc<dyn ObjectStore>, description: impl Into<String>, policy: RetryPolicy) -> Self {
        Self::with_batched_deletes(backend, description, policy, 1)
    }

    /// [`Store::with_retry`] for a backend whose `delete_stream` deletes up to `objects_per_delete`
    /// objects in one request: deletes are sent, retried and counted in batches of that many.
    pub fn with_batched_deletes(
        backend: Arc<dyn ObjectStore>,
        description: impl Into<String>,
        policy: RetryPolicy,
        objects_per_delete: usize,
    ) -> Self {
        let counted = CountingStore::new(backend).with_objects_per_delete(objects_per_delete);
        let requests = counted.counts();
        let counted = Arc::new(counted);
        Self {
            objects: Arc::new(RetryStore::new(counted, policy).with_objects_per_delete(objects_per_delete)),
            description: description.into(),
            requests,
            local_root: None,
        }
    }

    /// Records that the store is the local folder `root` (see [`Store::local_root`]).
    pub fn with_local_root(self, root: std::path::PathBuf) -> Self {
        Self { local_root: Some(root), ..self }
    }

    /// The folder of a `file://` store; `None` for other backends.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        self.local_root.as_deref()
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
            cause: BackendCause::new(source),
        }
    }

    fn missing_bucket(&self) -> StoreError {
        StoreError::MissingBucket { store: self.description.clone() }
    }

    /// Reads an object of at most `limit` bytes. The request asks for one byte more than the
    /// limit, so an object a damaged or hostile store made larger is refused without being read
    /// whole into memory.
    async fn get_optional(&self, path: &Path, limit: u64) -> Result<Option<Bytes>, StoreError> {
        let options = GetOptions { range: Some(GetRange::Bounded(0..limit + 1)), ..GetOptions::default() };
        let result = match self.objects.get_opts(path, options).await {
            Ok(result) => result.bytes().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(bytes) if bytes.len() as u64 > limit => {
                Err(StoreError::TooLarge { path: path.to_string(), store: self.description.clone(), limit })
            }
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if is_missing_bucket(&e) => Err(self.missing_bucket()),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.backend_error("GET", path, e)),
        }
    }

    /// Puts an object; with `create_only`, an existing object is left alone and `Ok(false)`
    /// returned. A create whose retry meets the object also returns `Ok(false)`: an earlier
    /// attempt may have created it, or another writer did; either way it is there.
    async fn put(&self, path: &Path, payload: Bytes, create_only: bool) -> Result<bool, StoreError> {
        let mode = if create_only { PutMode::Create } else { PutMode::Overwrite };
        let options = PutOptions { mode, ..PutOptions::default() };
        match self.objects.put_opts(path, PutPayload::from_bytes(payload), options).await {
            Ok(_) => Ok(true),
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
        let Some(bytes) = self.get_optional(&Path::from(CONFIG_PATH), MAX_CONFIG_LEN).await? else {
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
            Some(config) if config.format < STORE_FORMAT => {
                // Format 1 (one object per chunk): from now on saves write packs.
                let upgraded = StoreConfig { format: STORE_FORMAT, ..config };
                let json = serde_json::to_vec_pretty(&upgraded).expect("config serializes");
                self.put(&Path::from(CONFIG_PATH), json.into(), false).await?;
                upgraded
            }
            Some(config) => config,
            None => {
                let fresh =
                    StoreConfig { format: STORE_FORMAT, chunker: requested.unwrap_or_default(), gc_grace_ms: None };
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

    /// Uploads a sealed pack unless the store has it. Packs are named by their content, so an
    /// object found under the name is kept only if it is a sound pack of that name; anything
    /// else there (damage, or a hostile writer) is replaced.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn put_pack(&self, id: PackId, bytes: Bytes) -> Result<(), StoreError> {
        let path = pack_path(id);
        if self.put(&path, bytes.clone(), true).await? {
            return Ok(());
        }
        let sound = match self.get_optional(&path, MAX_PACK_LEN).await {
            Ok(found) => found.is_some_and(|found| pack::read_index(id, &found).is_ok()),
            Err(StoreError::TooLarge { .. }) => false,
            Err(err) => return Err(err),
        };
        if sound { Ok(()) } else { self.put(&path, bytes, false).await.map(drop) }
    }

    /// Reads bytes `range` of pack `id`; `None` if the pack is missing. A pack cut short yields
    /// fewer bytes than asked for (or none): the caller's verification refuses them.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn get_pack_range(&self, id: PackId, range: std::ops::Range<u64>) -> Result<Option<Bytes>, StoreError> {
        let path = pack_path(id);
        let options = GetOptions { range: Some(GetRange::Bounded(range)), ..GetOptions::default() };
        let result = match self.objects.get_opts(&path, options).await {
            Ok(result) => result.bytes().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            // The range starts past the end of a pack cut short.
            Err(e) if is_range_not_satisfiable(&e) => Ok(Some(Bytes::new())),
            Err(e) => Err(self.backend_error("GET", &path, e)),
        }
    }

    /// How many chunks pack `id` (of `size` bytes, as listed) holds, from its footer: one ranged
    /// GET of [`pack::FOOTER_BYTES`]. `None` if it is gone, or its end is not a pack footer.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn pack_chunk_count(&self, id: PackId, size: u64) -> Result<Option<u32>, StoreError> {
        let start = size.saturating_sub(pack::FOOTER_BYTES);
        Ok(self.get_pack_range(id, start..size).await?.as_deref().and_then(pack::chunk_count))
    }

    /// Reads a [`PackRange`] with one ranged GET and decodes its chunks, verifying each against
    /// its BLAKE3 id; returns them in the order of `range.chunks`, or `None` if the pack is
    /// missing. A range whose chunks fail verification is read again, up to [`CHUNK_READS`] reads
    /// in all, before the first bad chunk is reported corrupt.
    ///
    /// # Errors
    /// [`ChunkReadError::Store`] for backend failures, [`ChunkReadError::Corrupt`] when every
    /// read failed verification (a pack cut short included).
    pub async fn read_range(&self, range: &PackRange) -> Result<Option<Vec<Bytes>>, ChunkReadError> {
        let mut reads = 1;
        loop {
            let Some(bytes) = self.get_pack_range(range.pack, u64::from(range.start)..u64::from(range.end)).await?
            else {
                return Ok(None);
            };
            let chunks = range.chunks.clone();
            let start = range.start;
            // Decompressing and hashing up to a few MiB: off the async workers.
            let decoded = tokio::task::spawn_blocking(move || decode_range(&bytes, start, &chunks))
                .await
                .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
            match decoded {
                Ok(raw) => return Ok(Some(raw)),
                Err(_) if reads < CHUNK_READS => reads += 1,
                Err(corrupt) => return Err(corrupt.into()),
            }
        }
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
        self.get_optional(&keyed_path("manifests", key)?, crate::core::manifest::MAX_ENCODED_LEN).await
    }

    /// Whether `key` has a manifest, without downloading it.
    ///
    /// # Errors
    /// An invalid key, or backend failures.
    pub async fn has_manifest(&self, key: &str) -> Result<bool, StoreError> {
        let path = keyed_path("manifests", key)?;
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
        let folder = key::encode_prefix_folder(prefix)?;
        let directory = if folder.is_empty() { "manifests".to_string() } else { format!("manifests/{folder}") };
        let directory =
            Path::parse(&directory).map_err(|e| InvalidKey { key: prefix.to_string(), reason: e.to_string() })?;
        let mut found = Vec::new();
        let mut listing = self.objects.list(Some(&directory));
        loop {
            let meta = match listing.try_next().await {
                Ok(Some(meta)) => meta,
                Ok(None) => break,
                Err(e) if is_missing_bucket(&e) => return Err(self.missing_bucket()),
                Err(e) => return Err(self.backend_error("LIST", &directory, e)),
            };
            let Some(key) = meta.location.as_ref().strip_prefix("manifests/").and_then(key::decode_key) else {
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

    /// Records that pack `id` was found missing or holding a corrupt chunk, so that no save
    /// reuses chunks from it: they are uploaded again into new packs. The marker stays until a
    /// save writes that very pack again ([`Store::clear_damaged`]) or GC deletes the pack, since
    /// other keys may still name it.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn mark_damaged(&self, id: PackId) -> Result<(), StoreError> {
        self.put(&damaged_path(id), Bytes::new(), false).await.map(drop)
    }

    /// Forgets that pack `id` was damaged: a save has just written it whole again.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn clear_damaged(&self, id: PackId) -> Result<(), StoreError> {
        let path = damaged_path(id);
        match self.objects.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.backend_error("DELETE", &path, e)),
        }
    }

    /// The packs recorded as damaged, from one listing (normally empty).
    ///
    /// # Errors
    /// Backend failures.
    pub async fn damaged_packs(&self) -> Result<std::collections::HashSet<PackId>, StoreError> {
        let prefix = Path::from(DAMAGED);
        let mut listing = self.objects.list(Some(&prefix));
        let mut ids = std::collections::HashSet::new();
        loop {
            match listing.try_next().await {
                Ok(Some(meta)) => ids.extend(meta.location.filename().and_then(PackId::from_hex)),
                Ok(None) => return Ok(ids),
                Err(e) if is_missing_bucket(&e) => return Ok(ids),
                Err(e) => return Err(self.backend_error("LIST", &prefix, e)),
            }
        }
    }
}

/// Decodes the chunk objects of a range read from pack offset `start`.
fn decode_range(bytes: &Bytes, start: u32, chunks: &[(ChunkId, u32, u32)]) -> Result<Vec<Bytes>, CorruptChunk> {
    chunks
        .iter()
        .map(|&(id, offset, stored_len)| {
            let from = (offset - start) as usize;
            let to = from + stored_len as usize;
            if to > bytes.len() {
                return Err(CorruptChunk::Malformed {
                    id,
                    reason: format!("its pack is cut short ({} of {} bytes read)", bytes.len(), to),
                });
            }
            let raw = codec::decode(id, bytes.slice(from..to))?;
            // A chunk stored raw comes back as a slice of the whole range: copy it out, so that
            // a chunk kept for later does not keep the range's buffer (up to 8 MiB) alive.
            let inside = bytes.as_ptr_range().contains(&raw.as_ptr());
            Ok(if inside { Bytes::copy_from_slice(&raw) } else { raw })
        })
        .collect()
}

const DAMAGED: &str = "damaged";

fn damaged_path(id: PackId) -> Path {
    Path::from(format!("{DAMAGED}/{}", id.to_hex()))
}

/// A fix for the failures users meet most: wrong credentials, missing container or bucket,
/// unreachable endpoint. Matched on the backend's own error text, which names the cause.
fn hint_for(error: &object_store::Error) -> &'static str {
    let text = format!("{error:?}");
    if ["AuthorizationPermissionMismatch", "AuthorizationResourceTypeMismatch", "AuthorizationServiceMismatch"]
        .iter()
        .any(|needle| text.contains(needle))
    {
        "; the store refused the credentials for this operation: they are valid but lack a permission it \
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
        "; the store refused the credentials; check the account key or SAS token (AZURE_STORAGE_KEY or \
         AZURE_STORAGE_SAS_TOKEN, plugin account_key or sas_token) or the AWS keys \
         (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, plugin access_key/secret_key)"
    } else if is_missing_bucket(error) {
        "; the container or bucket does not exist; create it, or for Azure give an account key so chunkcache \
         can create it"
    } else if ["Connection refused", "dns error", "error trying to connect", "tcp connect", "timed out", "Timeout"]
        .iter()
        .any(|needle| text.contains(needle))
    {
        "; the endpoint cannot be reached; check the endpoint URL, the network and the timeout"
    } else {
        ""
    }
}

fn is_missing_bucket(error: &object_store::Error) -> bool {
    let text = format!("{error:?}");
    ["ContainerNotFound", "NoSuchBucket"].iter().any(|needle| text.contains(needle))
}

fn pack_path(id: PackId) -> Path {
    let hex = id.to_hex();
    Path::from(format!("packs/{}/{hex}", &hex[..2]))
}

/// A ranged read that starts past the end of the object: HTTP 416 (Azure and S3 name it
/// `InvalidRange`), or the local and memory stores' `StartTooLarge`. Matched on those names, not
/// on a bare "416", which a pack's hex name in the same message may contain.
fn is_range_not_satisfiable(error: &object_store::Error) -> bool {
    let text = format!("{error:?}");
    ["InvalidRange", "StartTooLarge", "Range Not Satisfiable"].iter().any(|needle| text.contains(needle))
}

/// Checks a cache key against the one rule every backend shares and returns its object path
/// under `area` (the encoding is [`key::encode_key`]'s).
///
/// # Errors
/// [`StoreError::InvalidKey`] for an empty key, an empty, `.` or `..` segment, a control
/// character, or a key or segment too long once encoded; the message says the limit.
pub fn keyed_path(area: &str, key: &str) -> Result<Path, StoreError> {
    let encoded = key::encode_key(key)?;
    Path::parse(format!("{area}/{encoded}"))
        .map_err(|e| InvalidKey { key: key.to_string(), reason: e.to_string() }.into())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use async_trait::async_trait;
    use futures::StreamExt as _;
    use futures::stream::BoxStream;
    use object_store::{
        CopyOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, PutMultipartOptions,
        PutResult,
    };

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
    async fn objects_larger_than_chunkcache_writes_are_refused_unread() {
        let store = memory();
        let oversized = Bytes::from(vec![b' '; MAX_CONFIG_LEN as usize + 1]);
        store.objects.put(&Path::from(CONFIG_PATH), oversized.into()).await.unwrap();
        let err = store.config().await.unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("chunkcache.json") && err.to_string().contains("damaged"), "{err}");
        assert_eq!(store.requests().bytes_downloaded, MAX_CONFIG_LEN + 1, "read no further than the limit");
    }

    /// A sealed pack of `raws`, with the range that reads all of them.
    fn pack_of(raws: &[&[u8]]) -> (PackId, Bytes, PackRange) {
        let mut builder = crate::core::pack::PackBuilder::new();
        let chunks: Vec<(ChunkId, u32, u32)> = raws
            .iter()
            .map(|raw| {
                let object = codec::encode(raw, 3);
                (ChunkId::of(raw), builder.push(ChunkId::of(raw), &object), object.len() as u32)
            })
            .collect();
        let (id, bytes) = builder.finish();
        let end = chunks.last().map_or(8, |&(_, offset, len)| offset + len);
        (id, bytes, PackRange { pack: id, start: chunks[0].1, end, chunks })
    }

    #[tokio::test]
    async fn packs_are_create_if_absent_and_read_by_range() {
        let store = memory();
        let (id, bytes, range) = pack_of(&[b"first chunk", b"second chunk"]);
        store.put_pack(id, bytes.clone()).await.unwrap();
        store.put_pack(id, bytes).await.unwrap();
        let requests = store.requests();
        assert_eq!((requests.put, requests.get), (2, 1), "the second put met the pack and checked it");
        let read = store.read_range(&range).await.unwrap().unwrap();
        assert_eq!(read, [Bytes::from_static(b"first chunk"), Bytes::from_static(b"second chunk")]);
        let second = PackRange { start: range.chunks[1].1, chunks: range.chunks[1..].to_vec(), ..range.clone() };
        assert_eq!(store.read_range(&second).await.unwrap().unwrap(), [Bytes::from_static(b"second chunk")]);
        let absent = PackRange { pack: PackId::of(b"absent"), ..range };
        assert_eq!(store.read_range(&absent).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_damaged_object_under_a_packs_name_is_replaced() {
        let store = memory();
        let (id, bytes, range) = pack_of(&[b"chunk"]);
        let mut damaged = bytes.to_vec();
        damaged[9] ^= 1;
        store.objects.put(&pack_path(id), Bytes::from(damaged).into()).await.unwrap();
        assert!(matches!(store.read_range(&range).await, Err(ChunkReadError::Corrupt(_))));
        store.put_pack(id, bytes).await.unwrap();
        assert_eq!(store.read_range(&range).await.unwrap().unwrap(), [Bytes::from_static(b"chunk")]);
    }

    #[tokio::test]
    async fn a_pack_cut_short_is_corrupt_naming_the_chunk() {
        let store = memory();
        let (id, bytes, range) = pack_of(&[b"one", b"two"]);
        store.objects.put(&pack_path(id), bytes.slice(..range.chunks[1].1 as usize + 3).into()).await.unwrap();
        let err = store.read_range(&range).await.unwrap_err();
        assert!(err.to_string().contains(&range.chunks[1].0.to_string()), "{err}");
        assert!(err.to_string().contains("cut short"), "{err}");
        store.objects.put(&pack_path(id), bytes.slice(..4).into()).await.unwrap();
        let err = store.read_range(&range).await;
        assert!(matches!(err, Err(ChunkReadError::Corrupt(_))), "{err:?}");
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

    #[tokio::test]
    async fn damaged_markers_name_packs() {
        let store = memory();
        let id = PackId::of(b"damaged");
        assert!(store.damaged_packs().await.unwrap().is_empty());
        store.mark_damaged(id).await.unwrap();
        assert_eq!(store.damaged_packs().await.unwrap(), [id].into());
        store.clear_damaged(id).await.unwrap();
        assert!(store.damaged_packs().await.unwrap().is_empty());
        let requests = store.requests();
        assert_eq!((requests.put, requests.list, requests.delete), (1, 3, 1), "{requests:?}");
    }

    /// Memory, with scripted faults on GETs: resets before the request, then bodies cut short
    /// with a consistent length (which only the chunk's hash can catch).
    #[derive(Debug, Default)]
    struct Faulty {
        inner: InMemory,
        resets: AtomicU64,
        truncations: AtomicU64,
    }

    fn take(counter: &AtomicU64) -> bool {
        counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
    }

    impl fmt::Display for Faulty {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Faulty")
        }
    }

    #[async_trait]
    impl ObjectStore for Faulty {
        async fn put_opts(&self, l: &Path, p: PutPayload, o: PutOptions) -> object_store::Result<PutResult> {
            self.inner.put_opts(l, p, o).await
        }

        async fn put_multipart_opts(
            &self,
            l: &Path,
            o: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(l, o).await
        }

        async fn get_opts(&self, l: &Path, o: GetOptions) -> object_store::Result<GetResult> {
            if take(&self.resets) {
                let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
                return Err(object_store::Error::Generic { store: "Faulty", source: Box::new(reset) });
            }
            let result = self.inner.get_opts(l, o).await?;
            if !take(&self.truncations) {
                return Ok(result);
            }
            let mut meta = result.meta.clone();
            let body = result.bytes().await?;
            let short = body.slice(..body.len() - 1);
            meta.size = short.len() as u64;
            Ok(GetResult {
                range: 0..meta.size,
                meta,
                payload: GetResultPayload::Stream(futures::stream::iter([Ok(short)]).boxed()),
                attributes: Default::default(),
                extensions: Default::default(),
            })
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    fn faulty() -> (Store, Arc<Faulty>) {
        let faulty = Arc::new(Faulty::default());
        let policy = RetryPolicy { initial_backoff: std::time::Duration::from_millis(1), ..RetryPolicy::default() };
        (Store::with_retry(Arc::clone(&faulty) as Arc<dyn ObjectStore>, "faulty memory", policy), faulty)
    }

    #[tokio::test]
    async fn a_range_cut_short_is_read_again_before_it_is_called_corrupt() {
        let (store, faulty) = faulty();
        let raw = b"some chunk content".repeat(100);
        let (id, bytes, range) = pack_of(&[&raw]);
        store.put_pack(id, bytes).await.unwrap();

        faulty.truncations.store(CHUNK_READS as u64 - 1, Ordering::Relaxed);
        assert_eq!(store.read_range(&range).await.unwrap().unwrap(), [Bytes::from(raw)]);
        assert_eq!(store.requests().get, u64::from(CHUNK_READS));

        faulty.truncations.store(CHUNK_READS as u64, Ordering::Relaxed);
        let err = store.read_range(&range).await.unwrap_err();
        assert!(matches!(err, ChunkReadError::Corrupt(_)), "{err}");
        assert!(err.to_string().contains(&range.chunks[0].0.to_string()), "{err}");
        assert_eq!(store.requests().get, 2 * u64::from(CHUNK_READS));
    }

    #[tokio::test]
    async fn retried_requests_are_counted() {
        let (store, faulty) = faulty();
        store.put_manifest("k", b"manifest".to_vec()).await.unwrap();
        faulty.resets.store(2, Ordering::Relaxed);
        assert_eq!(store.get_manifest("k").await.unwrap().as_deref(), Some(&b"manifest"[..]));
        let requests = store.requests();
        assert_eq!((requests.put, requests.get, requests.bytes_downloaded), (1, 3, 8), "{requests:?}");
    }

    #[test]
    fn backend_errors_are_one_line_without_the_xml_body() {
        let body = "Error performing GET http://127.0.0.1:10000/devstoreaccount1/c/manifests/k in 2ms - Server \
                    returned non-2xx status code: 403 Forbidden: \u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
                    <Error>\n  <Code>AuthorizationFailure</Code>\n  <Message>Server failed to authenticate the \
                    request.\nRequestId:6a1f\nTime:2026-01-01T00:00:00Z</Message>\n</Error>";
        let error = object_store::Error::PermissionDenied { path: "manifests/k".into(), source: body.into() };
        let message = memory().backend_error("GET", &Path::from("manifests/k"), error).to_string();
        assert!(!message.contains('\n'), "{message}");
        let reason = "403 Forbidden: AuthorizationFailure: Server failed to authenticate the request.";
        assert!(message.contains(reason), "{message}");
        assert!(message.contains("http://127.0.0.1:10000/devstoreaccount1/c/manifests/k"), "{message}");
        assert!(!message.contains("RequestId") && !message.contains("<"), "{message}");
        assert!(message.ends_with("plugin access_key/secret_key)"), "the hint comes last: {message}");

        let long = object_store::Error::Generic { store: "S3", source: "x\n".repeat(5000).into() };
        let message = memory().backend_error("PUT", &Path::from("p"), long).to_string();
        assert!(!message.contains('\n') && message.chars().count() < BackendCause::MAX_LEN + 100, "{message}");
    }

    #[test]
    fn keyed_paths_put_the_encoded_key_under_its_area() {
        assert_eq!(keyed_path("used", "a#1/b").unwrap().as_ref(), "used/a%231/b~");
        let err = keyed_path("manifests", "a//b").unwrap_err();
        assert!(matches!(&err, StoreError::InvalidKey(InvalidKey { key, .. }) if key == "a//b"), "{err}");
        assert!(err.to_string().contains("empty segment"), "{err}");
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
}
