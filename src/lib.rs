//! chunkcache: a content-addressed, deduplicating cache for CI pipelines.

pub mod azure_admin;
pub mod plugin;
