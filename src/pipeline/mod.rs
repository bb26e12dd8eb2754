//! The pipelines: save, restore, analyze, gc, stats and verify, each reading top to bottom as its
//! pipeline, the chunk stage save and analyze plug sinks into, the restore's ranged reads of
//! packs, and the progress interface they report to.

pub mod analyze;
pub mod chunk;
pub mod fetch;
pub mod gc;
pub mod progress;
pub mod restore;
pub mod save;
pub mod stats;
pub mod verify;
