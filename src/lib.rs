//! chunkcache: a content-addressed, deduplicating cache for CI pipelines.
//!
//! A save walks directories, splits file contents into content-defined chunks
//! ([`chunker`], FastCDC 2020), names each chunk by its BLAKE3 hash ([`id`]), compresses it
//! when that pays ([`codec`]) and uploads only the chunks the store lacks ([`store`], any
//! `object_store` backend via [`backend`]). The [`manifest`] of the file tree is uploaded last:
//! it is the commit point. A restore plans against the local tree and fetches only what the
//! differing files need ([`restore`]). The Drone/Harness plugin lives in [`plugin`].
//!
//! The library never prints; long operations report to a [`progress::Progress`].
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use chunkcache::{backend, progress::NoProgress, restore, save};
//!
//! let work = tempfile::tempdir()?;
//! std::fs::create_dir_all(work.path().join("cache/sub"))?;
//! std::fs::write(work.path().join("cache/sub/file.txt"), b"hello, cache")?;
//!
//! let store = backend::open("memory://", &backend::BackendOptions::default()).await?;
//! let report = save::save(
//!     &store,
//!     &save::SaveOptions {
//!         key: "example/main".into(),
//!         mounts: vec!["cache".into()],
//!         root: work.path().to_path_buf(),
//!         walk: Default::default(),
//!         compression_level: 3,
//!         concurrency: 4,
//!         chunker: None,
//!         skip_if_exists: false,
//!     },
//!     &NoProgress,
//! )
//! .await?;
//! assert_eq!((report.saved.files, report.saved.bytes), (1, 12));
//!
//! let target = work.path().join("restored");
//! let restored = restore::restore(
//!     &store,
//!     &restore::RestoreOptions {
//!         key: "example/other".into(),
//!         fallback_prefixes: vec!["example/".into()],
//!         target: restore::RestoreTarget::Under(target.clone()),
//!         mirror: false,
//!         concurrency: 4,
//!         only_mounts: None,
//!     },
//!     &NoProgress,
//! )
//! .await?;
//! assert_eq!(restored.outcome, restore::Outcome::FallbackHit);
//! assert_eq!(std::fs::read(target.join("cache/sub/file.txt"))?, b"hello, cache");
//! # Ok(())
//! # }
//! ```

pub mod azure_admin;
pub mod backend;
pub mod chunker;
pub mod codec;
pub mod id;
pub mod manifest;
pub mod plugin;
pub mod progress;
pub mod restore;
pub mod retry;
pub mod safe_fs;
pub mod save;
pub mod secret;
pub mod store;
pub mod walk;
