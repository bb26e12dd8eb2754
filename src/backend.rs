//! Store URLs: which `object_store` backend a URL names, its credentials, and how it is built.
//!
//! | URL | backend | credentials |
//! |---|---|---|
//! | `file:///abs/path` or a plain path | local folder (created if missing) | — |
//! | `memory://` | in-process memory (tests) | — |
//! | `az://CONTAINER/PREFIX`, `azure://…` | Azure Blob Storage, Azurite | account key, SAS, connection string |
//! | `s3://BUCKET/PREFIX` | S3 and compatibles (moto, MinIO) | `AWS_*` |
//! | `gs://BUCKET/PREFIX` | Google Cloud Storage | service-account JSON |
//!
//! Every store retries transient failures (throttling, 5xx, timeouts, dropped connections, bodies
//! cut short) with backoff, in one place: [`crate::retry::RetryStore`], which [`Store::with_retry`]
//! puts over every backend. `object_store`'s own HTTP retries are turned off so that nothing is
//! retried twice. Remote clients apply a per-request timeout, and keep idle pooled connections for
//! less than Azurite's 5 s keep-alive (it closes idle connections and the next request on them
//! fails). Descriptions in messages name the container and account, never a credential.

use std::collections::BTreeMap;
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

use crate::retry::RetryPolicy;
use crate::secret::Secret;
use crate::store::Store;

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
    Container(#[from] crate::azure_admin::AzureAdminError),
}

/// Azure Blob Storage settings.
#[derive(Clone, Debug, Default)]
pub struct AzureOptions {
    /// Storage account name.
    pub account: Option<String>,
    /// Shared key (what drone-cache's `account_key` is).
    pub key: Option<Secret>,
    /// SAS token (query string, with or without the leading `?`).
    pub sas: Option<Secret>,
    /// Blob endpoint: `https://ACCOUNT.blob.core.windows.net` by default; Azurite's is
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: Option<String>,
    /// Create the container if it is missing (needs the shared key).
    pub create_container: bool,
}

/// S3 settings (anything not set here comes from the `AWS_*` variables).
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    /// Access key id.
    pub access_key: Option<String>,
    /// Secret access key.
    pub secret_key: Option<Secret>,
    /// Region.
    pub region: Option<String>,
    /// Endpoint for S3-compatible servers.
    pub endpoint: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted.
    pub path_style: Option<bool>,
    /// Raw `AWS_*` variables, passed to `object_store`'s S3 configuration.
    pub aws_env: BTreeMap<String, Secret>,
}

/// Google Cloud Storage settings.
#[derive(Clone, Debug, Default)]
pub struct GcsOptions {
    /// Service-account key JSON.
    pub service_account_json: Option<Secret>,
    /// Path of a service-account key file.
    pub service_account_path: Option<PathBuf>,
    /// Endpoint (an emulator).
    pub endpoint: Option<String>,
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
}

impl Default for BackendOptions {
    fn default() -> Self {
        Self {
            azure: AzureOptions { create_container: true, ..AzureOptions::default() },
            s3: S3Options::default(),
            gcs: GcsOptions::default(),
            request_timeout: Duration::from_secs(60),
            max_retries: 4,
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
    /// `AZURE_STORAGE_CONNECTION_STRING`; `AWS_*`; `GOOGLE_SERVICE_ACCOUNT(_KEY)`,
    /// `GOOGLE_APPLICATION_CREDENTIALS`, `CHUNKCACHE_GCS_ENDPOINT`.
    ///
    /// # Errors
    /// A malformed connection string.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Self, BackendError> {
        let mut options = Self::default();
        let azure = &mut options.azure;
        azure.account = first(env, &["AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT"]).cloned();
        azure.key = first(env, &["AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_KEY"]).map(Secret::new);
        azure.sas = first(env, &["AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_SAS_KEY"]).map(Secret::new);
        azure.endpoint = first(env, &["AZURE_STORAGE_ENDPOINT", "AZURE_STORAGE_BLOB_ENDPOINT"]).cloned();
        if let Some(connection) = first(env, &["AZURE_STORAGE_CONNECTION_STRING"]) {
            apply_connection_string(azure, connection)?;
        }
        options.s3.aws_env = env
            .iter()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
            .collect();
        let gcs = &mut options.gcs;
        gcs.service_account_json = first(env, &["GOOGLE_SERVICE_ACCOUNT_KEY"]).map(Secret::new);
        gcs.service_account_path =
            first(env, &["GOOGLE_SERVICE_ACCOUNT", "GOOGLE_APPLICATION_CREDENTIALS"]).map(PathBuf::from);
        gcs.endpoint = first(env, &["CHUNKCACHE_GCS_ENDPOINT"]).cloned();
        Ok(options)
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
                azure.endpoint.get_or_insert_with(|| value.to_string());
            }
            "DefaultEndpointsProtocol" => protocol = value.to_string(),
            "EndpointSuffix" => suffix = Some(value.to_string()),
            "UseDevelopmentStorage" if value.eq_ignore_ascii_case("true") => {
                azure.account.get_or_insert_with(|| AZURITE_ACCOUNT.to_string());
                azure.key.get_or_insert_with(|| Secret::new(AZURITE_KEY));
                azure.endpoint.get_or_insert_with(|| format!("http://127.0.0.1:10000/{AZURITE_ACCOUNT}"));
            }
            _ => {}
        }
    }
    if let (None, Some(suffix), Some(account)) = (&azure.endpoint, suffix, &azure.account) {
        azure.endpoint = Some(format!("{protocol}://{account}.blob.{suffix}"));
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

/// Opens the store a URL names. For Azure with a shared key, a missing container is created
/// (as drone-cache does) unless `create_container` is off.
///
/// # Errors
/// [`BackendError`] with a message that says which URLs and credentials are accepted.
pub async fn open(url: &str, options: &BackendOptions) -> Result<Store, BackendError> {
    let invalid = |reason: &str| BackendError::InvalidUrl { url: url.to_string(), reason: reason.to_string() };
    if url == "memory://" {
        return Ok(Store::with_retry(Arc::new(InMemory::new()), "memory://", options.retry_policy()));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return open_local(Path::new(url), options);
    };
    if scheme == "file" {
        return open_local(Path::new(rest), options);
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    if bucket.is_empty() {
        return Err(invalid("the container or bucket name is missing, e.g. az://my-container/ci-cache"));
    }
    let (backend, description): (Arc<dyn ObjectStore>, String) = match scheme {
        "az" | "azure" => open_azure(bucket, options).await?,
        "s3" => open_s3(bucket, options)?,
        "gs" => open_gcs(bucket, options)?,
        other => {
            return Err(invalid(&format!(
                "unknown scheme {other:?}; use file:///PATH, az://CONTAINER/PREFIX, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX"
            )));
        }
    };
    let description = if prefix.is_empty() { description } else { format!("{description} under {prefix:?}") };
    let backend: Arc<dyn ObjectStore> =
        if prefix.is_empty() { backend } else { Arc::new(PrefixStore::new(backend, prefix)) };
    Ok(Store::with_retry(backend, description, options.retry_policy()))
}

fn open_local(path: &Path, options: &BackendOptions) -> Result<Store, BackendError> {
    if path.as_os_str().is_empty() {
        return Err(BackendError::InvalidUrl { url: String::new(), reason: "the path is empty".into() });
    }
    let local = |source| BackendError::Local { path: path.to_path_buf(), source };
    let path = std::path::absolute(path).map_err(local)?;
    std::fs::create_dir_all(&path).map_err(local)?;
    let backend = LocalFileSystem::new_with_prefix(&path).map_err(|e| local(std::io::Error::other(e)))?;
    Ok(Store::with_retry(Arc::new(backend), format!("file://{}", path.display()), options.retry_policy()))
}

/// The HTTP client settings of every remote backend. `object_store`'s own retries are off: every
/// retry decision is [`crate::retry::RetryStore`]'s, so no request is retried by two loops at once.
fn client_options(options: &BackendOptions, allow_http: bool) -> (ClientOptions, RetryConfig) {
    let client = ClientOptions::new()
        .with_allow_http(allow_http)
        .with_timeout(options.request_timeout)
        .with_connect_timeout(Duration::from_secs(5))
        .with_pool_idle_timeout(Duration::from_secs(3));
    let retry = RetryConfig { max_retries: 0, retry_timeout: options.request_timeout, ..RetryConfig::default() };
    (client, retry)
}

async fn open_azure(container: &str, options: &BackendOptions) -> Result<(Arc<dyn ObjectStore>, String), BackendError> {
    let azure = &options.azure;
    let Some(account) = azure.account.clone() else {
        return Err(BackendError::Config(format!(
            "no Azure storage account for container {container:?}: set AZURE_STORAGE_ACCOUNT \
             (plugin: account_name) or AZURE_STORAGE_CONNECTION_STRING"
        )));
    };
    let endpoint = azure.endpoint.clone().unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"));
    let endpoint_url = url::Url::parse(&endpoint).map_err(|e| {
        BackendError::Config(format!(
            "Azure blob endpoint {endpoint:?} is not a URL ({e}); e.g. https://{account}.blob.core.windows.net"
        ))
    })?;
    let description = format!("Azure container {container:?} (account {account:?} at {endpoint})");
    let (client, retry) = client_options(options, endpoint_url.scheme() == "http");
    let mut builder = MicrosoftAzureBuilder::new()
        .with_account(&account)
        .with_container_name(container)
        .with_endpoint(endpoint.clone())
        .with_client_options(client)
        .with_retry(retry);
    builder = match (&azure.key, &azure.sas) {
        (Some(key), _) => builder.with_access_key(key.expose()),
        (None, Some(sas)) => {
            builder.with_config(object_store::azure::AzureConfigKey::SasKey, sas.expose().trim_start_matches('?'))
        }
        (None, None) => {
            return Err(BackendError::Config(format!(
                "no credentials for {description}: set AZURE_STORAGE_KEY (plugin: account_key) or \
                 AZURE_STORAGE_SAS_TOKEN, or AZURE_STORAGE_CONNECTION_STRING"
            )));
        }
    };
    let backend = builder.build().map_err(|source| BackendError::Client { store: description.clone(), source })?;
    if let (Some(key), true) = (&azure.key, azure.create_container) {
        crate::azure_admin::ensure_container_with(
            &endpoint_url,
            &account,
            key.expose(),
            container,
            options.request_timeout,
            &options.retry_policy(),
        )
        .await?;
    }
    Ok((Arc::new(backend), description))
}

fn open_s3(bucket: &str, options: &BackendOptions) -> Result<(Arc<dyn ObjectStore>, String), BackendError> {
    let s3 = &options.s3;
    let mut builder = AmazonS3Builder::new();
    for (name, value) in &s3.aws_env {
        if let Ok(key) = name.to_ascii_lowercase().parse::<object_store::aws::AmazonS3ConfigKey>() {
            builder = builder.with_config(key, value.expose());
        }
    }
    builder = builder.with_bucket_name(bucket);
    if let Some(key) = &s3.access_key {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &s3.secret_key {
        builder = builder.with_secret_access_key(secret.expose());
    }
    if let Some(region) = &s3.region {
        builder = builder.with_region(region);
    }
    let endpoint = s3.endpoint.clone().or_else(|| s3.aws_env.get("AWS_ENDPOINT_URL").map(|e| e.expose().to_string()));
    if let Some(endpoint) = &endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(path_style) = s3.path_style {
        builder = builder.with_virtual_hosted_style_request(!path_style);
    }
    let description = match &endpoint {
        Some(endpoint) => format!("S3 bucket {bucket:?} at {endpoint}"),
        None => format!("S3 bucket {bucket:?}"),
    };
    let (client, retry) = client_options(options, endpoint.as_deref().is_some_and(|e| e.starts_with("http://")));
    let backend = builder
        .with_client_options(client)
        .with_retry(retry)
        .build()
        .map_err(|source| BackendError::Client { store: description.clone(), source })?;
    Ok((Arc::new(backend), description))
}

fn open_gcs(bucket: &str, options: &BackendOptions) -> Result<(Arc<dyn ObjectStore>, String), BackendError> {
    let gcs = &options.gcs;
    let mut builder = GoogleCloudStorageBuilder::new().with_bucket_name(bucket);
    if let Some(json) = &gcs.service_account_json {
        builder = builder.with_service_account_key(json.expose());
    } else if let Some(path) = &gcs.service_account_path {
        builder = builder.with_service_account_path(path.display().to_string());
    }
    if let Some(endpoint) = &gcs.endpoint {
        builder = builder.with_base_url(endpoint);
    }
    let description = format!("GCS bucket {bucket:?}");
    let (client, retry) = client_options(options, gcs.endpoint.as_deref().is_some_and(|e| e.starts_with("http://")));
    let backend = builder
        .with_client_options(client)
        .with_retry(retry)
        .build()
        .map_err(|source| BackendError::Client { store: description.clone(), source })?;
    Ok((Arc::new(backend), description))
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

    #[test]
    fn connection_strings_fill_azure_settings_without_printing_keys() {
        let options = BackendOptions::from_env(&env(&[(
            "AZURE_STORAGE_CONNECTION_STRING",
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;EndpointSuffix=core.chinacloudapi.cn",
        )]))
        .unwrap();
        assert_eq!(options.azure.account.as_deref(), Some("acct"));
        assert_eq!(options.azure.key.as_ref().map(Secret::expose), Some("c2VjcmV0"));
        assert_eq!(options.azure.endpoint.as_deref(), Some("https://acct.blob.core.chinacloudapi.cn"));
        assert!(!format!("{options:?}").contains("c2VjcmV0"));
        let dev = BackendOptions::from_env(&env(&[("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")]))
            .unwrap();
        assert_eq!(dev.azure.endpoint.as_deref(), Some("http://127.0.0.1:10000/devstoreaccount1"));
        assert!(BackendOptions::from_env(&env(&[("AZURE_STORAGE_CONNECTION_STRING", "garbage")])).is_err());
    }
}
