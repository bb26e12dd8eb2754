//! Plugin-step settings: the `PLUGIN_*` environment variables of a Drone/Harness plugin step, parsed into a
//! validated [`PluginSettings`].
//!
//! chunkcache is a drop-in for the `meltwater/drone-cache` plugin, so the setting names, the extra environment
//! aliases and the defaults are drone-cache's (its `main.go` flag table), and those of its Harness fork
//! (`drone-plugins/drone-meltwater-cache`: the Azure AD sign-in settings, for one). A few settings are
//! chunkcache's own extensions (`restore_keys`, `exclude`, `gradle_default_excludes`, `sas_token`, the Azure AD
//! sign-ins the fork lacks, `ca_bundle`, and `gc` with its settings); each says so in its docs.
//!
//! The parser is pure: [`PluginSettings::from_env`] reads a map that the caller builds, never the process
//! environment, so tests pass maps and the binary passes `std::env::vars()`.
//!
//! Conventions, as drone-cache's CLI library (urfave/cli) applies them:
//! - Drone turns a YAML list into a comma-separated value; lists are split on `,`, trimmed, and empty items
//!   dropped.
//! - When several variables name one setting (`PLUGIN_ACCOUNT_KEY`, then `AZURE_ACCOUNT_KEY`), the first one
//!   that is set wins. Unlike urfave/cli, an empty value counts as unset, so `PLUGIN_OVERRIDE=""` keeps the
//!   default instead of silently turning into `false`.
//! - Secrets are held in [`Secret`], whose `Debug` and `Display` print `***`, so that logging the settings,
//!   even with `debug`, never leaks a key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Glob patterns for files in a Gradle user home (`~/.gradle`, or its `caches/` folder) that belong to the
/// process or machine that wrote them, and so must not be saved into a shared cache.
///
/// They apply when `gradle_default_excludes` is true (the default), in addition to `exclude`. Each pattern is
/// matched against the path of an entry *relative to its mount root*, with `/` separators, using
/// [`EXCLUDE_MATCH_OPTIONS`]: `*` stays within one path component and `**` spans any number of them. The
/// patterns are written so that they work whether the mount is the Gradle user home itself or its `caches/`
/// folder, as in the Harness Azure example (`mount: <GRADLE_HOME>/caches/`).
///
/// Sources: Gradle's docs on copying a dependency cache, the cleanup step of GitHub's `actions/cache` Gradle
/// example (`rm -f ~/.gradle/caches/modules-2/modules-2.lock ~/.gradle/caches/modules-2/gc.properties`) and
/// `gradle/actions` (`setup-gradle`), which always deletes `caches/*/cc-keystore` before saving.
///
/// They apply only to a mount [`gradle_layout`] recognises as a Gradle user home or its `caches/` folder: `**/*.lock`
/// would also match lock files of other tools (`yarn.lock`, `Cargo.lock`) in any other mount.
pub const GRADLE_DEFAULT_EXCLUDES: &[&str] = &[
    // Cross-process lock files (`modules-2/modules-2.lock`, `jars-9/jars-9.lock`, …): they belong to the
    // process that held them; a restored copy describes a lock nobody holds.
    "**/*.lock",
    // Records when Gradle last cleaned a cache folder; restoring a stale one only confuses Gradle's own cleanup
    // schedule, which is why GitHub's Gradle caching example deletes it before saving.
    "**/gc.properties",
    // `caches/journal-1/`: the access-time journal of Gradle's cache cleanup; it is rewritten by every build, so
    // saving it makes every save upload a change for no benefit.
    "**/journal-1/**",
    // `caches/<version>/cc-keystore/`: the key that encrypts configuration-cache entries, which may hold secrets;
    // `gradle/actions` never saves it.
    "**/cc-keystore/**",
    // `daemon/` of a Gradle user home: daemon logs and the daemon registry, which describe processes of the
    // machine that saved the cache.
    "daemon/**",
    // Daemon logs (`daemon/<version>/daemon-<pid>.out.log`) when the mount root is above the Gradle user home.
    "**/daemon/*/*.out.log",
    // `.tmp/` of a Gradle user home: scratch files of running Gradle processes.
    ".tmp/**",
];

/// Folders only Gradle makes: `modules-2` (the dependency cache, named so since Gradle 1.x) under a user
/// home's `caches/`, and `wrapper/dists` (the distributions the wrapper downloaded).
const GRADLE_MARKERS: [&str; 3] = ["caches/modules-2", "wrapper/dists", "modules-2"];

/// Whether `mount` is a Gradle user home (`caches/modules-2` or `wrapper/dists` inside) or its `caches/`
/// folder (`modules-2` inside), and the folder that says so: [`GRADLE_DEFAULT_EXCLUDES`] apply to such mounts only.
pub fn gradle_layout(mount: &std::path::Path) -> Option<&'static str> {
    GRADLE_MARKERS.into_iter().find(|marker| mount.join(marker).is_dir())
}

/// How the patterns of `exclude` and [`GRADLE_DEFAULT_EXCLUDES`] are matched: case-sensitive, `*` and `?` never
/// match `/` (only `**` spans folders), and a leading `.` needs no literal match.
pub const EXCLUDE_MATCH_OPTIONS: glob::MatchOptions =
    glob::MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };

/// drone-cache's default for `backend_operation_timeout` (`storage.DefaultOperationTimeout`): 3 minutes.
pub const DEFAULT_BACKEND_OPERATION_TIMEOUT: Duration = Duration::from_secs(3 * 60);

/// drone-cache's default for `filesystem_cache_root`.
pub const DEFAULT_FILESYSTEM_CACHE_ROOT: &str = "/tmp/cache";

/// drone-cache's default for `compression_level` (`archive.DefaultCompressionLevel`): `-1`, the codec's own
/// default level.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = -1;

/// drone-cache's default for `AZURE_BLOB_MAX_RETRY_REQUESTS` (`azure.DefaultBlobMaxRetryRequests`).
pub const DEFAULT_AZURE_MAX_RETRY_REQUESTS: u32 = 4;

/// drone-cache's default S3 and GCS object ACL.
pub const DEFAULT_ACL: &str = "private";

use crate::core::gc::DEFAULT_GRACE_MS;
pub use crate::core::secret::Secret;
use crate::core::units;
use crate::store::backend::{AzureAdOptions, AzureOptions, BlobEndpoint, GcsOptions, S3Options};
use crate::store::gcp_workload_identity::WorkloadIdentityOptions;
use crate::store::sts::{AssumeRoleOptions, DEFAULT_SESSION_NAME, RoleIdentity};

/// What the step does: `restore: true`, `rebuild: true` or `gc: true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepMode {
    /// `restore: true`: fetch the cache into the mounts.
    Restore,
    /// `rebuild: true`: save the mounts into the cache.
    Rebuild,
    /// `gc: true`: run `chunkcache gc` on the store (a scheduled pipeline's step). chunkcache's extension.
    Gc,
}

/// What a `gc: true` step does: the flags of `chunkcache gc`, as settings. chunkcache's extension. GC covers
/// the whole container or bucket, every repository's keys; keys are matched as stored, with their
/// `remote_root` namespace (by default the repository name: `my-repo/main-…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcSettings {
    /// `max_unused` (`PLUGIN_MAX_UNUSED`): expire keys neither saved nor restored for this long, in ms
    /// (written `14d`, `36h`, `90m`).
    pub max_unused_ms: Option<u64>,
    /// `max_size` (`PLUGIN_MAX_SIZE`): then expire the least recently used keys until the rest fit in this
    /// many bytes (written `500G`, `2T`).
    pub max_size: Option<u64>,
    /// `keep` (`PLUGIN_KEEP`): globs of keys that never expire (`*` stops at `/`, `**` crosses it).
    pub keep: Vec<String>,
    /// `grace` (`PLUGIN_GRACE`), default 24h: how long a pack stays condemned before it is deleted.
    pub grace_ms: u64,
    /// `dry_run` (`PLUGIN_DRY_RUN`): report what would be expired and deleted, change nothing.
    pub dry_run: bool,
}

impl Default for GcSettings {
    fn default() -> Self {
        Self { max_unused_ms: None, max_size: None, keep: Vec::new(), grace_ms: DEFAULT_GRACE_MS, dry_run: false }
    }
}

/// The storage backend (`backend`). drone-cache's default is [`Backend::S3`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Azure Blob Storage (`azure`).
    Azure,
    /// Amazon S3 or an S3-compatible store such as MinIO (`s3`). drone-cache's default.
    #[default]
    S3,
    /// Google Cloud Storage (`gcs`).
    Gcs,
    /// A local folder, usually a volume shared between builds (`filesystem`).
    Filesystem,
}

impl Backend {
    /// The setting values chunkcache accepts, in the order error messages list them.
    pub const NAMES: &'static [&'static str] = &["azure", "s3", "gcs", "filesystem"];

    /// The setting value that selects this backend.
    pub fn name(self) -> &'static str {
        match self {
            Self::Azure => "azure",
            Self::S3 => "s3",
            Self::Gcs => "gcs",
            Self::Filesystem => "filesystem",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `archive_format` setting. drone-cache writes one tar archive per mount; chunkcache stores chunks, so
/// the format only picks the chunk codec: [`ArchiveFormat::Tar`] stores chunks raw, the others compress them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// `tar`, drone-cache's default: no compression.
    #[default]
    Tar,
    /// `gzip`: compressed. chunkcache compresses chunks with zstd, which reads faster for the same ratio.
    Gzip,
    /// `zstd`: compressed with zstd.
    Zstd,
}

impl ArchiveFormat {
    /// The setting values accepted, in the order error messages list them.
    pub const NAMES: &'static [&'static str] = &["tar", "gzip", "zstd"];

    /// The setting value that selects this format.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tar => "tar",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }

    /// Whether chunks are compressed.
    pub fn is_compressed(self) -> bool {
        !matches!(self, Self::Tar)
    }
}

impl fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Azure Blob Storage settings: the store's [`AzureOptions`] plus what only the plugin chooses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureSettings {
    /// The account and how to reach it:
    /// - `account`: `account_name` (`PLUGIN_ACCOUNT_NAME`, `AZURE_ACCOUNT_NAME`);
    /// - `key`: `account_key` (`PLUGIN_ACCOUNT_KEY`, `AZURE_ACCOUNT_KEY`);
    /// - `sas`: a SAS token instead of an account key (`PLUGIN_SAS_TOKEN`, `AZURE_SAS_TOKEN`). chunkcache's
    ///   extension: the released drone-cache has no such setting (a later drone-cache Azure backend reads one
    ///   that Harness passes as `AZURE_SAS_TOKEN`);
    /// - `endpoint`: always set, to `endpoint` (`PLUGIN_ENDPOINT`) when the backend is Azure, else
    ///   `AZURE_BLOB_STORAGE_URL`, else `blob.core.windows.net`;
    /// - `create_container`: left off here; the step turns it on for a rebuild;
    /// - `ad`: Azure AD sign-in, the Harness fork's settings and the Azure SDKs' variables:
    ///   `azure_client_id` (`PLUGIN_AZURE_CLIENT_ID`, `AZURE_CLIENT_ID`, `CLIENT_ID`), `azure_client_secret`
    ///   (`PLUGIN_AZURE_CLIENT_SECRET`, `AZURE_CLIENT_SECRET`, `CLIENT_SECRET`), `azure_tenant_id`
    ///   (`PLUGIN_AZURE_TENANT_ID`, `AZURE_TENANT_ID`, `TENANT_ID`) and `oidc_token_id` (`PLUGIN_OIDC_TOKEN_ID`,
    ///   the OIDC token itself, as Harness passes it) from the fork; chunkcache's `azure_federated_token_file`
    ///   (`PLUGIN_AZURE_FEDERATED_TOKEN_FILE`, `AZURE_FEDERATED_TOKEN_FILE`), `azure_use_msi`
    ///   (`PLUGIN_AZURE_USE_MSI`, `AZURE_USE_MSI`), `azure_msi_endpoint` (`PLUGIN_AZURE_MSI_ENDPOINT`,
    ///   `AZURE_MSI_ENDPOINT`) and `azure_authority_host` (`PLUGIN_AZURE_AUTHORITY_HOST`, `AZURE_AUTHORITY_HOST`).
    ///   [`crate::store::azure_ad::AzureSignIn::choose`] picks the flow, in the fork's order.
    pub options: AzureOptions,
    /// `container` (`PLUGIN_CONTAINER`, `PLUGIN_BLOB_CONTAINER_NAME`, `AZURE_CONTAINER_NAME`, `AZURE_CONTAINER`),
    /// lowercased as the Harness fork does (Azure container names are lowercase). When unset, the
    /// plugin takes the first path segment of the cache key, as the Harness page describes.
    pub container: Option<String>,
    /// `AZURE_BLOB_MAX_RETRY_REQUESTS`, default 4.
    pub max_retry_requests: u32,
}

/// When a rebuild step saves nothing, so that pull requests and feature branches restore the main
/// branch's cache without evicting it (`gradle/actions`' `cache-read-only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOnly {
    /// Always save (the default).
    Never,
    /// Never save (`true`).
    Always,
    /// Save only on the repository's default branch (`DRONE_REPO_BRANCH`), and never for a pull
    /// request (`not-default-branch`).
    OffDefaultBranch,
}

/// How much the plugin logs: each level includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// What the step did (the default).
    Info,
    /// Also the effective settings.
    Debug,
}

/// How the plugin's log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `warning: …`, `error: …` and plain lines for people (the default).
    Plain,
    /// drone-cache's `level=info msg="…"`.
    Logfmt,
    /// One JSON object per line: `{"level":"info","msg":"…"}`.
    Json,
}

impl LogFormat {
    /// `log_format` (`PLUGIN_LOG_FORMAT`, `LOG_FORMAT`) alone, so that even a step whose other settings
    /// are invalid says so in the format asked for: plain when unset, `json`, else logfmt (as drone-cache).
    pub fn from_env(env: &BTreeMap<String, String>) -> Self {
        let format = EnvReader { env }.string(LOG_FORMAT).map(|format| format.to_ascii_lowercase());
        match format.as_deref() {
            None => Self::Plain,
            Some("json") => Self::Json,
            Some(_) => Self::Logfmt,
        }
    }
}

/// Every setting of a plugin step, parsed and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSettings {
    /// `restore: true`, `rebuild: true` or `gc: true`; `None` when none is set (drone-cache then does
    /// nothing).
    pub mode: Option<StepMode>,
    /// What a `gc: true` step does.
    pub gc: GcSettings,
    /// `mount`: the folders (or files) to cache, relative to `local_root`.
    pub mounts: Vec<String>,
    /// `cache_key`: a Go `text/template` (see [`crate::plugin::template`]); `None` when unset or empty, in
    /// which case drone-cache keys the cache by the md5 of the branch name.
    pub cache_key: Option<String>,
    /// `auto_cache` (`PLUGIN_AUTO_CACHE`), the Harness fork's Cache Intelligence: detect the build tools in the
    /// workspace, cache their folders and key the cache by the files that define their dependencies
    /// ([`crate::plugin::auto`]). `mount` adds folders to the detected ones; `cache_key` replaces the derived key.
    pub auto_cache: bool,
    /// `restore_keys`: key templates tried in order when `cache_key` has no entry. chunkcache's extension. Like
    /// every list, it is split on commas, so a template in it cannot contain one.
    pub restore_keys: Vec<String>,
    /// `backend`, default `s3` as in drone-cache.
    pub backend: Backend,
    /// `archive_format`, default `tar`.
    pub archive_format: ArchiveFormat,
    /// `compression_level`, default `-1` (the codec's default).
    pub compression_level: i32,
    /// `override`, default true: save even when the key already exists.
    pub override_existing: bool,
    /// `exit_code` (`PLUGIN_EXIT_CODE`, `EXIT_CODE`), default false: fail the step on a cache miss or error
    /// instead of logging it and exiting 0.
    pub exit_code: bool,
    /// `skip_symlinks` (`PLUGIN_SKIP_SYMLINKS`, `SKIP_SYMLINKS`).
    pub skip_symlinks: bool,
    /// `debug` (`PLUGIN_DEBUG`, `DEBUG`).
    pub debug: bool,
    /// `local_root`: the folder that mounts are relative to; `None` means the working directory.
    pub local_root: Option<PathBuf>,
    /// `remote_root`: the prefix under which keys are stored; `None` means the repository name.
    pub remote_root: Option<String>,
    /// `filesystem_cache_root` (`PLUGIN_FILESYSTEM_CACHE_ROOT`, `FILESYSTEM_CACHE_ROOT`), default `/tmp/cache`.
    pub filesystem_cache_root: PathBuf,
    /// `backend_operation_timeout` (`PLUGIN_BACKEND_OPERATION_TIMEOUT`, `BACKEND_OPERATION_TIMEOUT`), a Go
    /// duration such as `3m` or `1h30m`; default 3 minutes.
    pub backend_operation_timeout: Duration,
    /// `exclude`: glob patterns of entries not to save, relative to each mount root. chunkcache's extension.
    pub exclude: Vec<String>,
    /// `gradle_default_excludes`, default true: also exclude [`GRADLE_DEFAULT_EXCLUDES`] from mounts that are a
    /// Gradle user home or its `caches/` ([`gradle_layout`]). chunkcache's extension.
    pub gradle_default_excludes: bool,
    /// `region` (`PLUGIN_REGION`, `S3_REGION`), accepted for every backend.
    pub region: Option<String>,
    /// Azure settings.
    pub azure: AzureSettings,
    /// S3 settings: `bucket` (`PLUGIN_BUCKET`, `S3_BUCKET`, `GCS_BUCKET`), `endpoint` (`PLUGIN_ENDPOINT`,
    /// `S3_ENDPOINT`, `GCS_ENDPOINT`), `session_token` (`PLUGIN_SESSION_TOKEN`, `AWS_SESSION_TOKEN`),
    /// `access_key` (`PLUGIN_ACCESS_KEY`, `AWS_ACCESS_KEY_ID`, `CACHE_AWS_ACCESS_KEY_ID`), `secret_key`
    /// (`PLUGIN_SECRET_KEY`, `AWS_SECRET_ACCESS_KEY`, `CACHE_AWS_SECRET_ACCESS_KEY`), `path_style`
    /// (`PLUGIN_PATH_STYLE`, `AWS_PLUGIN_PATH_STYLE`, default false), `acl` (`PLUGIN_ACL`, `AWS_ACL`, default
    /// `private`) and `encryption` (`PLUGIN_ENCRYPTION`, `AWS_ENCRYPTION`). The region is [`Self::region`].
    /// The Harness fork's role settings (`assume_role_arn`, `external_id`, `oidc_token_id`, `user_role_arn`,
    /// `user_role_external_id`, `assume_role_session_name`) become its `roles`, and `sts_endpoint`
    /// (`PLUGIN_STS_ENDPOINT`, `AWS_STS_ENDPOINT`) its `sts_endpoint`.
    pub s3: S3Options,
    /// GCS settings: `bucket` and `endpoint` (the same variables as S3's, as in drone-cache), `json_key`
    /// (`PLUGIN_JSON_KEY`, `GCS_CACHE_JSON_KEY`) as the service account key, and the Harness fork's workload
    /// identity federation (`project_number`, `pool_id`, `provider_id`, `service_account_email`, `oidc_token_id`,
    /// with chunkcache's `gcp_sts_endpoint` and `gcp_iam_credentials_endpoint`) as its `workload_identity`.
    pub gcs: GcsOptions,
    /// `disable_ssl` (`PLUGIN_DISABLESSL`, `AWS_DISABLESSL`): an S3 `endpoint` without a scheme means
    /// `http://` instead of `https://`.
    pub disable_ssl: bool,
    /// `s3_bucket_public` (`PLUGIN_S3_BUCKET_PUBLIC`, `S3_BUCKET_PUBLIC`): without `access_key` and
    /// `secret_key`, S3 requests go unsigned (anonymous), as drone-cache does.
    pub s3_bucket_public: bool,
    /// The Harness fork's `fail_restore_if_key_not_present` (`PLUGIN_FAIL_RESTORE_IF_KEY_NOT_PRESENT`): a
    /// restore that finds no cache (not even a fallback) fails the step whatever `exit_code` says.
    pub fail_if_key_not_present: bool,
    /// `restore_fallback` (`PLUGIN_RESTORE_FALLBACK`, default true): on a miss, a restore falls back to the
    /// newest cache under the key's template up to its first `checksum`/`hashFiles`/`epoch` (the branch's
    /// newest cache). chunkcache's extension; `restore_keys` apply either way.
    pub restore_fallback: bool,
    /// `cache_read_only` (`PLUGIN_CACHE_READ_ONLY`): when a rebuild saves nothing. chunkcache's extension.
    pub cache_read_only: ReadOnly,
    /// The Harness fork's `cache_intel_metrics_file` (`PLUGIN_CACHE_INTEL_METRICS_FILE`): a JSON array to
    /// which a restore appends `{"cache_size_bytes", "dst_path"}` per restored mount, for later steps.
    pub metrics_file: Option<PathBuf>,
    /// `log_level` (`PLUGIN_LOG_LEVEL`, `LOG_LEVEL`): the least severe lines logged; `debug: true` means
    /// `debug`, and `debug` turns `debug` on.
    pub log_level: LogLevel,
    /// `log_format` (`PLUGIN_LOG_FORMAT`, `LOG_FORMAT`): plain lines when unset.
    pub log_format: LogFormat,
    /// `ca_bundle` (`PLUGIN_CA_BUNDLE`): a PEM file of CA certificates trusted in addition to the system's, for
    /// private endpoints and TLS-inspecting proxies. chunkcache's extension.
    pub ca_bundle: Option<PathBuf>,
    /// Notes about settings of the Harness fork that change nothing here, for the step to log
    /// (`strict_key_matching: false`, `enable_separator`, `preserve_metadata`).
    pub notes: Vec<&'static str>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            mode: None,
            gc: GcSettings::default(),
            mounts: Vec::new(),
            cache_key: None,
            auto_cache: false,
            restore_keys: Vec::new(),
            backend: Backend::default(),
            archive_format: ArchiveFormat::default(),
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            override_existing: true,
            exit_code: false,
            skip_symlinks: false,
            debug: false,
            local_root: None,
            remote_root: None,
            filesystem_cache_root: PathBuf::from(DEFAULT_FILESYSTEM_CACHE_ROOT),
            backend_operation_timeout: DEFAULT_BACKEND_OPERATION_TIMEOUT,
            exclude: Vec::new(),
            gradle_default_excludes: true,
            region: None,
            azure: AzureSettings {
                options: AzureOptions { endpoint: Some(BlobEndpoint::default()), ..AzureOptions::default() },
                container: None,
                max_retry_requests: DEFAULT_AZURE_MAX_RETRY_REQUESTS,
            },
            s3: S3Options { acl: DEFAULT_ACL.to_owned(), path_style: Some(false), ..S3Options::default() },
            gcs: GcsOptions::default(),
            disable_ssl: false,
            s3_bucket_public: false,
            fail_if_key_not_present: false,
            metrics_file: None,
            restore_fallback: true,
            cache_read_only: ReadOnly::Never,
            ca_bundle: None,
            log_level: LogLevel::Info,
            log_format: LogFormat::Plain,
            notes: Vec::new(),
        }
    }
}

/// A setting that could not be parsed. Each message names the variable and says how to fix it; none contains a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// Both modes were asked for.
    #[error(
        "PLUGIN_RESTORE and PLUGIN_REBUILD are both true: a step either restores or saves; \
         set one of them to false"
    )]
    RestoreAndRebuild,
    /// `gc` with `restore` or `rebuild`.
    #[error(
        "PLUGIN_GC (gc: true) is set together with {with}: a gc step collects the store's garbage and \
         neither restores nor saves; run it as its own step, in a scheduled (cron) pipeline, and remove {with} \
         from it"
    )]
    GcWithCacheStep {
        /// The other mode's variable.
        with: &'static str,
    },
    /// A gc setting on a step that is not a gc step.
    #[error("{var} is a setting of gc steps only: set PLUGIN_GC (gc: true) for a gc step, or remove {var}")]
    GcSettingWithoutGc {
        /// The variable.
        var: &'static str,
    },
    /// A gc size or duration that is not one.
    #[error("{var}={value:?} is invalid: {reason}")]
    InvalidGcValue {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A boolean setting had another value.
    #[error("{var}={value:?} is not a boolean: use true or false (1/0 and yes/no also work)")]
    InvalidBool {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// An integer setting had another value.
    #[error("{var}={value:?} is not {expected}")]
    InvalidInteger {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What was expected, such as "an integer" or "a whole number from 0 to 100".
        expected: &'static str,
    },
    /// An unknown backend.
    #[error("{var}={value:?} is not a backend chunkcache supports{hint}: use one of azure, s3, gcs, filesystem")]
    UnknownBackend {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// Extra explanation for drone-cache backends chunkcache lacks (sftp, alioss); may be empty.
        hint: &'static str,
    },
    /// A `cache_read_only` that is neither a boolean nor `not-default-branch`.
    #[error("{var}={value:?} is not a read-only policy: use true, false or not-default-branch")]
    InvalidReadOnly {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// A `log_level` drone-cache does not know either (it panics on one).
    #[error("{var}={value:?} is not a log level: use error, warn, info or debug")]
    UnknownLogLevel {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// An unknown archive format.
    #[error("{var}={value:?} is not an archive format: use one of tar, gzip, zstd")]
    UnknownArchiveFormat {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// A duration that Go's `time.ParseDuration` would not accept either.
    #[error("{var}={value:?} is not a duration ({reason}): write it as Go does, for example 3m, 90s or 1h30m")]
    InvalidDuration {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A malformed glob pattern.
    #[error(
        "{var} has the pattern {pattern:?}, which is not a valid glob ({reason}): \
         use * within a folder, ** across folders, ? for one character and [abc] for a set"
    )]
    InvalidGlob {
        /// The variable.
        var: &'static str,
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A blob endpoint that is neither a suffix nor a URL.
    #[error(
        "{var}={value:?} is not an Azure blob endpoint ({reason}): use a DNS suffix such as \
         blob.core.windows.net or blob.core.chinacloudapi.cn, or a full URL such as \
         http://127.0.0.1:10000/devstoreaccount1 for Azurite"
    )]
    InvalidBlobEndpoint {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting of drone-cache or its Harness fork that chunkcache cannot honour.
    #[error("{var} is set, but chunkcache does not support it: {advice}")]
    Unsupported {
        /// The variable.
        var: &'static str,
        /// What to do instead.
        advice: &'static str,
    },
    /// An AWS role setting that cannot take effect as given (on another backend, or without the setting it
    /// needs).
    #[error("{var} is set, but {reason}")]
    RoleSetting {
        /// The variable.
        var: &'static str,
        /// Why, and what to set or remove.
        reason: &'static str,
    },
    /// A GCS workload identity setting that cannot take effect as given: on another backend, without the
    /// other settings of the federation (the message names the missing one), or malformed.
    #[error("{var} is set, but {reason}")]
    WorkloadIdentity {
        /// The variable.
        var: &'static str,
        /// Why, and what to set or remove.
        reason: String,
    },
    /// A setting the chosen backend needs is missing (from [`PluginSettings::validate`]).
    #[error("backend {backend} needs {setting}: set {vars}")]
    Missing {
        /// The backend.
        backend: Backend,
        /// The setting, such as "an account name".
        setting: &'static str,
        /// The variables that can provide it, such as "PLUGIN_ACCOUNT_NAME (setting account_name) or
        /// AZURE_ACCOUNT_NAME".
        vars: &'static str,
    },
}

// The variables of each setting, in drone-cache's order of precedence.
const RESTORE: &[&str] = &["PLUGIN_RESTORE"];
const REBUILD: &[&str] = &["PLUGIN_REBUILD"];
const GC: &[&str] = &["PLUGIN_GC"];
const MAX_UNUSED: &[&str] = &["PLUGIN_MAX_UNUSED"];
const MAX_SIZE: &[&str] = &["PLUGIN_MAX_SIZE"];
const KEEP: &[&str] = &["PLUGIN_KEEP"];
const GRACE: &[&str] = &["PLUGIN_GRACE"];
const DRY_RUN: &[&str] = &["PLUGIN_DRY_RUN"];
const MOUNT: &[&str] = &["PLUGIN_MOUNT"];
const CACHE_KEY: &[&str] = &["PLUGIN_CACHE_KEY"];
const RESTORE_KEYS: &[&str] = &["PLUGIN_RESTORE_KEYS"];
const AUTO_CACHE: &[&str] = &["PLUGIN_AUTO_CACHE"];
const BACKEND: &[&str] = &["PLUGIN_BACKEND"];
const ARCHIVE_FORMAT: &[&str] = &["PLUGIN_ARCHIVE_FORMAT"];
const COMPRESSION_LEVEL: &[&str] = &["PLUGIN_COMPRESSION_LEVEL"];
const OVERRIDE: &[&str] = &["PLUGIN_OVERRIDE"];
const EXIT_CODE: &[&str] = &["PLUGIN_EXIT_CODE", "EXIT_CODE"];
const SKIP_SYMLINKS: &[&str] = &["PLUGIN_SKIP_SYMLINKS", "SKIP_SYMLINKS"];
const DEBUG: &[&str] = &["PLUGIN_DEBUG", "DEBUG"];
const LOCAL_ROOT: &[&str] = &["PLUGIN_LOCAL_ROOT"];
const REMOTE_ROOT: &[&str] = &["PLUGIN_REMOTE_ROOT"];
const FILESYSTEM_CACHE_ROOT: &[&str] = &["PLUGIN_FILESYSTEM_CACHE_ROOT", "FILESYSTEM_CACHE_ROOT"];
const OPERATION_TIMEOUT: &[&str] = &["PLUGIN_BACKEND_OPERATION_TIMEOUT", "BACKEND_OPERATION_TIMEOUT"];
const EXCLUDE: &[&str] = &["PLUGIN_EXCLUDE"];
const GRADLE_EXCLUDES: &[&str] = &["PLUGIN_GRADLE_DEFAULT_EXCLUDES"];
const REGION: &[&str] = &["PLUGIN_REGION", "S3_REGION"];
const ACCOUNT_NAME: &[&str] = &["PLUGIN_ACCOUNT_NAME", "AZURE_ACCOUNT_NAME"];
const ACCOUNT_KEY: &[&str] = &["PLUGIN_ACCOUNT_KEY", "AZURE_ACCOUNT_KEY"];
const SAS_TOKEN: &[&str] = &["PLUGIN_SAS_TOKEN", "AZURE_SAS_TOKEN"];
const CONTAINER: &[&str] =
    &["PLUGIN_CONTAINER", "PLUGIN_BLOB_CONTAINER_NAME", "AZURE_CONTAINER_NAME", "AZURE_CONTAINER"];
const PLUGIN_ENDPOINT: &[&str] = &["PLUGIN_ENDPOINT"];
const BLOB_STORAGE_URL: &[&str] = &["AZURE_BLOB_STORAGE_URL"];
const MAX_RETRY_REQUESTS: &[&str] = &["AZURE_BLOB_MAX_RETRY_REQUESTS"];
const AZURE_CLIENT_ID: &[&str] = &["PLUGIN_AZURE_CLIENT_ID", "AZURE_CLIENT_ID", "CLIENT_ID"];
const AZURE_CLIENT_SECRET: &[&str] = &["PLUGIN_AZURE_CLIENT_SECRET", "AZURE_CLIENT_SECRET", "CLIENT_SECRET"];
const AZURE_TENANT_ID: &[&str] = &["PLUGIN_AZURE_TENANT_ID", "AZURE_TENANT_ID", "TENANT_ID"];
const AZURE_FEDERATED_TOKEN_FILE: &[&str] = &["PLUGIN_AZURE_FEDERATED_TOKEN_FILE", "AZURE_FEDERATED_TOKEN_FILE"];
const AZURE_USE_MSI: &[&str] = &["PLUGIN_AZURE_USE_MSI", "AZURE_USE_MSI"];
const AZURE_MSI_ENDPOINT: &[&str] = &["PLUGIN_AZURE_MSI_ENDPOINT", "AZURE_MSI_ENDPOINT"];
const AZURE_AUTHORITY_HOST: &[&str] = &["PLUGIN_AZURE_AUTHORITY_HOST", "AZURE_AUTHORITY_HOST"];
const CA_BUNDLE: &[&str] = &["PLUGIN_CA_BUNDLE"];
// One `bucket` and one `endpoint` flag serve S3 and GCS in drone-cache, so each reads every alias.
const BUCKET: &[&str] = &["PLUGIN_BUCKET", "S3_BUCKET", "GCS_BUCKET"];
const ENDPOINT: &[&str] = &["PLUGIN_ENDPOINT", "S3_ENDPOINT", "GCS_ENDPOINT"];
const SESSION_TOKEN: &[&str] = &["PLUGIN_SESSION_TOKEN", "AWS_SESSION_TOKEN"];
const DISABLE_SSL: &[&str] = &["PLUGIN_DISABLESSL", "AWS_DISABLESSL"];
const BUCKET_PUBLIC: &[&str] = &["PLUGIN_S3_BUCKET_PUBLIC", "S3_BUCKET_PUBLIC"];
const ACCESS_KEY: &[&str] = &["PLUGIN_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "CACHE_AWS_ACCESS_KEY_ID"];
const SECRET_KEY: &[&str] = &["PLUGIN_SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "CACHE_AWS_SECRET_ACCESS_KEY"];
const PATH_STYLE: &[&str] = &["PLUGIN_PATH_STYLE", "AWS_PLUGIN_PATH_STYLE"];
const ACL: &[&str] = &["PLUGIN_ACL", "AWS_ACL"];
const ENCRYPTION: &[&str] = &["PLUGIN_ENCRYPTION", "AWS_ENCRYPTION"];
const JSON_KEY: &[&str] = &["PLUGIN_JSON_KEY", "GCS_CACHE_JSON_KEY"];
const OIDC_TOKEN_ID: &[&str] = &["PLUGIN_OIDC_TOKEN_ID"];
const ASSUME_ROLE_ARN: &[&str] = &["PLUGIN_ASSUME_ROLE_ARN", "PLUGIN_ASSUME_ROLE", "AWS_ASSUME_ROLE_ARN"];
const ASSUME_ROLE_SESSION_NAME: &[&str] = &["PLUGIN_ASSUME_ROLE_SESSION_NAME", "ASSUME_ROLE_SESSION_NAME"];
const EXTERNAL_ID: &[&str] = &["PLUGIN_EXTERNAL_ID"];
const USER_ROLE_ARN: &[&str] = &["PLUGIN_USER_ROLE_ARN", "AWS_USER_ROLE_ARN"];
const USER_ROLE_EXTERNAL_ID: &[&str] = &["PLUGIN_USER_ROLE_EXTERNAL_ID"];
const STS_ENDPOINT: &[&str] = &["PLUGIN_STS_ENDPOINT", "AWS_STS_ENDPOINT"];
const PROJECT_NUMBER: &[&str] = &["PLUGIN_PROJECT_NUMBER"];
const POOL_ID: &[&str] = &["PLUGIN_POOL_ID"];
const PROVIDER_ID: &[&str] = &["PLUGIN_PROVIDER_ID"];
const SERVICE_ACCOUNT_EMAIL: &[&str] = &["PLUGIN_SERVICE_ACCOUNT_EMAIL"];
const GCP_STS_ENDPOINT: &[&str] = &["PLUGIN_GCP_STS_ENDPOINT"];
const GCP_IAM_CREDENTIALS_ENDPOINT: &[&str] = &["PLUGIN_GCP_IAM_CREDENTIALS_ENDPOINT"];
/// The Harness fork's GCS workload identity settings besides `oidc_token_id`, with their names, in the order
/// a missing one is named.
const WORKLOAD_IDENTITY_SETTINGS: [(&[&str], &str); 4] = [
    (PROJECT_NUMBER, "project_number"),
    (POOL_ID, "pool_id"),
    (PROVIDER_ID, "provider_id"),
    (SERVICE_ACCOUNT_EMAIL, "service_account_email"),
];
/// The AWS settings that ask for a role to be assumed (`assume_role_session_name` and `sts_endpoint` only say
/// how), as [`EnvReader::roles`] refuses them on other backends.
const ROLE_SETTINGS: [&[&str]; 5] = [OIDC_TOKEN_ID, ASSUME_ROLE_ARN, EXTERNAL_ID, USER_ROLE_ARN, USER_ROLE_EXTERNAL_ID];
const STRICT_KEY_MATCHING: &[&str] = &["PLUGIN_STRICT_KEY_MATCHING"];
const ENABLE_SEPARATOR: &[&str] = &["PLUGIN_ENABLE_SEPARATOR"];
const PRESERVE_METADATA: &[&str] = &["PLUGIN_PRESERVE_METADATA"];
const FAIL_IF_KEY_NOT_PRESENT: &[&str] = &["PLUGIN_FAIL_RESTORE_IF_KEY_NOT_PRESENT"];
const METRICS_FILE: &[&str] = &["PLUGIN_CACHE_INTEL_METRICS_FILE"];
const RESTORE_FALLBACK: &[&str] = &["PLUGIN_RESTORE_FALLBACK"];
const CACHE_READ_ONLY: &[&str] = &["PLUGIN_CACHE_READ_ONLY"];
const LOG_LEVEL: &[&str] = &["PLUGIN_LOG_LEVEL", "LOG_LEVEL"];
const LOG_FORMAT: &[&str] = &["PLUGIN_LOG_FORMAT", "LOG_FORMAT"];

/// Settings of drone-cache or its Harness fork that chunkcache cannot honour: set to anything (a
/// boolean: to true), they fail the step with the advice given, instead of being dropped.
const UNSUPPORTED: &[(&[&str], &str)] = &[
    (
        &["PLUGIN_API_KEY", "GCP_API_KEY"],
        "chunkcache authenticates to GCS with a service account: set json_key (PLUGIN_JSON_KEY) or \
         GOOGLE_APPLICATION_CREDENTIALS instead",
    ),
    (
        &["PLUGIN_GCS_ENCRYPTION_KEY", "GCS_ENCRYPTION_KEY"],
        "customer-supplied encryption keys cannot be sent by chunkcache's GCS client; use the bucket's default \
         encryption (Google-managed or a CMEK set on the bucket) and unset it",
    ),
];

/// Reads settings from an environment map, each by its list of variable names.
struct EnvReader<'a> {
    env: &'a BTreeMap<String, String>,
}

impl<'a> EnvReader<'a> {
    /// The first variable of `names` that is set to a non-empty value, with that value.
    fn raw(&self, names: &[&'static str]) -> Option<(&'static str, &'a str)> {
        names.iter().find_map(|&name| {
            self.env.get(name).filter(|value| !value.trim().is_empty()).map(|value| (name, value.as_str()))
        })
    }

    /// A string setting, trimmed.
    fn string(&self, names: &[&'static str]) -> Option<String> {
        self.raw(names).map(|(_, value)| value.trim().to_owned())
    }

    /// A secret setting, as given (not trimmed: a secret is passed on byte for byte).
    fn secret(&self, names: &[&'static str]) -> Option<Secret> {
        self.raw(names).map(|(_, value)| Secret::new(value))
    }

    fn list(&self, names: &[&'static str]) -> Vec<String> {
        self.raw(names).map(|(_, value)| split_list(value)).unwrap_or_default()
    }

    fn bool(&self, names: &[&'static str], default: bool) -> Result<bool, SettingsError> {
        match self.raw(names) {
            None => Ok(default),
            Some((var, value)) => {
                parse_bool(value).ok_or_else(|| SettingsError::InvalidBool { var, value: value.to_owned() })
            }
        }
    }
}

impl EnvReader<'_> {
    /// The STS roles of an S3 step, in the order they are assumed (see [`crate::store::sts`]):
    /// `assume_role_arn`, with `oidc_token_id` (`AssumeRoleWithWebIdentity`) or `external_id` (`AssumeRole`),
    /// then `user_role_arn` with `user_role_external_id`, each with `assume_role_session_name`.
    ///
    /// On another backend, the step's own role settings (`PLUGIN_*`) are refused; the machine-wide aliases
    /// (`AWS_ASSUME_ROLE_ARN`, …) are left alone there, as they may be meant for other tools. With the Azure
    /// backend, `oidc_token_id` is the token of an Azure AD sign-in (read with the Azure settings); with the
    /// GCS backend, that of a workload identity federation ([`EnvReader::workload_identity`]).
    fn roles(&self, backend: Backend) -> Result<Vec<AssumeRoleOptions>, SettingsError> {
        let refuse = |var, reason| Err(SettingsError::RoleSetting { var, reason });
        if backend != Backend::S3 {
            let step_setting = ROLE_SETTINGS
                .into_iter()
                .filter(|&names| !(matches!(backend, Backend::Azure | Backend::Gcs) && names == OIDC_TOKEN_ID))
                .filter_map(|names| self.raw(names))
                .find(|(var, _)| var.starts_with("PLUGIN_"));
            return match step_setting {
                None => Ok(Vec::new()),
                Some((var, _)) => {
                    refuse(var, "it is an AWS role setting, for the s3 backend only: remove it, or set backend: s3")
                }
            };
        }
        let session_name = self.string(ASSUME_ROLE_SESSION_NAME).unwrap_or_else(|| DEFAULT_SESSION_NAME.to_owned());
        let mut roles = Vec::new();
        let token = self.raw(OIDC_TOKEN_ID);
        let external_id = self.raw(EXTERNAL_ID);
        match (self.string(ASSUME_ROLE_ARN), token, external_id) {
            (None, Some((var, _)), _) => {
                return refuse(
                    var,
                    "no role to exchange the OIDC token for: set assume_role_arn (PLUGIN_ASSUME_ROLE_ARN) too",
                );
            }
            (None, None, Some((var, _))) => {
                return refuse(var, "no role is assumed with it: set assume_role_arn (PLUGIN_ASSUME_ROLE_ARN) too");
            }
            (Some(_), Some(_), Some((var, _))) => {
                return refuse(
                    var,
                    "with oidc_token_id the role is assumed with AssumeRoleWithWebIdentity, which takes no external \
                     id: remove external_id (the role's trust policy checks the token instead)",
                );
            }
            (Some(role_arn), token, external_id) => roles.push(AssumeRoleOptions {
                role_arn,
                session_name: session_name.clone(),
                identity: match token {
                    Some((_, token)) => RoleIdentity::WebIdentity(Secret::new(token.trim())),
                    None => RoleIdentity::Signed { external_id: external_id.map(|(_, id)| id.trim().to_owned()) },
                },
                setting: "assume_role_arn (PLUGIN_ASSUME_ROLE_ARN)",
            }),
            (None, None, None) => {}
        }
        match (self.string(USER_ROLE_ARN), self.raw(USER_ROLE_EXTERNAL_ID)) {
            (None, Some((var, _))) => {
                return refuse(var, "no role is assumed with it: set user_role_arn (PLUGIN_USER_ROLE_ARN) too");
            }
            (Some(role_arn), external_id) => roles.push(AssumeRoleOptions {
                role_arn,
                session_name,
                identity: RoleIdentity::Signed { external_id: external_id.map(|(_, id)| id.trim().to_owned()) },
                setting: "user_role_arn (PLUGIN_USER_ROLE_ARN)",
            }),
            (None, None) => {}
        }
        Ok(roles)
    }

    /// The Harness fork's GCS workload identity federation: `project_number`, `pool_id`, `provider_id`,
    /// `service_account_email` and `oidc_token_id`, all five or none, plus chunkcache's `gcp_sts_endpoint` and
    /// `gcp_iam_credentials_endpoint` (see [`crate::store::gcp_workload_identity`]).
    ///
    /// The fork uses the federation only when all five are set, and silently falls back to other credentials
    /// otherwise; here an incomplete set is refused, naming the missing setting, and the four GCS settings are
    /// refused on another backend.
    fn workload_identity(&self, backend: Backend) -> Result<Option<WorkloadIdentityOptions>, SettingsError> {
        let refuse = |var, reason: String| Err(SettingsError::WorkloadIdentity { var, reason });
        let given = WORKLOAD_IDENTITY_SETTINGS.map(|(names, _)| self.raw(names));
        if backend != Backend::Gcs {
            return match given.iter().flatten().next() {
                Some(&(var, _)) => refuse(
                    var,
                    "it is a GCS workload identity setting, for the gcs backend only: remove it, or set backend: gcs"
                        .to_owned(),
                ),
                None => Ok(None),
            };
        }
        let token = self.raw(OIDC_TOKEN_ID);
        let Some(&(var, _)) = given.iter().flatten().next().or(token.as_ref()) else { return Ok(None) };
        let missing = WORKLOAD_IDENTITY_SETTINGS
            .iter()
            .zip(&given)
            .find(|(_, value)| value.is_none())
            .map(|((names, setting), _)| format!("{setting} ({})", names[0]))
            .or_else(|| token.is_none().then(|| "oidc_token_id (PLUGIN_OIDC_TOKEN_ID), the OIDC token".to_owned()));
        if let Some(missing) = missing {
            return refuse(
                var,
                format!(
                    "GCS workload identity federation also needs {missing}: it takes project_number, pool_id, \
                     provider_id, service_account_email and oidc_token_id together; set the missing one, or remove \
                     the others to use json_key"
                ),
            );
        }
        let [Some(project), Some(pool), Some(provider), Some(email)] = given else { unreachable!("checked above") };
        let Some((_, token)) = token else { unreachable!("checked above") };
        if !project.1.trim().chars().all(|c| c.is_ascii_digit()) {
            return refuse(
                project.0,
                format!(
                    "{:?} is not a project number: the workload identity pool's audience names the project by its \
                     number (digits, shown as \"Project number\" in the console or by gcloud projects describe), not \
                     by its id",
                    project.1.trim()
                ),
            );
        }
        Ok(Some(WorkloadIdentityOptions {
            project_number: project.1.trim().to_owned(),
            pool_id: pool.1.trim().to_owned(),
            provider_id: provider.1.trim().to_owned(),
            service_account_email: email.1.trim().to_owned(),
            oidc_token: Secret::new(token.trim()),
            sts_endpoint: self.string(GCP_STS_ENDPOINT),
            iam_credentials_endpoint: self.string(GCP_IAM_CREDENTIALS_ENDPOINT),
        }))
    }

    /// The settings of a gc step; `gc` says whether this is one (its settings on another step are refused).
    fn gc_settings(&self, gc: bool) -> Result<GcSettings, SettingsError> {
        if !gc {
            return match [MAX_UNUSED, MAX_SIZE, KEEP, GRACE, DRY_RUN].into_iter().find_map(|names| self.raw(names)) {
                Some((var, _)) => Err(SettingsError::GcSettingWithoutGc { var }),
                None => Ok(GcSettings::default()),
            };
        }
        let duration = |names: &[&'static str]| match self.raw(names) {
            Some((var, value)) => units::parse_duration_ms(value)
                .map(Some)
                .map_err(|reason| SettingsError::InvalidGcValue { var, value: value.to_owned(), reason }),
            None => Ok(None),
        };
        let keep = self.list(KEEP);
        check_globs(KEEP[0], &keep)?;
        let defaults = GcSettings::default();
        Ok(GcSettings {
            max_unused_ms: duration(MAX_UNUSED)?,
            max_size: match self.raw(MAX_SIZE) {
                Some((var, value)) => {
                    Some(units::parse_size(value).map_err(|reason| SettingsError::InvalidGcValue {
                        var,
                        value: value.to_owned(),
                        reason,
                    })?)
                }
                None => None,
            },
            keep,
            grace_ms: duration(GRACE)?.unwrap_or(defaults.grace_ms),
            dry_run: self.bool(DRY_RUN, defaults.dry_run)?,
        })
    }
}

/// Splits a Drone list setting: comma-separated, items trimmed, empty items dropped.
fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

/// Parses a boolean as Go's `strconv.ParseBool` does (`true`, `t`, `1`, …), plus `yes` and `no`, ignoring case.
fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "y" | "on" => Some(true),
        "false" | "f" | "0" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// Parses a duration in Go's `time.ParseDuration` syntax: a sequence of decimal numbers, each with an optional
/// fraction and a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), such as `300ms`, `1.5h` or `2h45m`. `0` needs no
/// unit. A negative duration makes no sense for a timeout and is refused.
///
/// # Errors
/// Returns the reason, for the caller to wrap with the variable's name.
pub fn parse_go_duration(value: &str) -> Result<Duration, String> {
    const NANOS: &[(&str, u128)] = &[
        ("ns", 1),
        ("us", 1_000),
        ("\u{b5}s", 1_000),
        ("\u{3bc}s", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    let mut rest = value.trim();
    if let Some(unsigned) = rest.strip_prefix('+') {
        rest = unsigned;
    } else if rest.starts_with('-') {
        return Err("a timeout cannot be negative".to_owned());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err("it is empty".to_owned());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let whole_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let whole = &rest[..whole_len];
        rest = &rest[whole_len..];
        let mut fraction = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let fraction_len = after_dot.find(|c: char| !c.is_ascii_digit()).unwrap_or(after_dot.len());
            fraction = &after_dot[..fraction_len];
            rest = &after_dot[fraction_len..];
        }
        if whole.is_empty() && fraction.is_empty() {
            return Err(format!("expected a number where {rest:?} starts"));
        }
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(format!(
                "the number {whole}{} has no unit; Go needs one, such as s, m or h",
                if fraction.is_empty() { String::new() } else { format!(".{fraction}") }
            ));
        }
        let Some(&(_, unit_nanos)) = NANOS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!("unknown unit {unit:?}; use ns, us, ms, s, m or h"));
        };
        let too_large = || "it is too large".to_owned();
        let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| too_large())? };
        let mut amount = whole.checked_mul(unit_nanos).ok_or_else(too_large)?;
        // The fraction, to nanosecond precision: digits beyond what the unit can resolve are dropped.
        let mut scale = unit_nanos;
        for digit in fraction.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            amount += u128::from(digit - b'0') * scale;
        }
        total = total.checked_add(amount).ok_or_else(too_large)?;
    }
    let seconds = u64::try_from(total / 1_000_000_000).map_err(|_| "it is too large".to_owned())?;
    // The remainder of a division by 10^9 always fits in u32.
    let nanos = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(seconds, nanos))
}

fn parse_backend(var: &'static str, value: &str) -> Result<Backend, SettingsError> {
    let unknown = |hint| SettingsError::UnknownBackend { var, value: value.to_owned(), hint };
    match value.trim().to_ascii_lowercase().as_str() {
        "azure" => Ok(Backend::Azure),
        "s3" => Ok(Backend::S3),
        "gcs" => Ok(Backend::Gcs),
        "filesystem" => Ok(Backend::Filesystem),
        "sftp" => Err(unknown(" (drone-cache's sftp backend has no chunkcache equivalent)")),
        "alioss" => Err(unknown(" (for Alibaba OSS, use backend s3 with its S3-compatible endpoint)")),
        _ => Err(unknown("")),
    }
}

fn parse_archive_format(var: &'static str, value: &str) -> Result<ArchiveFormat, SettingsError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "tar" => Ok(ArchiveFormat::Tar),
        "gzip" => Ok(ArchiveFormat::Gzip),
        "zstd" => Ok(ArchiveFormat::Zstd),
        _ => Err(SettingsError::UnknownArchiveFormat { var, value: value.to_owned() }),
    }
}

fn check_globs(var: &'static str, patterns: &[String]) -> Result<(), SettingsError> {
    for pattern in patterns {
        glob::Pattern::new(pattern).map_err(|error| SettingsError::InvalidGlob {
            var,
            pattern: pattern.clone(),
            reason: error.msg.to_owned(),
        })?;
    }
    Ok(())
}

impl PluginSettings {
    /// Parses the settings from an environment map (`PLUGIN_*` variables and drone-cache's aliases).
    ///
    /// Missing settings take drone-cache's defaults. Settings that only a given backend needs are not checked
    /// here, since a later configuration layer may still supply them; call [`PluginSettings::validate`] on
    /// the final settings.
    ///
    /// # Errors
    /// [`SettingsError`] naming the variable, when a value cannot be parsed (a boolean, an integer, a duration,
    /// a glob, a blob endpoint), when the backend or archive format is unknown, or when both `restore` and
    /// `rebuild` are true.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Self, SettingsError> {
        let reader = EnvReader { env };
        let defaults = Self::default();

        let restore = reader.bool(RESTORE, false)?;
        let rebuild = reader.bool(REBUILD, false)?;
        let gc = reader.bool(GC, false)?;
        let mode = match (restore, rebuild, gc) {
            (true, true, _) => return Err(SettingsError::RestoreAndRebuild),
            (true, false, true) => return Err(SettingsError::GcWithCacheStep { with: RESTORE[0] }),
            (false, true, true) => return Err(SettingsError::GcWithCacheStep { with: REBUILD[0] }),
            (true, false, false) => Some(StepMode::Restore),
            (false, true, false) => Some(StepMode::Rebuild),
            (false, false, true) => Some(StepMode::Gc),
            (false, false, false) => None,
        };
        let gc = reader.gc_settings(gc)?;

        let backend = match reader.raw(BACKEND) {
            Some((var, value)) => parse_backend(var, value)?,
            None => defaults.backend,
        };
        let archive_format = match reader.raw(ARCHIVE_FORMAT) {
            Some((var, value)) => parse_archive_format(var, value)?,
            None => defaults.archive_format,
        };
        let compression_level = match reader.raw(COMPRESSION_LEVEL) {
            Some((var, value)) => value.trim().parse().map_err(|_| SettingsError::InvalidInteger {
                var,
                value: value.to_owned(),
                expected: "an integer (-1 for the codec's default level)",
            })?,
            None => defaults.compression_level,
        };
        let backend_operation_timeout = match reader.raw(OPERATION_TIMEOUT) {
            Some((var, value)) => parse_go_duration(value).map_err(|reason| SettingsError::InvalidDuration {
                var,
                value: value.to_owned(),
                reason,
            })?,
            None => defaults.backend_operation_timeout,
        };

        let exclude = reader.list(EXCLUDE);
        check_globs(EXCLUDE[0], &exclude)?;

        // `endpoint` is shared by S3 and GCS in drone-cache; for Azure it names the blob endpoint and wins over
        // AZURE_BLOB_STORAGE_URL, since it is written in the step itself.
        let blob_endpoint_source = if backend == Backend::Azure {
            reader.raw(PLUGIN_ENDPOINT).or_else(|| reader.raw(BLOB_STORAGE_URL))
        } else {
            reader.raw(BLOB_STORAGE_URL)
        };
        let blob_endpoint =
            match blob_endpoint_source {
                Some((var, value)) => BlobEndpoint::parse(value)
                    .map_err(|reason| SettingsError::InvalidBlobEndpoint { var, value: value.to_owned(), reason })?,
                None => BlobEndpoint::default(),
            };
        let max_retry_requests = match reader.raw(MAX_RETRY_REQUESTS) {
            Some((var, value)) => value.trim().parse().map_err(|_| SettingsError::InvalidInteger {
                var,
                value: value.to_owned(),
                expected: "a whole number of retries, such as 4",
            })?,
            None => defaults.azure.max_retry_requests,
        };

        for (vars, advice) in UNSUPPORTED {
            if let Some((var, value)) = reader.raw(vars)
                && parse_bool(value) != Some(false)
            {
                return Err(SettingsError::Unsupported { var, advice });
            }
        }
        let mut notes = Vec::new();
        let roles = reader.roles(backend)?;
        if roles.is_empty()
            && [ASSUME_ROLE_SESSION_NAME, STS_ENDPOINT]
                .into_iter()
                .filter_map(|names| reader.raw(names))
                .any(|(var, _)| var.starts_with("PLUGIN_"))
        {
            notes.push(
                "note: assume_role_session_name and sts_endpoint change nothing without a role to assume \
                 (assume_role_arn or user_role_arn)",
            );
        }
        let workload_identity = reader.workload_identity(backend)?;
        if workload_identity.is_none()
            && [GCP_STS_ENDPOINT, GCP_IAM_CREDENTIALS_ENDPOINT].into_iter().any(|names| reader.raw(names).is_some())
        {
            notes.push(
                "note: gcp_sts_endpoint and gcp_iam_credentials_endpoint change nothing without GCS workload identity \
                 federation (project_number, pool_id, provider_id, service_account_email and oidc_token_id)",
            );
        }
        if workload_identity.is_some() && reader.raw(JSON_KEY).is_some() {
            notes.push(
                "note: json_key is not used: with project_number, pool_id, provider_id, service_account_email and \
                 oidc_token_id the step authenticates through workload identity federation, as the Harness fork \
                 does; remove json_key",
            );
        }
        if !reader.bool(STRICT_KEY_MATCHING, true)? {
            notes.push(
                "note: strict_key_matching: false changes nothing: chunkcache restores only the exact key, then the \
                 restore_keys prefixes (matched at a separator)",
            );
        }
        if reader.bool(ENABLE_SEPARATOR, false)? {
            notes.push("note: enable_separator changes nothing: chunkcache never lists keys by string prefix");
        }
        if reader.bool(PRESERVE_METADATA, false)? {
            notes.push(
                "note: preserve_metadata: chunkcache always restores mode and modification time; owner, group and \
                 access time are not restored (files belong to the step's user)",
            );
        }
        let cache_read_only = match reader.raw(CACHE_READ_ONLY) {
            None => ReadOnly::Never,
            Some((_, value)) if value.trim().eq_ignore_ascii_case("not-default-branch") => ReadOnly::OffDefaultBranch,
            Some((var, value)) => match parse_bool(value) {
                Some(true) => ReadOnly::Always,
                Some(false) => ReadOnly::Never,
                None => return Err(SettingsError::InvalidReadOnly { var, value: value.to_owned() }),
            },
        };
        let debug = reader.bool(DEBUG, defaults.debug)?;
        let log_level = match reader.raw(LOG_LEVEL) {
            None if debug => LogLevel::Debug,
            None => defaults.log_level,
            Some((var, value)) => match value.trim().to_ascii_lowercase().as_str() {
                _ if debug => LogLevel::Debug,
                "error" => LogLevel::Error,
                "warn" | "warning" => LogLevel::Warn,
                "info" => LogLevel::Info,
                "debug" => LogLevel::Debug,
                _ => return Err(SettingsError::UnknownLogLevel { var, value: value.to_owned() }),
            },
        };
        let log_format = LogFormat::from_env(env);
        if reader.string(LOG_FORMAT).is_some_and(|format| !["json", "logfmt"].contains(&&*format.to_lowercase())) {
            notes.push("note: log_format is neither logfmt nor json: using logfmt, as drone-cache does");
        }
        Ok(Self {
            mode,
            gc,
            mounts: reader.list(MOUNT),
            // The template is kept byte for byte: drone-cache renders it as given.
            cache_key: reader.raw(CACHE_KEY).map(|(_, value)| value.to_owned()),
            auto_cache: reader.bool(AUTO_CACHE, defaults.auto_cache)?,
            restore_keys: reader.list(RESTORE_KEYS),
            backend,
            archive_format,
            compression_level,
            override_existing: reader.bool(OVERRIDE, defaults.override_existing)?,
            exit_code: reader.bool(EXIT_CODE, defaults.exit_code)?,
            skip_symlinks: reader.bool(SKIP_SYMLINKS, defaults.skip_symlinks)?,
            debug: log_level == LogLevel::Debug,
            local_root: reader.string(LOCAL_ROOT).map(PathBuf::from),
            remote_root: reader.string(REMOTE_ROOT),
            filesystem_cache_root: reader
                .string(FILESYSTEM_CACHE_ROOT)
                .map_or(defaults.filesystem_cache_root, PathBuf::from),
            backend_operation_timeout,
            exclude,
            gradle_default_excludes: reader.bool(GRADLE_EXCLUDES, defaults.gradle_default_excludes)?,
            region: reader.string(REGION),
            azure: AzureSettings {
                options: AzureOptions {
                    account: reader.string(ACCOUNT_NAME),
                    key: reader.secret(ACCOUNT_KEY),
                    sas: reader.secret(SAS_TOKEN),
                    endpoint: Some(blob_endpoint),
                    create_container: false,
                    ad: AzureAdOptions {
                        client_id: reader.string(AZURE_CLIENT_ID),
                        client_secret: reader.secret(AZURE_CLIENT_SECRET),
                        tenant_id: reader.string(AZURE_TENANT_ID),
                        federated_token_file: reader.string(AZURE_FEDERATED_TOKEN_FILE).map(PathBuf::from),
                        oidc_token: if backend == Backend::Azure { reader.secret(OIDC_TOKEN_ID) } else { None },
                        managed_identity: reader.bool(AZURE_USE_MSI, false)?,
                        msi_endpoint: reader.string(AZURE_MSI_ENDPOINT),
                        authority_host: reader.string(AZURE_AUTHORITY_HOST),
                    },
                },
                container: reader.string(CONTAINER).map(|name| name.to_lowercase()),
                max_retry_requests,
            },
            s3: S3Options {
                bucket: reader.string(BUCKET),
                endpoint: reader.string(ENDPOINT),
                session_token: reader.secret(SESSION_TOKEN),
                access_key: reader.string(ACCESS_KEY),
                secret_key: reader.secret(SECRET_KEY),
                path_style: Some(reader.bool(PATH_STYLE, false)?),
                acl: reader.string(ACL).unwrap_or(defaults.s3.acl),
                encryption: reader.string(ENCRYPTION),
                roles,
                sts_endpoint: reader.string(STS_ENDPOINT),
                ..S3Options::default()
            },
            gcs: GcsOptions {
                bucket: reader.string(BUCKET),
                endpoint: reader.string(ENDPOINT),
                service_account_json: reader.secret(JSON_KEY),
                workload_identity,
                ..GcsOptions::default()
            },
            disable_ssl: reader.bool(DISABLE_SSL, false)?,
            s3_bucket_public: reader.bool(BUCKET_PUBLIC, false)?,
            fail_if_key_not_present: reader.bool(FAIL_IF_KEY_NOT_PRESENT, false)?,
            metrics_file: reader.string(METRICS_FILE).map(PathBuf::from),
            restore_fallback: reader.bool(RESTORE_FALLBACK, true)?,
            cache_read_only,
            ca_bundle: reader.string(CA_BUNDLE).map(PathBuf::from),
            log_level,
            log_format,
            notes,
        })
    }

    /// Checks that the chosen backend has what it needs to connect: Azure an account name and a key, a SAS
    /// token or an Azure AD setting (whether the sign-in is complete is checked when the store is opened, with
    /// a message that says what it lacks), S3 and GCS a bucket. Credentials that S3 and GCS can find elsewhere (instance roles, workload
    /// identity) are not required.
    ///
    /// # Errors
    /// [`SettingsError::Missing`] naming the setting and its variables.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let missing = |setting, vars| Err(SettingsError::Missing { backend: self.backend, setting, vars });
        match self.backend {
            Backend::Azure => {
                if self.azure.options.account.is_none() {
                    return missing(
                        "a storage account name",
                        "PLUGIN_ACCOUNT_NAME (setting account_name) or AZURE_ACCOUNT_NAME",
                    );
                }
                let options = &self.azure.options;
                if options.key.is_none() && options.sas.is_none() && options.ad == AzureAdOptions::default() {
                    return missing(
                        "an account key, a SAS token or an Azure AD sign-in",
                        "PLUGIN_ACCOUNT_KEY (setting account_key) or AZURE_ACCOUNT_KEY, \
                         or PLUGIN_SAS_TOKEN or AZURE_SAS_TOKEN; or, for Azure AD, azure_client_id and \
                         azure_tenant_id with azure_client_secret, oidc_token_id or azure_federated_token_file, \
                         or azure_use_msi: true for the machine's managed identity",
                    );
                }
            }
            Backend::S3 => {
                if self.s3.bucket.is_none() {
                    return missing("a bucket", "PLUGIN_BUCKET (setting bucket), S3_BUCKET or GCS_BUCKET");
                }
            }
            Backend::Gcs => {
                if self.gcs.bucket.is_none() {
                    return missing("a bucket", "PLUGIN_BUCKET (setting bucket), S3_BUCKET or GCS_BUCKET");
                }
            }
            Backend::Filesystem => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<PluginSettings, SettingsError> {
        PluginSettings::from_env(&env(pairs))
    }

    /// `assume_role_arn` comes first (a web identity with `oidc_token_id`, else signed with `external_id`), then
    /// `user_role_arn`; the session name is the fork's default unless set, and aliases count.
    #[test]
    fn role_settings_become_a_chain_of_roles() {
        let chain = parse(&[
            ("AWS_ASSUME_ROLE_ARN", "arn:aws:iam::1:role/a"),
            ("PLUGIN_EXTERNAL_ID", " ext "),
            ("PLUGIN_USER_ROLE_ARN", "arn:aws:iam::1:role/b"),
            ("PLUGIN_USER_ROLE_EXTERNAL_ID", "ext-b"),
            ("PLUGIN_STS_ENDPOINT", "http://sts.local"),
        ])
        .unwrap();
        let roles: Vec<_> = chain.s3.roles.iter().map(|r| (r.role_arn.as_str(), &r.identity, r.setting)).collect();
        assert_eq!(
            roles,
            [
                (
                    "arn:aws:iam::1:role/a",
                    &RoleIdentity::Signed { external_id: Some("ext".into()) },
                    "assume_role_arn (PLUGIN_ASSUME_ROLE_ARN)"
                ),
                (
                    "arn:aws:iam::1:role/b",
                    &RoleIdentity::Signed { external_id: Some("ext-b".into()) },
                    "user_role_arn (PLUGIN_USER_ROLE_ARN)"
                ),
            ]
        );
        assert!(chain.s3.roles.iter().all(|role| role.session_name == "drone-cache"));
        assert_eq!(chain.s3.sts_endpoint.as_deref(), Some("http://sts.local"));

        let oidc = parse(&[
            ("PLUGIN_ASSUME_ROLE", "arn:aws:iam::1:role/a"),
            ("PLUGIN_OIDC_TOKEN_ID", "eyJ.t0ken"),
            ("ASSUME_ROLE_SESSION_NAME", "build-9"),
        ])
        .unwrap();
        assert_eq!(oidc.s3.roles.len(), 1);
        assert_eq!(oidc.s3.roles[0].identity, RoleIdentity::WebIdentity(Secret::new("eyJ.t0ken")));
        assert_eq!(oidc.s3.roles[0].session_name, "build-9");
        assert!(!format!("{oidc:?}").contains("eyJ.t0ken"));

        assert!(parse(&[]).unwrap().s3.roles.is_empty());
        // Machine-wide aliases are left alone on other backends; the step's own settings are not.
        let azure = [("PLUGIN_BACKEND", "azure"), ("AWS_ASSUME_ROLE_ARN", "arn:aws:iam::1:role/a")];
        assert!(parse(&azure).unwrap().s3.roles.is_empty());
        let error = parse(&[("PLUGIN_BACKEND", "azure"), ("PLUGIN_ASSUME_ROLE_ARN", "arn:aws:iam::1:role/a")]);
        assert!(error.unwrap_err().to_string().contains("for the s3 backend only"));
        let azure_oidc = parse(&[("PLUGIN_BACKEND", "azure"), ("PLUGIN_OIDC_TOKEN_ID", "eyJ.t0ken")]).unwrap();
        assert!(azure_oidc.s3.roles.is_empty() && azure_oidc.azure.options.ad.oidc_token.is_some());
    }

    #[test]
    fn defaults_match_drone_cache() {
        let settings = parse(&[]).unwrap();
        assert_eq!(settings, PluginSettings::default());
        assert_eq!(settings.mode, None);
        assert_eq!(settings.backend, Backend::S3);
        assert_eq!(settings.archive_format, ArchiveFormat::Tar);
        assert_eq!(settings.compression_level, -1);
        assert!(settings.override_existing);
        assert!(!settings.exit_code);
        assert!(settings.gradle_default_excludes);
        assert_eq!(settings.filesystem_cache_root, PathBuf::from("/tmp/cache"));
        assert_eq!(settings.backend_operation_timeout, Duration::from_secs(180));
        assert_eq!(settings.azure.options.endpoint, Some(BlobEndpoint::Suffix("blob.core.windows.net".into())));
        assert_eq!(settings.azure.max_retry_requests, 4);
        assert_eq!(settings.s3.acl, "private");
    }

    /// The settings Drone/Harness derive from the "Save and Restore Cache from Azure" page, with its stage
    /// variables filled in.
    #[test]
    fn harness_azure_page_restore_step() {
        let key = "somecontainer/pipelineid/{{ .Commit.Branch }}-{{ checksum \"gradle-examples/some-gradle-examples/build.gradle\" }}";
        let settings = parse(&[
            ("PLUGIN_RESTORE", "true"),
            ("PLUGIN_CACHE_KEY", key),
            ("PLUGIN_ARCHIVE_FORMAT", "gzip"),
            ("PLUGIN_MOUNT", "/harness/gradle/caches/"),
            ("PLUGIN_REGION", "us-west-2"),
            ("PLUGIN_ACCOUNT_KEY", "c2VjcmV0LWtleQ=="),
            ("PLUGIN_ACCOUNT_NAME", "someaccount"),
            ("PLUGIN_BACKEND", "azure"),
        ])
        .unwrap();
        assert_eq!(settings.mode, Some(StepMode::Restore));
        assert_eq!(settings.cache_key.as_deref(), Some(key));
        assert_eq!(settings.archive_format, ArchiveFormat::Gzip);
        assert_eq!(settings.mounts, ["/harness/gradle/caches/"]);
        assert_eq!(settings.region.as_deref(), Some("us-west-2"));
        assert_eq!(settings.backend, Backend::Azure);
        assert_eq!(settings.azure.options.account.as_deref(), Some("someaccount"));
        assert_eq!(settings.azure.options.key.as_ref().map(Secret::expose), Some("c2VjcmV0LWtleQ=="));
        assert_eq!(settings.azure.container, None);
        assert_eq!(
            settings.azure.options.endpoint.as_ref().unwrap().account_url("someaccount"),
            "https://someaccount.blob.core.windows.net"
        );
        settings.validate().unwrap();

        let save = parse(&[("PLUGIN_REBUILD", "true"), ("PLUGIN_BACKEND", "azure")]).unwrap();
        assert_eq!(save.mode, Some(StepMode::Rebuild));
    }

    #[test]
    fn restore_and_rebuild_together_is_an_error() {
        let error = parse(&[("PLUGIN_RESTORE", "true"), ("PLUGIN_REBUILD", "TRUE")]).unwrap_err();
        assert_eq!(error, SettingsError::RestoreAndRebuild);
        let message = error.to_string();
        assert!(message.contains("PLUGIN_RESTORE") && message.contains("PLUGIN_REBUILD"));
        assert!(message.contains("set one of them to false"));
    }

    #[test]
    fn gc_steps_take_their_own_settings_and_nothing_else_does() {
        let gc = parse(&[
            ("PLUGIN_GC", "true"),
            ("PLUGIN_MAX_UNUSED", "14d"),
            ("PLUGIN_MAX_SIZE", "500G"),
            ("PLUGIN_KEEP", "repo/release-*,other/**"),
            ("PLUGIN_DRY_RUN", "yes"),
        ])
        .unwrap();
        assert_eq!(gc.mode, Some(StepMode::Gc));
        assert_eq!(
            gc.gc,
            GcSettings {
                max_unused_ms: Some(14 * 86_400_000),
                max_size: Some(500 << 30),
                keep: vec!["repo/release-*".into(), "other/**".into()],
                grace_ms: DEFAULT_GRACE_MS,
                dry_run: true,
            }
        );
        assert_eq!(parse(&[("PLUGIN_GC", "true"), ("PLUGIN_GRACE", "36h")]).unwrap().gc.grace_ms, 36 * 3_600_000);
        assert_eq!(parse(&[("PLUGIN_GC", "false")]).unwrap().mode, None);

        let with = |mode| parse(&[("PLUGIN_GC", "true"), (mode, "true")]).unwrap_err();
        assert_eq!(with("PLUGIN_RESTORE"), SettingsError::GcWithCacheStep { with: "PLUGIN_RESTORE" });
        assert_eq!(with("PLUGIN_REBUILD"), SettingsError::GcWithCacheStep { with: "PLUGIN_REBUILD" });
        let elsewhere = parse(&[("PLUGIN_REBUILD", "true"), ("PLUGIN_GRACE", "1h")]).unwrap_err();
        assert_eq!(elsewhere, SettingsError::GcSettingWithoutGc { var: "PLUGIN_GRACE" });
        let message = parse(&[("PLUGIN_GC", "true"), ("PLUGIN_MAX_UNUSED", "2 weeks")]).unwrap_err().to_string();
        assert!(message.contains("PLUGIN_MAX_UNUSED") && message.contains("like 90s, 30m, 12h or 7d"), "{message}");
        let bad_glob = parse(&[("PLUGIN_GC", "true"), ("PLUGIN_KEEP", "[oops")]).unwrap_err();
        assert!(matches!(bad_glob, SettingsError::InvalidGlob { var: "PLUGIN_KEEP", .. }), "{bad_glob}");
    }

    #[test]
    fn booleans_accept_go_and_human_spellings() {
        for (value, expected) in [
            ("true", true),
            ("True", true),
            ("1", true),
            ("yes", true),
            ("YES", true),
            ("t", true),
            ("false", false),
            ("0", false),
            ("no", false),
            ("F", false),
        ] {
            let settings = parse(&[("PLUGIN_DEBUG", value)]).unwrap();
            assert_eq!(settings.debug, expected, "{value}");
        }
        let error = parse(&[("PLUGIN_OVERRIDE", "maybe")]).unwrap_err();
        assert_eq!(error, SettingsError::InvalidBool { var: "PLUGIN_OVERRIDE", value: "maybe".into() });
        assert!(error.to_string().contains("PLUGIN_OVERRIDE=\"maybe\""));
        assert!(error.to_string().contains("true or false"));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let settings = parse(&[("PLUGIN_OVERRIDE", ""), ("PLUGIN_BACKEND", " "), ("PLUGIN_CACHE_KEY", "")]).unwrap();
        assert!(settings.override_existing);
        assert_eq!(settings.backend, Backend::S3);
        assert_eq!(settings.cache_key, None);
    }

    #[test]
    fn lists_are_comma_separated_trimmed_without_empties() {
        let settings = parse(&[
            ("PLUGIN_MOUNT", " .gradle/caches , ,.gradle/wrapper,"),
            ("PLUGIN_RESTORE_KEYS", "a/{{ .Commit.Branch }}-,a/"),
            ("PLUGIN_EXCLUDE", "**/*.tmp, build/**"),
        ])
        .unwrap();
        assert_eq!(settings.mounts, [".gradle/caches", ".gradle/wrapper"]);
        assert_eq!(settings.restore_keys, ["a/{{ .Commit.Branch }}-", "a/"]);
        assert_eq!(settings.exclude, ["**/*.tmp", "build/**"]);
    }

    #[test]
    fn aliases_follow_drone_cache_precedence() {
        let settings = parse(&[
            ("AZURE_ACCOUNT_NAME", "from-alias"),
            ("AZURE_ACCOUNT_KEY", "alias-key"),
            ("AZURE_CONTAINER_NAME", "alias-container"),
            ("PLUGIN_BLOB_CONTAINER_NAME", "blob-container"),
            ("S3_BUCKET", "s3-bucket"),
            ("GCS_BUCKET", "gcs-bucket"),
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("CACHE_AWS_SECRET_ACCESS_KEY", "cache-secret"),
            ("S3_REGION", "eu-west-1"),
            ("GCS_CACHE_JSON_KEY", "{\"type\":\"service_account\"}"),
            ("SKIP_SYMLINKS", "true"),
            ("EXIT_CODE", "1"),
            ("DEBUG", "yes"),
            ("FILESYSTEM_CACHE_ROOT", "/cache"),
            ("BACKEND_OPERATION_TIMEOUT", "90s"),
            ("AWS_PLUGIN_PATH_STYLE", "true"),
        ])
        .unwrap();
        assert_eq!(settings.azure.options.account.as_deref(), Some("from-alias"));
        assert_eq!(settings.azure.options.key.as_ref().map(Secret::expose), Some("alias-key"));
        // PLUGIN_BLOB_CONTAINER_NAME (the Harness page's `blob_container_name`) outranks the bare alias.
        assert_eq!(settings.azure.container.as_deref(), Some("blob-container"));
        // One flag serves both backends in drone-cache: S3_BUCKET outranks GCS_BUCKET for GCS too.
        assert_eq!(settings.s3.bucket.as_deref(), Some("s3-bucket"));
        assert_eq!(settings.gcs.bucket.as_deref(), Some("s3-bucket"));
        assert_eq!(settings.s3.access_key.as_deref(), Some("AKIAEXAMPLE"));
        assert_eq!(settings.s3.secret_key.as_ref().map(Secret::expose), Some("cache-secret"));
        assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
        assert!(settings.gcs.service_account_json.is_some());
        assert!(settings.skip_symlinks && settings.exit_code && settings.debug && settings.s3.path_style == Some(true));
        assert_eq!(settings.filesystem_cache_root, PathBuf::from("/cache"));
        assert_eq!(settings.backend_operation_timeout, Duration::from_secs(90));

        let settings = parse(&[
            ("PLUGIN_ACCOUNT_NAME", "from-plugin"),
            ("AZURE_ACCOUNT_NAME", "from-alias"),
            ("PLUGIN_CONTAINER", "plugin-container"),
            ("PLUGIN_BLOB_CONTAINER_NAME", "blob-container"),
            ("PLUGIN_BUCKET", "plugin-bucket"),
            ("S3_BUCKET", "s3-bucket"),
        ])
        .unwrap();
        assert_eq!(settings.azure.options.account.as_deref(), Some("from-plugin"));
        assert_eq!(settings.azure.container.as_deref(), Some("plugin-container"));
        assert_eq!(settings.s3.bucket.as_deref(), Some("plugin-bucket"));
        assert_eq!(settings.gcs.bucket.as_deref(), Some("plugin-bucket"));
    }

    #[test]
    fn cross_backend_aliases_and_the_container_work_as_in_drone_cache() {
        let settings = parse(&[("GCS_BUCKET", "only-gcs"), ("GCS_ENDPOINT", "http://fake:4443")]).unwrap();
        assert_eq!(settings.s3.bucket.as_deref(), Some("only-gcs"));
        assert_eq!(settings.s3.endpoint.as_deref(), Some("http://fake:4443"));
        let settings = parse(&[("S3_ENDPOINT", "minio:9000"), ("AZURE_CONTAINER", " Team-Cache ")]).unwrap();
        assert_eq!(settings.gcs.endpoint.as_deref(), Some("minio:9000"));
        assert_eq!(settings.azure.container.as_deref(), Some("team-cache"));
    }

    #[test]
    fn azure_ad_settings_take_the_forks_names_and_aliases() {
        let settings = parse(&[
            ("PLUGIN_BACKEND", "azure"),
            ("PLUGIN_ACCOUNT_NAME", "acct"),
            ("CLIENT_ID", "client"),
            ("AZURE_CLIENT_SECRET", "s3cret"),
            ("PLUGIN_AZURE_TENANT_ID", "tenant"),
            ("PLUGIN_OIDC_TOKEN_ID", "eyJ-token"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
            ("PLUGIN_AZURE_USE_MSI", "true"),
            ("AZURE_AUTHORITY_HOST", "https://login.chinacloudapi.cn"),
            ("PLUGIN_CA_BUNDLE", "/etc/ssl/corp.pem"),
        ])
        .unwrap();
        let ad = &settings.azure.options.ad;
        assert_eq!((ad.client_id.as_deref(), ad.tenant_id.as_deref()), (Some("client"), Some("tenant")));
        assert_eq!(ad.client_secret.as_ref().map(Secret::expose), Some("s3cret"));
        assert_eq!(ad.oidc_token.as_ref().map(Secret::expose), Some("eyJ-token"));
        assert_eq!(ad.federated_token_file.as_deref(), Some(std::path::Path::new("/var/run/token")));
        assert!(ad.managed_identity);
        assert_eq!(ad.authority_host.as_deref(), Some("https://login.chinacloudapi.cn"));
        assert_eq!(settings.ca_bundle.as_deref(), Some(std::path::Path::new("/etc/ssl/corp.pem")));
        assert!(settings.validate().is_ok(), "an Azure AD sign-in needs no account key");
        assert!(!format!("{settings:?}").contains("s3cret") && !format!("{settings:?}").contains("eyJ-token"));

        // `oidc_token_id` is the Azure sign-in's token only with the Azure backend (for S3, a role's web identity).
        let s3 = parse(&[("PLUGIN_OIDC_TOKEN_ID", "eyJ-token")]).unwrap_err().to_string();
        assert!(s3.starts_with("PLUGIN_OIDC_TOKEN_ID is set, but no role to exchange the OIDC token for"), "{s3}");
        let message =
            parse(&[("PLUGIN_BACKEND", "azure"), ("PLUGIN_ACCOUNT_NAME", "acct")]).unwrap().validate().unwrap_err();
        assert!(message.to_string().contains("azure_client_id"), "{message}");
    }

    const WORKLOAD_IDENTITY: [(&str, &str); 6] = [
        ("PLUGIN_BACKEND", "gcs"),
        ("PLUGIN_PROJECT_NUMBER", " 123456789012 "),
        ("PLUGIN_POOL_ID", "harness-pool"),
        ("PLUGIN_PROVIDER_ID", "harness-provider"),
        ("PLUGIN_SERVICE_ACCOUNT_EMAIL", "cache@project.iam.gserviceaccount.com"),
        ("PLUGIN_OIDC_TOKEN_ID", "eyJ.gcp.t0ken\n"),
    ];

    #[test]
    fn gcs_workload_identity_takes_the_forks_five_settings() {
        let settings = parse(&WORKLOAD_IDENTITY).unwrap();
        let federation = settings.gcs.workload_identity.as_ref().unwrap();
        assert_eq!(federation.project_number, "123456789012");
        assert_eq!(
            (federation.pool_id.as_str(), federation.provider_id.as_str()),
            ("harness-pool", "harness-provider")
        );
        assert_eq!(federation.service_account_email, "cache@project.iam.gserviceaccount.com");
        assert_eq!(federation.oidc_token.expose(), "eyJ.gcp.t0ken");
        assert_eq!((federation.sts_endpoint.as_ref(), federation.iam_credentials_endpoint.as_ref()), (None, None));
        assert!(settings.s3.roles.is_empty() && settings.notes.is_empty(), "{:?}", settings.notes);
        assert!(!format!("{settings:?}").contains("eyJ.gcp.t0ken"));
        settings.validate().unwrap_err(); // still needs a bucket
        let endpoints = [
            ("PLUGIN_GCP_STS_ENDPOINT", "http://127.0.0.1:1/sts"),
            ("PLUGIN_GCP_IAM_CREDENTIALS_ENDPOINT", "http://127.0.0.1:2"),
            ("PLUGIN_JSON_KEY", "{}"),
        ];
        let moved = parse(&[&WORKLOAD_IDENTITY[..], &endpoints].concat()).unwrap();
        let federation = moved.gcs.workload_identity.unwrap();
        assert_eq!(federation.sts_endpoint.as_deref(), Some("http://127.0.0.1:1/sts"));
        assert_eq!(federation.iam_credentials_endpoint.as_deref(), Some("http://127.0.0.1:2"));
        assert!(moved.notes.iter().any(|note| note.contains("json_key is not used")), "{:?}", moved.notes);

        // Without the federation, the endpoints change nothing, and the log says so.
        let inert = parse(&[("PLUGIN_BACKEND", "gcs"), endpoints[0]]).unwrap();
        assert!(inert.notes[0].contains("gcp_sts_endpoint and gcp_iam_credentials_endpoint change nothing"));
    }

    #[test]
    fn incomplete_gcs_workload_identity_names_the_missing_setting() {
        for (left_out, var, missing) in [
            ("PLUGIN_PROVIDER_ID", "PLUGIN_PROJECT_NUMBER", "provider_id (PLUGIN_PROVIDER_ID)"),
            ("PLUGIN_PROJECT_NUMBER", "PLUGIN_POOL_ID", "project_number (PLUGIN_PROJECT_NUMBER)"),
            ("PLUGIN_SERVICE_ACCOUNT_EMAIL", "PLUGIN_PROJECT_NUMBER", "service_account_email"),
            ("PLUGIN_OIDC_TOKEN_ID", "PLUGIN_PROJECT_NUMBER", "oidc_token_id (PLUGIN_OIDC_TOKEN_ID)"),
        ] {
            let pairs: Vec<_> = WORKLOAD_IDENTITY.into_iter().filter(|(name, _)| *name != left_out).collect();
            let message = parse(&pairs).unwrap_err().to_string();
            assert!(
                message
                    .starts_with(&format!("{var} is set, but GCS workload identity federation also needs {missing}")),
                "{message}"
            );
            assert!(!message.contains("eyJ.gcp.t0ken"), "{message}");
        }
        // The token alone, as an S3 or Azure step would give it.
        let message = parse(&[WORKLOAD_IDENTITY[0], WORKLOAD_IDENTITY[5]]).unwrap_err().to_string();
        assert!(
            message.starts_with(
                "PLUGIN_OIDC_TOKEN_ID is set, but GCS workload identity federation also needs \
             project_number (PLUGIN_PROJECT_NUMBER)"
            ),
            "{message}"
        );
        // A project id where the number belongs.
        let named = [&WORKLOAD_IDENTITY[..], &[("PLUGIN_PROJECT_NUMBER", "my-project")]].concat();
        let message = parse(&named).unwrap_err().to_string();
        assert!(message.starts_with("PLUGIN_PROJECT_NUMBER is set, but \"my-project\" is not a project number"));
        // On another backend, the four GCS settings are refused.
        let message = parse(&[("PLUGIN_BACKEND", "azure"), ("PLUGIN_SERVICE_ACCOUNT_EMAIL", "a@b")]).unwrap_err();
        assert!(message.to_string().contains("GCS workload identity setting, for the gcs backend only"), "{message}");
    }

    #[test]
    fn settings_chunkcache_cannot_honour_are_refused_naming_them() {
        for (var, value, advice) in [
            ("GCP_API_KEY", "AIza-secret-api-key", "json_key"),
            ("PLUGIN_GCS_ENCRYPTION_KEY", "0123456789abcdef0123456789abcdef", "bucket's default encryption"),
        ] {
            let message = parse(&[(var, value)]).unwrap_err().to_string();
            assert!(message.starts_with(&format!("{var} is set, but chunkcache does not support it")), "{message}");
            assert!(message.contains(advice) && !message.contains(value), "{message}");
        }
        assert!(parse(&[("PLUGIN_AUTO_CACHE", "true")]).unwrap().auto_cache);
        assert!(!parse(&[("PLUGIN_AUTO_CACHE", "false")]).unwrap().auto_cache);
        let message = parse(&[("PLUGIN_AUTO_CACHE", "maybe")]).unwrap_err().to_string();
        assert!(message.contains("PLUGIN_AUTO_CACHE"), "{message}");
    }

    #[test]
    fn fork_settings_that_change_nothing_are_noted() {
        let settings = parse(&[("PLUGIN_STRICT_KEY_MATCHING", "false"), ("PLUGIN_ENABLE_SEPARATOR", "true")]).unwrap();
        assert_eq!(settings.notes.len(), 2, "{:?}", settings.notes);
        assert!(settings.notes[0].contains("strict_key_matching") && settings.notes[1].contains("enable_separator"));
        assert!(parse(&[("PLUGIN_STRICT_KEY_MATCHING", "true")]).unwrap().notes.is_empty());
        let settings = parse(&[("PLUGIN_PRESERVE_METADATA", "true"), ("PLUGIN_DISABLESSL", "true")]).unwrap();
        assert!(settings.notes[0].contains("owner, group and access time are not restored"));
        assert!(settings.disable_ssl);
        let message = parse(&[("PLUGIN_STRICT_KEY_MATCHING", "maybe")]).unwrap_err().to_string();
        assert!(message.contains("PLUGIN_STRICT_KEY_MATCHING"), "{message}");
    }

    #[test]
    fn unknown_backend_and_format_list_the_valid_values() {
        let error = parse(&[("PLUGIN_BACKEND", "dropbox")]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("PLUGIN_BACKEND=\"dropbox\""), "{message}");
        assert!(message.contains("azure, s3, gcs, filesystem"), "{message}");

        let message = parse(&[("PLUGIN_BACKEND", "sftp")]).unwrap_err().to_string();
        assert!(message.contains("sftp backend has no chunkcache equivalent"), "{message}");

        assert_eq!(parse(&[("PLUGIN_BACKEND", "Azure")]).unwrap().backend, Backend::Azure);
        assert_eq!(parse(&[("PLUGIN_BACKEND", "gcs")]).unwrap().backend, Backend::Gcs);
        assert_eq!(parse(&[("PLUGIN_BACKEND", "filesystem")]).unwrap().backend, Backend::Filesystem);

        let message = parse(&[("PLUGIN_ARCHIVE_FORMAT", "rar")]).unwrap_err().to_string();
        assert!(message.contains("PLUGIN_ARCHIVE_FORMAT=\"rar\""), "{message}");
        assert!(message.contains("tar, gzip, zstd"), "{message}");
        let zstd = parse(&[("PLUGIN_ARCHIVE_FORMAT", "zstd")]).unwrap().archive_format;
        assert_eq!(zstd, ArchiveFormat::Zstd);
        assert!(zstd.is_compressed() && !ArchiveFormat::Tar.is_compressed());
    }

    #[test]
    fn integers_are_checked() {
        assert_eq!(parse(&[("PLUGIN_COMPRESSION_LEVEL", " 9 ")]).unwrap().compression_level, 9);
        let message = parse(&[("PLUGIN_COMPRESSION_LEVEL", "max")]).unwrap_err().to_string();
        assert!(message.contains("PLUGIN_COMPRESSION_LEVEL=\"max\" is not an integer"), "{message}");
        let message = parse(&[("AZURE_BLOB_MAX_RETRY_REQUESTS", "-1")]).unwrap_err().to_string();
        assert!(message.contains("AZURE_BLOB_MAX_RETRY_REQUESTS"), "{message}");
    }

    #[test]
    fn go_durations() {
        let ok = |text: &str| parse_go_duration(text).unwrap();
        assert_eq!(ok("3m"), Duration::from_secs(180));
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("300ms"), Duration::from_millis(300));
        assert_eq!(ok("2h45m30.5s"), Duration::from_millis((2 * 3600 + 45 * 60 + 30) * 1000 + 500));
        assert_eq!(ok("1us"), Duration::from_micros(1));
        assert_eq!(ok("1\u{b5}s"), Duration::from_micros(1));
        assert_eq!(ok("10ns"), Duration::from_nanos(10));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("+5s"), Duration::from_secs(5));

        for bad in ["180", "3 m", "3mins", "-1m", "m", "1.s5", "ms5", "99999999999999999999999999999999999h"] {
            assert!(parse_go_duration(bad).is_err(), "{bad} should be refused");
        }
        assert!(parse_go_duration("180").unwrap_err().contains("has no unit"));

        let error = parse(&[("PLUGIN_BACKEND_OPERATION_TIMEOUT", "5 minutes")]).unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("PLUGIN_BACKEND_OPERATION_TIMEOUT=\"5 minutes\" is not a duration"), "{message}");
        assert!(message.contains("1h30m"), "{message}");
    }

    #[test]
    fn blob_endpoints() {
        let china = parse(&[("AZURE_BLOB_STORAGE_URL", "blob.core.chinacloudapi.cn")]).unwrap();
        assert_eq!(
            china.azure.options.endpoint.as_ref().unwrap().account_url("acct"),
            "https://acct.blob.core.chinacloudapi.cn"
        );

        // `endpoint` names the blob endpoint only for the Azure backend, and then wins.
        let azurite = parse(&[
            ("PLUGIN_BACKEND", "azure"),
            ("PLUGIN_ENDPOINT", "http://127.0.0.1:10000/devstoreaccount1/"),
            ("AZURE_BLOB_STORAGE_URL", "blob.core.chinacloudapi.cn"),
        ])
        .unwrap();
        assert_eq!(
            azurite.azure.options.endpoint,
            Some(BlobEndpoint::Url("http://127.0.0.1:10000/devstoreaccount1".into()))
        );
        assert_eq!(
            azurite.azure.options.endpoint.as_ref().unwrap().account_url("devstoreaccount1"),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        let s3 = parse(&[("PLUGIN_ENDPOINT", "http://minio:9000")]).unwrap();
        assert_eq!(s3.azure.options.endpoint, Some(BlobEndpoint::default()));
        assert_eq!(s3.s3.endpoint.as_deref(), Some("http://minio:9000"));
        assert_eq!(s3.gcs.endpoint.as_deref(), Some("http://minio:9000"));

        // Path-style emulator URLs without a path get the account appended; custom domains do not.
        let bare = BlobEndpoint::parse("http://localhost:10000").unwrap();
        assert_eq!(bare.account_url("devstoreaccount1"), "http://localhost:10000/devstoreaccount1");
        let custom = BlobEndpoint::parse("https://cache.example.com").unwrap();
        assert_eq!(custom.account_url("acct"), "https://cache.example.com");

        for bad in ["127.0.0.1:10000", "localhost", "ftp://host/x", "http://", "a/b"] {
            assert!(BlobEndpoint::parse(bad).is_err(), "{bad} should be refused");
        }
        let message = parse(&[("AZURE_BLOB_STORAGE_URL", "127.0.0.1:10000")]).unwrap_err().to_string();
        assert!(message.starts_with("AZURE_BLOB_STORAGE_URL=\"127.0.0.1:10000\""), "{message}");
        assert!(message.contains("http://127.0.0.1:10000/devstoreaccount1"), "{message}");
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let settings = parse(&[
            ("PLUGIN_BACKEND", "azure"),
            ("PLUGIN_ACCOUNT_NAME", "someaccount"),
            ("PLUGIN_ACCOUNT_KEY", "account-key-value-1"),
            ("PLUGIN_SAS_TOKEN", "sv=2022&sig=sas-value-2"),
            ("PLUGIN_SECRET_KEY", "secret-key-value-3"),
            ("PLUGIN_JSON_KEY", "{\"private_key\":\"json-key-value-4\"}"),
            ("PLUGIN_SESSION_TOKEN", "session-token-value-5"),
            ("PLUGIN_DEBUG", "true"),
        ])
        .unwrap();
        let debug = format!("{settings:?}");
        let pretty = format!("{settings:#?}");
        for secret in
            ["account-key-value-1", "sas-value-2", "secret-key-value-3", "json-key-value-4", "session-token-value-5"]
        {
            assert!(!debug.contains(secret), "{secret} leaked into {debug}");
            assert!(!pretty.contains(secret), "{secret} leaked into {pretty}");
        }
        assert!(debug.contains("***"));
        let key = settings.azure.options.key.as_ref().unwrap();
        assert_eq!(key.to_string(), "***");
        assert_eq!(key.expose(), "account-key-value-1");
    }

    #[test]
    fn validate_names_missing_backend_settings() {
        let error = parse(&[("PLUGIN_BACKEND", "azure"), ("PLUGIN_ACCOUNT_KEY", "k")]).unwrap().validate().unwrap_err();
        assert!(error.to_string().contains("PLUGIN_ACCOUNT_NAME"), "{error}");
        let error =
            parse(&[("PLUGIN_BACKEND", "azure"), ("PLUGIN_ACCOUNT_NAME", "a")]).unwrap().validate().unwrap_err();
        assert!(error.to_string().contains("PLUGIN_ACCOUNT_KEY"), "{error}");
        parse(&[("PLUGIN_BACKEND", "azure"), ("PLUGIN_ACCOUNT_NAME", "a"), ("AZURE_SAS_TOKEN", "sig")])
            .unwrap()
            .validate()
            .unwrap();
        let error = parse(&[]).unwrap().validate().unwrap_err();
        assert!(error.to_string().contains("PLUGIN_BUCKET"), "{error}");
        parse(&[("PLUGIN_BACKEND", "filesystem")]).unwrap().validate().unwrap();
    }

    #[test]
    fn bad_exclude_globs_are_refused() {
        let message = parse(&[("PLUGIN_EXCLUDE", "ok/**, a**b")]).unwrap_err().to_string();
        assert!(message.contains("PLUGIN_EXCLUDE") && message.contains("\"a**b\""), "{message}");
    }

    #[test]
    fn gradle_layouts_are_recognised_by_folders_only_gradle_makes() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("gradle");
        std::fs::create_dir_all(home.join("caches/modules-2/files-2.1")).unwrap();
        assert_eq!(gradle_layout(&home), Some("caches/modules-2"));
        assert_eq!(gradle_layout(&home.join("caches")), Some("modules-2"));
        let wrapper_only = dir.path().join("wrapper-home");
        std::fs::create_dir_all(wrapper_only.join("wrapper/dists/gradle-8.5-bin")).unwrap();
        assert_eq!(gradle_layout(&wrapper_only), Some("wrapper/dists"));
        let vendor = dir.path().join("vendor");
        std::fs::create_dir_all(vendor.join("caches")).unwrap();
        std::fs::write(vendor.join("yarn.lock"), "").unwrap();
        assert_eq!(gradle_layout(&vendor), None);
        assert_eq!(gradle_layout(&dir.path().join("missing")), None);
    }

    fn excluded(path: &str) -> bool {
        GRADLE_DEFAULT_EXCLUDES
            .iter()
            .any(|pattern| glob::Pattern::new(pattern).unwrap().matches_with(path, EXCLUDE_MATCH_OPTIONS))
    }

    #[test]
    fn gradle_default_excludes_match_per_process_files() {
        // Mount root = the Gradle user home.
        for path in [
            "caches/modules-2/modules-2.lock",
            "caches/modules-2/gc.properties",
            "caches/8.5/fileHashes/fileHashes.lock",
            "caches/journal-1/file-access.bin",
            "caches/journal-1/journal-1.lock",
            "caches/8.5/cc-keystore/keystore.bin",
            "daemon/8.5/daemon-1234.out.log",
            "daemon/8.5/registry.bin",
            ".tmp/gradle123.tmp",
            "caches/build-cache-1/gc.properties",
        ] {
            assert!(excluded(path), "{path} should be excluded");
        }
        // Mount root = `<GRADLE_HOME>/caches/`, as on the Harness page.
        for path in ["modules-2/modules-2.lock", "journal-1/file-access.bin", "8.5/cc-keystore/keystore.bin"] {
            assert!(excluded(path), "{path} should be excluded");
        }
        // What the cache is for must stay.
        for path in [
            "caches/modules-2/files-2.1/com.google.guava/guava/33.0.0-jre/abc123/guava-33.0.0-jre.jar",
            "caches/modules-2/metadata-2.106/descriptors/com.google.guava/guava/descriptor.bin",
            "caches/transforms-4/abc/transformed/classes.jar",
            "caches/jars-9/abc/buildSrc.jar",
            "wrapper/dists/gradle-8.5-bin/abc/gradle-8.5-bin.zip.ok",
            "caches/8.5/fileHashes/fileHashes.bin",
            "modules-2/files-2.1/org.jetbrains.kotlin/kotlin-daemon-embeddable/1.9.23/abc/kotlin-daemon-embeddable-1.9.23.jar",
        ] {
            assert!(!excluded(path), "{path} should be kept");
        }
    }
}
