//! The real workspace behind key templates' `checksum` and `hashFiles`: [`WorkspaceFiles`] reads the file
//! system, relative paths starting from the workspace folder, so the template engine itself stays pure.

use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;

use crate::plugin::template::TemplateFiles;

/// The files below a workspace folder (drone-cache's working directory). Absolute paths are read as they are.
#[derive(Debug, Clone)]
pub struct WorkspaceFiles {
    root: PathBuf,
}

impl WorkspaceFiles {
    /// The files below `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

impl TemplateFiles for WorkspaceFiles {
    fn open(&self, path: &str) -> io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(fs::File::open(self.root.join(path))?))
    }

    fn exists(&self, path: &str) -> bool {
        fs::symlink_metadata(self.root.join(path)).is_ok()
    }

    fn list_folder(&self, path: &str) -> Option<Vec<String>> {
        let full = self.root.join(path);
        if !fs::metadata(&full).is_ok_and(|metadata| metadata.is_dir()) {
            return None;
        }
        let entries = fs::read_dir(&full).ok()?;
        Some(entries.filter_map(|entry| entry.ok()?.file_name().into_string().ok()).collect())
    }
}
