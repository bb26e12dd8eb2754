//! Azure container administration (create-if-missing) over a REST call signed with the shared key, or
//! authorized with an Azure AD token ([`ContainerAuth`]).
//!
//! `object_store` reads and writes blobs but cannot create a container. drone-cache creates the container
//! when it is missing, so chunkcache does too: [`ensure_container`] sends one
//! [Create Container](https://learn.microsoft.com/en-us/rest/api/storageservices/create-container) request
//! (`PUT {endpoint}/{container}?restype=container`), signed with the account key as described in
//! [Authorize with Shared Key](https://learn.microsoft.com/en-us/rest/api/storageservices/authorize-with-shared-key).
//!
//! The request is retried on transient failures (timeouts, connections that fail or break, HTTP 5xx,
//! 429 and 408) with the policy every other store request follows ([`crate::store::retry::RetryPolicy`]); a
//! 409 ContainerAlreadyExists after a retry means an earlier attempt, or someone else, created it.
//!
//! The signing pieces are pure functions ([`string_to_sign`], [`sign`]) so that they can be tested against
//! known vectors without a server. Nothing here ever formats the account key: errors name the account and
//! the container, never the key.
//!
//! TLS: reqwest's `rustls` feature selects aws-lc-rs as its crypto provider when no process-wide default is
//! installed (the same one `object_store` uses), so no provider has to be installed before calling this.
//! Server certificates are checked with the platform verifier (the system's CA store).

use std::fmt;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use url::Url;

use crate::store::retry::RetryPolicy;

/// The storage service version sent in `x-ms-version` (the one `object_store` 0.14 uses too).
pub const AZURE_STORAGE_VERSION: &str = "2023-11-03";

/// The rules [`validate_container_name`] enforces, quoted in its error.
pub const CONTAINER_NAME_RULES: &str = "a container name must be 3 to 63 characters long, \
     use only lowercase letters (a-z), digits (0-9) and hyphens (-), start and end with a letter or a digit, \
     and not contain two hyphens in a row";

/// Why [`ensure_container`] failed: the account and the container it was about, and what went wrong
/// ([`AzureAdminErrorKind`]). The message names the account and the container; none contains the account key.
#[derive(Debug)]
pub struct AzureAdminError {
    /// The storage account.
    pub account: String,
    /// The container that was to be created.
    pub container: String,
    /// What went wrong.
    pub kind: AzureAdminErrorKind,
}

/// What went wrong in an [`AzureAdminError`].
#[derive(Debug)]
#[non_exhaustive]
pub enum AzureAdminErrorKind {
    /// The container name breaks Azure's naming rules ([`CONTAINER_NAME_RULES`]).
    InvalidContainerName {
        /// What exactly is wrong with it.
        problem: &'static str,
    },
    /// The account key is not valid base64 (Azure account keys are base64 strings).
    InvalidKey,
    /// The blob endpoint cannot be used (not http/https, has a query string or credentials, ...).
    InvalidEndpoint {
        /// The endpoint, without any query string or user info.
        endpoint: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Azure answered 403 AuthenticationFailed (or Azurite its equivalent): the key does not belong to the
    /// account.
    WrongAccountKey {
        /// The Azure error code, when the response had one.
        code: Option<String>,
    },
    /// Any other unexpected HTTP status.
    Status {
        /// The HTTP status code.
        status: u16,
        /// The `x-ms-error-code` header or the body's `<Code>`.
        code: Option<String>,
        /// The first line of the body's `<Message>`.
        message: Option<String>,
    },
    /// No answer within the timeout.
    Timeout {
        /// The endpoint, without any query string or user info.
        endpoint: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The request could not be sent or its answer not read (DNS, connection refused, TLS, ...).
    Request {
        /// The endpoint, without any query string or user info.
        endpoint: String,
        /// The error and its causes, joined with ": ".
        detail: String,
    },
}

impl fmt::Display for AzureAdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { account, container, kind } = self;
        match kind {
            AzureAdminErrorKind::InvalidContainerName { problem } => write!(
                f,
                "invalid Azure container name {container:?} (account {account:?}): {problem}; {CONTAINER_NAME_RULES}"
            ),
            AzureAdminErrorKind::InvalidKey => write!(
                f,
                "the account key given for Azure storage account {account:?} is not valid base64 \
                 (needed to create container {container:?}); copy the key again from the storage account's access keys"
            ),
            AzureAdminErrorKind::InvalidEndpoint { endpoint, problem } => write!(
                f,
                "invalid Azure blob endpoint {endpoint} for account {account:?} (container {container:?}): {problem}"
            ),
            AzureAdminErrorKind::WrongAccountKey { code } => write!(
                f,
                "Azure refused to authenticate storage account {account:?} while creating container {container:?} \
                 (HTTP 403{}): the account key is wrong for this account \
                 (or this machine's clock is more than 15 minutes off)",
                code.as_deref().map(|c| format!(", {c}")).unwrap_or_default()
            ),
            AzureAdminErrorKind::Status { status, code, message } => write!(
                f,
                "creating Azure container {container:?} in storage account {account:?} failed: HTTP {status}, \
                 Azure error code {}{}",
                code.as_deref().unwrap_or("(none)"),
                message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
            ),
            AzureAdminErrorKind::Timeout { endpoint, timeout } => write!(
                f,
                "creating Azure container {container:?} in storage account {account:?} at {endpoint} \
                 timed out after {timeout:?}"
            ),
            AzureAdminErrorKind::Request { endpoint, detail } => write!(
                f,
                "creating Azure container {container:?} in storage account {account:?} at {endpoint} failed: \
                 {detail}; check the endpoint URL and that it can be reached"
            ),
        }
    }
}

impl std::error::Error for AzureAdminError {}

/// Creates `container` in the storage account if it does not exist yet, retrying transient failures
/// with the default [`RetryPolicy`] (no new attempt after twice `timeout`); see [`ensure_container_with`].
///
/// # Errors
/// As [`ensure_container_with`].
pub async fn ensure_container(
    endpoint: &Url,
    account: &str,
    key_base64: &str,
    container: &str,
    timeout: Duration,
) -> Result<bool, AzureAdminError> {
    let policy = RetryPolicy { max_elapsed: timeout.saturating_mul(2), ..RetryPolicy::default() };
    ensure_container_with(endpoint, account, key_base64, container, timeout, &policy).await
}

/// How a Create Container request is authorized.
#[derive(Clone, Copy)]
pub enum ContainerAuth<'a> {
    /// Signed with the account key (base64, as Azure shows it).
    SharedKey(&'a str),
    /// An Azure AD access token for `https://storage.azure.com` (the identity needs a data role that may
    /// write containers, such as Storage Blob Data Contributor).
    Bearer(&'a str),
}

impl fmt::Debug for ContainerAuth<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SharedKey(_) => "SharedKey(***)",
            Self::Bearer(_) => "Bearer(***)",
        })
    }
}

/// Creates `container` in the storage account if it does not exist yet, retrying transient failures
/// as `policy` says.
///
/// `endpoint` is the account's blob endpoint: `https://ACCOUNT.blob.core.windows.net` (or a sovereign
/// cloud's), or a path-style emulator endpoint such as `http://127.0.0.1:10000/devstoreaccount1`. A trailing
/// slash is optional. `key_base64` is the account key as Azure shows it (base64). `timeout` bounds the whole
/// request, connection included.
///
/// Returns `Ok(true)` when the container was created and `Ok(false)` when it already existed.
///
/// # Errors
/// An [`AzureAdminError`] whose kind is
/// - [`AzureAdminErrorKind::InvalidContainerName`] when `container` breaks Azure's naming rules (checked
///   before any request is sent);
/// - [`AzureAdminErrorKind::InvalidKey`] when `key_base64` is not base64;
/// - [`AzureAdminErrorKind::InvalidEndpoint`] when `endpoint` is not a plain http(s) URL;
/// - [`AzureAdminErrorKind::WrongAccountKey`] when Azure answers 403 AuthenticationFailed (or 403 without a
///   code, or with Azure's "Server failed to authenticate the request" message, as Azurite does);
/// - [`AzureAdminErrorKind::Status`] for any other unexpected status, such as 409 ContainerBeingDeleted;
/// - [`AzureAdminErrorKind::Timeout`] / [`AzureAdminErrorKind::Request`] when no answer arrives.
///
/// Transient failures (timeouts, failed or broken connections, HTTP 5xx, 429, 408) are only returned once
/// `policy` gives up; the error is that of the last attempt.
pub async fn ensure_container_with(
    endpoint: &Url,
    account: &str,
    key_base64: &str,
    container: &str,
    timeout: Duration,
    policy: &RetryPolicy,
) -> Result<bool, AzureAdminError> {
    let client =
        reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).build().map_err(|e| AzureAdminError {
            account: account.to_owned(),
            container: container.to_owned(),
            kind: AzureAdminErrorKind::Request {
                endpoint: redacted(endpoint),
                detail: crate::core::error::one_line(&e),
            },
        })?;
    let auth = ContainerAuth::SharedKey(key_base64);
    ensure_container_authorized(endpoint, account, auth, container, &client, timeout, policy).await
}

/// [`ensure_container_with`], authorized as `auth` says and sent with `client` (which carries the trusted
/// roots). With a bearer token, a 403 is reported with Azure's code (such as
/// AuthorizationPermissionMismatch: the identity lacks a data role), not as a wrong account key.
///
/// # Errors
/// As [`ensure_container_with`].
pub async fn ensure_container_authorized(
    endpoint: &Url,
    account: &str,
    auth: ContainerAuth<'_>,
    container: &str,
    client: &reqwest::Client,
    timeout: Duration,
    policy: &RetryPolicy,
) -> Result<bool, AzureAdminError> {
    let error = |kind| AzureAdminError { account: account.to_owned(), container: container.to_owned(), kind };
    validate_container_name(container)
        .map_err(|problem| error(AzureAdminErrorKind::InvalidContainerName { problem }))?;
    // The key decoded once, or the token as it is.
    let key = match auth {
        ContainerAuth::SharedKey(key_base64) => {
            Ok(BASE64.decode(key_base64.trim()).map_err(|_| error(AzureAdminErrorKind::InvalidKey))?)
        }
        ContainerAuth::Bearer(token) => Err(token),
    };
    let url = container_url(endpoint, container)
        .map_err(|problem| error(AzureAdminErrorKind::InvalidEndpoint { endpoint: redacted(endpoint), problem }))?;

    let request_error = |e: reqwest::Error| {
        error(if e.is_timeout() {
            AzureAdminErrorKind::Timeout { endpoint: redacted(endpoint), timeout }
        } else {
            AzureAdminErrorKind::Request { endpoint: redacted(endpoint), detail: crate::core::error::one_line(&e) }
        })
    };
    let attempt = |_| async {
        // Signed per attempt: the signature covers the date, which Azure checks.
        let date = http_date(SystemTime::now());
        let headers = [("Content-Length", "0"), ("x-ms-date", date.as_str()), ("x-ms-version", AZURE_STORAGE_VERSION)];
        let authorization = match &key {
            Ok(key) => format!("SharedKey {account}:{}", sign(key, &string_to_sign("PUT", &url, account, &headers))),
            Err(token) => format!("Bearer {token}"),
        };
        let mut request = client.put(url.clone()).timeout(timeout).body(Vec::<u8>::new());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.header("Authorization", authorization).send().await.map_err(request_error)?;
        outcome(response, account, container, key.is_ok()).await
    };
    policy.run(attempt, AzureAdminError::is_transient).await.map_err(|(last, _attempts)| last)
}

impl AzureAdminError {
    /// Whether another attempt may succeed: no answer (timeout, connection failed or broken), or
    /// HTTP 5xx, 429 or 408.
    pub fn is_transient(&self) -> bool {
        match self.kind {
            AzureAdminErrorKind::Timeout { .. } | AzureAdminErrorKind::Request { .. } => true,
            AzureAdminErrorKind::Status { status, .. } => status >= 500 || status == 429 || status == 408,
            _ => false,
        }
    }
}

/// What one Create Container answer means: created, already there, or which error.
async fn outcome(
    response: reqwest::Response,
    account: &str,
    container: &str,
    shared_key: bool,
) -> Result<bool, AzureAdminError> {
    let status = response.status().as_u16();
    if status == 201 {
        return Ok(true);
    }
    let header_code = response.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).map(str::to_owned);
    // The body only adds detail; a body that cannot be read must not hide the status.
    let body = response.text().await.unwrap_or_default();
    let code = header_code.or_else(|| xml_element(&body, "Code").map(str::to_owned));
    let message = xml_element(&body, "Message")
        .and_then(|m| m.lines().next())
        .map(|m| m.trim().chars().take(300).collect::<String>())
        .filter(|m| !m.is_empty());

    // Azure answers a bad signature with 403 AuthenticationFailed; Azurite with 403 AuthorizationFailure and
    // Azure's authentication message. A 403 AuthorizationFailure from Azure proper (firewall, network rules)
    // carries another message and is reported as it is.
    let authentication_failed = code.as_deref() == Some("AuthenticationFailed")
        || code.is_none()
        || message.as_deref().is_some_and(|m| m.starts_with("Server failed to authenticate the request"));
    let kind = match (status, code.as_deref()) {
        (409, Some("ContainerAlreadyExists")) => return Ok(false),
        (403, _) if shared_key && authentication_failed => AzureAdminErrorKind::WrongAccountKey { code },
        _ => AzureAdminErrorKind::Status { status, code, message },
    };
    Err(AzureAdminError { account: account.to_owned(), container: container.to_owned(), kind })
}

/// Checks `name` against Azure's container naming rules ([`CONTAINER_NAME_RULES`]).
///
/// # Errors
/// A short description of the first rule `name` breaks.
pub fn validate_container_name(name: &str) -> Result<(), &'static str> {
    let len = name.chars().count();
    if len < 3 {
        return Err("it is shorter than 3 characters");
    }
    if len > 63 {
        return Err("it is longer than 63 characters");
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("it contains uppercase letters");
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err("it contains a character other than a-z, 0-9 and -");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("it starts or ends with a hyphen");
    }
    if name.contains("--") {
        return Err("it contains two hyphens in a row");
    }
    Ok(())
}

/// The Shared Key string-to-sign for the Blob service, version 2015-02-21 and later.
///
/// `headers` are the request's headers (names in any case). The twelve standard headers are taken by name
/// (missing ones count as empty, and a `Content-Length` of `0` counts as empty); every `x-ms-*` header is
/// canonicalized (lowercase name, trimmed value, sorted by name). The canonicalized resource is
/// `/{account}{url path}` followed by one `\nname:value` line per query parameter, sorted by name, with
/// repeated parameters' values sorted and joined by commas. For a path-style (emulator) URL the path starts
/// with the account, which therefore appears twice: `/devstoreaccount1/devstoreaccount1/container`.
#[must_use]
pub fn string_to_sign(method: &str, url: &Url, account: &str, headers: &[(&str, &str)]) -> String {
    let header = |name: &str| -> &str {
        headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map_or("", |(_, v)| v.trim())
    };
    let content_length = match header("Content-Length") {
        "0" => "",
        other => other,
    };
    let mut out = String::new();
    out.push_str(&method.to_ascii_uppercase());
    out.push('\n');
    for value in [
        header("Content-Encoding"),
        header("Content-Language"),
        content_length,
        header("Content-MD5"),
        header("Content-Type"),
        header("Date"),
        header("If-Modified-Since"),
        header("If-Match"),
        header("If-None-Match"),
        header("If-Unmodified-Since"),
        header("Range"),
    ] {
        out.push_str(value);
        out.push('\n');
    }

    let mut ms_headers: Vec<(String, &str)> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim()))
        .filter(|(n, _)| n.starts_with("x-ms-"))
        .collect();
    ms_headers.sort();
    for (name, value) in ms_headers {
        let _ = writeln!(out, "{name}:{value}");
    }

    out.push_str(&canonicalized_resource(url, account));
    out
}

/// `/{account}{path}` plus sorted `\nname:value` query lines (see [`string_to_sign`]).
fn canonicalized_resource(url: &Url, account: &str) -> String {
    let mut out = format!("/{account}{}", url.path());
    let mut params: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in url.query_pairs() {
        let name = name.to_lowercase();
        match params.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value.into_owned()),
            None => params.push((name, vec![value.into_owned()])),
        }
    }
    params.sort();
    for (name, mut values) in params {
        values.sort();
        let _ = write!(out, "\n{name}:{}", values.join(","));
    }
    out
}

/// Base64 of HMAC-SHA256(`key`, `string_to_sign`): the signature part of
/// `Authorization: SharedKey {account}:{signature}`. `key` is the decoded account key.
#[must_use]
pub fn sign(key: &[u8], string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// `{endpoint}/{container}?restype=container`, keeping any path of the endpoint (path-style emulators).
fn container_url(endpoint: &Url, container: &str) -> Result<Url, &'static str> {
    if !matches!(endpoint.scheme(), "http" | "https") {
        return Err("the scheme must be http or https");
    }
    if endpoint.host_str().is_none_or(str::is_empty) {
        return Err("it has no host");
    }
    if !endpoint.username().is_empty() || endpoint.password().is_some() {
        return Err("it must not contain user credentials");
    }
    if endpoint.query().is_some() {
        return Err("it must not contain a query string (a SAS token is not supported here; use the account key)");
    }
    let mut url = endpoint.clone();
    url.set_fragment(None);
    url.path_segments_mut().map_err(|()| "it cannot have a path")?.pop_if_empty().push(container);
    url.set_query(Some("restype=container"));
    Ok(url)
}

/// The endpoint for messages: scheme, host, port and path only (never a query or user info).
fn redacted(endpoint: &Url) -> String {
    let host = endpoint.host_str().unwrap_or("");
    match endpoint.port() {
        Some(port) => format!("{}://{host}:{port}{}", endpoint.scheme(), endpoint.path()),
        None => format!("{}://{host}{}", endpoint.scheme(), endpoint.path()),
    }
}

/// The text between the first `<tag>` and the following `</tag>`, for Azure's tiny XML error bodies.
fn xml_element<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].trim()).filter(|s| !s.is_empty())
}

/// RFC 1123 date in GMT, as HTTP and `x-ms-date` want it: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Azurite's well-known development key (public, documented by Microsoft).
    const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn string_to_sign_for_create_container_on_azurite() {
        let u = url("http://127.0.0.1:10000/devstoreaccount1/mycontainer?restype=container");
        let headers =
            [("Content-Length", "0"), ("x-ms-version", "2023-11-03"), ("x-ms-date", "Sun, 06 Nov 1994 08:49:37 GMT")];
        let s = string_to_sign("PUT", &u, "devstoreaccount1", &headers);
        assert_eq!(
            s,
            "PUT\n\n\n\n\n\n\n\n\n\n\n\n\
             x-ms-date:Sun, 06 Nov 1994 08:49:37 GMT\n\
             x-ms-version:2023-11-03\n\
             /devstoreaccount1/devstoreaccount1/mycontainer\nrestype:container"
        );
        // Expected value computed independently with Python's hmac/hashlib/base64 over the string above.
        let key = BASE64.decode(DEV_KEY).unwrap();
        assert_eq!(sign(&key, &s), "Epgo8kVf5W2arLtCwI996hUiMha525HDIb4WNjDXuO4=");
    }

    #[test]
    fn string_to_sign_places_every_standard_header() {
        let u = url("https://myaccount.blob.core.windows.net/c/b.txt");
        let headers = [
            ("range", "bytes=0-9"),
            ("If-Unmodified-Since", "IUS"),
            ("If-None-Match", "INM"),
            ("If-Match", "IM"),
            ("If-Modified-Since", "IMS"),
            ("Date", "D"),
            ("Content-Type", "text/plain"),
            ("Content-MD5", "MD5"),
            ("Content-Length", "12"),
            ("Content-Language", "en"),
            ("Content-Encoding", "gzip"),
            ("X-MS-Meta-B", " two "),
            ("x-ms-meta-a", "one"),
            ("User-Agent", "ignored"),
        ];
        assert_eq!(
            string_to_sign("get", &u, "myaccount", &headers),
            "GET\ngzip\nen\n12\nMD5\ntext/plain\nD\nIMS\nIM\nINM\nIUS\nbytes=0-9\n\
             x-ms-meta-a:one\nx-ms-meta-b:two\n/myaccount/c/b.txt"
        );
    }

    #[test]
    fn canonicalized_resource_matches_microsoft_examples() {
        // From "Authorize with Shared Key", section "Shared Key format for 2009-09-19 and later".
        assert_eq!(
            canonicalized_resource(
                &url("http://myaccount.blob.core.windows.net/mycontainer?restype=container&comp=metadata"),
                "myaccount"
            ),
            "/myaccount/mycontainer\ncomp:metadata\nrestype:container"
        );
        assert_eq!(
            canonicalized_resource(
                &url("http://myaccount.blob.core.windows.net/mycontainer?restype=container&comp=list\
                     &include=snapshots&include=metadata&include=uncommittedblobs"),
                "myaccount"
            ),
            "/myaccount/mycontainer\ncomp:list\ninclude:metadata,snapshots,uncommittedblobs\nrestype:container"
        );
        assert_eq!(
            canonicalized_resource(&url("https://myaccount.blob.core.windows.net/"), "myaccount"),
            "/myaccount/"
        );
    }

    #[test]
    fn container_url_keeps_the_endpoint_path() {
        let ep = |s| container_url(&url(s), "cache").unwrap().to_string();
        assert_eq!(
            ep("https://acc.blob.core.windows.net"),
            "https://acc.blob.core.windows.net/cache?restype=container"
        );
        assert_eq!(
            ep("https://acc.blob.core.windows.net/"),
            "https://acc.blob.core.windows.net/cache?restype=container"
        );
        assert_eq!(
            ep("http://127.0.0.1:10000/devstoreaccount1"),
            "http://127.0.0.1:10000/devstoreaccount1/cache?restype=container"
        );
        assert_eq!(
            ep("http://127.0.0.1:10000/devstoreaccount1/"),
            "http://127.0.0.1:10000/devstoreaccount1/cache?restype=container"
        );
        assert!(container_url(&url("ftp://x/"), "cache").is_err());
        assert!(container_url(&url("https://x/?sv=1&sig=secret"), "cache").is_err());
        assert!(container_url(&url("https://u:p@x/"), "cache").is_err());
    }

    #[test]
    fn container_names_follow_azure_rules() {
        for ok in ["abc", "a-b-c", "0cache", "cache9", &"a".repeat(63), "my-repo-2"] {
            assert_eq!(validate_container_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "ab", "ABC", "aBc", "a_b", "a.b", "-ab", "ab-", "a--b", "ümlaut", "a b", "$root"] {
            assert!(validate_container_name(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(validate_container_name(&"a".repeat(64)).is_err());
    }

    #[tokio::test]
    async fn invalid_name_is_rejected_before_any_request() {
        // Port 9 on loopback: nothing listens there, and no request must be attempted anyway.
        let err = ensure_container(
            &url("http://127.0.0.1:9/devstoreaccount1"),
            "devstoreaccount1",
            DEV_KEY,
            "Bad_Name",
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(matches!(err.kind, AzureAdminErrorKind::InvalidContainerName { .. }));
        let msg = err.to_string();
        assert!(msg.contains("\"Bad_Name\"") && msg.contains("3 to 63 characters"), "{msg}");
    }

    #[tokio::test]
    async fn errors_never_contain_the_key() {
        let err = ensure_container(
            &url("http://127.0.0.1:9/devstoreaccount1"),
            "devstoreaccount1",
            "not base64!",
            "cache",
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err.kind, AzureAdminErrorKind::InvalidKey), "{msg}");
        assert!(!msg.contains("not base64!"), "{msg}");

        let err = ensure_container(
            &url("http://127.0.0.1:9/devstoreaccount1"),
            "devstoreaccount1",
            DEV_KEY,
            "cache",
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err.kind, AzureAdminErrorKind::Request { .. } | AzureAdminErrorKind::Timeout { .. }), "{msg}");
        assert!(msg.contains("devstoreaccount1") && msg.contains("\"cache\""), "{msg}");
        assert!(!msg.contains(DEV_KEY), "{msg}");
    }

    /// A one-shot HTTP server on loopback: each connection gets the next scripted answer (`None`:
    /// the connection is closed without one) and is then closed. Returns the endpoint and a handle
    /// that yields the number of requests served.
    async fn scripted_server(answers: Vec<Option<&'static str>>) -> (Url, tokio::task::JoinHandle<usize>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = url(&format!("http://{}/devstoreaccount1", listener.local_addr().unwrap()));
        let server = tokio::spawn(async move {
            let mut served = 0;
            for answer in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = socket.read(&mut buffer).await.unwrap();
                    assert!(n > 0, "the client closed the connection mid-request");
                    request.extend_from_slice(&buffer[..n]);
                }
                served += 1;
                if let Some(answer) = answer {
                    let response = format!("{answer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    socket.write_all(response.as_bytes()).await.unwrap();
                }
                socket.shutdown().await.unwrap();
            }
            served
        });
        (endpoint, server)
    }

    fn fast() -> RetryPolicy {
        RetryPolicy { initial_backoff: Duration::from_millis(1), ..RetryPolicy::default() }
    }

    #[tokio::test]
    async fn transient_failures_are_retried() {
        let (endpoint, server) =
            scripted_server(vec![None, Some("HTTP/1.1 503 Service Unavailable"), Some("HTTP/1.1 201 Created")]).await;
        let created =
            ensure_container_with(&endpoint, "devstoreaccount1", DEV_KEY, "cache", Duration::from_secs(5), &fast())
                .await
                .unwrap();
        assert!(created);
        assert_eq!(server.await.unwrap(), 3, "a dropped connection and a 503, then the creation");

        // The first attempt's answer was lost; the retry finds the container: it exists, as asked.
        let (endpoint, server) = scripted_server(vec![
            Some("HTTP/1.1 500 Internal Server Error"),
            Some("HTTP/1.1 409 Conflict\r\nx-ms-error-code: ContainerAlreadyExists"),
        ])
        .await;
        let created =
            ensure_container_with(&endpoint, "devstoreaccount1", DEV_KEY, "cache", Duration::from_secs(5), &fast())
                .await
                .unwrap();
        assert!(!created);
        assert_eq!(server.await.unwrap(), 2);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        for (answer, expected) in [
            ("HTTP/1.1 403 Forbidden\r\nx-ms-error-code: AuthenticationFailed", "account key is wrong"),
            ("HTTP/1.1 409 Conflict\r\nx-ms-error-code: ContainerBeingDeleted", "ContainerBeingDeleted"),
            ("HTTP/1.1 400 Bad Request\r\nx-ms-error-code: InvalidHeaderValue", "InvalidHeaderValue"),
        ] {
            let (endpoint, server) = scripted_server(vec![Some(answer)]).await;
            let err =
                ensure_container_with(&endpoint, "devstoreaccount1", DEV_KEY, "cache", Duration::from_secs(5), &fast())
                    .await
                    .unwrap_err();
            assert!(err.to_string().contains(expected), "{answer}: {err}");
            assert_eq!(server.await.unwrap(), 1, "{answer}: one request");
        }
    }

    #[tokio::test]
    async fn a_dead_server_is_given_up_on_after_the_policy_attempts() {
        let (endpoint, server) = scripted_server(vec![Some("HTTP/1.1 503 Service Unavailable"); 3]).await;
        let policy = RetryPolicy { max_attempts: 3, ..fast() };
        let err =
            ensure_container_with(&endpoint, "devstoreaccount1", DEV_KEY, "cache", Duration::from_secs(5), &policy)
                .await
                .unwrap_err();
        assert!(matches!(err.kind, AzureAdminErrorKind::Status { status: 503, .. }), "{err}");
        assert_eq!(server.await.unwrap(), 3);
    }

    #[test]
    fn https_client_builds_without_installing_a_crypto_provider() {
        // reqwest's `rustls` feature falls back to aws-lc-rs; this would panic if no provider were available.
        reqwest::Client::builder().build().unwrap();
    }

    #[test]
    fn http_dates() {
        use std::time::UNIX_EPOCH;
        let at = |s: u64| http_date(UNIX_EPOCH + Duration::from_secs(s));
        // Expected values from Python's email.utils.formatdate(t, usegmt=True).
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(1_709_251_199), "Thu, 29 Feb 2024 23:59:59 GMT");
        assert_eq!(at(4_102_444_800), "Fri, 01 Jan 2100 00:00:00 GMT");
        assert_eq!(at(253_402_300_799), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn xml_error_bodies() {
        let body = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ContainerBeingDeleted</Code>\
                    <Message>The specified container is being deleted.\nRequestId:1\nTime:x</Message></Error>";
        assert_eq!(xml_element(body, "Code"), Some("ContainerBeingDeleted"));
        assert!(xml_element(body, "Message").unwrap().starts_with("The specified container is being deleted."));
        assert_eq!(xml_element("", "Code"), None);
    }
}
