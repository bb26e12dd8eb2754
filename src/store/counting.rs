//! Request accounting: [`CountingStore`] wraps any `object_store` backend and counts every
//! request kind in one place (PUT, GET, HEAD, LIST, DELETE) and the payload bytes moved, so
//! reports never count by hand.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt as _, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use serde::Serialize;

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
    /// PUT requests (chunks, manifests, markers, config), retries included.
    pub put: u64,
    /// GET requests, retries included.
    pub get: u64,
    /// HEAD requests, retries included.
    pub head: u64,
    /// LIST calls (a call may fetch several pages), retries included.
    pub list: u64,
    /// DELETE requests, retries included: a batch (an Azure blob batch of up to 256 objects, an
    /// S3 `DeleteObjects` of up to 1000) is one request.
    pub delete: u64,
    /// Payload bytes of successful uploads.
    pub bytes_uploaded: u64,
    /// Payload bytes downloaded, partial bodies of failed attempts included.
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

/// Counts the requests sent to the backend it wraps, by kind, and the payload bytes moved
/// ([`RequestCounts`]), in the style of `object_store`'s `LimitStore` and `PrefixStore`. A
/// [`Store`](super::Store) puts it below its [`RetryStore`](super::retry::RetryStore), so each
/// attempt counts. Multipart uploads, copies and renames, which chunkcache does not use, pass
/// through uncounted.
///
/// **Deletes.** `delete_stream` hides how many requests it sends. `object_store`'s Azure and S3
/// clients cut the stream into batches of a fixed size and send one request per batch; the others
/// send one request per object. So each call counts one request for every `objects_per_delete`
/// objects that enter it ([`CountingStore::with_objects_per_delete`]; the
/// [`RetryStore`](super::retry::RetryStore) above hands over at most that many per call).
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    counts: Arc<RequestCounts>,
    objects_per_delete: usize,
}

impl CountingStore {
    /// Wraps `inner`, counting from zero; its deletes are one request per object.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner, counts: Arc::default(), objects_per_delete: 1 }
    }

    /// `inner` deletes up to `objects` (at least 1) in one request.
    pub fn with_objects_per_delete(self, objects: usize) -> Self {
        Self { objects_per_delete: objects.max(1), ..self }
    }

    /// The counts, shared: they keep counting while the wrapper is in use.
    pub fn counts(&self) -> Arc<RequestCounts> {
        Arc::clone(&self.counts)
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountingStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        bump(&self.counts.put, 1);
        let len = payload.content_length() as u64;
        let result = self.inner.put_opts(location, payload, opts).await?;
        bump(&self.counts.bytes_uploaded, len);
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let head = options.head;
        bump(if head { &self.counts.head } else { &self.counts.get }, 1);
        let result = self.inner.get_opts(location, options).await?;
        if head {
            return Ok(result);
        }
        let payload = match result.payload {
            GetResultPayload::Stream(stream) => {
                let counts = Arc::clone(&self.counts);
                GetResultPayload::Stream(
                    stream.inspect_ok(move |piece| bump(&counts.bytes_downloaded, piece.len() as u64)).boxed(),
                )
            }
            file @ GetResultPayload::File(..) => {
                bump(&self.counts.bytes_downloaded, result.range.end - result.range.start);
                file
            }
        };
        Ok(GetResult { payload, ..result })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        bump(&self.counts.get, 1);
        let parts = self.inner.get_ranges(location, ranges).await?;
        bump(&self.counts.bytes_downloaded, parts.iter().map(|part| part.len() as u64).sum());
        Ok(parts)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let (counts, per_request) = (Arc::clone(&self.counts), self.objects_per_delete);
        let mut objects = 0;
        let counted = locations.inspect_ok(move |_| {
            if objects % per_request == 0 {
                bump(&counts.delete, 1);
            }
            objects += 1;
        });
        self.inner.delete_stream(counted.boxed())
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        bump(&self.counts.list, 1);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        bump(&self.counts.list, 1);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        bump(&self.counts.list, 1);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn every_request_kind_is_counted_deletes_included() {
        let store = CountingStore::new(Arc::new(InMemory::new()));
        let counts = store.counts();
        let path = Path::from("a/b");
        store.put(&path, PutPayload::from_static(b"abc")).await.unwrap();
        assert_eq!(store.get(&path).await.unwrap().bytes().await.unwrap().as_ref(), b"abc");
        store.head(&path).await.unwrap();
        let listed: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
        assert_eq!(listed.len(), 1);
        store.delete(&path).await.unwrap();
        assert!(store.head(&path).await.is_err(), "deleted");
        assert_eq!(
            counts.snapshot(),
            RequestSnapshot { put: 1, get: 1, head: 2, list: 1, delete: 1, bytes_uploaded: 3, bytes_downloaded: 3 }
        );
    }

    #[tokio::test]
    async fn a_batch_delete_counts_one_request_per_batch_of_objects() {
        let store = CountingStore::new(Arc::new(InMemory::new())).with_objects_per_delete(256);
        let counts = store.counts();
        let paths: Vec<Path> = (0..600).map(|n| Path::from(format!("d/{n}"))).collect();
        for path in &paths {
            store.put(path, PutPayload::from_static(b"x")).await.unwrap();
        }
        let deleted: Vec<Path> =
            store.delete_stream(futures::stream::iter(paths.into_iter().map(Ok)).boxed()).try_collect().await.unwrap();
        assert_eq!(deleted.len(), 600);
        assert_eq!(counts.snapshot().delete, 3, "600 objects in batches of 256");
    }
}
