//! The pure core: no file system, network or async. Ids, chunking, the chunk object codec, the
//! pack format, the manifest format, the GC plan, the `stats` tally, the cache-key rule and
//! encoding, the one-line error formatter, secrets that never print, the wall clock in manifest
//! units, and sizes and durations as people write them.

pub mod chunker;
pub mod codec;
pub mod error;
pub mod gc;
pub mod id;
pub mod key;
pub mod manifest;
pub mod pack;
pub mod paths;
pub mod secret;
pub mod stats;
pub mod time;
pub mod units;
