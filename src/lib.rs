//! chunkcache: a content-addressed, deduplicating cache for CI pipelines.
//!
//! A save walks directories ([`fs::walk`]), splits file contents into content-defined chunks
//! ([`core::chunker`], FastCDC 2020), names each chunk by its BLAKE3 hash ([`core::id`]),
//! compresses it when that pays ([`core::codec`]) and uploads only the chunks the store lacks
//! ([`store`], any `object_store` backend via [`store::backend`]). The [`core::manifest`] of the
//! file tree is uploaded last: it is the commit point. A restore plans against the local tree and
//! fetches only what the differing files need ([`pipeline::restore`]), writing through handles
//! that never follow a symlink ([`fs::safe`]). The Drone/Harness plugin lives in [`plugin`].
//!
//! The layout shows the data flow:
//! - [`core`]: pure: ids, chunking, the chunk codec, the manifest format, the key rule and
//!   encoding, secrets;
//! - [`fs`]: the file system: the walk, no-follow operations below a restore root, and the tree
//!   writer ([`fs::tree`]);
//! - [`store`]: object store access: layout and typed operations, request counting, retries,
//!   backend URLs and credentials, Azure container creation;
//! - [`pipeline`]: the chunk stage ([`pipeline::chunk`]), save, and restore (prepare a plan,
//!   then execute it), each reading top to bottom as its pipeline, and the
//!   [`pipeline::progress::Progress`] they report to (the library never prints);
//! - [`plugin`]: the Drone/Harness plugin's settings, step and key templates.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use chunkcache::pipeline::{progress::NoProgress, restore, save};
//! use chunkcache::store::backend;
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
//!         parent_prefixes: vec![],
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

pub mod core;
pub mod fs;
pub mod pipeline;
pub mod plugin;
pub mod store;
