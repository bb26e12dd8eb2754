//! `auto_cache: true`, as Harness Cache Intelligence does it: detect the build tools of a workspace by
//! their marker files, pick each tool's cache folders, and derive the cache key from the files that
//! define the dependencies.
//!
//! | tool | detected by | folders cached | key files |
//! |---|---|---|---|
//! | Gradle | `build.gradle(.kts)`, `settings.gradle(.kts)` | `$GRADLE_USER_HOME` (default `~/.gradle`): `caches`, `wrapper` | `*.gradle`, `*.gradle.kts`, `gradle-wrapper.properties`, `*.versions.toml`, `versions.properties` |
//! | Maven | `pom.xml` | `~/.m2/repository` | `pom.xml` |
//! | npm | `package-lock.json`, `npm-shrinkwrap.json`; else `package.json` when no tool's lock file exists | `$npm_config_cache` (default `~/.npm`), `node_modules` beside each lock file | those files |
//! | yarn | `yarn.lock` | `$YARN_CACHE_FOLDER` (default `~/.cache/yarn`), `~/.yarn/berry/cache`, `.yarn/cache` and `node_modules` beside each `yarn.lock` | `yarn.lock`, `.yarnrc.yml` |
//! | pnpm | `pnpm-lock.yaml` | `$XDG_DATA_HOME/pnpm/store` (default `~/.local/share/pnpm/store`), `node_modules` beside each lock file | `pnpm-lock.yaml` |
//! | Go | `go.mod` | `$GOMODCACHE` (default `$GOPATH/pkg/mod`, `~/go/pkg/mod`), `$GOCACHE` (default `~/.cache/go-build`) | `go.mod`, `go.sum`, `go.work`, `go.work.sum` |
//! | Cargo | `Cargo.toml` | `$CARGO_HOME` (default `~/.cargo`): `registry/index`, `registry/cache`, `git/db` | `Cargo.toml`, `Cargo.lock` |
//!
//! The folders are where each tool keeps what it downloads, as `gradle/actions`, `actions/setup-java`,
//! `actions/setup-node`, `actions/setup-go` and `Swatinem/rust-cache` cache them. Unlike the Harness fork,
//! nothing in the repository is rewritten (the fork appends `gradle.user.home` to `gradle.properties` and
//! `-Dmaven.repo.local` to `.mvn/maven.config` to move the caches into the workspace): the tools' own default
//! folders are cached where they are. `node_modules` is cached as the Harness fork caches it, and the package
//! manager's download cache besides, because `npm ci` deletes `node_modules` before installing.
//!
//! The workspace is searched at any depth, skipping hidden folders, `node_modules`, `target`, `build`, `vendor`,
//! what `.gitignore` files ignore (a lock file a build generates would change the key between the restore,
//! before the build, and the save, after it) and the cache folders themselves (`~/go/pkg/mod` is full of
//! `go.mod` files when `HOME` is the workspace).
//!
//! The key is `auto-cache/<tools>/<branch>-<hash>`, the hash being the first 128 bits of the BLAKE3 of the key
//! files, sorted by path, each as its path, a zero byte, its length and its content. A restore that misses falls
//! back to the branch's newest cache for the same tools (`auto-cache/<tools>/<branch>-`), then to any branch's
//! (`auto-cache/<tools>/`), so a new branch starts warm.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use ignore::WalkBuilder;

/// The key's first segment, before the tool names.
pub const KEY_ROOT: &str = "auto-cache";

/// Folders never searched for marker and key files: what the tools build or download into, not what the
/// repository defines.
const SKIPPED_FOLDERS: &[&str] = &["node_modules", "target", "build", "vendor", "bower_components"];

/// A build tool `auto_cache` recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tool {
    /// Gradle.
    Gradle,
    /// Maven.
    Maven,
    /// npm.
    Npm,
    /// Yarn, classic or Berry.
    Yarn,
    /// pnpm.
    Pnpm,
    /// Go modules.
    Go,
    /// Cargo.
    Cargo,
}

impl Tool {
    /// Every tool, in the order keys and logs name them.
    pub const ALL: [Self; 7] = [Self::Gradle, Self::Maven, Self::Npm, Self::Yarn, Self::Pnpm, Self::Go, Self::Cargo];

    /// The tool's name in keys and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gradle => "gradle",
            Self::Maven => "maven",
            Self::Npm => "npm",
            Self::Yarn => "yarn",
            Self::Pnpm => "pnpm",
            Self::Go => "go",
            Self::Cargo => "cargo",
        }
    }

    /// The file names that show the tool is used. npm's `package.json` is not one: it is only taken when no tool's
    /// lock file exists ([`AutoCache::detect`]), since yarn and pnpm projects have one too.
    fn markers(self) -> &'static [&'static str] {
        match self {
            Self::Gradle => &["build.gradle", "build.gradle.kts", "settings.gradle", "settings.gradle.kts"],
            Self::Maven => &["pom.xml"],
            Self::Npm => &["package-lock.json", "npm-shrinkwrap.json"],
            Self::Yarn => &["yarn.lock"],
            Self::Pnpm => &["pnpm-lock.yaml"],
            Self::Go => &["go.mod"],
            Self::Cargo => &["Cargo.toml"],
        }
    }

    /// Whether a file of this name defines the tool's dependencies, and so goes into the key.
    fn is_key_file(self, name: &str) -> bool {
        match self {
            Self::Gradle => {
                name.ends_with(".gradle")
                    || name.ends_with(".gradle.kts")
                    || name.ends_with(".versions.toml")
                    || name == "gradle-wrapper.properties"
                    || name == "versions.properties"
            }
            Self::Maven => name == "pom.xml",
            Self::Npm => self.markers().contains(&name),
            Self::Yarn => name == "yarn.lock" || name == ".yarnrc.yml",
            Self::Pnpm => name == "pnpm-lock.yaml",
            Self::Go => ["go.mod", "go.sum", "go.work", "go.work.sum"].contains(&name),
            Self::Cargo => name == "Cargo.toml" || name == "Cargo.lock",
        }
    }

    /// The tool's folders outside the workspace (its user home, its download cache), from the environment.
    ///
    /// # Errors
    /// [`AutoCacheError::NoHome`] when a folder defaults to one under `HOME` and `HOME` is not set.
    fn home_folders(self, env: &BTreeMap<String, String>) -> Result<Vec<PathBuf>, AutoCacheError> {
        let var = |name: &str| env.get(name).map(|value| value.trim()).filter(|value| !value.is_empty());
        // `fix` names what to set instead when HOME is not set.
        let home = |under: &str, fix: &'static str| match var("HOME") {
            Some(home) => Ok(Path::new(home).join(under)),
            None => Err(AutoCacheError::NoHome { tool: self.name(), fix }),
        };
        let or_home = |name: &str, under: &str, fix| var(name).map_or_else(|| home(under, fix), |v| Ok(v.into()));
        Ok(match self {
            Self::Gradle => {
                let gradle_home = or_home("GRADLE_USER_HOME", ".gradle", "HOME or GRADLE_USER_HOME")?;
                vec![gradle_home.join("caches"), gradle_home.join("wrapper")]
            }
            Self::Maven => vec![home(".m2/repository", "HOME")?],
            Self::Npm => match var("npm_config_cache").or_else(|| var("NPM_CONFIG_CACHE")) {
                Some(cache) => vec![cache.into()],
                None => vec![home(".npm", "HOME or npm_config_cache")?],
            },
            Self::Yarn => {
                vec![or_home("YARN_CACHE_FOLDER", ".cache/yarn", "HOME")?, home(".yarn/berry/cache", "HOME")?]
            }
            Self::Pnpm => vec![var("XDG_DATA_HOME").map_or_else(
                || home(".local/share/pnpm/store", "HOME or XDG_DATA_HOME"),
                |data| Ok(Path::new(data).join("pnpm/store")),
            )?],
            Self::Go => {
                // GOPATH may list several folders; the module cache is in the first.
                let gopath = var("GOPATH").and_then(|path| path.split(':').next()).filter(|path| !path.is_empty());
                let modules = match (var("GOMODCACHE"), gopath) {
                    (Some(cache), _) => cache.into(),
                    (None, Some(gopath)) => Path::new(gopath).join("pkg/mod"),
                    (None, None) => home("go/pkg/mod", "HOME or GOMODCACHE")?,
                };
                let build = match (var("GOCACHE"), var("XDG_CACHE_HOME")) {
                    (Some(cache), _) => cache.into(),
                    (None, Some(xdg)) => Path::new(xdg).join("go-build"),
                    (None, None) => home(".cache/go-build", "HOME or GOCACHE")?,
                };
                vec![modules, build]
            }
            Self::Cargo => {
                let cargo_home = or_home("CARGO_HOME", ".cargo", "HOME or CARGO_HOME")?;
                vec![cargo_home.join("registry/index"), cargo_home.join("registry/cache"), cargo_home.join("git/db")]
            }
        })
    }

    /// The tool's folders beside one of its marker files in `folder` (relative to the workspace).
    fn project_folders(self, folder: &Path) -> Vec<PathBuf> {
        match self {
            Self::Npm | Self::Pnpm => vec![folder.join("node_modules")],
            Self::Yarn => vec![folder.join(".yarn/cache"), folder.join("node_modules")],
            Self::Gradle | Self::Maven | Self::Go | Self::Cargo => Vec::new(),
        }
    }
}

/// One tool `auto_cache` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedTool {
    /// Which.
    pub tool: Tool,
    /// The marker files that gave it away, relative to the workspace, sorted.
    pub markers: Vec<PathBuf>,
    /// Its cache folders: absolute outside the workspace, relative inside it.
    pub folders: Vec<PathBuf>,
}

/// What `auto_cache` found in a workspace: the tools, their folders and the key they derive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoCache {
    /// The tools found, in [`Tool::ALL`] order.
    pub tools: Vec<DetectedTool>,
    /// The files that define the dependencies, relative to the workspace, sorted.
    pub key_files: Vec<PathBuf>,
    /// The first 128 bits of their BLAKE3, in hex.
    pub hash: String,
}

/// Why `auto_cache` could not plan a step.
#[derive(Debug, thiserror::Error)]
pub enum AutoCacheError {
    /// No marker file of any tool.
    #[error(
        "auto_cache found no build tool in {}: it looks for Gradle (build.gradle, build.gradle.kts, \
         settings.gradle), Maven (pom.xml), npm (package-lock.json, package.json), yarn (yarn.lock), pnpm \
         (pnpm-lock.yaml), Go (go.mod) and Cargo (Cargo.toml); for another tool, set mount (and cache_key) to its \
         folders, or remove auto_cache",
        root.display()
    )]
    NothingDetected {
        /// The folder searched.
        root: PathBuf,
    },
    /// A tool's folder defaults to one under `HOME`, which is not set.
    #[error("auto_cache found {tool} but HOME is not set, so its cache folders are unknown: set {fix}")]
    NoHome {
        /// The tool.
        tool: &'static str,
        /// The variables that place the folders, such as "HOME or GRADLE_USER_HOME".
        fix: &'static str,
    },
    /// The workspace could not be searched, or a key file read.
    #[error("auto_cache cannot read {}: {source}; fix its permissions or remove auto_cache", path.display())]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl AutoCache {
    /// Searches `root` (the step's `local_root`, by default its working directory) for the tools' marker and key
    /// files, and hashes the key files. `env` gives `HOME` and the variables that move the tools' folders.
    ///
    /// # Errors
    /// [`AutoCacheError::NothingDetected`] when no tool is found, [`AutoCacheError::NoHome`] when a folder cannot
    /// be placed, [`AutoCacheError::Read`] when the workspace or a key file cannot be read.
    pub fn detect(root: &Path, env: &BTreeMap<String, String>) -> Result<Self, AutoCacheError> {
        // Every tool's home folders, to skip them when HOME is the workspace; a tool whose folders are unknown
        // (no HOME) only fails if it is detected.
        let skipped: Vec<PathBuf> = Tool::ALL.iter().filter_map(|tool| tool.home_folders(env).ok()).flatten().collect();
        let files = workspace_files(root, &skipped)?;
        let name_of = |path: &Path| path.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_owned();

        let mut found: Vec<(Tool, Vec<PathBuf>)> = Tool::ALL
            .iter()
            .map(|&tool| {
                (tool, files.iter().filter(|path| tool.markers().contains(&name_of(path).as_str())).cloned().collect())
            })
            .filter(|(_, markers): &(Tool, Vec<PathBuf>)| !markers.is_empty())
            .collect();
        let locked = found.iter().any(|(tool, _)| matches!(tool, Tool::Npm | Tool::Yarn | Tool::Pnpm));
        let package_json: Vec<PathBuf> = files.iter().filter(|path| name_of(path) == "package.json").cloned().collect();
        // A package.json without any lock file: npm, with the shallowest package.json as the project.
        let npm_without_lock = !locked && !package_json.is_empty();
        if npm_without_lock {
            let shallowest = package_json.iter().min_by_key(|path| (path.components().count(), path.as_os_str().len()));
            found.push((Tool::Npm, shallowest.into_iter().cloned().collect()));
            found.sort_by_key(|(tool, _)| *tool);
        }
        if found.is_empty() {
            return Err(AutoCacheError::NothingDetected { root: root.to_path_buf() });
        }

        let mut tools = Vec::with_capacity(found.len());
        for (tool, markers) in found {
            let mut folders = tool.home_folders(env)?;
            for marker in &markers {
                for folder in tool.project_folders(marker.parent().unwrap_or(Path::new(""))) {
                    if !folders.contains(&folder) {
                        folders.push(folder);
                    }
                }
            }
            tools.push(DetectedTool { tool, markers, folders });
        }
        let key_files: Vec<PathBuf> = files
            .into_iter()
            .filter(|path| {
                let name = name_of(path);
                tools.iter().any(|detected| detected.tool.is_key_file(&name))
                    || (npm_without_lock && name == "package.json")
            })
            .collect();
        let hash = hash_files(root, &key_files)?;
        Ok(Self { tools, key_files, hash })
    }

    /// The tools' names joined by `-`, as in the key: `gradle-npm`.
    pub fn tool_names(&self) -> String {
        self.tools.iter().map(|detected| detected.tool.name()).collect::<Vec<_>>().join("-")
    }

    /// Every folder to cache, each once, in the tools' order.
    pub fn folders(&self) -> Vec<PathBuf> {
        let mut folders: Vec<PathBuf> = Vec::new();
        for folder in self.tools.iter().flat_map(|detected| &detected.folders) {
            if !folders.contains(folder) {
                folders.push(folder.clone());
            }
        }
        folders
    }

    /// The cache key on `branch`: `auto-cache/<tools>/<branch>-<hash>` (`auto-cache/<tools>/<hash>` without a
    /// branch).
    pub fn key(&self, branch: &str) -> String {
        format!("{}{}", self.branch_prefix(branch), self.hash)
    }

    /// The fallback prefixes of a restore, in order: the branch's newest cache for the same tools, then any
    /// branch's.
    pub fn fallback_prefixes(&self, branch: &str) -> Vec<String> {
        let tools = format!("{KEY_ROOT}/{}/", self.tool_names());
        let branch = self.branch_prefix(branch);
        if branch == tools { vec![tools] } else { vec![branch, tools] }
    }

    fn branch_prefix(&self, branch: &str) -> String {
        let tools = self.tool_names();
        if branch.is_empty() { format!("{KEY_ROOT}/{tools}/") } else { format!("{KEY_ROOT}/{tools}/{branch}-") }
    }

    /// What the step logs: the tools with their marker files, and the folders.
    pub fn describe(&self) -> [String; 2] {
        let tools: Vec<String> = self
            .tools
            .iter()
            .map(|detected| format!("{} ({})", detected.tool.name(), list(&detected.markers)))
            .collect();
        [format!("auto_cache: detected {}", tools.join(", ")), format!("auto_cache: caching {}", list(&self.folders()))]
    }

    /// What the step logs when it uses the derived key: the hash and the files it covers.
    pub fn describe_key(&self) -> String {
        format!("auto_cache: key hash {} of {} file(s): {}", self.hash, self.key_files.len(), list(&self.key_files))
    }
}

/// Paths joined by `, `, the first eight only, then how many more.
fn list(paths: &[PathBuf]) -> String {
    const SHOWN: usize = 8;
    let mut text = paths.iter().take(SHOWN).map(|path| path.display().to_string()).collect::<Vec<_>>().join(", ");
    if paths.len() > SHOWN {
        text.push_str(&format!(" and {} more", paths.len() - SHOWN));
    }
    text
}

/// Every file below `root` whose name might be a marker or key file, relative to `root`, sorted; hidden folders,
/// [`SKIPPED_FOLDERS`], what `.gitignore` ignores and the `skipped` folders are not searched.
fn workspace_files(root: &Path, skipped: &[PathBuf]) -> Result<Vec<PathBuf>, AutoCacheError> {
    let wanted = |name: &str| {
        name == "package.json" || Tool::ALL.iter().any(|tool| tool.markers().contains(&name) || tool.is_key_file(name))
    };
    let skipped = skipped.to_vec();
    let walk = WalkBuilder::new(root)
        .standard_filters(false)
        .git_ignore(true)
        .require_git(false)
        .parents(false)
        .filter_entry(move |entry| {
            let is_dir = entry.file_type().is_some_and(|kind| kind.is_dir());
            let name = entry.file_name().to_string_lossy();
            entry.depth() == 0
                || !is_dir
                || !(name.starts_with('.')
                    || SKIPPED_FOLDERS.contains(&name.as_ref())
                    || skipped.iter().any(|folder| folder == entry.path()))
        })
        .build();
    let mut files = Vec::new();
    for entry in walk {
        let entry = entry.map_err(|error| AutoCacheError::Read {
            path: root.to_path_buf(),
            source: error.into_io_error().unwrap_or_else(|| std::io::Error::other("the walk failed")),
        })?;
        let is_file = entry.file_type().is_some_and(|kind| kind.is_file());
        if is_file && entry.file_name().to_str().is_some_and(wanted) {
            let relative = entry.path().strip_prefix(root).unwrap_or(entry.path()).to_path_buf();
            files.push(relative);
        }
    }
    files.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    Ok(files)
}

/// The first 128 bits of the BLAKE3 of `files` (relative to `root`, sorted): each as its path, a zero byte, its
/// length (8 bytes, little-endian) and its content, so that moving or splitting content changes the hash.
fn hash_files(root: &Path, files: &[PathBuf]) -> Result<String, AutoCacheError> {
    let mut hasher = blake3::Hasher::new();
    let mut content = Vec::new();
    for file in files {
        let path = root.join(file);
        let read = |source| AutoCacheError::Read { path: path.clone(), source };
        content.clear();
        std::fs::File::open(&path).and_then(|mut opened| opened.read_to_end(&mut content)).map_err(read)?;
        hasher.update(file.as_os_str().as_bytes());
        hasher.update(&[0]);
        hasher.update(&(content.len() as u64).to_le_bytes());
        hasher.update(&content);
    }
    Ok(hasher.finalize().to_hex()[..32].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, format!("content of {file}")).unwrap();
        }
        dir
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    fn home() -> BTreeMap<String, String> {
        env(&[("HOME", "/home/ci")])
    }

    fn detect(files: &[&str], env: &BTreeMap<String, String>) -> AutoCache {
        let dir = workspace(files);
        AutoCache::detect(dir.path(), env).unwrap()
    }

    fn paths(paths: &[&str]) -> Vec<PathBuf> {
        paths.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn gradle_is_detected_with_its_user_home_and_key_files() {
        let found = detect(
            &[
                "settings.gradle.kts",
                "app/build.gradle.kts",
                "gradle/libs.versions.toml",
                "gradle/wrapper/gradle-wrapper.properties",
                "gradle.properties",
                "app/src/Main.kt",
                "app/build/tmp/copied.gradle",
            ],
            &home(),
        );
        assert_eq!(found.tool_names(), "gradle");
        assert_eq!(found.tools[0].markers, paths(&["app/build.gradle.kts", "settings.gradle.kts"]));
        assert_eq!(found.folders(), paths(&["/home/ci/.gradle/caches", "/home/ci/.gradle/wrapper"]));
        assert_eq!(
            found.key_files,
            paths(&[
                "app/build.gradle.kts",
                "gradle/libs.versions.toml",
                "gradle/wrapper/gradle-wrapper.properties",
                "settings.gradle.kts"
            ])
        );
        let moved = detect(&["build.gradle"], &env(&[("GRADLE_USER_HOME", "/opt/gradle")]));
        assert_eq!(moved.folders(), paths(&["/opt/gradle/caches", "/opt/gradle/wrapper"]));
    }

    #[test]
    fn maven_is_detected_by_its_poms_outside_target() {
        let found = detect(&["pom.xml", "core/pom.xml", "core/target/classes/META-INF/maven/g/a/pom.xml"], &home());
        assert_eq!(found.tool_names(), "maven");
        assert_eq!(found.folders(), paths(&["/home/ci/.m2/repository"]));
        assert_eq!(found.key_files, paths(&["core/pom.xml", "pom.xml"]));
    }

    #[test]
    fn npm_yarn_and_pnpm_are_told_apart_by_their_lock_files() {
        let npm = detect(&["package.json", "package-lock.json", "node_modules/x/package-lock.json"], &home());
        assert_eq!(npm.tool_names(), "npm");
        assert_eq!(npm.folders(), paths(&["/home/ci/.npm", "node_modules"]));
        assert_eq!(npm.key_files, paths(&["package-lock.json"]));
        let moved = detect(&["web/package-lock.json"], &env(&[("npm_config_cache", "/cache/npm")]));
        assert_eq!(moved.folders(), paths(&["/cache/npm", "web/node_modules"]));

        let yarn = detect(&["package.json", "yarn.lock", ".yarnrc.yml"], &home());
        assert_eq!(yarn.tool_names(), "yarn");
        assert_eq!(
            yarn.folders(),
            paths(&["/home/ci/.cache/yarn", "/home/ci/.yarn/berry/cache", ".yarn/cache", "node_modules"])
        );
        assert_eq!(yarn.key_files, paths(&[".yarnrc.yml", "yarn.lock"]));

        let pnpm = detect(&["package.json", "pnpm-lock.yaml"], &env(&[("HOME", "/h"), ("XDG_DATA_HOME", "/data")]));
        assert_eq!(pnpm.tool_names(), "pnpm");
        assert_eq!(pnpm.folders(), paths(&["/data/pnpm/store", "node_modules"]));
        assert_eq!(pnpm.key_files, paths(&["pnpm-lock.yaml"]));

        // Without a lock file, the shallowest package.json makes an npm project, and every package.json is a key file.
        let bare = detect(&["package.json", "packages/a/package.json"], &home());
        assert_eq!(bare.tool_names(), "npm");
        assert_eq!(bare.tools[0].markers, paths(&["package.json"]));
        assert_eq!(bare.folders(), paths(&["/home/ci/.npm", "node_modules"]));
        assert_eq!(bare.key_files, paths(&["package.json", "packages/a/package.json"]));
    }

    #[test]
    fn go_is_detected_with_its_module_and_build_caches() {
        let found = detect(&["go.mod", "go.sum", "tools/go.mod"], &home());
        assert_eq!(found.tool_names(), "go");
        assert_eq!(found.folders(), paths(&["/home/ci/go/pkg/mod", "/home/ci/.cache/go-build"]));
        assert_eq!(found.key_files, paths(&["go.mod", "go.sum", "tools/go.mod"]));
        let moved = detect(&["go.mod"], &env(&[("GOPATH", "/go:/other"), ("XDG_CACHE_HOME", "/xdg")]));
        assert_eq!(moved.folders(), paths(&["/go/pkg/mod", "/xdg/go-build"]));
        let explicit = detect(&["go.mod"], &env(&[("GOMODCACHE", "/mods"), ("GOCACHE", "/build")]));
        assert_eq!(explicit.folders(), paths(&["/mods", "/build"]));
    }

    #[test]
    fn go_module_caches_inside_the_workspace_are_not_searched() {
        let dir = workspace(&["go.mod", "go/pkg/mod/example.com/dep@v1/go.mod"]);
        let env = env(&[("HOME", dir.path().to_str().unwrap())]);
        let found = AutoCache::detect(dir.path(), &env).unwrap();
        assert_eq!(found.key_files, paths(&["go.mod"]));
    }

    #[test]
    fn cargo_is_detected_with_its_registry_and_git_folders() {
        let found =
            detect(&["Cargo.toml", "Cargo.lock", "crates/a/Cargo.toml", "target/package/x/Cargo.toml"], &home());
        assert_eq!(found.tool_names(), "cargo");
        assert_eq!(
            found.folders(),
            paths(&["/home/ci/.cargo/registry/index", "/home/ci/.cargo/registry/cache", "/home/ci/.cargo/git/db"])
        );
        assert_eq!(found.key_files, paths(&["Cargo.lock", "Cargo.toml", "crates/a/Cargo.toml"]));
    }

    #[test]
    fn several_tools_are_named_in_order_and_share_one_hash() {
        let found = detect(&["web/package-lock.json", "build.gradle", "go.mod"], &home());
        assert_eq!(found.tool_names(), "gradle-npm-go");
        assert_eq!(found.key("main"), format!("auto-cache/gradle-npm-go/main-{}", found.hash));
        assert_eq!(found.fallback_prefixes("main"), ["auto-cache/gradle-npm-go/main-", "auto-cache/gradle-npm-go/"]);
        assert_eq!(found.key(""), format!("auto-cache/gradle-npm-go/{}", found.hash));
        assert_eq!(found.fallback_prefixes(""), ["auto-cache/gradle-npm-go/"]);
        assert_eq!(found.hash.len(), 32);
    }

    #[test]
    fn the_hash_follows_the_key_files_content_and_paths_only() {
        let dir = workspace(&["build.gradle", "src/Main.java"]);
        let first = AutoCache::detect(dir.path(), &home()).unwrap().hash;
        std::fs::write(dir.path().join("src/Main.java"), "changed").unwrap();
        assert_eq!(AutoCache::detect(dir.path(), &home()).unwrap().hash, first, "sources are not key files");
        std::fs::write(dir.path().join("build.gradle"), "dependencies { implementation 'g:a:2' }").unwrap();
        let second = AutoCache::detect(dir.path(), &home()).unwrap().hash;
        assert_ne!(second, first);
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::rename(dir.path().join("build.gradle"), dir.path().join("sub/build.gradle")).unwrap();
        assert_ne!(AutoCache::detect(dir.path(), &home()).unwrap().hash, second, "the path counts");
    }

    #[test]
    fn gitignored_and_hidden_files_are_not_searched() {
        let dir = workspace(&["go.mod", "generated/Cargo.lock", ".hidden/pom.xml"]);
        std::fs::write(dir.path().join(".gitignore"), "generated/\n").unwrap();
        let found = AutoCache::detect(dir.path(), &home()).unwrap();
        assert_eq!(found.tool_names(), "go");
        assert_eq!(found.key_files, paths(&["go.mod"]));
    }

    #[test]
    fn nothing_detected_and_no_home_are_explained() {
        let dir = workspace(&["README.md", "src/main.py"]);
        let message = AutoCache::detect(dir.path(), &home()).unwrap_err().to_string();
        assert!(message.starts_with("auto_cache found no build tool in"), "{message}");
        assert!(message.contains("set mount (and cache_key)"), "{message}");
        let dir = workspace(&["pom.xml"]);
        let message = AutoCache::detect(dir.path(), &env(&[])).unwrap_err().to_string();
        assert_eq!(message, "auto_cache found maven but HOME is not set, so its cache folders are unknown: set HOME");
    }

    #[test]
    fn the_log_names_tools_folders_and_files() {
        let found = detect(&["build.gradle", "go.mod"], &home());
        let [tools, folders] = found.describe();
        assert_eq!(tools, "auto_cache: detected gradle (build.gradle), go (go.mod)");
        assert!(folders.starts_with("auto_cache: caching /home/ci/.gradle/caches, /home/ci/.gradle/wrapper, "));
        let key = found.describe_key();
        assert!(key.ends_with("of 2 file(s): build.gradle, go.mod"), "{key}");
        let many: Vec<String> = (0..10).map(|module| format!("m{module}/pom.xml")).collect();
        let many = detect(&many.iter().map(String::as_str).collect::<Vec<_>>(), &home());
        assert!(many.describe_key().ends_with("m6/pom.xml, m7/pom.xml and 2 more"), "{}", many.describe_key());
    }
}
