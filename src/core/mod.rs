//! The pure core: no file system, network or async. Ids, chunking, the chunk object codec, the
//! manifest format, and secrets that never print.

pub mod chunker;
pub mod codec;
pub mod error;
pub mod id;
pub mod manifest;
pub mod secret;
