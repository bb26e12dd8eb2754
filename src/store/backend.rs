//! Store URLs: which `object_store` backend a URL names, its credentials, and how it is built.
//!
//! | URL | backend | credentials |
//! |---|---|---|
//! | `file:///abs/path` or a plain path | local folder (created by a save; reading a missing one is an error) | — |
//! | `memory://` | in-process memory (tests) | — |
//! | `az://CONTAINER/PREFIX`, `azure://…` | Azure Blob Storage, Azurite | account key, SAS, connection string, Azure AD ([`crate::store::azure_ad`]) |
//! | `s3://BUCKET/PREFIX` | S3 and compatibles (moto, MinIO) | `AWS_*` |
//! | `gs://BUCKET/PREFIX` | Google Cloud Storage | service-account JSON, workload identity federation ([`crate::store::gcp_workload_identity`]) |
//!
//! Every store retries transient failures (throttling, 5xx, timeouts, dropped connections, bodies
//! cut short) with backoff, in one place: [`crate::store::retry::RetryStore`], which [`Store::with_retry`]
//! puts over every backend. `object_store`'s own HTTP retries are turned off so that nothing is
//! retried twice. Remote clients apply a per-request timeout, and keep idle pooled connections for
//! less than Azurite's 5 s keep-alive (it closes idle connections and the next request on them
//! fails). Descriptions in messages name the container and account, never a credential.
//!
//! A CA bundle ([`BackendOptions::ca_bundle`]) adds trusted roots to the system's for every remote client
//! (stores, Azure AD token endpoints, container creation): private endpoints and TLS-inspecting proxies
//! often present certificates of an organisation's own CA.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::core::secret::Secret;
use crate::store::Store;
use crate::store::azure_admin::ContainerAuth;
use crate::store::gcp_workload_identity::WorkloadIdentityOptions;
use crate::store::retry::RetryPolicy;
use crate::store::sts::{AssumeRoleOptions, RoleIdentity, StsCredentialProvider};

/// A store that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The URL is malformed or names an unknown scheme.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL (store URLs never hold credentials).
        url: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// An endpoint is not an http(s) URL with a host.
    #[error("invalid {what} {value:?} (from {from}): {reason}")]
    InvalidEndpoint {
        /// Which endpoint (`S3 endpoint`, `Azure blob endpoint`, `GCS endpoint`).
        what: &'static str,
        /// The value, with any user info left out.
        value: String,
        /// The variables, flags or settings it can come from.
        from: String,
        /// What is wrong, and the right spelling.
        reason: String,
    },
    /// A local store folder does not exist and this command does not create one: almost always a
    /// typo in the URL, which must not look like an empty (cold) cache.
    #[error(
        "store {url} does not exist (no folder at {path}): check the store URL (--store or CHUNKCACHE_STORE; \
         the plugin's filesystem_cache_root) for a typo, or run `chunkcache save` to create it (a save creates it)"
    )]
    Missing {
        /// The store URL as given.
        url: String,
        /// The absolute folder it names.
        path: PathBuf,
    },
    /// A local store folder could not be created.
    #[error("cannot use {path} as a store")]
    Local {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Credentials or settings are missing or contradictory.
    #[error("{0}")]
    Config(String),
    /// The Azure AD sign-in was refused or its endpoint could not be reached: the flow, the answer, and what
    /// to check. Like a store that refuses a key, it follows the plugin's `exit_code`.
    #[error("{0}")]
    SignIn(String),
    /// The backend client could not be built.
    #[error("cannot set up {store}")]
    Client {
        /// The store's description.
        store: String,
        /// The cause.
        source: object_store::Error,
    },
    /// The Azure container could not be created.
    #[error(transparent)]
    Container(#[from] crate::store::azure_admin::AzureAdminError),
}

/// drone-cache's default Azure blob endpoint suffix (`AZURE_BLOB_STORAGE_URL`).
pub const DEFAULT_AZURE_BLOB_SUFFIX: &str = "blob.core.windows.net";

/// Where the Azure blob service of an account lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobEndpoint {
    /// A DNS suffix, as drone-cache's `AZURE_BLOB_STORAGE_URL` takes it: `blob.core.windows.net` (the
    /// default), `blob.core.chinacloudapi.cn`, `blob.core.usgovcloudapi.net`. The account URL is
    /// `https://{account}.{suffix}`.
    Suffix(String),
    /// A full URL with a scheme, for Azurite or a private endpoint: `http://127.0.0.1:10000/devstoreaccount1`.
    /// [`BlobEndpoint::parse`] stores it without a trailing `/`; the CLI's `--endpoint`, `AZURE_STORAGE_ENDPOINT`
    /// and connection string give it as written, and [`open`] checks it.
    Url(String),
}

impl Default for BlobEndpoint {
    fn default() -> Self {
        Self::Suffix(DEFAULT_AZURE_BLOB_SUFFIX.to_owned())
    }
}

impl BlobEndpoint {
    /// Parses a suffix or a full URL.
    ///
    /// # Errors
    /// A value with a scheme other than `http` or `https`, a URL without a host, or a bare `host:port` or IP
    /// address (which would make the nonsense URL `https://{account}.127.0.0.1:10000`) is refused with a
    /// reason; the caller names the variable.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if let Some((scheme, rest)) = value.split_once("://") {
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return Err(format!("the scheme {scheme:?} is not http or https"));
            }
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            if host.is_empty() {
                return Err("the URL has no host".to_owned());
            }
            return Ok(Self::Url(value.trim_end_matches('/').to_owned()));
        }
        let suffix = value.trim_matches('.');
        if suffix.is_empty() {
            return Err("it is empty".to_owned());
        }
        if suffix.contains(['/', ':', ' ']) || is_ip_or_localhost(suffix) {
            return Err("without a scheme it is taken as a DNS suffix, and this looks like a host or a path; \
                 give a full URL instead"
                .to_owned());
        }
        Ok(Self::Suffix(suffix.to_owned()))
    }

    /// The blob service URL of `account`, without a trailing `/`.
    ///
    /// For a suffix: `https://{account}.{suffix}`. A full URL is used as given, except that an URL whose host is
    /// an IP address or `localhost` and which has no path gets `/{account}` appended, the path-style addressing
    /// that Azurite uses (`http://127.0.0.1:10000` becomes `http://127.0.0.1:10000/devstoreaccount1`).
    pub fn account_url(&self, account: &str) -> String {
        match self {
            Self::Suffix(suffix) => format!("https://{account}.{suffix}"),
            Self::Url(url) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
                let (host_port, has_path) = match rest.find('/') {
                    Some(slash) => (&rest[..slash], true),
                    None => (rest, false),
                };
                let host = strip_port(host_port);
                if !has_path && is_ip_or_localhost(host) { format!("{url}/{account}") } else { url.clone() }
            }
        }
    }
}

impl fmt::Display for BlobEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Suffix(suffix) => f.write_str(suffix),
            Self::Url(url) => f.write_str(url),
        }
    }
}

fn strip_port(host_port: &str) -> &str {
    if let Some(inner) = host_port.strip_prefix('[') {
        // `[::1]:10000`
        return inner.split(']').next().unwrap_or(inner);
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => host_port,
    }
}

fn is_ip_or_localhost(host: &str) -> bool {
    let host = strip_port(host);
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok()
}

/// Azure Blob Storage settings, for the CLI and the plugin alike.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AzureOptions {
    /// Storage account name.
    pub account: Option<String>,
    /// Shared key (what drone-cache's `account_key` is).
    pub key: Option<Secret>,
    /// SAS token (query string, with or without the leading `?`).
    pub sas: Option<Secret>,
    /// Blob endpoint: `https://ACCOUNT.blob.core.windows.net` when unset; Azurite's is
    /// `http://127.0.0.1:10000/devstoreaccount1`. A [`BlobEndpoint::Suffix`] means `https://ACCOUNT.SUFFIX`.
    pub endpoint: Option<BlobEndpoint>,
    /// Create the container if it is missing (with the shared key or an Azure AD token).
    pub create_container: bool,
    /// Azure AD sign-in, used instead of a key when the account's shared keys are disabled.
    pub ad: AzureAdOptions,
}

/// How to sign in to Azure AD (Microsoft Entra ID); [`crate::store::azure_ad::AzureSignIn::choose`] picks the
/// flow these settings make complete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AzureAdOptions {
    /// The app registration's (client) id, or a user-assigned managed identity's (`AZURE_CLIENT_ID`).
    pub client_id: Option<String>,
    /// The service principal's client secret (`AZURE_CLIENT_SECRET`).
    pub client_secret: Option<Secret>,
    /// The directory (tenant) id (`AZURE_TENANT_ID`).
    pub tenant_id: Option<String>,
    /// A file holding an OIDC token for workload identity federation (`AZURE_FEDERATED_TOKEN_FILE`).
    pub federated_token_file: Option<PathBuf>,
    /// An OIDC token given as a value (the Harness fork's `oidc_token_id`).
    pub oidc_token: Option<Secret>,
    /// Use the machine's managed identity (`AZURE_USE_MSI`).
    pub managed_identity: bool,
    /// The managed identity endpoint, instead of the instance metadata service (`AZURE_MSI_ENDPOINT`).
    pub msi_endpoint: Option<String>,
    /// Where tokens come from (`AZURE_AUTHORITY_HOST`), default `https://login.microsoftonline.com`.
    pub authority_host: Option<String>,
}

/// S3 settings (anything not set here comes from the `AWS_*` variables), for the CLI and the plugin alike.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Options {
    /// The bucket, when it is not named by the store URL (the plugin's `bucket`).
    pub bucket: Option<String>,
    /// Access key id.
    pub access_key: Option<String>,
    /// Secret access key.
    pub secret_key: Option<Secret>,
    /// Session token of temporary credentials (the plugin's `session_token`).
    pub session_token: Option<Secret>,
    /// Region.
    pub region: Option<String>,
    /// Endpoint for S3-compatible servers.
    pub endpoint: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted; `None` leaves it to the
    /// `AWS_*` variables.
    pub path_style: Option<bool>,
    /// Object ACL (the plugin's `acl`). Only `private` (drone-cache's default), which is what S3
    /// gives an object written without an ACL, is accepted; any other is refused by [`open`], since
    /// a security setting is never dropped silently and `object_store` sends no canned ACLs.
    pub acl: String,
    /// Server-side encryption for every object written (the plugin's `encryption`): `AES256`
    /// (SSE-S3), `aws:kms` or `aws:kms:dsse` (with the bucket's or the account's default KMS key).
    pub encryption: Option<String>,
    /// Raw `AWS_*` variables, passed to `object_store`'s S3 configuration.
    pub aws_env: BTreeMap<String, Secret>,
    /// Roles to assume through STS, in order (the plugin's `assume_role_arn`, then `user_role_arn`): each
    /// `AssumeRole` is signed with the credentials before it (the first with the keys or the `AWS_*` chain),
    /// and the last role's credentials sign the S3 requests. See [`crate::store::sts`].
    pub roles: Vec<AssumeRoleOptions>,
    /// The STS endpoint for `roles` (the plugin's `sts_endpoint`); `https://sts.{region}.amazonaws.com` when unset.
    pub sts_endpoint: Option<String>,
}

/// Google Cloud Storage settings, for the CLI and the plugin alike.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcsOptions {
    /// The bucket, when it is not named by the store URL (the plugin's `bucket`).
    pub bucket: Option<String>,
    /// Service-account key JSON.
    pub service_account_json: Option<Secret>,
    /// Path of a service-account key file.
    pub service_account_path: Option<PathBuf>,
    /// Endpoint (an emulator).
    pub endpoint: Option<String>,
    /// Workload identity federation (the plugin's `project_number`, `pool_id`, `provider_id`,
    /// `service_account_email` and `oidc_token_id`): when set, it is the credentials, whatever else is.
    pub workload_identity: Option<WorkloadIdentityOptions>,
}

/// How remote stores are reached.
#[derive(Clone, Debug)]
pub struct BackendOptions {
    /// Azure settings.
    pub azure: AzureOptions,
    /// S3 settings.
    pub s3: S3Options,
    /// GCS settings.
    pub gcs: GcsOptions,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// Retries of a request that failed transiently (throttling, 5xx, timeouts, resets, bodies
    /// cut short); see [`BackendOptions::retry_policy`].
    pub max_retries: usize,
    /// Whether opening a local store creates its folder when missing. Only saves do; every other
    /// command reports a missing folder as [`BackendError::Missing`].
    pub create_local: bool,
    /// A PEM file of CA certificates trusted in addition to the system's (`--ca-bundle`,
    /// `CHUNKCACHE_CA_BUNDLE`, the plugin's `ca_bundle`).
    pub ca_bundle: Option<PathBuf>,
}

impl Default for BackendOptions {
    fn default() -> Self {
        Self {
            azure: AzureOptions { create_container: true, ..AzureOptions::default() },
            s3: S3Options::default(),
            gcs: GcsOptions::default(),
            request_timeout: Duration::from_secs(60),
            max_retries: 4,
            create_local: true,
            ca_bundle: None,
        }
    }
}

fn first<'a>(env: &'a BTreeMap<String, String>, names: &[&str]) -> Option<&'a String> {
    names.iter().find_map(|name| env.get(*name).filter(|v| !v.is_empty()))
}

impl BackendOptions {
    /// How requests are retried: `max_retries` retries after the first attempt, with the default
    /// backoff, and no new attempt once two request timeouts have passed.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: u32::try_from(self.max_retries).unwrap_or(u32::MAX).saturating_add(1),
            max_elapsed: self.request_timeout.saturating_mul(2),
            ..RetryPolicy::default()
        }
    }

    /// Reads credentials from the usual variables: `AZURE_STORAGE_ACCOUNT(_NAME)`,
    /// `AZURE_STORAGE_(ACCOUNT_)KEY`, `AZURE_STORAGE_SAS_TOKEN`, `AZURE_STORAGE_ENDPOINT`,
    /// `AZURE_STORAGE_CONNECTION_STRING`; Azure AD's `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`,
    /// `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_AUTHORITY_HOST` (the Azure SDKs' names, which
    /// AKS workload identity sets), `AZURE_USE_MSI` and `AZURE_MSI_ENDPOINT`; `AWS_*`;
    /// `GOOGLE_SERVICE_ACCOUNT(_KEY)`, `GOOGLE_APPLICATION_CREDENTIALS`, `CHUNKCACHE_GCS_ENDPOINT`.
    ///
    /// # Errors
    /// A malformed connection string, or an `AZURE_USE_MSI` that is not a boolean.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Self, BackendError> {
        let mut options = Self::default();
        let azure = &mut options.azure;
        azure.account = first(env, &["AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT"]).cloned();
        azure.key = first(env, &["AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_KEY"]).map(Secret::new);
        azure.sas = first(env, &["AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_SAS_KEY"]).map(Secret::new);
        azure.endpoint =
            first(env, &["AZURE_STORAGE_ENDPOINT", "AZURE_STORAGE_BLOB_ENDPOINT"]).cloned().map(BlobEndpoint::Url);
        if let Some(connection) = first(env, &["AZURE_STORAGE_CONNECTION_STRING"]) {
            apply_connection_string(azure, connection)?;
        }
        azure.ad = AzureAdOptions {
            client_id: first(env, &["AZURE_CLIENT_ID", "AZURE_STORAGE_CLIENT_ID"]).cloned(),
            client_secret: first(env, &["AZURE_CLIENT_SECRET", "AZURE_STORAGE_CLIENT_SECRET"]).map(Secret::new),
            tenant_id: first(env, &["AZURE_TENANT_ID", "AZURE_STORAGE_TENANT_ID"]).cloned(),
            federated_token_file: first(env, &["AZURE_FEDERATED_TOKEN_FILE"]).map(PathBuf::from),
            oidc_token: None,
            managed_identity: match first(env, &["AZURE_USE_MSI"]) {
                None => false,
                Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => {
                        return Err(BackendError::Config(format!(
                            "AZURE_USE_MSI={value:?} is not a boolean: use true or false"
                        )));
                    }
                },
            },
            msi_endpoint: first(env, &["AZURE_MSI_ENDPOINT"]).cloned(),
            authority_host: first(env, &["AZURE_AUTHORITY_HOST"]).cloned(),
        };
        options.s3.aws_env = aws_variables(env);
        options.gcs = GcsOptions::from_env(env);
        Ok(options)
    }
}

/// The `AWS_*` variables of `env`, for `object_store`'s S3 configuration (region, session token,
/// web identity, profile, endpoint, …).
pub fn aws_variables(env: &BTreeMap<String, String>) -> BTreeMap<String, Secret> {
    env.iter().filter(|(k, _)| k.starts_with("AWS_")).map(|(k, v)| (k.clone(), Secret::new(v.clone()))).collect()
}

impl GcsOptions {
    /// The service account (`GOOGLE_SERVICE_ACCOUNT_KEY`, `GOOGLE_SERVICE_ACCOUNT`,
    /// `GOOGLE_APPLICATION_CREDENTIALS`) and endpoint (`CHUNKCACHE_GCS_ENDPOINT`) of `env`.
    pub fn from_env(env: &BTreeMap<String, String>) -> Self {
        Self {
            service_account_json: first(env, &["GOOGLE_SERVICE_ACCOUNT_KEY"]).map(Secret::new),
            service_account_path: first(env, &["GOOGLE_SERVICE_ACCOUNT", "GOOGLE_APPLICATION_CREDENTIALS"])
                .map(PathBuf::from),
            endpoint: first(env, &["CHUNKCACHE_GCS_ENDPOINT"]).cloned(),
            ..Self::default()
        }
    }
}

/// Fills missing Azure settings from a connection string
/// (`AccountName=…;AccountKey=…;BlobEndpoint=…;SharedAccessSignature=…`, or
/// `UseDevelopmentStorage=true`). Values already set win.
fn apply_connection_string(azure: &mut AzureOptions, connection: &str) -> Result<(), BackendError> {
    let mut protocol = "https".to_string();
    let mut suffix = None;
    for part in connection.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, value)) = part.split_once('=') else {
            return Err(BackendError::Config(
                "AZURE_STORAGE_CONNECTION_STRING is malformed: expected `Name=value` pairs separated by `;`".into(),
            ));
        };
        match name {
            "AccountName" => {
                azure.account.get_or_insert_with(|| value.to_string());
            }
            "AccountKey" => {
                azure.key.get_or_insert_with(|| Secret::new(value));
            }
            "SharedAccessSignature" => {
                azure.sas.get_or_insert_with(|| Secret::new(value));
            }
            "BlobEndpoint" => {
                azure.endpoint.get_or_insert_with(|| BlobEndpoint::Url(value.to_string()));
            }
            "DefaultEndpointsProtocol" => protocol = value.to_string(),
            "EndpointSuffix" => suffix = Some(value.to_string()),
            "UseDevelopmentStorage" if value.eq_ignore_ascii_case("true") => {
                azure.account.get_or_insert_with(|| AZURITE_ACCOUNT.to_string());
                azure.key.get_or_insert_with(|| Secret::new(AZURITE_KEY));
                azure
                    .endpoint
                    .get_or_insert_with(|| BlobEndpoint::Url(format!("http://127.0.0.1:10000/{AZURITE_ACCOUNT}")));
            }
            _ => {}
        }
    }
    if let (None, Some(suffix), Some(account)) = (&azure.endpoint, suffix, &azure.account) {
        azure.endpoint = Some(BlobEndpoint::Url(format!("{protocol}://{account}.blob.{suffix}")));
    }
    Ok(())
}

/// Azurite's well-known development account (public, documented by Microsoft).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The default store when none is given: `$XDG_CACHE_HOME/chunkcache/store`, else
/// `$HOME/.cache/chunkcache/store`, else `/tmp/chunkcache/store`.
pub fn default_store_url(env: &BTreeMap<String, String>) -> String {
    let base = env
        .get("XDG_CACHE_HOME")
        .filter(|v| v.starts_with('/'))
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").filter(|v| !v.is_empty()).map(|home| Path::new(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    format!("file://{}", base.join("chunkcache/store").display())
}

/// The schemes a store URL may have, as the unknown-scheme error lists them.
const SCHEMES: &str = "file, memory, az (or azure), s3 and gs: file:///PATH, memory://, az://CONTAINER/PREFIX, \
                       s3://BUCKET/PREFIX or gs://BUCKET/PREFIX";

/// Checks an endpoint URL before any client sees it: `object_store` panics on some malformed
/// ones (`minio:9000`, without a scheme, reaches an `expect` in its request signing). Returns it
/// normalised, without a trailing `/`, as the clients take it.
///
/// `what` names the endpoint and `from` where it can come from, for the message.
///
/// # Errors
/// [`BackendError::InvalidEndpoint`] when `value` is not an `http` or `https` URL with a host; a
/// value without a scheme gets the right spelling (`http://minio:9000`) in the message.
pub fn endpoint_url(value: &str, what: &'static str, from: impl Into<String>) -> Result<url::Url, BackendError> {
    let shown = match value.rsplit_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => value.to_string(),
    };
    let from = from.into();
    let invalid =
        |reason: String| BackendError::InvalidEndpoint { what, value: shown.clone(), from: from.clone(), reason };
    let trimmed = value.trim();
    if !trimmed.contains("://") {
        return Err(invalid(format!(
            "it has no scheme: write http://{shown} (or https://{shown} for TLS)",
            shown = shown.trim()
        )));
    }
    let url = url::Url::parse(trimmed).map_err(|e| invalid(format!("it is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("the scheme {:?} is not http or https", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host".into()));
    }
    Ok(url)
}

/// An endpoint URL as the `object_store` builders take it: normalised, without a trailing `/`.
fn endpoint_text(url: &url::Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

/// How drone-cache reads its S3 `endpoint` setting, for the plugin: a value without a scheme
/// (`minio:9000`) gets the one the AWS SDK adds, `https://`, or `http://` with `disable_ssl`
/// (drone-cache's `setSSLMode`; the Harness fork always uses https). Anything with a scheme is
/// returned as it is.
pub fn drone_cache_endpoint(value: &str, disable_ssl: bool) -> String {
    let value = value.trim();
    match (value.contains("://"), disable_ssl) {
        (true, _) => value.to_string(),
        (false, false) => format!("https://{value}"),
        (false, true) => format!("http://{value}"),
    }
}

/// Opens the store a URL names. For Azure with a shared key, a missing container is created
/// (as drone-cache does) unless `create_container` is off; a missing local folder is created
/// only with `create_local`.
///
/// # Errors
/// [`BackendError`] with a message that says which URLs and credentials are accepted.
pub async fn open(url: &str, options: &BackendOptions) -> Result<Store, BackendError> {
    let invalid = |reason: &str| BackendError::InvalidUrl { url: url.to_string(), reason: reason.to_string() };
    if url == "memory://" {
        return Ok(Store::with_retry(Arc::new(InMemory::new()), "memory://", options.retry_policy()));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        if let Some(path) = url.strip_prefix("file:") {
            return Err(invalid(&file_url_spelling(path)));
        }
        return open_local(url, Path::new(url), options);
    };
    match scheme {
        "file" if !rest.starts_with('/') => return Err(invalid(&file_url_spelling(rest))),
        "file" => return open_local(url, Path::new(rest), options),
        "az" | "azure" | "s3" | "gs" => {}
        "memory" => return Err(invalid("a memory store has no container or path: write memory://")),
        other => {
            let suggestion = ["file", "memory", "az", "azure", "s3", "gs"]
                .into_iter()
                .find(|known| edit_distance(&other.to_ascii_lowercase(), known) <= 2.min(known.len() - 1))
                .map(|known| format!(" (did you mean {known}://?)"))
                .unwrap_or_default();
            return Err(invalid(&format!("unknown scheme {other:?}{suggestion}; the valid schemes are {SCHEMES}")));
        }
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    if bucket.is_empty() {
        return Err(invalid("the container or bucket name is missing, e.g. az://my-container/ci-cache"));
    }
    let ((backend, description), objects_per_delete): ((Arc<dyn ObjectStore>, String), usize) = match scheme {
        "s3" => (open_s3(bucket, options)?, S3_OBJECTS_PER_DELETE),
        "gs" => (open_gcs(bucket, options).await?, 1),
        _ => (open_azure(bucket, options).await?, AZURE_OBJECTS_PER_DELETE),
    };
    let description = if prefix.is_empty() { description } else { format!("{description} under {prefix:?}") };
    let backend: Arc<dyn ObjectStore> =
        if prefix.is_empty() { backend } else { Arc::new(PrefixStore::new(backend, prefix)) };
    Ok(Store::with_batched_deletes(backend, description, options.retry_policy(), objects_per_delete))
}

/// Objects `object_store`'s Azure client deletes in one blob batch request (Azure's limit).
const AZURE_OBJECTS_PER_DELETE: usize = 256;
/// Objects `object_store`'s S3 client deletes in one `DeleteObjects` request (S3's limit). GCS
/// has no batch delete in `object_store`: one request per object.
const S3_OBJECTS_PER_DELETE: usize = 1000;

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Why a `file:` URL without an absolute path is refused, with the right spelling: `file://x/y`
/// would silently make `x` a host name and `file:x` is not a URL at all.
fn file_url_spelling(path: &str) -> String {
    let path = path.trim_start_matches('/');
    format!(
        "a file: URL takes an absolute path after three slashes: write file:///{path} for the absolute folder \
         /{path}, or give the plain path {path} for a folder relative to the working directory"
    )
}

fn open_local(url: &str, path: &Path, options: &BackendOptions) -> Result<Store, BackendError> {
    if path.as_os_str().is_empty() {
        return Err(BackendError::InvalidUrl { url: String::new(), reason: "the path is empty".into() });
    }
    let local = |source| BackendError::Local { path: path.to_path_buf(), source };
    let path = std::path::absolute(path).map_err(local)?;
    if options.create_local {
        std::fs::create_dir_all(&path).map_err(local)?;
    } else if !path.is_dir() {
        return Err(BackendError::Missing { url: url.to_string(), path });
    }
    let backend = LocalFileSystem::new_with_prefix(&path).map_err(|e| local(std::io::Error::other(e)))?;
    let store = Store::with_retry(Arc::new(backend), format!("file://{}", path.display()), options.retry_policy());
    Ok(store.with_local_root(path))
}

/// The PEM text of the CA bundle, when one is configured.
fn ca_bundle_pem(options: &BackendOptions) -> Result<Option<Vec<u8>>, BackendError> {
    let Some(path) = &options.ca_bundle else { return Ok(None) };
    let pem = std::fs::read(path).map_err(|e| {
        BackendError::Config(format!(
            "cannot read the CA bundle {} ({e}): check --ca-bundle, CHUNKCACHE_CA_BUNDLE or the plugin's ca_bundle",
            path.display()
        ))
    })?;
    if !pem.windows(b"-----BEGIN CERTIFICATE-----".len()).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(BackendError::Config(format!(
            "the CA bundle {} holds no PEM certificate (-----BEGIN CERTIFICATE-----): give a file of PEM \
             certificates (--ca-bundle, CHUNKCACHE_CA_BUNDLE or the plugin's ca_bundle)",
            path.display()
        )));
    }
    Ok(Some(pem))
}

fn invalid_ca_bundle(options: &BackendOptions, error: &(dyn std::error::Error + 'static)) -> BackendError {
    let path = options.ca_bundle.as_deref().unwrap_or(Path::new(""));
    BackendError::Config(format!(
        "the CA bundle {} cannot be used: {}; give a file of PEM certificates (--ca-bundle, CHUNKCACHE_CA_BUNDLE \
         or the plugin's ca_bundle)",
        path.display(),
        crate::core::error::one_line(error)
    ))
}

/// The HTTP client settings of every remote backend. `object_store`'s own retries are off: every
/// retry decision is [`crate::store::retry::RetryStore`]'s, so no request is retried by two loops at once.
///
/// # Errors
/// A CA bundle that cannot be read or parsed.
fn client_options(options: &BackendOptions, allow_http: bool) -> Result<(ClientOptions, RetryConfig), BackendError> {
    let mut client = ClientOptions::new()
        .with_allow_http(allow_http)
        .with_timeout(options.request_timeout)
        .with_connect_timeout(Duration::from_secs(5))
        .with_pool_idle_timeout(Duration::from_secs(3));
    if let Some(pem) = ca_bundle_pem(options)? {
        let certificates =
            object_store::Certificate::from_pem_bundle(&pem).map_err(|e| invalid_ca_bundle(options, &e))?;
        for certificate in certificates {
            client = client.with_root_certificate(certificate);
        }
    }
    let retry = RetryConfig { max_retries: 0, retry_timeout: options.request_timeout, ..RetryConfig::default() };
    Ok((client, retry))
}

/// A plain HTTP client for the requests `object_store` does not make (container creation, the OIDC token
/// exchange), with the same timeouts and trusted roots as the stores' clients.
///
/// # Errors
/// A CA bundle that cannot be read or parsed.
pub fn http_client(options: &BackendOptions) -> Result<reqwest::Client, BackendError> {
    let mut builder =
        reqwest::Client::builder().timeout(options.request_timeout).connect_timeout(options.request_timeout);
    if let Some(pem) = ca_bundle_pem(options)? {
        for certificate in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| invalid_ca_bundle(options, &e))? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|e| invalid_ca_bundle(options, &e))
}

async fn open_azure(container: &str, options: &BackendOptions) -> Result<(Arc<dyn ObjectStore>, String), BackendError> {
    use crate::store::azure_ad::{self, AzureSignIn};
    use object_store::azure::AzureConfigKey;

    let azure = &options.azure;
    let Some(account) = azure.account.clone() else {
        return Err(BackendError::Config(format!(
            "no Azure storage account for container {container:?}: set AZURE_STORAGE_ACCOUNT \
             (plugin: account_name) or AZURE_STORAGE_CONNECTION_STRING"
        )));
    };
    let authority_host = azure
        .ad
        .authority_host
        .as_deref()
        .map(|host| {
            endpoint_url(host, "Azure AD authority host", "AZURE_AUTHORITY_HOST or the plugin's azure_authority_host")
        })
        .transpose()?
        .map(|url| endpoint_text(&url));
    let msi_endpoint = azure
        .ad
        .msi_endpoint
        .as_deref()
        .map(|url| {
            endpoint_url(
                url,
                "Azure managed identity endpoint",
                "AZURE_MSI_ENDPOINT or the plugin's azure_msi_endpoint",
            )
        })
        .transpose()?;
    let endpoint_url = match &azure.endpoint {
        Some(endpoint) => {
            // A URL is used as given here; the plugin's step resolves its own with `account_url` first.
            let url = match endpoint {
                BlobEndpoint::Url(url) => url.clone(),
                BlobEndpoint::Suffix(_) => endpoint.account_url(&account),
            };
            endpoint_url(
                &url,
                "Azure blob endpoint",
                "--endpoint, AZURE_STORAGE_ENDPOINT, the connection string's BlobEndpoint, or the plugin's endpoint \
                 or AZURE_BLOB_STORAGE_URL",
            )?
        }
        None => endpoint_url(
            &format!("https://{account}.blob.core.windows.net"),
            "Azure blob endpoint",
            format!("the account name {account:?}"),
        )?,
    };
    let endpoint = endpoint_text(&endpoint_url);
    let description = format!("Azure container {container:?} (account {account:?} at {endpoint})");
    let sign_in = AzureSignIn::choose(azure)
        .map_err(|problem| BackendError::Config(format!("{description} cannot be signed in to: {problem}")))?;
    let (client, retry) = client_options(options, endpoint_url.scheme() == "http")?;
    let mut builder = MicrosoftAzureBuilder::new()
        .with_account(&account)
        .with_container_name(container)
        .with_endpoint(endpoint.clone())
        .with_client_options(client)
        .with_retry(retry);
    if let Some(host) = &authority_host {
        builder = builder.with_authority_host(host);
    }
    builder = match &sign_in {
        AzureSignIn::SharedKey(key) => builder.with_access_key(key.expose()),
        AzureSignIn::Sas(sas) => builder.with_config(AzureConfigKey::SasKey, sas.expose().trim_start_matches('?')),
        AzureSignIn::ClientSecret { client_id, tenant_id, secret } => {
            builder.with_client_secret_authorization(client_id, secret.expose(), tenant_id)
        }
        AzureSignIn::OidcToken { client_id, tenant_id, token } => {
            builder.with_credentials(Arc::new(azure_ad::ClientAssertionCredential::new(
                azure_ad::token_url(authority_host.as_deref(), tenant_id),
                client_id.clone(),
                token.clone(),
                http_client(options)?,
            )))
        }
        AzureSignIn::TokenFile { client_id, tenant_id, path } => {
            // object_store reports an unreadable file without its path or cause.
            std::fs::File::open(path).map_err(|e| {
                BackendError::Config(format!(
                    "cannot read the federated token file {} ({e}) for {description}: check AZURE_FEDERATED_TOKEN_FILE \
                     (plugin: azure_federated_token_file)",
                    path.display()
                ))
            })?;
            builder
                .with_client_id(client_id)
                .with_tenant_id(tenant_id)
                .with_federated_token_file(path.display().to_string())
                .with_config(AzureConfigKey::CredentialType, "workload_identity")
        }
        AzureSignIn::ManagedIdentity { client_id } => {
            if let Some(client_id) = client_id {
                builder = builder.with_client_id(client_id);
            }
            if let Some(url) = &msi_endpoint {
                builder = builder.with_msi_endpoint(url.as_str());
            }
            builder.with_config(AzureConfigKey::CredentialType, "managed_identity")
        }
    };
    let backend = builder.build().map_err(|source| BackendError::Client { store: description.clone(), source })?;
    let bearer = if sign_in.is_azure_ad() {
        azure_ad::check_sign_in(backend.credentials(), &sign_in, &description).await.map_err(BackendError::SignIn)?
    } else {
        None
    };
    if azure.create_container {
        let auth = match (&sign_in, &bearer) {
            (AzureSignIn::SharedKey(key), _) => Some(ContainerAuth::SharedKey(key.expose())),
            (_, Some(token)) => Some(ContainerAuth::Bearer(token)),
            // A SAS token cannot create containers: the save fails on its first write if the container is missing.
            _ => None,
        };
        if let Some(auth) = auth {
            crate::store::azure_admin::ensure_container_authorized(
                &endpoint_url,
                &account,
                auth,
                container,
                &http_client(options)?,
                options.request_timeout,
                &options.retry_policy(),
            )
            .await?;
        }
    }
    Ok((Arc::new(backend), description))
}

fn open_s3(bucket: &str, options: &BackendOptions) -> Result<(Arc<dyn ObjectStore>, String), BackendError> {
    use object_store::aws::AmazonS3ConfigKey;
    let s3 = &options.s3;
    let mut builder = AmazonS3Builder::new();
    let mut env_endpoint = None;
    for (name, value) in &s3.aws_env {
        if let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            let value = match key {
                AmazonS3ConfigKey::Endpoint | AmazonS3ConfigKey::S3Endpoint | AmazonS3ConfigKey::StsEndpoint => {
                    let url = endpoint_text(&endpoint_url(value.expose(), "S3 endpoint", name.as_str())?);
                    if key != AmazonS3ConfigKey::StsEndpoint {
                        env_endpoint = Some(url.clone());
                    }
                    url
                }
                _ => value.expose().to_string(),
            };
            builder = builder.with_config(key, value);
        }
    }
    builder = builder.with_bucket_name(bucket);
    if let Some(key) = &s3.access_key {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &s3.secret_key {
        builder = builder.with_secret_access_key(secret.expose());
    }
    if let Some(token) = &s3.session_token {
        builder = builder.with_token(token.expose());
    }
    if let Some(region) = &s3.region {
        builder = builder.with_region(region);
    }
    let endpoint = match &s3.endpoint {
        Some(endpoint) => {
            Some(endpoint_text(&endpoint_url(endpoint, "S3 endpoint", "--endpoint or the plugin's endpoint setting")?))
        }
        None => env_endpoint,
    };
    if let Some(endpoint) = &endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(path_style) = s3.path_style {
        builder = builder.with_virtual_hosted_style_request(!path_style);
    }
    if !matches!(s3.acl.as_str(), "" | "private") {
        return Err(BackendError::Config(format!(
            "S3 acl {:?} is not supported: chunkcache writes objects without an ACL, which S3 makes private (the \
             default acl); grant wider access with a bucket policy instead, and drop the acl setting",
            s3.acl
        )));
    }
    if let Some(encryption) = &s3.encryption {
        if !["AES256", "aws:kms", "aws:kms:dsse"].contains(&encryption.as_str()) {
            return Err(BackendError::Config(format!(
                "S3 encryption {encryption:?} is not supported: use AES256 (SSE-S3), aws:kms or aws:kms:dsse \
                 (SSE-KMS with the default KMS key), or leave the encryption setting unset"
            )));
        }
        let key: AmazonS3ConfigKey = "aws_server_side_encryption".parse().expect("object_store knows this key");
        builder = builder.with_config(key, encryption);
    }
    let description = match &endpoint {
        Some(endpoint) => format!("S3 bucket {bucket:?} at {endpoint}"),
        None => format!("S3 bucket {bucket:?}"),
    };
    // A web identity is the whole of the credentials: the token is exchanged for them without signing.
    if !matches!(s3.roles.first(), Some(AssumeRoleOptions { identity: RoleIdentity::WebIdentity(_), .. })) {
        s3_credentials_configured(s3, &description)?;
    }
    let (client, retry) = client_options(options, endpoint.as_deref().is_some_and(|e| e.starts_with("http://")))?;
    let mut builder = builder.with_client_options(client).with_retry(retry);
    if !s3.roles.is_empty() {
        builder = with_roles(builder, s3, options, &description)?;
    }
    let backend = builder.build().map_err(|source| BackendError::Client { store: description.clone(), source })?;
    Ok((Arc::new(backend), description))
}

/// `builder` with the credentials of the last of `s3.roles`, each role assumed with the credentials before it.
fn with_roles(
    builder: AmazonS3Builder,
    s3: &S3Options,
    options: &BackendOptions,
    description: &str,
) -> Result<AmazonS3Builder, BackendError> {
    use object_store::aws::AwsCredentialProvider;
    use object_store::client::{HttpConnector as _, ReqwestConnector};
    let variable = |name: &str| s3.aws_env.get(name).map(|value| value.expose().to_owned()).filter(|v| !v.is_empty());
    // object_store's own default, so that STS and S3 agree on the region when none is set.
    let region = s3
        .region
        .clone()
        .or_else(|| variable("AWS_REGION"))
        .or_else(|| variable("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_owned());
    let endpoint = match &s3.sts_endpoint {
        Some(endpoint) => endpoint_text(&endpoint_url(
            endpoint,
            "STS endpoint",
            "sts_endpoint (PLUGIN_STS_ENDPOINT) or AWS_STS_ENDPOINT",
        )?),
        None => format!("https://sts.{region}.amazonaws.com"),
    };
    let uri = endpoint.parse::<http::Uri>().map_err(|e| BackendError::InvalidEndpoint {
        what: "STS endpoint",
        value: endpoint.clone(),
        from: "sts_endpoint (PLUGIN_STS_ENDPOINT) or AWS_STS_ENDPOINT".into(),
        reason: format!("it is not a URL ({e})"),
    })?;
    let (client, _) = client_options(options, endpoint.starts_with("http://"))?;
    let client = ReqwestConnector::default()
        .connect(&client)
        .map_err(|source| BackendError::Client { store: format!("STS at {endpoint}"), source })?;
    let mut credentials: Option<AwsCredentialProvider> = None;
    for role in &s3.roles {
        let base = match (&role.identity, credentials.take()) {
            (RoleIdentity::WebIdentity(_), _) => None,
            (RoleIdentity::Signed { .. }, Some(before)) => Some(before),
            // The first role is assumed with what the bucket would otherwise use: the keys or the `AWS_*` chain.
            (RoleIdentity::Signed { .. }, None) => Some(Arc::clone(
                builder
                    .clone()
                    .build()
                    .map_err(|source| BackendError::Client { store: description.to_owned(), source })?
                    .credentials(),
            )),
        };
        credentials =
            Some(Arc::new(StsCredentialProvider::new(role.clone(), base, uri.clone(), region.clone(), client.clone())));
    }
    Ok(match credentials {
        Some(credentials) => builder.with_credentials(credentials),
        None => builder,
    })
}

/// `AWS_*` variables that give, or say where to find, S3 credentials. Without one of them (or the
/// plugin's `access_key`/`secret_key`), `object_store` falls back to EC2 instance metadata, which
/// off EC2 fails with a 403 that says nothing about what to set (issue 13); setting
/// `AWS_METADATA_ENDPOINT` opts into instance credentials explicitly.
const AWS_CREDENTIAL_SOURCES: [&str; 7] = [
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_SKIP_SIGNATURE",
    "AWS_METADATA_ENDPOINT",
    "AWS_IMDSV1_FALLBACK",
];

/// Refuses an S3 store that has no credentials configured, before any request is made.
fn s3_credentials_configured(s3: &S3Options, description: &str) -> Result<(), BackendError> {
    let set = |name: &str| s3.aws_env.get(name).is_some_and(|value| !value.expose().is_empty());
    let key_id = s3.access_key.as_deref().is_some_and(|key| !key.is_empty()) || set("AWS_ACCESS_KEY_ID");
    let secret = s3.secret_key.as_ref().is_some_and(|key| !key.expose().is_empty()) || set("AWS_SECRET_ACCESS_KEY");
    if (key_id && secret) || AWS_CREDENTIAL_SOURCES.iter().any(|name| set(name)) {
        return Ok(());
    }
    let missing = match (key_id, secret) {
        (true, false) => "an access key id but no secret access key",
        (false, true) => "a secret access key but no access key id",
        _ => "no credentials",
    };
    Err(BackendError::Config(format!(
        "{description} has {missing}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plugin: access_key and \
         secret_key), or AWS_PROFILE, AWS_WEB_IDENTITY_TOKEN_FILE or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI; to use \
         an EC2 instance role, set AWS_METADATA_ENDPOINT=http://169.254.169.254"
    )))
}

async fn open_gcs(bucket: &str, options: &BackendOptions) -> Result<(Arc<dyn ObjectStore>, String), BackendError> {
    let gcs = &options.gcs;
    let mut builder = GoogleCloudStorageBuilder::new().with_bucket_name(bucket);
    let endpoint = gcs
        .endpoint
        .as_deref()
        .map(|endpoint| {
            endpoint_url(
                endpoint,
                "GCS endpoint",
                "--endpoint, CHUNKCACHE_GCS_ENDPOINT or the plugin's endpoint setting",
            )
        })
        .transpose()?
        .map(|url| endpoint_text(&url));
    if let Some(endpoint) = &endpoint {
        builder = builder.with_base_url(endpoint);
    }
    let description = format!("GCS bucket {bucket:?}");
    if let Some(federation) = &gcs.workload_identity {
        // The fork's order: with all of its settings, workload identity federation is the credentials.
        let credentials = Arc::new(workload_identity_credential(federation, options)?);
        // Asked for now, so that a refused exchange fails the step at once, naming the call and Google's
        // answer; the token is cached and serves the first requests.
        credentials.token().await.map_err(|error| {
            BackendError::SignIn(format!("{} failed for {description}: {error}", federation.describe()))
        })?;
        builder = builder.with_credentials(credentials);
    } else if let Some(json) = &gcs.service_account_json {
        builder = builder.with_service_account_key(json.expose());
    } else if let Some(path) = &gcs.service_account_path {
        builder = builder.with_service_account_path(path.display().to_string());
    } else {
        // Without a service account, `object_store` tries gcloud's default credentials and then
        // instance metadata, which off Google Cloud fails with an error that says nothing about
        // what to set (issue 13).
        return Err(BackendError::Config(format!(
            "{description} has no credentials: set GOOGLE_SERVICE_ACCOUNT (or GOOGLE_APPLICATION_CREDENTIALS) to \
             the path of a service-account key file, or GOOGLE_SERVICE_ACCOUNT_KEY to its JSON (plugin: json_key); \
             the plugin can also use workload identity federation (project_number, pool_id, provider_id, \
             service_account_email and oidc_token_id)"
        )));
    }
    let (client, retry) = client_options(options, endpoint.as_deref().is_some_and(|e| e.starts_with("http://")))?;
    let backend = builder
        .with_client_options(client)
        .with_retry(retry)
        .build()
        .map_err(|source| BackendError::Client { store: description.clone(), source })?;
    Ok((Arc::new(backend), description))
}

/// The credential provider of a workload identity federation, with its endpoints checked.
fn workload_identity_credential(
    federation: &WorkloadIdentityOptions,
    options: &BackendOptions,
) -> Result<crate::store::gcp_workload_identity::WorkloadIdentityCredential, BackendError> {
    use crate::store::gcp_workload_identity::{self as wif, WorkloadIdentityCredential};
    let checked = |value: Option<&str>, default: &str, what: &'static str, from: &'static str| {
        let url = endpoint_url(value.unwrap_or(default), what, from)?;
        Ok::<_, BackendError>(endpoint_text(&url))
    };
    let sts = checked(
        federation.sts_endpoint.as_deref(),
        wif::DEFAULT_STS_ENDPOINT,
        "Google STS endpoint",
        "gcp_sts_endpoint (PLUGIN_GCP_STS_ENDPOINT)",
    )?;
    let iam = checked(
        federation.iam_credentials_endpoint.as_deref(),
        wif::DEFAULT_IAM_CREDENTIALS_ENDPOINT,
        "IAM Credentials endpoint",
        "gcp_iam_credentials_endpoint (PLUGIN_GCP_IAM_CREDENTIALS_ENDPOINT)",
    )?;
    // Both are absolute http(s) URLs with a host by now.
    let invalid = |what, value: &str, from: &str, e: url::ParseError| BackendError::InvalidEndpoint {
        what,
        value: value.to_owned(),
        from: from.to_owned(),
        reason: e.to_string(),
    };
    let token_url = wif::token_url(&sts)
        .map_err(|e| invalid("Google STS endpoint", &sts, "gcp_sts_endpoint (PLUGIN_GCP_STS_ENDPOINT)", e))?;
    let generate_url = wif::generate_access_token_url(&iam, &federation.service_account_email).map_err(|e| {
        invalid(
            "IAM Credentials endpoint",
            &iam,
            "gcp_iam_credentials_endpoint (PLUGIN_GCP_IAM_CREDENTIALS_ENDPOINT)",
            e,
        )
    })?;
    Ok(WorkloadIdentityCredential::new(federation.clone(), token_url, generate_url, http_client(options)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn default_store_follows_xdg_then_home() {
        assert_eq!(default_store_url(&env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])), "file:///x/chunkcache/store");
        assert_eq!(default_store_url(&env(&[("HOME", "/h")])), "file:///h/.cache/chunkcache/store");
        assert_eq!(default_store_url(&env(&[])), "file:///tmp/chunkcache/store");
    }

    #[tokio::test]
    async fn unknown_schemes_and_missing_credentials_are_explained() {
        let options = BackendOptions::default();
        let err = open("ftp://host/x", &options).await.unwrap_err().to_string();
        assert!(err.contains("az://CONTAINER/PREFIX"), "{err}");
        let err = open("az://c/p", &options).await.unwrap_err().to_string();
        assert!(err.contains("AZURE_STORAGE_ACCOUNT") && err.contains("account_name"), "{err}");
        let mut options = BackendOptions::default();
        options.azure.account = Some("acct".into());
        let err = open("az://c/p", &options).await.unwrap_err().to_string();
        assert!(err.contains("AZURE_STORAGE_KEY") && err.contains("\"acct\""), "{err}");
    }

    #[tokio::test]
    async fn a_mistyped_scheme_is_named_with_the_valid_ones() {
        let options = BackendOptions::default();
        let err = open("fiel:///x", &options).await.unwrap_err().to_string();
        assert!(err.contains("unknown scheme \"fiel\" (did you mean file://?)"), "{err}");
        assert!(err.contains("file, memory, az (or azure), s3 and gs"), "{err}");
        assert!(!err.contains("container or bucket name is missing"), "{err}");
        let err = open("gcs://bucket/ci", &options).await.unwrap_err().to_string();
        assert!(err.contains("did you mean gs://?"), "{err}");
        let err = open("ftp://host/x", &options).await.unwrap_err().to_string();
        assert!(err.contains("unknown scheme \"ftp\";") && !err.contains("did you mean"), "{err}");
        let err = open("memory://x", &options).await.unwrap_err().to_string();
        assert!(err.contains("write memory://"), "{err}");
        let err = open("s3:///x", &options).await.unwrap_err().to_string();
        assert!(err.contains("bucket name is missing"), "{err}");
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("fiel", "file"), 2);
        assert_eq!(edit_distance("gcs", "gs"), 1);
        assert_eq!(edit_distance("", "az"), 2);
        assert_eq!(edit_distance("azure", "azure"), 0);
    }

    fn s3_options(endpoint: Option<&str>, aws_env: &[(&str, &str)]) -> BackendOptions {
        let mut options = BackendOptions { max_retries: 0, ..BackendOptions::default() };
        options.s3 = S3Options {
            access_key: Some("id".into()),
            secret_key: Some(Secret::new("secret")),
            region: Some("us-east-1".into()),
            endpoint: endpoint.map(str::to_string),
            path_style: Some(true),
            aws_env: aws_env.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect(),
            ..S3Options::default()
        };
        options
    }

    #[tokio::test]
    async fn endpoints_without_a_scheme_are_refused_with_the_right_spelling() {
        let err = open("s3://b", &s3_options(Some("minio:9000"), &[])).await.unwrap_err().to_string();
        assert!(err.contains("invalid S3 endpoint \"minio:9000\""), "{err}");
        assert!(err.contains("--endpoint or the plugin's endpoint setting"), "{err}");
        assert!(err.contains("write http://minio:9000 (or https://minio:9000 for TLS)"), "{err}");

        let err = open("s3://b", &s3_options(None, &[("AWS_ENDPOINT_URL", "minio:9000")])).await.unwrap_err();
        assert!(err.to_string().contains("(from AWS_ENDPOINT_URL)"), "{err}");
        let err = open("s3://b", &s3_options(None, &[("AWS_ENDPOINT", "ftp://minio")])).await.unwrap_err();
        assert!(err.to_string().contains("(from AWS_ENDPOINT): the scheme \"ftp\" is not http or https"), "{err}");

        let mut options = BackendOptions::from_env(&env(&[
            ("AZURE_STORAGE_ACCOUNT", "acct"),
            ("AZURE_STORAGE_KEY", "c2VjcmV0"),
            ("AZURE_STORAGE_ENDPOINT", "azurite:10000"),
        ]))
        .unwrap();
        let err = open("az://c", &options).await.unwrap_err().to_string();
        assert!(err.contains("invalid Azure blob endpoint \"azurite:10000\""), "{err}");
        assert!(err.contains("AZURE_STORAGE_ENDPOINT") && err.contains("http://azurite:10000"), "{err}");
        options.azure.account = Some("bad account".into());
        options.azure.endpoint = None;
        let err = open("az://c", &options).await.unwrap_err().to_string();
        assert!(err.contains("(from the account name \"bad account\")"), "{err}");

        let options = BackendOptions::from_env(&env(&[("CHUNKCACHE_GCS_ENDPOINT", "localhost:4443")])).unwrap();
        let err = open("gs://b", &options).await.unwrap_err().to_string();
        assert!(err.contains("invalid GCS endpoint") && err.contains("CHUNKCACHE_GCS_ENDPOINT"), "{err}");
        assert!(err.contains("http://localhost:4443"), "{err}");
    }

    #[test]
    fn endpoint_urls_are_checked_and_normalised() {
        let ok = |value| endpoint_text(&endpoint_url(value, "S3 endpoint", "test").unwrap());
        assert_eq!(ok("http://minio:9000"), "http://minio:9000");
        assert_eq!(ok(" HTTPS://Example.com:443/ "), "https://example.com");
        assert_eq!(ok("http://127.0.0.1:10000/devstoreaccount1/"), "http://127.0.0.1:10000/devstoreaccount1");
        let err = |value| endpoint_url(value, "S3 endpoint", "test").unwrap_err().to_string();
        assert!(err("http://").contains("not a URL"), "{}", err("http://"));
        assert!(err("file:///x").contains("no host") || err("file:///x").contains("not http"));
        let secret = err("user:hunter2@minio:9000");
        assert!(!secret.contains("hunter2") && secret.contains("minio:9000"), "{secret}");
    }

    #[test]
    fn the_plugin_reads_a_scheme_less_endpoint_as_drone_cache_does() {
        assert_eq!(drone_cache_endpoint("minio:9000", false), "https://minio:9000");
        assert_eq!(drone_cache_endpoint(" 127.0.0.1:9000 ", true), "http://127.0.0.1:9000");
        assert_eq!(drone_cache_endpoint("https://s3.example.com", true), "https://s3.example.com");
        assert_eq!(drone_cache_endpoint("http://minio:9000", false), "http://minio:9000");
    }

    #[tokio::test]
    async fn odd_but_valid_endpoints_reach_the_network_instead_of_panicking() {
        // A trailing space and an upper-case scheme once reached object_store's request signing
        // as they were, where an invalid URI is a panic.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        for endpoint in [format!("HTTP://127.0.0.1:{port} "), format!("http://127.0.0.1:{port}/")] {
            let store = open("s3://bucket/ci", &s3_options(Some(&endpoint), &[])).await.unwrap();
            let err = store.config().await.unwrap_err().to_string();
            assert!(err.contains("cannot be reached"), "{endpoint:?}: {err}");
        }
    }

    #[tokio::test]
    async fn azure_endpoints_are_a_suffix_or_a_url_used_as_given() {
        let open_at = |endpoint| async move {
            let options = BackendOptions {
                azure: AzureOptions {
                    account: Some("acct".into()),
                    sas: Some(Secret::new("sv=2022-11-02&sig=x")),
                    endpoint,
                    create_container: false,
                    ..AzureOptions::default()
                },
                ..BackendOptions::default()
            };
            open("az://c", &options).await.unwrap().description().to_string()
        };
        let china = open_at(Some(BlobEndpoint::Suffix("blob.core.chinacloudapi.cn".into()))).await;
        assert!(china.contains("at https://acct.blob.core.chinacloudapi.cn"), "{china}");
        let default = open_at(None).await;
        assert!(default.contains("at https://acct.blob.core.windows.net"), "{default}");
        // The CLI's URLs are not given the plugin's emulator path: the step resolves that before opening.
        let bare = open_at(Some(BlobEndpoint::Url("http://127.0.0.1:10000/".into()))).await;
        assert!(bare.contains("at http://127.0.0.1:10000)"), "{bare}");
    }

    #[tokio::test]
    async fn ca_bundles_that_cannot_be_used_are_named_with_their_settings() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = s3_options(Some("http://127.0.0.1:9"), &[]);
        options.ca_bundle = Some(dir.path().join("missing.pem"));
        let err = open("s3://b", &options).await.unwrap_err().to_string();
        assert!(err.contains("cannot read the CA bundle") && err.contains("missing.pem"), "{err}");
        assert!(err.contains("--ca-bundle, CHUNKCACHE_CA_BUNDLE or the plugin's ca_bundle"), "{err}");
        let not_pem = dir.path().join("key.der");
        std::fs::write(&not_pem, b"\x30\x82binary").unwrap();
        options.ca_bundle = Some(not_pem);
        let err = open("s3://b", &options).await.unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }

    #[test]
    fn azure_ad_variables_are_read_by_the_azure_sdks_names() {
        let options = BackendOptions::from_env(&env(&[
            ("AZURE_CLIENT_ID", "client"),
            ("AZURE_STORAGE_CLIENT_SECRET", "s3cret"),
            ("AZURE_TENANT_ID", "tenant"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/azure/tokens/azure-identity-token"),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/"),
            ("AZURE_USE_MSI", "true"),
        ]))
        .unwrap();
        let ad = &options.azure.ad;
        assert_eq!((ad.client_id.as_deref(), ad.tenant_id.as_deref()), (Some("client"), Some("tenant")));
        assert_eq!(ad.client_secret.as_ref().map(Secret::expose), Some("s3cret"));
        assert!(ad.federated_token_file.is_some() && ad.managed_identity && ad.oidc_token.is_none());
        assert_eq!(ad.authority_host.as_deref(), Some("https://login.microsoftonline.us/"));
        assert!(!format!("{options:?}").contains("s3cret"));
        let err = BackendOptions::from_env(&env(&[("AZURE_USE_MSI", "maybe")])).unwrap_err().to_string();
        assert!(err.contains("AZURE_USE_MSI=\"maybe\" is not a boolean"), "{err}");
    }

    #[test]
    fn connection_strings_fill_azure_settings_without_printing_keys() {
        let options = BackendOptions::from_env(&env(&[(
            "AZURE_STORAGE_CONNECTION_STRING",
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;EndpointSuffix=core.chinacloudapi.cn",
        )]))
        .unwrap();
        assert_eq!(options.azure.account.as_deref(), Some("acct"));
        assert_eq!(options.azure.key.as_ref().map(Secret::expose), Some("c2VjcmV0"));
        assert_eq!(options.azure.endpoint, Some(BlobEndpoint::Url("https://acct.blob.core.chinacloudapi.cn".into())));
        assert!(!format!("{options:?}").contains("c2VjcmV0"));
        let dev = BackendOptions::from_env(&env(&[("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")]))
            .unwrap();
        assert_eq!(dev.azure.endpoint, Some(BlobEndpoint::Url("http://127.0.0.1:10000/devstoreaccount1".into())));
        assert!(BackendOptions::from_env(&env(&[("AZURE_STORAGE_CONNECTION_STRING", "garbage")])).is_err());
    }
}
