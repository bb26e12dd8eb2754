//! Content ids: the BLAKE3 hash of a chunk's raw (uncompressed) bytes, and of a pack's bytes.
//!
//! Ids are newtypes so they cannot be confused with each other or with other 32-byte values.
//! `Display` prints a short prefix for humans; `to_hex` gives the full name used in the store.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Defines a 32-byte BLAKE3 id type with hex naming.
macro_rules! blake3_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Hashes `data` and returns its id.
            pub fn of(data: &[u8]) -> Self {
                Self(*blake3::hash(data).as_bytes())
            }

            /// The id whose raw hash bytes are `bytes` (as read from an index).
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw 32 bytes of the hash.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// The full 64-character lowercase hex form.
            pub fn to_hex(&self) -> String {
                blake3::Hash::from_bytes(self.0).to_hex().to_string()
            }

            /// Parses the full 64-character hex form; `None` if it is not one.
            pub fn from_hex(hex: &str) -> Option<Self> {
                if hex.len() != 64 {
                    return None;
                }
                blake3::Hash::from_hex(hex).ok().map(|h| Self(*h.as_bytes()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex()[..12])
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

blake3_id!(
    /// The BLAKE3 hash of a chunk's raw bytes: what the chunk is, wherever it is stored.
    ChunkId
);

blake3_id!(
    /// The BLAKE3 hash of a whole pack object, which is also its name in the store
    /// (see [`crate::core::pack`]).
    PackId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_display_is_a_prefix() {
        let id = ChunkId::of(b"hello");
        let hex = id.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(ChunkId::from_hex(&hex), Some(id));
        assert!(hex.starts_with(&id.to_string()));
        assert_eq!(ChunkId::from_hex("abc"), None);
        assert_ne!(ChunkId::of(b"hello"), ChunkId::of(b"hello!"));
        assert_eq!(format!("{:?}", PackId::of(b"hello")), format!("PackId({id})"));
    }
}
