//! The store's side of GC: the server clock, listings of packs and `used/` markers, the condemned
//! lists under `gc/condemned/`, the recorded grace, and batch deletes.
//!
//! ```text
//! gc/clock                   empty; a GC run writes it and reads its last-modified as "now"
//! gc/condemned/<run>.json    {"grace_ms", "packs": [{"id", "condemned_at_ms"}]}: packs a run found
//!                            unreferenced (see core/gc.rs and pipeline/gc.rs for the protocol)
//! ```

use std::collections::HashMap;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::{CONFIG_PATH, Store, StoreConfig, StoreError, is_missing_bucket, keyed_path, pack_path};
use crate::core::gc::{CondemnedList, ListedPack};
use crate::core::id::PackId;
use crate::core::key;
use crate::core::stats::ListedObject;

const CLOCK: &str = "gc/clock";
const PACKS: &str = "packs";
const MANIFESTS: &str = "manifests";
const CONDEMNED: &str = "gc/condemned";
/// A condemned list holds about 100 bytes per pack: this is over a million packs (16 TiB).
const MAX_CONDEMNED_LEN: u64 = 256 << 20;
/// How often a reader lists the condemned lists again when one vanished between the listing and
/// its read (a GC run replaced it: its successor is there by then).
const CONDEMNED_READS: usize = 5;

/// The pack at `path`, if `path` names one (`packs/…/<64 hex>`).
fn listed_pack(path: &Path, size: u64, modified_ms: i64) -> Option<ListedPack> {
    if !path.prefix_matches(&Path::from(PACKS)) {
        return None;
    }
    path.filename().and_then(PackId::from_hex).map(|id| ListedPack { id, size, modified_ms })
}

impl Store {
    /// The server's time: writes `gc/clock` and reads back its last-modified, in ms since the
    /// Unix epoch. GC compares only server times with each other.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn server_now_ms(&self) -> Result<i64, StoreError> {
        let path = Path::from(CLOCK);
        self.put(&path, Bytes::new(), false).await?;
        let meta = self.objects.head(&path).await.map_err(|e| self.backend_error("HEAD", &path, e))?;
        Ok(meta.last_modified.timestamp_millis())
    }

    /// Records `grace_ms` as the store's GC grace in `chunkcache.json` (`config`, as just read)
    /// unless it is already the recorded one.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn record_gc_grace(&self, config: &StoreConfig, grace_ms: u64) -> Result<(), StoreError> {
        if config.gc_grace_ms != Some(grace_ms) {
            let updated = StoreConfig { gc_grace_ms: Some(grace_ms), ..config.clone() };
            let json = serde_json::to_vec_pretty(&updated).expect("config serializes");
            self.put(&Path::from(CONFIG_PATH), json.into(), false).await?;
        }
        Ok(())
    }

    /// Every key's `used/` marker time (ms), from one listing.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn used_markers(&self) -> Result<HashMap<String, i64>, StoreError> {
        let mut used = HashMap::new();
        let mut listing = self.list_area(Some("used"));
        while let Some((path, _, modified_ms)) = listing.try_next().await? {
            if let Some(key) = path.as_ref().strip_prefix("used/").and_then(key::decode_key) {
                used.insert(key, modified_ms);
            }
        }
        Ok(used)
    }

    /// The packs, streamed from the listing of `packs/` (objects not named as packs are skipped).
    pub fn list_packs(&self) -> BoxStream<'_, Result<ListedPack, StoreError>> {
        self.list_area(Some(PACKS))
            .try_filter_map(|(path, size, modified_ms)| async move { Ok(listed_pack(&path, size, modified_ms)) })
            .boxed()
    }

    /// Every object under the store's prefix, streamed from one listing, by kind.
    pub fn list_objects(&self) -> BoxStream<'_, Result<ListedObject, StoreError>> {
        self.list_area(None)
            .map_ok(|(path, size, modified_ms)| match listed_pack(&path, size, modified_ms) {
                Some(pack) => ListedObject::Pack(pack),
                None if path.prefix_matches(&Path::from(MANIFESTS)) => ListedObject::Manifest { size },
                None => ListedObject::Other { size },
            })
            .boxed()
    }

    /// Objects under `area` (the whole store for `None`): path, size, last-modified in ms. A
    /// missing container lists nothing.
    fn list_area(&self, area: Option<&'static str>) -> BoxStream<'_, Result<(Path, u64, i64), StoreError>> {
        let prefix = area.map(Path::from);
        self.objects
            .list(prefix.as_ref())
            .take_while(|item| std::future::ready(!matches!(item, Err(e) if is_missing_bucket(e))))
            .map(move |item| match item {
                Ok(meta) => Ok((meta.location, meta.size, meta.last_modified.timestamp_millis())),
                Err(e) => Err(self.backend_error("LIST", &Path::from(area.unwrap_or("(all objects)")), e)),
            })
            .boxed()
    }

    /// Every condemned list: its name and contents. A list that vanishes between the listing and
    /// its read was replaced by a GC run, so the lists are read again; a list that is not valid
    /// JSON is an error naming it.
    ///
    /// # Errors
    /// Backend failures, an unreadable list, or lists that keep vanishing.
    pub async fn condemned_lists(&self) -> Result<Vec<(Path, CondemnedList)>, StoreError> {
        'again: for _ in 0..CONDEMNED_READS {
            let names: Vec<Path> = self.list_area(Some(CONDEMNED)).map_ok(|(path, ..)| path).try_collect().await?;
            let mut lists = Vec::with_capacity(names.len());
            for path in names {
                let Some(bytes) = self.get_optional(&path, MAX_CONDEMNED_LEN).await? else { continue 'again };
                let list = serde_json::from_slice(&bytes).map_err(|e| StoreError::BadConfig {
                    store: self.description.clone(),
                    reason: format!(
                        "{path} is not a condemned list ({e}); delete it (the next `chunkcache gc` starts the \
                         grace of the packs it held over)"
                    ),
                })?;
                lists.push((path, list));
            }
            return Ok(lists);
        }
        Err(StoreError::BadConfig {
            store: self.description.clone(),
            reason: format!(
                "the condemned lists under {CONDEMNED}/ kept changing while being read: run it again, and run one \
                 `chunkcache gc` at a time"
            ),
        })
    }

    /// Writes the condemned list of GC run `run`.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn put_condemned(&self, run: &str, list: &CondemnedList) -> Result<Path, StoreError> {
        let path = Path::from(format!("{CONDEMNED}/{run}.json"));
        let json = serde_json::to_vec(list).expect("list serializes");
        self.put(&path, json.into(), false).await?;
        Ok(path)
    }

    /// The object of pack `id`.
    pub fn pack_object(id: PackId) -> Path {
        pack_path(id)
    }

    /// The damaged marker of pack `id`.
    pub fn damaged_object(id: PackId) -> Path {
        super::damaged_path(id)
    }

    /// The manifest and `used/` marker of `key`.
    ///
    /// # Errors
    /// An invalid key.
    pub fn key_objects(key: &str) -> Result<[Path; 2], StoreError> {
        Ok([keyed_path("manifests", key)?, keyed_path("used", key)?])
    }

    /// Deletes `paths` through the backend's `delete_stream` (batch deletes where the backend
    /// has them); objects already gone count as deleted. Returns how many were deleted.
    ///
    /// # Errors
    /// The first backend failure.
    pub async fn delete_objects(&self, paths: Vec<Path>) -> Result<u64, StoreError> {
        if paths.is_empty() {
            return Ok(0);
        }
        let mut deleted = 0;
        let mut results = self.objects.delete_stream(futures::stream::iter(paths.into_iter().map(Ok)).boxed());
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                Err(e) => return Err(self.backend_error("DELETE", &Path::from("(batch)"), e)),
            }
        }
        Ok(deleted)
    }
}
