//! The pipelines: save and restore, each reading top to bottom as its pipeline, and the progress
//! interface they report to.

pub mod progress;
pub mod restore;
pub mod save;
