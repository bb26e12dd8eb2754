//! The configuration of one run, resolved once into a validated [`Config`].
//!
//! Every setting is taken from the first layer that has it:
//! 1. a command-line flag ([`FlagOptions`]);
//! 2. a `CHUNKCACHE_*` environment variable;
//! 3. the plugin step's `PLUGIN_*` settings, already resolved into a [`StepPlan`] (plugin runs only);
//! 4. the default.
//!
//! | setting | flag | variable | plugin | default |
//! |---|---|---|---|---|
//! | store URL | `--store` | `CHUNKCACHE_STORE` | backend, bucket, container, … | a folder under the user's cache directory |
//! | requests in flight | `--concurrency` | `CHUNKCACHE_CONCURRENCY` | — | 16 |
//! | request timeout | `--timeout` | `CHUNKCACHE_TIMEOUT` | `backend_operation_timeout` | 60 s |
//! | extra trusted CAs | `--ca-bundle` | `CHUNKCACHE_CA_BUNDLE` | `ca_bundle` | the system's only |
//!
//! The resolver reads an environment map that the caller builds once (`main` collects the process
//! environment), never the process environment itself, so tests pass maps. This is also why
//! clap's own `env` attribute is not used: it reads the process environment while parsing.

use std::collections::BTreeMap;
use std::time::Duration;

use chunkcache::plugin::step::StepPlan;
use chunkcache::store::backend::{self, BackendError, BackendOptions, BlobEndpoint};

/// Requests in flight at once when nothing says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// Seconds one store request may take when nothing says otherwise (the plugin's default is
/// drone-cache's `backend_operation_timeout`, 3 minutes).
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 60;

/// What the command line gave; `None` where a flag was not given.
#[derive(Debug, Default, Clone)]
pub struct FlagOptions {
    /// `--store`.
    pub store: Option<String>,
    /// `--endpoint`.
    pub endpoint: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `--path-style`.
    pub path_style: bool,
    /// `--ca-bundle`.
    pub ca_bundle: Option<std::path::PathBuf>,
    /// `--timeout`, in seconds.
    pub timeout: Option<u64>,
    /// `--concurrency`.
    pub concurrency: Option<usize>,
}

/// Everything a command needs to reach the store, resolved and validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The store URL (never holds credentials).
    pub store_url: String,
    /// How to reach the store: credentials, endpoints, timeout and retries.
    pub backend: BackendOptions,
    /// Requests in flight at once (at least 1).
    pub concurrency: usize,
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An environment variable whose value does not parse.
    #[error("{var}={value:?} is not {expected}; set it to e.g. {example} or use {flag}")]
    InvalidVariable {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
        /// A value that works.
        example: &'static str,
        /// The flag that overrides it.
        flag: &'static str,
    },
    /// The credential variables (`AZURE_*`, `AWS_*`, `GOOGLE_*`) cannot be used.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// A whole number from a `CHUNKCACHE_*` variable, when it is set.
fn number<T: std::str::FromStr>(
    env: &BTreeMap<String, String>,
    var: &'static str,
    expected: &'static str,
    example: &'static str,
    flag: &'static str,
) -> Result<Option<T>, ConfigError> {
    env.get(var)
        .map(|value| {
            value.trim().parse::<T>().map_err(|_| ConfigError::InvalidVariable {
                var,
                value: value.clone(),
                expected,
                example,
                flag,
            })
        })
        .transpose()
}

impl Config {
    /// Resolves the configuration of a command: `flags`, then `CHUNKCACHE_*` variables in `env`,
    /// then `plugin` (the plugin step's resolved settings, for a plugin run), then defaults.
    ///
    /// Credentials come from `plugin` when there is one, else from the usual variables of `env`
    /// ([`BackendOptions::from_env`]). A missing Azure container is created only when `for_save`
    /// (and, in a plugin run, when the step saves): a restore from a missing container is a miss,
    /// not a reason to create one. Likewise only a save creates a missing local store folder.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable and the flag that overrides it.
    pub fn resolve(
        flags: &FlagOptions,
        plugin: Option<&StepPlan>,
        env: &BTreeMap<String, String>,
        for_save: bool,
    ) -> Result<Self, ConfigError> {
        let store_url = flags
            .store
            .clone()
            .or_else(|| env.get("CHUNKCACHE_STORE").cloned())
            .or_else(|| plugin.map(|plan| plan.store_url.clone()))
            .unwrap_or_else(|| backend::default_store_url(env));

        let mut backend = match plugin {
            Some(plan) => plan.backend.clone(),
            None => {
                let mut options = BackendOptions::from_env(env)?;
                options.azure.create_container = for_save;
                options
            }
        };
        backend.create_local = for_save;
        if let Some(path) = flags
            .ca_bundle
            .clone()
            .or_else(|| env.get("CHUNKCACHE_CA_BUNDLE").filter(|v| !v.is_empty()).map(Into::into))
        {
            backend.ca_bundle = Some(path);
        }
        let timeout = match flags.timeout {
            Some(seconds) => Some(seconds),
            None => number(env, "CHUNKCACHE_TIMEOUT", "a whole number of seconds", "60", "--timeout")?,
        };
        backend.request_timeout = match (timeout, plugin) {
            (Some(seconds), _) => Duration::from_secs(seconds.max(1)),
            (None, Some(plan)) => plan.backend.request_timeout,
            (None, None) => Duration::from_secs(DEFAULT_TIMEOUT_SECONDS),
        };
        if let Some(endpoint) = &flags.endpoint {
            backend.azure.endpoint = Some(BlobEndpoint::Url(endpoint.clone()));
            backend.s3.endpoint = Some(endpoint.clone());
            backend.gcs.endpoint = Some(endpoint.clone());
        }
        if plugin.is_none() || flags.region.is_some() {
            backend.s3.region = flags.region.clone();
        }
        if flags.path_style {
            backend.s3.path_style = Some(true);
        }

        let concurrency = match flags.concurrency {
            Some(n) => n,
            None => {
                number(env, "CHUNKCACHE_CONCURRENCY", "a number", "16", "--concurrency")?.unwrap_or(DEFAULT_CONCURRENCY)
            }
        };
        Ok(Self { store_url, backend, concurrency: concurrency.max(1) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chunkcache::plugin::settings::PluginSettings;
    use chunkcache::plugin::step;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A plugin step saving to the S3 bucket `plugin-bucket` with a 90 s operation timeout.
    fn plugin_plan(vars: &BTreeMap<String, String>) -> StepPlan {
        let settings = PluginSettings::from_env(vars).unwrap();
        step::resolve(&settings, vars, std::path::Path::new("/work")).unwrap()
    }

    fn plugin_env(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut vars = env(&[
            ("PLUGIN_REBUILD", "true"),
            ("PLUGIN_MOUNT", "cache"),
            ("PLUGIN_BUCKET", "plugin-bucket"),
            ("PLUGIN_BACKEND_OPERATION_TIMEOUT", "90s"),
        ]);
        vars.extend(env(extra));
        vars
    }

    #[test]
    fn flags_win_over_chunkcache_variables_which_win_over_defaults() {
        let vars = env(&[
            ("CHUNKCACHE_STORE", "file:///from-env"),
            ("CHUNKCACHE_CONCURRENCY", "8"),
            ("CHUNKCACHE_TIMEOUT", "30"),
            ("HOME", "/home/ci"),
        ]);
        let flags = FlagOptions {
            store: Some("memory://".into()),
            concurrency: Some(4),
            timeout: Some(5),
            ..Default::default()
        };
        let config = Config::resolve(&flags, None, &vars, false).unwrap();
        assert_eq!(config.store_url, "memory://");
        assert_eq!(config.concurrency, 4);
        assert_eq!(config.backend.request_timeout, Duration::from_secs(5));

        let config = Config::resolve(&FlagOptions::default(), None, &vars, false).unwrap();
        assert_eq!(config.store_url, "file:///from-env");
        assert_eq!(config.concurrency, 8);
        assert_eq!(config.backend.request_timeout, Duration::from_secs(30));

        let config = Config::resolve(&FlagOptions::default(), None, &env(&[("HOME", "/home/ci")]), true).unwrap();
        assert_eq!(config.store_url, "file:///home/ci/.cache/chunkcache/store");
        assert_eq!(config.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(config.backend.request_timeout, Duration::from_secs(DEFAULT_TIMEOUT_SECONDS));
        assert!(config.backend.azure.create_container, "saves create a missing container");
        let restore = Config::resolve(&FlagOptions::default(), None, &env(&[]), false).unwrap();
        assert!(!restore.backend.azure.create_container, "restores never create one");
    }

    #[test]
    fn chunkcache_variables_win_over_plugin_settings_which_win_over_defaults() {
        let plugin_only = plugin_env(&[]);
        let config =
            Config::resolve(&FlagOptions::default(), Some(&plugin_plan(&plugin_only)), &plugin_only, true).unwrap();
        assert_eq!(config.store_url, "s3://plugin-bucket");
        assert_eq!(config.backend.request_timeout, Duration::from_secs(90));
        assert_eq!(config.concurrency, DEFAULT_CONCURRENCY, "the plugin has no concurrency setting");

        let both = plugin_env(&[
            ("CHUNKCACHE_STORE", "memory://"),
            ("CHUNKCACHE_CONCURRENCY", "3"),
            ("CHUNKCACHE_TIMEOUT", "7"),
        ]);
        let config = Config::resolve(&FlagOptions::default(), Some(&plugin_plan(&both)), &both, true).unwrap();
        assert_eq!(config.store_url, "memory://");
        assert_eq!(config.concurrency, 3);
        assert_eq!(config.backend.request_timeout, Duration::from_secs(7));

        let flags = FlagOptions { concurrency: Some(2), timeout: Some(1), ..Default::default() };
        let config = Config::resolve(&flags, Some(&plugin_plan(&both)), &both, true).unwrap();
        assert_eq!((config.concurrency, config.backend.request_timeout), (2, Duration::from_secs(1)));
    }

    #[test]
    fn the_plugin_keeps_its_own_credentials_and_region() {
        let vars = plugin_env(&[("PLUGIN_REGION", "eu-west-1"), ("PLUGIN_ACCESS_KEY", "AKIAEXAMPLE")]);
        let config = Config::resolve(&FlagOptions::default(), Some(&plugin_plan(&vars)), &vars, true).unwrap();
        assert_eq!(config.backend.s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.backend.s3.access_key.as_deref(), Some("AKIAEXAMPLE"));
    }

    #[test]
    fn unparsable_variables_are_named_with_the_flag_that_overrides_them() {
        let err = Config::resolve(&FlagOptions::default(), None, &env(&[("CHUNKCACHE_CONCURRENCY", "many")]), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("CHUNKCACHE_CONCURRENCY=\"many\"") && err.contains("--concurrency"), "{err}");
        let err = Config::resolve(&FlagOptions::default(), None, &env(&[("CHUNKCACHE_TIMEOUT", "1m")]), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("CHUNKCACHE_TIMEOUT=\"1m\"") && err.contains("--timeout"), "{err}");
        // A flag makes the variable irrelevant, as it would be unread.
        let flags = FlagOptions { concurrency: Some(2), ..Default::default() };
        assert!(Config::resolve(&flags, None, &env(&[("CHUNKCACHE_CONCURRENCY", "many")]), false).is_ok());
    }
}
