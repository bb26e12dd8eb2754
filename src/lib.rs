//! chunkcache: a content-addressed, deduplicating cache for CI pipelines.

pub mod azure_admin;
pub mod backend;
pub mod chunker;
pub mod codec;
pub mod id;
pub mod manifest;
pub mod plugin;
pub mod progress;
pub mod restore;
pub mod save;
pub mod secret;
pub mod store;
pub mod walk;
