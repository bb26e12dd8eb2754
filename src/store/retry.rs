//! Retries of transient store failures, in one place: [`RetryStore`] wraps any `ObjectStore`.
//!
//! Behind a proxy that drops connections, answers 503 or cuts responses short, one request in ten
//! may fail. Every request chunkcache sends is idempotent, so each is sent again after a transient
//! failure, with exponential backoff and jitter, within a bound on attempts and total time
//! ([`RetryPolicy`]); the error of the last attempt is kept (wrapped in [`RetriesExhausted`]).
//!
//! | operation | retried as |
//! |---|---|
//! | GET (`get_opts`, `get_ranges`) | the request **and reading the whole body**: a body that breaks off, or that is shorter than the range the response announced, is a transient failure, and the GET is sent again |
//! | HEAD | the request |
//! | PUT, overwrite (manifests, markers) | the request: writing the same bytes again is harmless |
//! | PUT, create-if-absent (chunks, config) | the request; a retry that meets `AlreadyExists` returns `AlreadyExists`, since an earlier attempt may have created the object: the object exists, which is what the caller asked for, but whether this call created it cannot be known |
//! | LIST (`list`, `list_with_offset`, `list_with_delimiter`) | the whole listing: all pages are read per attempt, so a retry never yields an object twice |
//! | DELETE (`delete_stream`) | in batches of the most objects the backend deletes in one request (256 on Azure, a blob batch; 1000 on S3, `DeleteObjects`; 1 elsewhere): a batch whose request failed is sent again whole, and of a batch that was answered, only the objects whose delete failed transiently; `NotFound` after an earlier attempt counts as deleted |
//!
//! Multipart uploads, copies and renames are passed through untouched: chunkcache does not use them.
//!
//! Transient means ([`is_transient`]): a connection that could not be made, was reset, closed or
//! timed out; a body that could not be read whole; HTTP 5xx, 429 and 408. Everything else fails at
//! once: 403 and 401 (credentials), 404, 409 and 412 (the answer is the answer), other 4xx, bad paths.
//!
//! **One layer only.** `object_store`'s HTTP clients have their own retry loop (`RetryConfig`). It retries
//! fewer things (not a PUT that timed out, not a LIST whose body broke off, not a body without an ETag),
//! and two nested loops multiply: 4 retries inside 4 retries is 25 requests for one dead server. So
//! [`crate::store::backend`] turns `object_store`'s retries off (`max_retries: 0`) and every retry decision is
//! made here. (Its per-request timeout stays on: a timeout is one of the failures retried here.)
//!
//! Request accounting sits *below* this layer ([`crate::store`]), so every attempt is counted as the
//! request it is.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher as _, Hasher as _};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, TryChunksError};
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// The `store` name in errors this layer creates.
const STORE: &str = "RetryStore";

/// Batches of deletes [`RetryStore::delete_stream`] has in flight at once (the rate of `object_store`'s
/// per-object deletes).
const DELETE_CONCURRENCY: usize = 10;

/// How often, and for how long, a transiently failing operation is tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1; 1 means no retries).
    pub max_attempts: u32,
    /// The pause before the first retry; it doubles with each further retry.
    pub initial_backoff: Duration,
    /// The longest pause between two attempts.
    pub max_backoff: Duration,
    /// No new attempt starts once this much time has passed since the first one started.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// Five attempts, pauses of about 0.1, 0.2, 0.4 and 0.8 s, none started after two minutes.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn none() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// The pause before retry number `retry` (1 for the first retry): the doubled backoff, capped,
    /// with half of it random ("equal jitter"), so that clients that failed together do not retry
    /// together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let doubled = self.initial_backoff.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let capped = doubled.min(self.max_backoff);
        let half = capped / 2;
        half + half.mul_f64(random_fraction())
    }

    /// Runs `attempt` (given the attempt number, from 1) until it succeeds, fails with an error
    /// `transient` rejects, or the policy's attempts or time run out.
    ///
    /// # Errors
    /// The error of the last attempt, and how many attempts were made.
    pub async fn run<T, E, Fut>(
        &self,
        mut attempt: impl FnMut(u32) -> Fut,
        transient: impl Fn(&E) -> bool,
    ) -> Result<T, (E, Attempts)>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let started = Instant::now();
        let mut number = 1;
        loop {
            match attempt(number).await {
                Ok(value) => return Ok(value),
                Err(error) => {
                    let pause = self.backoff(number);
                    let out_of_time = started.elapsed() + pause > self.max_elapsed;
                    if !transient(&error) || number >= self.max_attempts.max(1) || out_of_time {
                        return Err((error, Attempts { count: number, elapsed: started.elapsed() }));
                    }
                    tokio::time::sleep(pause).await;
                    number += 1;
                }
            }
        }
    }

    /// [`RetryPolicy::run`] for `object_store` operations: transient is [`is_transient`], and an
    /// error after more than one attempt is wrapped in [`RetriesExhausted`].
    async fn retry<T, Fut>(&self, operation: &'static str, attempt: impl FnMut(u32) -> Fut) -> object_store::Result<T>
    where
        Fut: Future<Output = object_store::Result<T>>,
    {
        self.run(attempt, is_transient).await.map_err(|(last, attempts)| {
            // A permanent answer after retries (a 404, say) is the answer, not an exhaustion.
            if attempts.count == 1 || !is_transient(&last) {
                last
            } else {
                object_store::Error::Generic {
                    store: STORE,
                    source: Box::new(RetriesExhausted { operation, attempts, last }),
                }
            }
        })
    }
}

/// A uniformly distributed number in `[0, 1)`, from the standard library's randomly keyed hasher:
/// each `RandomState` has new keys (jitter needs no better randomness, and no dependency).
fn random_fraction() -> f64 {
    let hash = std::collections::hash_map::RandomState::new().build_hasher().finish();
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// How many attempts an operation took, and how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempts {
    /// Attempts made, the first included.
    pub count: u32,
    /// Time from the start of the first attempt to the end of the last.
    pub elapsed: Duration,
}

/// A transient failure that outlasted the retries: the last attempt's error, and how many there were.
#[derive(Debug)]
pub struct RetriesExhausted {
    /// The operation (`GET`, `PUT`, …).
    pub operation: &'static str,
    /// Attempts made and the time they took.
    pub attempts: Attempts,
    /// The error of the last attempt.
    pub last: object_store::Error,
}

impl fmt::Display for RetriesExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The last error is the source, not part of this text.
        write!(f, "{} failed {} times in {:.1?}", self.operation, self.attempts.count, self.attempts.elapsed)
    }
}

impl StdError for RetriesExhausted {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.last)
    }
}

/// A response body that ended before the announced length, without an error: the connection
/// was cut (by a proxy, say) where nothing noticed.
#[derive(Debug, thiserror::Error)]
#[error("the response body of {path} ended after {received} of {expected} bytes")]
pub struct ShortBody {
    /// The object.
    pub path: String,
    /// Bytes announced (the range the response said it holds).
    pub expected: u64,
    /// Bytes received.
    pub received: u64,
}

/// Whether `error` is worth another attempt: a connection or timeout failure, a body that could
/// not be read whole, or HTTP 5xx/429/408 (see the module docs).
///
/// `object_store` does not expose its HTTP status type, so a status is recognised in the text of its
/// request error (`… status code: 503 Service Unavailable …`); a unit test pins that text against
/// real `object_store` clients.
pub fn is_transient(error: &object_store::Error) -> bool {
    use object_store::Error as E;
    match error {
        E::NotFound { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotModified { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::UnknownConfigurationKey { .. }
        | E::JoinError { .. } => false,
        _ => chain_is_transient(error),
    }
}

/// Walks `error`'s source chain (looking inside `io::Error`s too) for the first cause that decides.
fn chain_is_transient(error: &(dyn StdError + 'static)) -> bool {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(cause) = current {
        if cause.is::<ShortBody>() {
            return true;
        }
        if let Some(exhausted) = cause.downcast_ref::<RetriesExhausted>() {
            return is_transient(&exhausted.last);
        }
        if let Some(http) = cause.downcast_ref::<HttpError>() {
            match http.kind() {
                HttpErrorKind::Connect
                | HttpErrorKind::Request
                | HttpErrorKind::Timeout
                | HttpErrorKind::Interrupted
                | HttpErrorKind::Decode => return true,
                // Unknown (or newer) kinds: the cause further down may still tell (an io::Error, say).
                _ => {}
            }
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionReset
                | K::ConnectionAborted
                | K::ConnectionRefused
                | K::NotConnected
                | K::BrokenPipe
                | K::TimedOut
                | K::UnexpectedEof
                | K::Interrupted => return true,
                // `io::Error::source` skips the wrapped error itself: look at it directly.
                _ => {
                    if let Some(inner) = io.get_ref() {
                        current = Some(inner);
                        continue;
                    }
                }
            }
        }
        let text = cause.to_string();
        if let Some(status) = http_status_in(&text) {
            return status >= 500 || status == 429 || status == 408;
        }
        if let Some(transient) = batch_delete_failure_is_transient(&text) {
            return transient;
        }
        current = cause.source();
    }
    false
}

/// The status in `object_store`'s request error text: `… status code: 503 Service Unavailable: …`.
fn http_status_in(text: &str) -> Option<u16> {
    let (_, after) = text.split_once("status code: ")?;
    let digits = after.get(..3)?;
    digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok())?
}

/// Whether the failed delete of one object in a batch is worth another attempt, from the text
/// `object_store` gives it: Azure's `Bulk delete request failed for key … (code: 503)` (the
/// sub-response's status), S3's `DeleteObjects request failed for key … (code: SlowDown)` (S3's
/// error code). `None` for any other text.
fn batch_delete_failure_is_transient(text: &str) -> Option<bool> {
    if !text.contains(" request failed for key ") {
        return None;
    }
    let (_, after) = text.rsplit_once("(code: ")?;
    let code = after.strip_suffix(')')?;
    Some(match code.parse::<u16>() {
        Ok(status) => status >= 500 || status == 429 || status == 408,
        Err(_) => matches!(code, "InternalError" | "SlowDown" | "ServiceUnavailable" | "RequestTimeout"),
    })
}

/// An `ObjectStore` that retries transient failures of the store it wraps (see the module docs),
/// in the wrapper style of `object_store::limit::LimitStore`.
#[derive(Debug)]
pub struct RetryStore<T: ObjectStore + ?Sized> {
    inner: Arc<T>,
    policy: RetryPolicy,
    objects_per_delete: usize,
}

impl<T: ObjectStore + ?Sized> RetryStore<T> {
    /// Wraps `inner`, whose `delete_stream` deletes one object per request.
    pub fn new(inner: Arc<T>, policy: RetryPolicy) -> Self {
        Self { inner, policy, objects_per_delete: 1 }
    }

    /// Deletes are handed to `inner`'s `delete_stream` in batches of `objects` (at least 1): the
    /// most `inner` deletes in one request (see [`RetryStore::delete_stream`]).
    pub fn with_objects_per_delete(self, objects: usize) -> Self {
        Self { objects_per_delete: objects.max(1), ..self }
    }
}

impl<T: ObjectStore + ?Sized> fmt::Display for RetryStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetryStore({} attempts, {})", self.policy.max_attempts, self.inner)
    }
}

/// Reads a GET's whole body, refusing one shorter than the range the response announced.
async fn read_whole(location: &Path, result: GetResult) -> object_store::Result<GetResult> {
    let GetResult { payload, meta, range, attributes, extensions } = result;
    let expected = range.end - range.start;
    let body = match payload {
        GetResultPayload::Stream(mut stream) => {
            // The announced length is only a hint: a hostile server could announce terabytes.
            let mut buffer = BytesMut::with_capacity(expected.min(16 << 20) as usize);
            while let Some(piece) = stream.try_next().await? {
                buffer.extend_from_slice(&piece);
            }
            buffer.freeze()
        }
        file @ GetResultPayload::File(..) => {
            let whole = GetResult {
                payload: file,
                meta: meta.clone(),
                range: range.clone(),
                attributes: Default::default(),
                extensions: Default::default(),
            };
            whole.bytes().await?
        }
    };
    if body.len() as u64 != expected {
        return Err(short_body(location, expected, body.len()));
    }
    let payload = GetResultPayload::Stream(futures::stream::once(async move { Ok(body) }).boxed());
    Ok(GetResult { payload, meta, range, attributes, extensions })
}

fn short_body(location: &Path, expected: u64, received: usize) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(ShortBody { path: location.to_string(), expected, received: received as u64 }),
    }
}

#[async_trait]
impl<T: ObjectStore + ?Sized> ObjectStore for RetryStore<T> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.policy.retry("PUT", |_| self.inner.put_opts(location, payload.clone(), opts.clone())).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let operation = if options.head { "HEAD" } else { "GET" };
        self.policy
            .retry(operation, |_| {
                let options = options.clone();
                async move {
                    let head = options.head;
                    let result = self.inner.get_opts(location, options).await?;
                    if head { Ok(result) } else { read_whole(location, result).await }
                }
            })
            .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        self.policy
            .retry("GET", |_| async move {
                let parts = self.inner.get_ranges(location, ranges).await?;
                for (part, range) in parts.iter().zip(ranges) {
                    if part.len() as u64 != range.end - range.start {
                        return Err(short_body(location, range.end - range.start, part.len()));
                    }
                }
                Ok(parts)
            })
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = Arc::clone(&self.inner);
        let policy = self.policy.clone();
        locations
            .try_chunks(self.objects_per_delete)
            .map(move |batch| {
                let (inner, policy) = (Arc::clone(&inner), policy.clone());
                async move {
                    match batch {
                        Ok(batch) => delete_batch(inner, policy, batch).await,
                        // The objects before a failed input are deleted, then the failure is passed on.
                        Err(TryChunksError(batch, error)) => {
                            let mut results = delete_batch(inner, policy, batch).await;
                            results.push(Err(error));
                            results
                        }
                    }
                }
            })
            .buffered(DELETE_CONCURRENCY)
            .flat_map(futures::stream::iter)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let prefix = prefix.cloned();
        self.retried_listing(move || inner.list(prefix.as_ref()))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let (prefix, offset) = (prefix.cloned(), offset.clone());
        self.retried_listing(move || inner.list_with_offset(prefix.as_ref(), &offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.policy.retry("LIST", |_| self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// Deletes `batch` through one `inner.delete_stream` call (one request on a backend that batches
/// deletes), then sends again only the objects whose delete failed transiently, or the whole
/// batch when the request failed as a whole, until none is left or the policy gives up. An
/// object not found on a retry counts as deleted: an earlier attempt whose answer was lost
/// deleted it. Returns a result per object settled, and, if the policy gave up, one error for
/// the objects left.
async fn delete_batch<T: ObjectStore + ?Sized>(
    inner: Arc<T>,
    policy: RetryPolicy,
    batch: Vec<Path>,
) -> Vec<object_store::Result<Path>> {
    let settled = Mutex::new(Vec::with_capacity(batch.len()));
    let pending = Mutex::new(batch);
    let outcome = policy
        .retry("DELETE", |attempt| {
            let paths = std::mem::take(&mut *pending.lock().expect("not poisoned"));
            let inner = Arc::clone(&inner);
            let (settled, pending) = (&settled, &pending);
            async move {
                let sent = futures::stream::iter(paths.clone().into_iter().map(Ok)).boxed();
                let results: Vec<_> = inner.delete_stream(sent).collect().await;
                if results.len() != paths.len() {
                    // The request failed as a whole (one error for the batch): all of it again.
                    let answered = results.len();
                    let error =
                        results.into_iter().find_map(Result::err).unwrap_or_else(|| object_store::Error::Generic {
                            store: STORE,
                            source: format!("the backend answered {answered} of {} deletes", paths.len()).into(),
                        });
                    *pending.lock().expect("not poisoned") = paths;
                    return Err(error);
                }
                let mut failed = None;
                for (path, result) in paths.into_iter().zip(results) {
                    match result {
                        Ok(_) => settled.lock().expect("not poisoned").push(Ok(path)),
                        Err(object_store::Error::NotFound { .. }) if attempt > 1 => {
                            settled.lock().expect("not poisoned").push(Ok(path))
                        }
                        Err(error) if is_transient(&error) => {
                            pending.lock().expect("not poisoned").push(path);
                            failed.get_or_insert(error);
                        }
                        Err(error) => settled.lock().expect("not poisoned").push(Err(error)),
                    }
                }
                failed.map_or(Ok(()), Err)
            }
        })
        .await;
    let mut results = settled.into_inner().expect("not poisoned");
    if let Err(error) = outcome {
        results.push(Err(error));
    }
    results
}

impl<T: ObjectStore + ?Sized> RetryStore<T> {
    /// A listing read whole per attempt (so that a retry never yields an object twice), then
    /// yielded object by object.
    fn retried_listing(
        &self,
        list: impl Fn() -> BoxStream<'static, object_store::Result<ObjectMeta>> + Send + Sync + 'static,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let policy = self.policy.clone();
        futures::stream::once(async move { policy.retry("LIST", |_| list().try_collect::<Vec<_>>()).await })
            .map_ok(|objects| futures::stream::iter(objects.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    use object_store::client::{HttpClient, HttpConnector, HttpRequest, HttpResponse, HttpService};
    use object_store::memory::InMemory;
    use object_store::{ClientOptions, ObjectStoreExt as _, PutMode};

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_elapsed: Duration::from_secs(10),
        }
    }

    fn reset() -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source: Box::new(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset by peer")),
        }
    }

    // ---- classification against real object_store clients --------------------------------------------------

    /// One scripted HTTP answer.
    #[derive(Clone, Debug)]
    enum Answer {
        Status(u16, &'static str),
        Transport(HttpErrorKind),
    }

    /// An HTTP connector that answers every request from a script, and counts requests.
    #[derive(Debug, Clone)]
    struct Scripted {
        answers: Arc<Mutex<Vec<Answer>>>,
        requests: Arc<AtomicU32>,
    }

    impl Scripted {
        fn new(answers: Vec<Answer>) -> Self {
            Self { answers: Arc::new(Mutex::new(answers)), requests: Arc::default() }
        }
    }

    #[async_trait]
    impl HttpService for Scripted {
        async fn call(&self, _request: HttpRequest) -> Result<HttpResponse, HttpError> {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let answer = {
                let mut answers = self.answers.lock().unwrap();
                if answers.len() > 1 { answers.remove(0) } else { answers[0].clone() }
            };
            match answer {
                Answer::Status(status, body) => {
                    let mut response = HttpResponse::new(body.to_string().into());
                    *response.status_mut() = TryFrom::try_from(status).unwrap();
                    response.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
                    Ok(response)
                }
                Answer::Transport(kind) => Err(HttpError::new(
                    kind,
                    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset by peer"),
                )),
            }
        }
    }

    impl HttpConnector for Scripted {
        fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
            Ok(HttpClient::new(self.clone()))
        }
    }

    /// An S3 client whose every request gets `answer`, without retries of its own (as backend.rs
    /// builds them).
    fn s3(connector: &Scripted) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("bucket")
            .with_region("us-east-1")
            .with_access_key_id("id")
            .with_secret_access_key("secret")
            .with_endpoint("http://127.0.0.1:9")
            .with_allow_http(true)
            .with_retry(object_store::RetryConfig { max_retries: 0, ..Default::default() })
            .with_http_connector(connector.clone())
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn real_client_errors_are_classified() {
        let xml = "<?xml version=\"1.0\"?><Error><Code>Some</Code><Message>text</Message></Error>";
        let cases = [
            (Answer::Status(503, "slow down"), true),
            (Answer::Status(500, "<Error><Code>InternalError</Code></Error>"), true),
            (Answer::Status(429, ""), true),
            (Answer::Status(408, ""), true),
            (Answer::Status(403, xml), false),
            (Answer::Status(401, xml), false),
            (Answer::Status(404, xml), false),
            (Answer::Status(400, xml), false),
            (Answer::Status(409, xml), false),
            (Answer::Status(412, xml), false),
            (Answer::Status(416, xml), false),
            (Answer::Transport(HttpErrorKind::Connect), true),
            (Answer::Transport(HttpErrorKind::Request), true),
            (Answer::Transport(HttpErrorKind::Timeout), true),
            (Answer::Transport(HttpErrorKind::Interrupted), true),
            (Answer::Transport(HttpErrorKind::Decode), true),
            // Unknown kind, but the cause is a reset connection.
            (Answer::Transport(HttpErrorKind::Unknown), true),
        ];
        for (answer, expected) in cases {
            let connector = Scripted::new(vec![answer.clone()]);
            let store = s3(&connector);
            let location = Path::from("a/b");
            let errors = [
                store.get(&location).await.map(drop).unwrap_err(),
                store.head(&location).await.map(drop).unwrap_err(),
                store.put(&location, Bytes::from_static(b"x").into()).await.map(drop).unwrap_err(),
                store.list(None).try_collect::<Vec<_>>().await.map(drop).unwrap_err(),
            ];
            for error in errors {
                assert_eq!(is_transient(&error), expected, "{answer:?}: {error}");
            }
        }
    }

    #[tokio::test]
    async fn a_real_client_is_retried_until_it_succeeds() {
        let ok = "";
        let connector = Scripted::new(vec![
            Answer::Status(503, "busy"),
            Answer::Transport(HttpErrorKind::Interrupted),
            Answer::Status(200, ok),
        ]);
        let store = RetryStore::new(Arc::new(s3(&connector)), fast());
        store.put(&Path::from("a"), Bytes::from_static(b"x").into()).await.unwrap();
        assert_eq!(connector.requests.load(Ordering::Relaxed), 3);

        // A 403 is final at once.
        let connector = Scripted::new(vec![Answer::Status(403, "denied")]);
        let store = RetryStore::new(Arc::new(s3(&connector)), fast());
        let error = store.get(&Path::from("a")).await.map(drop).unwrap_err();
        assert!(matches!(error, object_store::Error::PermissionDenied { .. }), "{error}");
        assert_eq!(connector.requests.load(Ordering::Relaxed), 1);

        // A dead server: the policy's attempts, then the last error, with the count.
        let connector = Scripted::new(vec![Answer::Status(503, "busy")]);
        let store = RetryStore::new(Arc::new(s3(&connector)), fast());
        let error = store.get(&Path::from("a")).await.map(drop).unwrap_err();
        assert_eq!(connector.requests.load(Ordering::Relaxed), 4);
        assert!(error.to_string().contains("GET failed 4 times"), "{error}");
        let object_store::Error::Generic { source, .. } = &error else { panic!("{error:?}") };
        let last = &source.downcast_ref::<RetriesExhausted>().unwrap().last;
        assert!(last.to_string().contains("503 Service Unavailable"), "{last}");
        assert!(is_transient(&error), "exhausted retries of a transient error stay transient: {error}");
    }

    // ---- retry behaviour over a flaky in-memory store --------------------------------------------------------

    /// What the next calls of a [`Flaky`] store do.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Fault {
        /// Fail before doing anything.
        Reset,
        /// Do the operation, then report a reset connection (the answer was lost).
        AfterApplying,
        /// A GET whose body breaks off after a few bytes.
        BrokenBody,
        /// A GET whose body is short, without an error.
        ShortBody,
        /// A permanent failure.
        Denied,
        /// A batch delete that deletes every object but the first, which fails as Azure reports
        /// a busy sub-request.
        FirstObjectBusy,
    }

    #[derive(Debug)]
    struct Flaky {
        inner: InMemory,
        faults: Mutex<Vec<Fault>>,
        calls: AtomicU32,
        /// The objects each `delete_stream` call was given.
        delete_calls: Mutex<Vec<Vec<Path>>>,
    }

    impl Flaky {
        fn new(faults: &[Fault]) -> Arc<Self> {
            Arc::new(Self {
                inner: InMemory::new(),
                faults: Mutex::new(faults.to_vec()),
                calls: AtomicU32::new(0),
                delete_calls: Mutex::default(),
            })
        }

        fn next_fault(&self) -> Option<Fault> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut faults = self.faults.lock().unwrap();
            (!faults.is_empty()).then(|| faults.remove(0))
        }

        fn denied() -> object_store::Error {
            object_store::Error::PermissionDenied { path: "x".into(), source: "denied".into() }
        }
    }

    impl fmt::Display for Flaky {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Flaky")
        }
    }

    #[async_trait]
    impl ObjectStore for Flaky {
        async fn put_opts(&self, l: &Path, p: PutPayload, o: PutOptions) -> object_store::Result<PutResult> {
            match self.next_fault() {
                Some(Fault::Reset) => Err(reset()),
                Some(Fault::Denied) => Err(Self::denied()),
                Some(Fault::AfterApplying) => {
                    self.inner.put_opts(l, p, o).await?;
                    Err(reset())
                }
                _ => self.inner.put_opts(l, p, o).await,
            }
        }

        async fn put_multipart_opts(
            &self,
            l: &Path,
            o: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(l, o).await
        }

        async fn get_opts(&self, l: &Path, o: GetOptions) -> object_store::Result<GetResult> {
            let fault = self.next_fault();
            match fault {
                Some(Fault::Reset | Fault::AfterApplying) => return Err(reset()),
                Some(Fault::Denied) => return Err(Self::denied()),
                _ => {}
            }
            let result = self.inner.get_opts(l, o).await?;
            let (meta, range) = (result.meta.clone(), result.range.clone());
            let body = result.bytes().await?;
            let payload = match fault {
                Some(Fault::BrokenBody) => {
                    let first = body.slice(..body.len() / 2);
                    futures::stream::iter([Ok(first), Err(reset())]).boxed()
                }
                Some(Fault::ShortBody) => futures::stream::iter([Ok(body.slice(..body.len() / 2))]).boxed(),
                _ => futures::stream::iter([Ok(body)]).boxed(),
            };
            Ok(GetResult {
                payload: GetResultPayload::Stream(payload),
                meta,
                range,
                attributes: Default::default(),
                extensions: Default::default(),
            })
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            let inner = self.inner.clone();
            // Every caller here hands over a ready stream: read it whole to record the call.
            let paths: Vec<Path> =
                futures::executor::block_on(locations.try_collect()).expect("the test hands over paths only");
            self.delete_calls.lock().unwrap().push(paths.clone());
            let locations = futures::stream::iter(paths.clone().into_iter().map(Ok)).boxed();
            match self.next_fault() {
                Some(Fault::AfterApplying) => futures::stream::once(async move {
                    let _deleted: Vec<_> = inner.delete_stream(locations).collect().await;
                    Err(reset())
                })
                .boxed(),
                Some(Fault::Reset) => futures::stream::iter([Err(reset())]).boxed(),
                Some(Fault::FirstObjectBusy) => {
                    let busy = paths[0].clone();
                    let rest = futures::stream::iter(paths.into_iter().skip(1).map(Ok)).boxed();
                    let error = object_store::Error::Generic {
                        store: "MicrosoftAzure",
                        source: format!("Bulk delete request failed for key {busy}: Server Busy (code: 503)").into(),
                    };
                    futures::stream::iter([Err(error)]).chain(inner.delete_stream(rest)).boxed()
                }
                _ => inner.delete_stream(locations),
            }
        }

        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            match self.next_fault() {
                // Half a listing, then the connection breaks.
                Some(Fault::BrokenBody) => {
                    let (inner, prefix) = (self.inner.clone(), prefix.cloned());
                    futures::stream::once(async move {
                        let all: Vec<_> = inner.list(prefix.as_ref()).collect().await;
                        let half = all.len() / 2;
                        futures::stream::iter(all.into_iter().take(half).chain([Err(reset())]))
                    })
                    .flatten()
                    .boxed()
                }
                _ => self.inner.list(prefix),
            }
        }

        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    #[tokio::test]
    async fn gets_are_retried_until_the_whole_body_arrives() {
        let flaky = Flaky::new(&[]);
        let data = Bytes::from(vec![7u8; 1000]);
        flaky.inner.put(&Path::from("o"), data.clone().into()).await.unwrap();
        flaky.faults.lock().unwrap().extend([Fault::Reset, Fault::BrokenBody, Fault::ShortBody]);
        let store = RetryStore::new(Arc::clone(&flaky), fast());
        let got = store.get(&Path::from("o")).await.unwrap().bytes().await.unwrap();
        assert_eq!(got, data);
        assert_eq!(flaky.calls.load(Ordering::Relaxed), 4, "three faults, then the good read");

        // The short body alone is caught by its length, and reported as such when it persists.
        flaky.faults.lock().unwrap().extend([Fault::ShortBody; 4]);
        let error = store.get(&Path::from("o")).await.map(drop).unwrap_err();
        let cause = std::error::Error::source(&error).and_then(std::error::Error::source).unwrap();
        assert!(cause.to_string().contains("ended after 500 of 1000 bytes"), "{error:?}");
    }

    #[tokio::test]
    async fn permanent_errors_and_misses_are_not_retried() {
        let flaky = Flaky::new(&[Fault::Denied]);
        let store = RetryStore::new(Arc::clone(&flaky), fast());
        let error = store.get(&Path::from("o")).await.map(drop).unwrap_err();
        assert!(matches!(error, object_store::Error::PermissionDenied { .. }), "{error}");
        let error = store.get(&Path::from("o")).await.map(drop).unwrap_err();
        assert!(matches!(error, object_store::Error::NotFound { .. }), "{error}");
        assert_eq!(flaky.calls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_create_whose_answer_was_lost_reports_the_object_as_existing() {
        let flaky = Flaky::new(&[Fault::AfterApplying]);
        let store = RetryStore::new(Arc::clone(&flaky), fast());
        let create = PutOptions { mode: PutMode::Create, ..Default::default() };
        let error = store.put_opts(&Path::from("c"), Bytes::from_static(b"v").into(), create).await.unwrap_err();
        assert!(matches!(error, object_store::Error::AlreadyExists { .. }), "{error}");
        assert_eq!(flaky.inner.get(&Path::from("c")).await.unwrap().bytes().await.unwrap(), "v");

        // An overwrite whose answer was lost is simply sent again.
        flaky.faults.lock().unwrap().push(Fault::AfterApplying);
        store.put(&Path::from("c"), Bytes::from_static(b"w").into()).await.unwrap();
        assert_eq!(flaky.inner.get(&Path::from("c")).await.unwrap().bytes().await.unwrap(), "w");
    }

    #[tokio::test]
    async fn listings_are_retried_whole_and_deletes_after_a_lost_answer_succeed() {
        let flaky = Flaky::new(&[]);
        for n in 0..10 {
            flaky.inner.put(&Path::from(format!("d/{n}")), Bytes::from_static(b"x").into()).await.unwrap();
        }
        flaky.faults.lock().unwrap().push(Fault::BrokenBody);
        let store = RetryStore::new(Arc::clone(&flaky), fast());
        let listed: Vec<ObjectMeta> = store.list(Some(&Path::from("d"))).try_collect().await.unwrap();
        assert_eq!(listed.len(), 10, "no object twice, none missing");

        flaky.faults.lock().unwrap().push(Fault::AfterApplying);
        let deleted: Vec<Path> =
            store.delete_stream(futures::stream::iter([Ok(Path::from("d/3"))]).boxed()).try_collect().await.unwrap();
        assert_eq!(deleted, [Path::from("d/3")]);
        assert!(matches!(flaky.inner.head(&Path::from("d/3")).await, Err(object_store::Error::NotFound { .. })));
    }

    #[tokio::test]
    async fn deletes_go_in_batches_and_only_what_failed_is_sent_again() {
        let flaky = Flaky::new(&[]);
        let paths: Vec<Path> = (0..600).map(|n| Path::from(format!("d/{n:03}"))).collect();
        for path in &paths {
            flaky.inner.put(path, Bytes::from_static(b"x").into()).await.unwrap();
        }
        // First batch: one object busy. Second: the request fails whole. Third: its answer is lost.
        flaky.faults.lock().unwrap().extend([Fault::FirstObjectBusy, Fault::Reset, Fault::AfterApplying]);
        let store = RetryStore::new(Arc::clone(&flaky), fast()).with_objects_per_delete(256);
        let stream = futures::stream::iter(paths.clone().into_iter().map(Ok)).boxed();
        let mut deleted: Vec<Path> = store.delete_stream(stream).try_collect().await.unwrap();
        deleted.sort();
        assert_eq!(deleted, paths, "every object reported deleted once");
        assert_eq!(flaky.inner.list(None).count().await, 0, "and gone");

        let mut calls = flaky.delete_calls.lock().unwrap().clone();
        calls.sort_by_key(|call| (call[0].clone(), std::cmp::Reverse(call.len())));
        let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
        assert_eq!(sizes, [256, 1, 256, 256, 88, 88], "{calls:?}");
        assert_eq!(calls[1], [paths[0].clone()], "only the busy object is sent again");
    }

    #[test]
    fn a_busy_object_in_a_batch_delete_is_transient_a_refused_one_is_not() {
        let failure = |text: &str| object_store::Error::Generic { store: "x", source: text.to_string().into() };
        assert!(is_transient(&failure("Bulk delete request failed for key packs/ab/cd: Server Busy (code: 503)")));
        assert!(is_transient(&failure("DeleteObjects request failed for key packs/ab/cd: slow down (code: SlowDown)")));
        assert!(!is_transient(&failure("Bulk delete request failed for key packs/ab/cd: Forbidden (code: 403)")));
        assert!(!is_transient(&failure("DeleteObjects request failed for key p: denied (code: AccessDenied)")));
        assert_eq!(batch_delete_failure_is_transient("not a delete (code: 503)"), None);
    }

    #[tokio::test]
    async fn attempts_and_time_are_bounded() {
        let flaky = Flaky::new(&[Fault::Reset; 10]);
        let store = RetryStore::new(Arc::clone(&flaky), fast());
        store.get(&Path::from("o")).await.map(drop).unwrap_err();
        assert_eq!(flaky.calls.load(Ordering::Relaxed), 4);

        let slow = RetryPolicy {
            max_attempts: 100,
            initial_backoff: Duration::from_millis(40),
            max_backoff: Duration::from_millis(40),
            max_elapsed: Duration::from_millis(100),
        };
        let flaky = Flaky::new(&[Fault::Reset; 10]);
        let store = RetryStore::new(Arc::clone(&flaky), slow);
        let started = Instant::now();
        store.get(&Path::from("o")).await.map(drop).unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());
        let calls = flaky.calls.load(Ordering::Relaxed);
        assert!((2..=5).contains(&calls), "{calls} attempts in 100 ms with 20-40 ms pauses");

        assert_eq!(RetryPolicy::none().max_attempts, 1);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let policy = RetryPolicy::default();
        for retry in 1..=8 {
            let full = (policy.initial_backoff * (1 << (retry - 1))).min(policy.max_backoff);
            let pause = policy.backoff(retry);
            assert!(pause >= full / 2 && pause <= full, "retry {retry}: {pause:?} of {full:?}");
        }
        assert!(policy.backoff(u32::MAX) <= policy.max_backoff);
        let pauses: std::collections::BTreeSet<Duration> = (0..20).map(|_| policy.backoff(3)).collect();
        assert!(pauses.len() > 10, "jitter spreads retries: {pauses:?}");
    }

    #[test]
    fn statuses_are_read_from_request_error_text() {
        assert_eq!(http_status_in("Server returned non-2xx status code: 503 Service Unavailable: x"), Some(503));
        assert_eq!(http_status_in("status code: 4"), None);
        assert_eq!(http_status_in("no status here"), None);
    }
}
