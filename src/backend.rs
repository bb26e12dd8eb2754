//! Store URLs: which `object_store` backend a URL names, and how it is built.
//!
//! | URL | backend |
//! |---|---|
//! | `file:///abs/path` or a plain path | a local folder (created if missing) |
//! | `memory://` | in-process memory (tests) |
//!
//! Descriptions used in messages never contain credentials.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use crate::store::Store;

/// A store URL that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The URL is malformed or names an unknown scheme.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL (credentials never appear in store URLs).
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
}

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

/// Opens the store a URL names.
///
/// # Errors
/// [`BackendError`] with a message that says which URLs are accepted.
pub fn open(url: &str) -> Result<Store, BackendError> {
    let invalid = |reason: &str| BackendError::InvalidUrl { url: url.to_string(), reason: reason.to_string() };
    if url == "memory://" {
        return Ok(Store::new(Arc::new(InMemory::new()), "memory://"));
    }
    let local = match url.split_once("://") {
        Some(("file", path)) => PathBuf::from(path),
        Some((scheme, _)) => {
            return Err(invalid(&format!("unknown scheme {scheme:?}; use file:///PATH or memory://")));
        }
        None => PathBuf::from(url),
    };
    if local.as_os_str().is_empty() {
        return Err(invalid("the path is empty"));
    }
    let local = std::path::absolute(&local).map_err(|source| BackendError::Local { path: local.clone(), source })?;
    std::fs::create_dir_all(&local).map_err(|source| BackendError::Local { path: local.clone(), source })?;
    let backend = LocalFileSystem::new_with_prefix(&local)
        .map_err(|e| BackendError::Local { path: local.clone(), source: std::io::Error::other(e) })?;
    Ok(Store::new(Arc::new(backend), format!("file://{}", local.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_store_follows_xdg_then_home() {
        let env = |pairs: &[(&str, &str)]| {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()
        };
        assert_eq!(default_store_url(&env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])), "file:///x/chunkcache/store");
        assert_eq!(default_store_url(&env(&[("HOME", "/h")])), "file:///h/.cache/chunkcache/store");
        assert_eq!(default_store_url(&env(&[])), "file:///tmp/chunkcache/store");
    }

    #[test]
    fn unknown_schemes_are_explained() {
        let err = open("ftp://host/x").unwrap_err().to_string();
        assert!(err.contains("file:///PATH"), "{err}");
    }
}
