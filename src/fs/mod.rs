//! The file system at the edges: the parallel walk that scans what a save reads, and the
//! no-follow operations through which a restore writes.

pub mod safe;
pub mod walk;
