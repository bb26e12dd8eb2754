//! The file system at the edges: the parallel walk that scans what a save reads, and the
//! no-follow operations and the tree writer through which a restore writes.

pub mod safe;
pub mod tree;
pub mod walk;
