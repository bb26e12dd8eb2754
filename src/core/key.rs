//! The cache-key rule and the encoding of a key into an object name: pure, so a key can be
//! checked, encoded and decoded without a store (the store builds its object paths from it).
//!
//! A cache key is `/`-separated segments. Every backend shares one rule: no empty, `.` or `..`
//! segment, no control character, and limits on segments and length ([`MAX_KEY_SEGMENTS`],
//! [`MAX_ENCODED_SEGMENT_LEN`], [`MAX_ENCODED_KEY_LEN`]). [`encode_key`] turns a valid key into
//! an object name that every backend stores as is: each segment keeps ASCII letters, digits, `-`,
//! `_` and `.` (but not a final `.`, which Azure drops) and percent-encodes every other byte
//! (`a#1` → `a%231`), and the last segment gets a `~`, which is encoded everywhere else (`p` →
//! `p~`, `p/q` → `p/q~`). So names are ASCII, no file system or object store rewrites them, and
//! a key never names the folder of a longer key. [`decode_key`] reads a name back.

/// The longest encoded key: an object name is at most 1024 bytes on S3, Azure and GCS, and this
/// leaves 214 of them for `manifests/` and the store's own prefix.
pub const MAX_ENCODED_KEY_LEN: usize = 800;
/// The longest encoded segment, the leaf's `~` included: a file name is at most 255 bytes, and
/// a local store stages writes under the name plus `#N`.
pub const MAX_ENCODED_SEGMENT_LEN: usize = 240;
/// The most segments a key may have (Azure allows 254 in a whole blob name).
pub const MAX_KEY_SEGMENTS: usize = 64;
/// Ends the encoded name of a key; encoded everywhere else.
const LEAF_MARK: char = '~';
/// How the limits are counted, for messages.
const ENCODED_LENGTH_RULE: &str =
    "once encoded for the store, where every byte other than ASCII letters, digits, `-`, `_` and `.` takes 3";

/// A cache key that breaks the rule, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid cache key {key:?}: {reason} (keys are `/`-separated names without `.`/`..` segments or control \
     characters)"
)]
pub struct InvalidKey {
    /// The key (or key prefix).
    pub key: String,
    /// What is wrong with it, and the limit when one is exceeded.
    pub reason: String,
}

/// The object name of `key` (below its area, such as `manifests/`).
///
/// # Errors
/// [`InvalidKey`] for an empty key, an empty, `.` or `..` segment, a control character, or a key
/// or segment too long once encoded; the reason says the limit.
pub fn encode_key(key: &str) -> Result<String, InvalidKey> {
    encode(key).map_err(|reason| InvalidKey { key: key.to_string(), reason })
}

/// The encoded folder of a key prefix: its segments before the last `/` (empty when it has no
/// `/`). Object stores list by whole segments, so a listing by string prefix lists this folder.
///
/// # Errors
/// [`InvalidKey`] when a segment before the last `/` breaks the rule.
pub fn encode_prefix_folder(prefix: &str) -> Result<String, InvalidKey> {
    let mut folder = String::new();
    if let Some(slash) = prefix.rfind('/') {
        for (index, segment) in prefix[..slash].split('/').enumerate() {
            if index > 0 {
                folder.push('/');
            }
            encode_segment(segment, &mut folder).map_err(|reason| InvalidKey { key: prefix.to_string(), reason })?;
        }
    }
    Ok(folder)
}

fn encode(key: &str) -> Result<String, String> {
    if key.is_empty() {
        return Err("it is empty".into());
    }
    let segments = key.split('/').count();
    if segments > MAX_KEY_SEGMENTS {
        return Err(format!("it has {segments} segments, more than the limit of {MAX_KEY_SEGMENTS}"));
    }
    let mut encoded = String::with_capacity(key.len() + 1);
    for (index, segment) in key.split('/').enumerate() {
        if index > 0 {
            encoded.push('/');
        }
        let start = encoded.len();
        encode_segment(segment, &mut encoded)?;
        if index + 1 == segments {
            encoded.push(LEAF_MARK);
        }
        let length = encoded.len() - start;
        if length > MAX_ENCODED_SEGMENT_LEN {
            return Err(format!(
                "its segment {segment:?} takes {length} bytes {ENCODED_LENGTH_RULE}, more than the limit of \
                 {MAX_ENCODED_SEGMENT_LEN}: shorten it"
            ));
        }
    }
    if encoded.len() > MAX_ENCODED_KEY_LEN {
        return Err(format!(
            "it takes {} bytes {ENCODED_LENGTH_RULE}, more than the limit of {MAX_ENCODED_KEY_LEN}: shorten it",
            encoded.len()
        ));
    }
    Ok(encoded)
}

/// Appends one encoded key segment, or says why `segment` cannot be one.
fn encode_segment(segment: &str, out: &mut String) -> Result<(), String> {
    match segment {
        "" => return Err("it has an empty segment (a leading, trailing or doubled `/`)".into()),
        "." | ".." => return Err(format!("it has a `{segment}` segment")),
        _ => {}
    }
    if let Some(control) = segment.chars().find(|c| c.is_control()) {
        return Err(format!("it contains the control character {control:?}"));
    }
    let bytes = segment.as_bytes();
    for (index, &byte) in bytes.iter().enumerate() {
        let last = index + 1 == bytes.len();
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' || (byte == b'.' && !last) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(())
}

/// The key an object name (below its area) encodes, or `None` when it is not the exact
/// encoding of a valid key.
pub fn decode_key(name: &str) -> Option<String> {
    let bytes = name.strip_suffix(LEAF_MARK)?.as_bytes();
    let mut key = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
            key.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            key.push(bytes[at]);
            at += 1;
        }
    }
    let key = String::from_utf8(key).ok()?;
    // Only the canonical spelling: one name per key, so listings never show a key twice.
    (encode(&key).ok()? == name).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The object name of `key` in the manifests area, as the store builds it.
    fn manifests_path(key: &str) -> Result<String, InvalidKey> {
        encode_key(key).map(|encoded| format!("manifests/{encoded}"))
    }

    #[test]
    fn bad_keys_are_refused() {
        for key in ["", "/a", "a/", "a//b", "a/../b", "a/./b", "..", "a\nb", "a\u{7f}", "a\u{85}b"] {
            assert!(manifests_path(key).is_err(), "{key:?}");
        }
        assert!(manifests_path("container/pipe/main-abc123").is_ok());
        let err = manifests_path("a\tb").unwrap_err().to_string();
        assert!(err.contains("control character '\\t'"), "{err}");
    }

    /// The longest key: four segments, 800 bytes once encoded with the leaf mark.
    fn longest_key() -> String {
        ["a".repeat(239), "b".repeat(239), "c".repeat(239), "d".repeat(79)].join("/")
    }

    #[test]
    fn keys_encode_to_names_every_backend_keeps() {
        let name = |key: &str| manifests_path(key).unwrap();
        assert_eq!(name("p"), "manifests/p~");
        assert_eq!(name("p/q"), "manifests/p/q~");
        assert_eq!(name("repo/main-1.2_x"), "manifests/repo/main-1.2_x~");
        assert_eq!(name("a#1"), "manifests/a%231~");
        assert_eq!(name("a#1/b"), "manifests/a%231/b~");
        assert_eq!(name("50%/x~y z"), "manifests/50%25/x%7Ey%20z~");
        assert_eq!(name("é"), "manifests/%C3%A9~");
        assert_eq!(name("v1./w."), "manifests/v1%2E/w%2E~");
        assert_eq!(name("..."), "manifests/..%2E~");
        assert_eq!(name(&longest_key()).len(), "manifests/".len() + MAX_ENCODED_KEY_LEN);
    }

    #[test]
    fn too_long_keys_are_refused_with_the_limit() {
        let too_long = format!("{}e", longest_key());
        let err = manifests_path(&too_long).unwrap_err().to_string();
        assert!(err.contains("it takes 801 bytes once encoded") && err.contains("limit of 800: shorten it"), "{err}");
        let err = manifests_path(&"s".repeat(240)).unwrap_err().to_string();
        assert!(err.contains("takes 241 bytes") && err.contains("limit of 240"), "{err}");
        // 100 two-byte characters are 200 bytes, but 600 once encoded.
        let err = manifests_path(&"é".repeat(100)).unwrap_err().to_string();
        assert!(err.contains("takes 601 bytes") && err.contains("takes 3"), "{err}");
        let err = manifests_path(&vec!["s"; 65].join("/")).unwrap_err().to_string();
        assert!(err.contains("65 segments, more than the limit of 64"), "{err}");
        assert!(manifests_path(&vec!["s"; 64].join("/")).is_ok());
    }

    #[test]
    fn prefix_folders_are_encoded_segment_by_segment() {
        assert_eq!(encode_prefix_folder("repo/main").unwrap(), "repo");
        assert_eq!(encode_prefix_folder("a#1/b/c").unwrap(), "a%231/b");
        assert_eq!(encode_prefix_folder("main").unwrap(), "");
        assert_eq!(encode_prefix_folder("a/").unwrap(), "a");
        let err = encode_prefix_folder("a/../b").unwrap_err();
        assert_eq!(err.key, "a/../b");
        assert!(err.to_string().contains("`..` segment"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn valid_keys_round_trip_through_their_names(key in "([a-zA-Z0-9 ._~%#é😀\\-]{1,12}/){0,3}[a-zA-Z0-9 ._~%#é😀\\-]{1,12}") {
            let Ok(name) = encode_key(&key) else {
                // Only `.` and `..` segments are refused among these.
                proptest::prop_assert!(key.split('/').any(|s| s == "." || s == ".."));
                return Ok(());
            };
            proptest::prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.%/~".contains(&b)), "{}", name);
            proptest::prop_assert!(!name.split('/').any(|s| s.ends_with('.')), "{}", name);
            proptest::prop_assert_eq!(decode_key(&name), Some(key.clone()));
            // No key's name is the folder of another key's name.
            let longer = encode_key(&format!("{key}/x")).unwrap();
            let folder = format!("{name}/");
            proptest::prop_assert!(!longer.starts_with(&folder));
        }

        #[test]
        fn any_string_is_refused_or_round_trips(key in proptest::prelude::any::<String>()) {
            if let Ok(name) = encode_key(&key) {
                proptest::prop_assert_eq!(decode_key(&name), Some(key.clone()));
            }
            let _ = decode_key(&key);
        }
    }
}
