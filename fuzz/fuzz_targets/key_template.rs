//! Fuzz target: cache-key templates parse, render and render their fallback prefix without
//! panicking, and whatever key they render is either refused by the key rule or accepted.
//!
//! Templates render over an empty in-memory workspace: `checksum` and `hashFiles` read files only
//! through the files handed in, so no generated pattern reaches the disk (such as `/dev/zero`).

#![no_main]

use std::sync::Arc;

use chunkcache::plugin::template::{MemoryFiles, Metadata, RenderContext, Template};
use chunkcache::store::keyed_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let Ok(template) = Template::parse(source) else { return };
    assert_eq!(template.source(), source);
    let metadata = Metadata::default();
    let context = RenderContext::new(&metadata, Arc::new(MemoryFiles::default()));
    if let Ok(Some(prefix)) = template.render_fallback_prefix(&context) {
        let _ = keyed_path("manifests", &prefix);
    }
    if let Ok(key) = template.render(&context) {
        let _ = keyed_path("manifests", &key);
    }
});
