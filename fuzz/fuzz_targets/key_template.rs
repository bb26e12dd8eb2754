//! Fuzz target: cache-key templates parse, render and render their fallback prefix without
//! panicking, and whatever key they render is either refused by the key rule or accepted.
//!
//! Templates that could call `checksum` or `hashFiles` are parsed but not rendered: those read
//! files, and a generated pattern could name `/dev/zero`.

#![no_main]

use std::sync::OnceLock;

use chunkcache::plugin::template::{Metadata, RenderContext, Template};
use chunkcache::store::keyed_path;
use libfuzzer_sys::fuzz_target;

fn workdir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let Ok(template) = Template::parse(source) else { return };
    assert_eq!(template.source(), source);
    let metadata = Metadata::default();
    let context = RenderContext::new(&metadata, workdir());
    if let Ok(Some(prefix)) = template.render_fallback_prefix(&context) {
        let _ = keyed_path("manifests", &prefix);
    }
    if !source.contains("checksum")
        && !source.contains("hashFiles")
        && let Ok(key) = template.render(&context)
    {
        let _ = keyed_path("manifests", &key);
    }
});
