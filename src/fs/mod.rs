//! The file system at the edges: the parallel walk that scans what a save reads, the
//! no-follow operations and the tree writer through which a restore writes, and the workspace
//! files that key templates hash.

pub mod safe;
pub mod tree;
pub mod walk;
pub mod workspace;
