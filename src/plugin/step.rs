//! From settings to work: which store, which key, which mounts (pure; the binary runs it).
//!
//! The key is the rendered `cache_key` template (drone-cache's default, the md5 of the branch,
//! when unset). The store depends on the backend:
//!
//! | backend | store |
//! |---|---|
//! | `azure` | container `container`, else the key's first path segment (the Harness page's `CONTAINER/pipeline/branch-checksum`, the segment is then not part of the key), else the repository name |
//! | `s3`, `gcs` | `bucket` |
//! | `filesystem` | `filesystem_cache_root` |
//!
//! Keys are namespaced by `remote_root`, by default the repository name (as in drone-cache), so
//! two repositories sharing a bucket never restore each other's caches while their chunks still
//! dedup across both. Fallback prefixes for a restore are the
//! rendered `restore_keys`, then the cache key's template rendered up to its first
//! `checksum`/`hashFiles`/`epoch` call (for `pipeline/{{ .Commit.Branch }}-{{ checksum "x" }}`
//! that is `pipeline/main-`): the newest cache of the same branch.
//!
//! A gc step (`gc: true`) uses the same backend settings and the same store (for Azure, set `container`:
//! a gc step usually has no cache key to take it from); its key and mounts are not used.
//!
//! A rebuild needs `mount`; a restore without one restores every path the cache saved, as
//! drone-cache's restorer does when it is given no mounts (it lists the key's entries and
//! restores each).
//!
//! With `auto_cache: true` ([`crate::plugin::auto`]), the detected tools' folders are the mounts and
//! the key is derived from their dependency files, with its own fallback prefixes. An explicit
//! `mount` is cached besides the detected folders (the Harness fork caches it instead: here
//! `auto_cache` always means "and the tools' folders"); an explicit `cache_key` replaces the
//! derived key, as in the Harness fork. With no tool detected, the `mount` given is cached as
//! without `auto_cache`; with no `mount` either, the step cannot run ([`StepError::AutoCache`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::core::secret::Secret;
use crate::fs::workspace::WorkspaceFiles;
use crate::plugin::auto::{AutoCache, AutoCacheError};
use crate::plugin::settings::{Backend, GcSettings, PluginSettings, ReadOnly, SettingsError, StepMode};
use crate::plugin::template::{
    Metadata, RenderContext, RenderedKey, Template, TemplateError, default_cache_key, normalise_key, render_key,
};
use crate::store::backend::{self, AzureOptions, BackendOptions, BlobEndpoint, GcsOptions, S3Options};

/// Work a plugin step has resolved, not yet done.
#[derive(Debug, Clone)]
pub struct StepPlan {
    /// Restore, save or gc.
    pub mode: StepMode,
    /// What a gc step does.
    pub gc: GcSettings,
    /// The store URL (never holds credentials).
    pub store_url: String,
    /// How to reach it.
    pub backend: BackendOptions,
    /// The cache key inside the store.
    pub key: String,
    /// Fallback key prefixes for a restore, in order.
    pub fallback_prefixes: Vec<String>,
    /// The mounts, as configured, then the folders `auto_cache` detected.
    pub mounts: Vec<PathBuf>,
    /// The folders `auto_cache` detected: a save leaves out those that do not exist (the tool keeps its
    /// files elsewhere, or has not run), where a configured mount that does not exist is an error.
    pub detected_mounts: Vec<PathBuf>,
    /// What relative mounts are relative to.
    pub root: PathBuf,
    /// The `exclude` globs, for every mount.
    pub exclude: Vec<String>,
    /// `gradle_default_excludes`: also leave [`crate::plugin::settings::GRADLE_DEFAULT_EXCLUDES`] out of
    /// mounts laid out as a Gradle user home or its `caches/` ([`crate::plugin::settings::gradle_layout`]).
    pub gradle_default_excludes: bool,
    /// zstd level for compressible chunks.
    pub compression_level: i32,
    /// `skip_symlinks`: a save leaves symbolic links out, as drone-cache's archiver does.
    pub skip_symlinks: bool,
    /// Why a rebuild saves nothing (`cache_read_only`), if it does not.
    pub read_only: Option<String>,
    /// `cache_intel_metrics_file`, relative to the working directory.
    pub metrics_file: Option<PathBuf>,
    /// What the step should log about how the key and mounts were formed: a template that fell back to
    /// drone-cache's default key, a key normalised as drone-cache's path join does, what `auto_cache` detected.
    pub key_notes: Vec<String>,
}

/// Settings that cannot become a step.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A setting is invalid or missing.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The `cache_key` template does not parse (execution errors fall back to drone-cache's default key
    /// instead).
    #[error("PLUGIN_CACHE_KEY (setting cache_key) is not a valid template; fix it and run again")]
    Template(#[from] TemplateError),
    /// A `restore_keys` template does not parse or render.
    #[error("PLUGIN_RESTORE_KEYS (setting restore_keys) holds a template that does not render; fix it and run again")]
    RestoreKeyTemplate(#[source] TemplateError),
    /// Neither restore, rebuild nor gc was asked for.
    #[error(
        "the step neither restores nor saves: set PLUGIN_RESTORE (restore: true) or PLUGIN_REBUILD (rebuild: true), \
         or PLUGIN_GC (gc: true) for a scheduled garbage collection step"
    )]
    NoMode,
    /// A save without mounts.
    #[error("nothing to cache: set PLUGIN_MOUNT (setting mount) to the folders to cache, e.g. /harness/gradle/caches/")]
    NoMounts,
    /// `auto_cache` cannot plan the step; [`AutoCacheError::NothingDetected`] follows `exit_code`, as a
    /// miss does, since the workspace, not a setting, is at fault.
    #[error(transparent)]
    AutoCache(#[from] AutoCacheError),
    /// No container could be derived.
    #[error(
        "no Azure container: set PLUGIN_CONTAINER (setting container), or start the cache key with one \
         (CONTAINER/…), or run where DRONE_REPO_NAME is set"
    )]
    NoContainer,
}

/// Resolves a step from its settings and the Drone environment. `workdir` is where templates
/// read files (`checksum`, `hashFiles`) and what mounts are relative to without `local_root`.
///
/// # Errors
/// [`StepError`] naming the setting to fix.
pub fn resolve(
    settings: &PluginSettings,
    env: &BTreeMap<String, String>,
    workdir: &Path,
) -> Result<StepPlan, StepError> {
    let mode = settings.mode.ok_or(StepError::NoMode)?;
    settings.validate()?;
    let metadata = Metadata::from_env(env);
    let root = settings.local_root.as_ref().map_or_else(|| workdir.to_path_buf(), |local| workdir.join(local));
    let mut key_notes = Vec::new();
    let auto = match settings.auto_cache && mode != StepMode::Gc {
        false => None,
        true => match AutoCache::detect(&root, env) {
            Ok(found) => {
                key_notes.extend(found.describe());
                if !settings.mounts.is_empty() {
                    key_notes.push("auto_cache: mount is set: caching it besides the detected folders".to_string());
                }
                if settings.cache_key.is_some() {
                    key_notes.push(
                        "auto_cache: cache_key is set: using it instead of the key derived from the dependency files"
                            .to_string(),
                    );
                } else {
                    key_notes.push(found.describe_key());
                }
                Some(found)
            }
            Err(AutoCacheError::NothingDetected { .. }) if !settings.mounts.is_empty() => {
                key_notes.push("auto_cache: no build tool detected: caching mount only".to_string());
                None
            }
            Err(error) => return Err(error.into()),
        },
    };
    if settings.mounts.is_empty() && auto.is_none() && mode == StepMode::Rebuild {
        return Err(StepError::NoMounts);
    }
    // The derived key, unless `cache_key` replaces it.
    let auto_key = auto.as_ref().filter(|_| settings.cache_key.is_none());
    // drone-cache reads `checksum` and `hashFiles` paths from its working directory, whatever `local_root` says.
    let context = RenderContext::new(&metadata, Arc::new(WorkspaceFiles::new(workdir)));
    let (raw_key, fallback) = match auto_key {
        Some(found) => (found.key(&metadata.commit.branch), found.fallback_prefixes(&metadata.commit.branch)),
        None => {
            let rendered = cache_key(settings.cache_key.as_deref(), &context)?;
            if let RenderedKey::Fallback { key, error } = &rendered {
                key_notes.push(format!(
                    "warning: PLUGIN_CACHE_KEY (setting cache_key) failed to render: {error}; using drone-cache's \
                     default key {key:?} (the md5 of the branch), as drone-cache does"
                ));
            }
            let fallback = match (&settings.cache_key, &rendered) {
                (Some(template_text), RenderedKey::Rendered(_)) => {
                    Template::parse(template_text)?.render_fallback_prefix(&context).ok().flatten()
                }
                _ => None,
            };
            (rendered.key().to_string(), fallback.into_iter().collect())
        }
    };
    let key = normalise_key(&raw_key);
    if key != raw_key {
        key_notes.push(format!("note: cache key {raw_key:?} normalised to {key:?}, as drone-cache's path join does"));
    }
    let mut fallback_prefixes =
        settings.restore_keys.iter().map(|t| Template::parse(t)?.render(&context)).collect::<Result<Vec<_>, _>>()?;
    // A save still learns from the default fallback (its parent); only restores may turn it off.
    if settings.restore_fallback || mode != StepMode::Restore {
        fallback_prefixes.extend(fallback.into_iter().filter(|f| *f != key));
    }
    let read_only = match settings.cache_read_only {
        ReadOnly::Never => None,
        ReadOnly::Always => Some("cache_read_only is true".to_string()),
        ReadOnly::OffDefaultBranch if metadata.build.event == "pull_request" => {
            Some("cache_read_only is not-default-branch and this build is a pull request".to_string())
        }
        ReadOnly::OffDefaultBranch if metadata.commit.branch != metadata.repo.branch => Some(format!(
            "cache_read_only is not-default-branch and branch {:?} is not the default branch {:?}",
            metadata.commit.branch, metadata.repo.branch
        )),
        ReadOnly::OffDefaultBranch => None,
    };

    let mut backend = BackendOptions {
        request_timeout: settings.backend_operation_timeout,
        ca_bundle: settings.ca_bundle.clone(),
        ..BackendOptions::default()
    };
    let mut key = key;
    let store_url = match settings.backend {
        Backend::Azure => {
            let account = settings.azure.options.account.as_deref().expect("validated");
            let container = match &settings.azure.container {
                Some(container) => container.clone(),
                // A derived key starts with `auto-cache/`, never with a container.
                None => match key.split_once('/') {
                    Some((first, rest)) if auto_key.is_none() && !first.is_empty() && !rest.is_empty() => {
                        let container = first.to_string();
                        key = rest.to_string();
                        fallback_prefixes = fallback_prefixes
                            .into_iter()
                            .filter_map(|p| p.strip_prefix(&format!("{container}/")).map(str::to_string))
                            .collect();
                        container
                    }
                    _ => container_from_repo(&metadata.repo.name).ok_or(StepError::NoContainer)?,
                },
            };
            backend.max_retries = settings.azure.max_retry_requests as usize;
            // The account's URL, as drone-cache forms it: a bare emulator URL gets the account as its path.
            let endpoint = settings.azure.options.endpoint.as_ref().map(|e| BlobEndpoint::Url(e.account_url(account)));
            backend.azure = AzureOptions {
                endpoint,
                create_container: mode == StepMode::Rebuild,
                ..settings.azure.options.clone()
            };
            format!("az://{container}")
        }
        Backend::S3 => {
            // The settings win; the `AWS_*` variables fill in the rest (session token, web identity,
            // profile, region), as the AWS SDK's default chain does for drone-cache.
            let mut aws_env = backend::aws_variables(env);
            if settings.s3_bucket_public && settings.s3.access_key.is_none() && settings.s3.secret_key.is_none() {
                aws_env.insert("AWS_SKIP_SIGNATURE".into(), Secret::new("true"));
            }
            backend.s3 = S3Options { region: settings.region.clone(), aws_env, ..settings.s3.clone() };
            format!("s3://{}", settings.s3.bucket.as_deref().expect("validated"))
        }
        Backend::Gcs => {
            // The settings win; `GOOGLE_APPLICATION_CREDENTIALS` and the like fill in the rest.
            let from_env = GcsOptions::from_env(env);
            backend.gcs = GcsOptions {
                service_account_json: settings.gcs.service_account_json.clone().or(from_env.service_account_json),
                service_account_path: settings.gcs.service_account_path.clone().or(from_env.service_account_path),
                endpoint: settings.gcs.endpoint.clone().or(from_env.endpoint),
                ..settings.gcs.clone()
            };
            format!("gs://{}", settings.gcs.bucket.as_deref().expect("validated"))
        }
        Backend::Filesystem => {
            format!("file://{}", workdir.join(&settings.filesystem_cache_root).display())
        }
    };
    let namespace = settings.remote_root.as_deref().unwrap_or(&metadata.repo.name).trim_matches('/');
    if !namespace.is_empty() {
        key = if key.is_empty() { namespace.to_string() } else { format!("{namespace}/{key}") };
        fallback_prefixes = fallback_prefixes.into_iter().map(|prefix| format!("{namespace}/{prefix}")).collect();
    }
    let detected_mounts = auto.map(|found| found.folders()).unwrap_or_default();
    let mut mounts: Vec<PathBuf> =
        settings.mounts.iter().map(|mount| PathBuf::from(expand_mount(mount, env))).collect();
    for folder in &detected_mounts {
        if !mounts.contains(folder) {
            mounts.push(folder.clone());
        }
    }
    Ok(StepPlan {
        mode,
        gc: settings.gc.clone(),
        store_url,
        backend,
        key,
        fallback_prefixes,
        mounts,
        detected_mounts,
        root,
        exclude: settings.exclude.clone(),
        gradle_default_excludes: settings.gradle_default_excludes,
        compression_level: if settings.compression_level > 0 { settings.compression_level.min(19) } else { 3 },
        skip_symlinks: settings.skip_symlinks,
        read_only,
        metrics_file: settings.metrics_file.as_ref().map(|file| workdir.join(file)),
        key_notes,
    })
}

/// A `mount` entry as the Harness fork reads it: the first `~` becomes `$HOME`, then `$NAME` and
/// `${NAME}` become the variable's value (empty when unset), as Go's `os.ExpandEnv` does. Entries
/// with `**` are globs, expanded when the step runs (drone-cache's doublestar expansion).
pub fn expand_mount(mount: &str, env: &BTreeMap<String, String>) -> String {
    let home = env.get("HOME").map_or("", String::as_str);
    let mount = mount.replacen('~', home, 1);
    let mut expanded = String::with_capacity(mount.len());
    let mut rest = mount.as_str();
    while let Some(at) = rest.find('$') {
        expanded.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{').and_then(|inner| inner.find('}').map(|end| (inner, end))) {
            Some((inner, end)) => (&inner[..end], end + 2),
            None => {
                let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        if len == 0 {
            expanded.push('$');
        } else {
            expanded.push_str(env.get(name).map_or("", String::as_str));
        }
        rest = &after[len..];
    }
    expanded.push_str(rest);
    expanded
}

/// The key a `cache_key` template renders to, as drone-cache's key generator forms it, before
/// [`normalise_key`] and the namespace: drone-cache's default key without a template, its
/// fallback when the template fails to execute.
///
/// # Errors
/// [`TemplateError`] when the template does not parse (a syntax error or an unknown function):
/// drone-cache refuses such a step too.
pub fn cache_key(template_text: Option<&str>, context: &RenderContext<'_>) -> Result<RenderedKey, TemplateError> {
    match template_text {
        Some(text) => Ok(render_key(&Template::parse(text)?, context)),
        None => Ok(RenderedKey::Rendered(default_cache_key(context.metadata))),
    }
}

/// drone-cache's fallback container: the repository name, made a valid container name
/// (lowercase letters, digits and single hyphens).
fn container_from_repo(repo: &str) -> Option<String> {
    let mut name = String::new();
    for c in repo.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_end_matches('-').to_string();
    (name.len() >= 3).then_some(name.chars().take(63).collect::<String>().trim_end_matches('-').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::template;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The Harness page's restore step, as the env vars Harness passes a plugin.
    fn harness(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut vars = env(&[
            ("PLUGIN_RESTORE", "true"),
            (
                "PLUGIN_CACHE_KEY",
                "somecontainer/pipelineid/{{ .Commit.Branch }}-{{ checksum \"gradle-examples/x/build.gradle\" }}",
            ),
            ("PLUGIN_ARCHIVE_FORMAT", "gzip"),
            ("PLUGIN_MOUNT", "/harness/gradle/caches/"),
            ("PLUGIN_REGION", "us-west-2"),
            ("PLUGIN_ACCOUNT_KEY", "c2VjcmV0a2V5"),
            ("PLUGIN_ACCOUNT_NAME", "someaccount"),
            ("PLUGIN_BACKEND", "azure"),
            ("DRONE_COMMIT_BRANCH", "main"),
            ("DRONE_REPO_NAME", "My_Repo"),
        ]);
        vars.extend(env(extra));
        vars
    }

    fn workdir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("gradle-examples/x")).unwrap();
        std::fs::write(dir.path().join("gradle-examples/x/build.gradle"), b"plugins { id 'java' }\n").unwrap();
        dir
    }

    fn plan(vars: &BTreeMap<String, String>, dir: &Path) -> Result<StepPlan, StepError> {
        resolve(&PluginSettings::from_env(vars).unwrap(), vars, dir)
    }

    #[test]
    fn mounts_expand_home_and_variables_as_the_harness_fork_does() {
        let env: BTreeMap<String, String> = [("HOME", "/home/ci"), ("GRADLE_USER_HOME", "/opt/gradle"), ("V", "x")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        assert_eq!(expand_mount("~/.m2/repository", &env), "/home/ci/.m2/repository");
        assert_eq!(expand_mount("$GRADLE_USER_HOME/caches/", &env), "/opt/gradle/caches/");
        assert_eq!(expand_mount("a/${V}/b-$V.d", &env), "a/x/b-x.d");
        assert_eq!(expand_mount("$UNSET/a", &env), "/a");
        assert_eq!(expand_mount("cost$/a~", &env), "cost$/a/home/ci");
        assert_eq!(expand_mount("**/node_modules", &env), "**/node_modules");
    }

    #[test]
    fn the_harness_page_resolves_container_from_the_key() {
        let dir = workdir();
        let step = plan(&harness(&[]), dir.path()).unwrap();
        assert_eq!(step.store_url, "az://somecontainer");
        let md5 = "7cbab2ebb0e7bc1c3f8b2b86c1a86e5d";
        let rendered = template::render(
            "{{ checksum \"gradle-examples/x/build.gradle\" }}",
            &Metadata::default(),
            Arc::new(WorkspaceFiles::new(dir.path())),
        )
        .unwrap();
        assert_eq!(rendered.len(), md5.len());
        assert_eq!(step.key, format!("My_Repo/pipelineid/main-{rendered}"));
        assert_eq!(step.fallback_prefixes, ["My_Repo/pipelineid/main-"]);
        assert_eq!(
            step.backend.azure.endpoint,
            Some(BlobEndpoint::Url("https://someaccount.blob.core.windows.net".into()))
        );
        assert!(!step.backend.azure.create_container, "restores never create containers");
        assert_eq!(step.mounts, [PathBuf::from("/harness/gradle/caches/")]);
        assert!(step.gradle_default_excludes && step.exclude.is_empty());
        assert!(!format!("{step:?}").contains("c2VjcmV0a2V5"));
    }

    #[test]
    fn an_explicit_container_keeps_the_whole_key_and_azurite_endpoints_work() {
        let dir = workdir();
        let vars = harness(&[
            ("PLUGIN_CONTAINER", "explicit"),
            ("PLUGIN_REBUILD", "true"),
            ("PLUGIN_RESTORE", "false"),
            ("AZURE_BLOB_STORAGE_URL", "http://127.0.0.1:10000/devstoreaccount1"),
            ("PLUGIN_REMOTE_ROOT", "/ci/"),
        ]);
        let step = plan(&vars, dir.path()).unwrap();
        assert_eq!(step.store_url, "az://explicit");
        assert!(step.key.starts_with("ci/somecontainer/pipelineid/main-"), "{}", step.key);
        assert!(step.backend.azure.create_container);
        assert_eq!(
            step.backend.azure.endpoint,
            Some(BlobEndpoint::Url("http://127.0.0.1:10000/devstoreaccount1".into()))
        );
    }

    #[test]
    fn keys_without_a_segment_use_the_repository_name() {
        let dir = workdir();
        let step = plan(&harness(&[("PLUGIN_CACHE_KEY", "gradle-{{ .Commit.Branch }}")]), dir.path()).unwrap();
        assert_eq!(step.store_url, "az://my-repo");
        assert_eq!(step.key, "My_Repo/gradle-main");
        let vars = harness(&[("PLUGIN_CACHE_KEY", "flat"), ("DRONE_REPO_NAME", "")]);
        assert!(matches!(plan(&vars, dir.path()), Err(StepError::NoContainer)));
    }

    #[test]
    fn other_backends_and_defaults() {
        let dir = workdir();
        let vars = env(&[
            ("PLUGIN_REBUILD", "true"),
            ("PLUGIN_MOUNT", "node_modules,.gradle"),
            ("PLUGIN_BACKEND", "filesystem"),
            ("PLUGIN_FILESYSTEM_CACHE_ROOT", "/tmp/cache"),
            ("DRONE_COMMIT_BRANCH", "main"),
        ]);
        let step = plan(&vars, dir.path()).unwrap();
        assert_eq!(step.store_url, "file:///tmp/cache");
        assert_eq!(step.key, template::default_cache_key(&Metadata::from_env(&vars)));
        assert_eq!(step.mounts.len(), 2);
        let s3 = env(&[
            ("PLUGIN_RESTORE", "true"),
            ("PLUGIN_BUCKET", "b"),
            ("PLUGIN_ENDPOINT", "http://127.0.0.1:9000"),
            ("PLUGIN_PATH_STYLE", "true"),
            ("PLUGIN_CACHE_KEY", "k"),
            ("PLUGIN_RESTORE_KEYS", "main,dev"),
        ]);
        let step = plan(&s3, dir.path()).unwrap();
        assert_eq!(step.store_url, "s3://b");
        assert_eq!(step.backend.s3.path_style, Some(true));
        assert_eq!(step.fallback_prefixes, ["main", "dev"]);
    }

    #[test]
    fn missing_mode_mounts_and_bad_templates_are_explained() {
        let dir = workdir();
        let err = plan(&harness(&[("PLUGIN_RESTORE", "false")]), dir.path()).unwrap_err();
        assert!(err.to_string().contains("PLUGIN_RESTORE"), "{err}");
        let vars = harness(&[("PLUGIN_RESTORE", "false"), ("PLUGIN_REBUILD", "true"), ("PLUGIN_MOUNT", "")]);
        assert!(plan(&vars, dir.path()).unwrap_err().to_string().contains("PLUGIN_MOUNT"));
        let err = plan(&harness(&[("PLUGIN_CACHE_KEY", "{{ .Commit.Branch ")]), dir.path()).unwrap_err();
        assert!(format!("{:#}", anyhow::Error::from(err)).contains("line"));
    }

    #[test]
    fn repositories_sharing_a_bucket_get_their_own_keys() {
        let dir = workdir();
        let repo =
            |name: &str| env(&[("PLUGIN_RESTORE", "true"), ("PLUGIN_BUCKET", "shared"), ("DRONE_REPO_NAME", name)]);
        let (a, b) = (plan(&repo("api"), dir.path()).unwrap(), plan(&repo("web"), dir.path()).unwrap());
        assert_eq!(a.store_url, b.store_url);
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with("api/") && b.key.starts_with("web/"));
    }

    #[test]
    fn auto_cache_derives_mounts_key_and_fallbacks_and_never_a_container() {
        let dir = workdir();
        let vars =
            harness(&[("PLUGIN_AUTO_CACHE", "true"), ("PLUGIN_CACHE_KEY", ""), ("PLUGIN_MOUNT", ""), ("HOME", "/h")]);
        let step = plan(&vars, dir.path()).unwrap();
        assert_eq!(step.store_url, "az://my-repo", "the derived key's first segment is no container");
        assert!(step.key.starts_with("My_Repo/auto-cache/gradle/main-"), "{}", step.key);
        assert_eq!(step.fallback_prefixes, ["My_Repo/auto-cache/gradle/main-", "My_Repo/auto-cache/gradle/"]);
        assert_eq!(step.mounts, [PathBuf::from("/h/.gradle/caches"), PathBuf::from("/h/.gradle/wrapper")]);
        assert_eq!(step.detected_mounts, step.mounts);
        assert!(step.key_notes[0].starts_with("auto_cache: detected gradle (gradle-examples/x/build.gradle)"));

        let strict = [("PLUGIN_AUTO_CACHE", "true"), ("PLUGIN_CACHE_KEY", ""), ("HOME", "/h")];
        let strict = plan(&harness(&[&strict[..], &[("PLUGIN_RESTORE_FALLBACK", "false")]].concat()), dir.path());
        assert!(strict.unwrap().fallback_prefixes.is_empty());
        // A gc step detects nothing.
        let gc = env(&[("PLUGIN_GC", "true"), ("PLUGIN_AUTO_CACHE", "true"), ("PLUGIN_BACKEND", "filesystem")]);
        let empty = tempfile::tempdir().unwrap();
        assert!(plan(&gc, empty.path()).unwrap().mounts.is_empty());
        let restore =
            env(&[("PLUGIN_RESTORE", "true"), ("PLUGIN_AUTO_CACHE", "true"), ("PLUGIN_BACKEND", "filesystem")]);
        let error = plan(&restore, empty.path()).unwrap_err();
        assert!(matches!(error, StepError::AutoCache(AutoCacheError::NothingDetected { .. })), "{error}");
    }

    #[test]
    fn container_names_are_sanitized() {
        assert_eq!(container_from_repo("My_Repo.Name").as_deref(), Some("my-repo-name"));
        assert_eq!(container_from_repo("ab"), None);
    }
}
