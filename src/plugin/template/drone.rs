//! drone-cache's own parts of key templates, apart from the generic [`super::engine`]: its build metadata
//! (`.Repo`, `.Build`, `.Commit`), the default key, the platform names `arch` and `os` render, the fallback
//! prefix, and the file functions `checksum` and `hashFiles` with Go's `filepath.Glob`. Those read files only
//! through [`TemplateFiles`]: the real workspace is [`crate::fs::workspace::WorkspaceFiles`], and
//! [`MemoryFiles`] holds files in memory.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::Digest;

use std::sync::Arc;

use gotmpl::{FuncMap, Value, ValueFunc};

use super::engine::{RenderContext, Template, TemplateError};

/// Drone build metadata, as drone-cache's `metadata.Metadata` holds it. Templates see the Go field names:
/// `.Repo.Name`, `.Commit.Branch`, `.Commit.Sha`, `.Build.Number`, `.Commit.Author.Email`, …
///
/// drone-cache's metadata has only `Build`, `Commit` and `Repo`: `.Prev`, `.Pipeline` or `.Stage` fail in
/// drone-cache too.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    /// `.Build`.
    pub build: Build,
    /// `.Commit`.
    pub commit: Commit,
    /// `.Repo`.
    pub repo: Repo,
}

/// `.Build`: the current build.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Build {
    /// `.Build.Created` (`DRONE_BUILD_CREATED`), Unix seconds.
    pub created: i64,
    /// `.Build.Deploy` (`DRONE_DEPLOY_TO`).
    pub deploy: String,
    /// `.Build.Event` (`DRONE_BUILD_EVENT`, default `push`).
    pub event: String,
    /// `.Build.Finished` (`DRONE_BUILD_FINISHED`), Unix seconds.
    pub finished: i64,
    /// `.Build.Link` (`DRONE_BUILD_LINK`).
    pub link: String,
    /// `.Build.Number` (`DRONE_BUILD_NUMBER`).
    pub number: i64,
    /// `.Build.Started` (`DRONE_BUILD_STARTED`), Unix seconds.
    pub started: i64,
    /// `.Build.Status` (`DRONE_BUILD_STATUS`, default `success`).
    pub status: String,
}

/// `.Commit`: the commit being built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Commit {
    /// `.Commit.Author`.
    pub author: Author,
    /// `.Commit.Branch` (`DRONE_COMMIT_BRANCH`, default `master`).
    pub branch: String,
    /// `.Commit.Link` (`DRONE_COMMIT_LINK`).
    pub link: String,
    /// `.Commit.Message` (`DRONE_COMMIT_MESSAGE`).
    pub message: String,
    /// `.Commit.Ref`. drone-cache fills it from `DRONE_COMMIT_SHA`, not `DRONE_COMMIT_REF` (its `main.go` reads
    /// the `commit.sha` flag for both); [`Metadata::from_env`] does the same so that keys stay identical.
    pub git_ref: String,
    /// `.Commit.Remote` (`DRONE_REMOTE_URL`).
    pub remote: String,
    /// `.Commit.Sha` (`DRONE_COMMIT_SHA`).
    pub sha: String,
}

/// `.Commit.Author`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Author {
    /// `.Commit.Author.Avatar` (`DRONE_COMMIT_AUTHOR_AVATAR`).
    pub avatar: String,
    /// `.Commit.Author.Email` (`DRONE_COMMIT_AUTHOR_EMAIL`).
    pub email: String,
    /// `.Commit.Author.Name` (`DRONE_COMMIT_AUTHOR`).
    pub name: String,
}

/// `.Repo`: the repository being built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Repo {
    /// `.Repo.Avatar` (`DRONE_REPO_AVATAR`).
    pub avatar: String,
    /// `.Repo.Branch` (`DRONE_REPO_BRANCH`): the default branch.
    pub branch: String,
    /// `.Repo.Link` (`DRONE_REPO_LINK`).
    pub link: String,
    /// `.Repo.Name` (`DRONE_REPO_NAME`).
    pub name: String,
    /// `.Repo.Namespace` (`DRONE_REPO_NAMESPACE`).
    pub namespace: String,
    /// `.Repo.Owner` (`DRONE_REPO_OWNER`).
    pub owner: String,
    /// `.Repo.Private` (`DRONE_REPO_PRIVATE`).
    pub private: bool,
    /// `.Repo.Trusted` (`DRONE_REPO_TRUSTED`).
    pub trusted: bool,
}

impl Metadata {
    /// Reads the metadata from `DRONE_*` variables (Harness sets them too), with drone-cache's defaults.
    ///
    /// As in drone-cache, a variable that is set but empty gives an empty field (no default), and
    /// `.Commit.Ref` holds the commit SHA. Numbers parse as Go's `strconv.ParseInt(value, 0, 64)` parses them
    /// (drone-cache's urfave/cli flags): `0x2A`, `052`, `0o52`, `0b101010` and `1_000` are numbers. Numbers
    /// that do not parse count as 0 and booleans that do not parse as false; drone-cache would refuse to
    /// start.
    pub fn from_env(env: &BTreeMap<String, String>) -> Self {
        let string = |name: &str, default: &str| env.get(name).map_or_else(|| default.to_owned(), Clone::clone);
        let int = |name: &str| env.get(name).and_then(|value| parse_go_int(value)).unwrap_or(0);
        let boolean = |name: &str| env.get(name).and_then(|value| parse_go_bool(value)).unwrap_or(false);
        Self {
            build: Build {
                created: int("DRONE_BUILD_CREATED"),
                deploy: string("DRONE_DEPLOY_TO", ""),
                event: string("DRONE_BUILD_EVENT", "push"),
                finished: int("DRONE_BUILD_FINISHED"),
                link: string("DRONE_BUILD_LINK", ""),
                number: int("DRONE_BUILD_NUMBER"),
                started: int("DRONE_BUILD_STARTED"),
                status: string("DRONE_BUILD_STATUS", "success"),
            },
            commit: Commit {
                author: Author {
                    avatar: string("DRONE_COMMIT_AUTHOR_AVATAR", ""),
                    email: string("DRONE_COMMIT_AUTHOR_EMAIL", ""),
                    name: string("DRONE_COMMIT_AUTHOR", ""),
                },
                branch: string("DRONE_COMMIT_BRANCH", "master"),
                link: string("DRONE_COMMIT_LINK", ""),
                message: string("DRONE_COMMIT_MESSAGE", ""),
                git_ref: string("DRONE_COMMIT_SHA", ""),
                remote: string("DRONE_REMOTE_URL", ""),
                sha: string("DRONE_COMMIT_SHA", ""),
            },
            repo: Repo {
                avatar: string("DRONE_REPO_AVATAR", ""),
                branch: string("DRONE_REPO_BRANCH", ""),
                link: string("DRONE_REPO_LINK", ""),
                name: string("DRONE_REPO_NAME", ""),
                namespace: string("DRONE_REPO_NAMESPACE", ""),
                owner: string("DRONE_REPO_OWNER", ""),
                private: boolean("DRONE_REPO_PRIVATE"),
                trusted: boolean("DRONE_REPO_TRUSTED"),
            },
        }
    }

    /// The metadata as a template value, with Go's field names.
    pub(super) fn to_value(&self) -> Value {
        let string = |value: &String| Value::from(value.as_str());
        let (build, commit, repo) = (&self.build, &self.commit, &self.repo);
        go_struct([
            (
                "Build",
                go_struct([
                    ("Created", Value::Int(build.created)),
                    ("Deploy", string(&build.deploy)),
                    ("Event", string(&build.event)),
                    ("Finished", Value::Int(build.finished)),
                    ("Link", string(&build.link)),
                    ("Number", Value::Int(build.number)),
                    ("Started", Value::Int(build.started)),
                    ("Status", string(&build.status)),
                ]),
            ),
            (
                "Commit",
                go_struct([
                    (
                        "Author",
                        go_struct([
                            ("Avatar", string(&commit.author.avatar)),
                            ("Email", string(&commit.author.email)),
                            ("Name", string(&commit.author.name)),
                        ]),
                    ),
                    ("Branch", string(&commit.branch)),
                    ("Link", string(&commit.link)),
                    ("Message", string(&commit.message)),
                    ("Ref", string(&commit.git_ref)),
                    ("Remote", string(&commit.remote)),
                    ("Sha", string(&commit.sha)),
                ]),
            ),
            (
                "Repo",
                go_struct([
                    ("Avatar", string(&repo.avatar)),
                    ("Branch", string(&repo.branch)),
                    ("Link", string(&repo.link)),
                    ("Name", string(&repo.name)),
                    ("Namespace", string(&repo.namespace)),
                    ("Owner", string(&repo.owner)),
                    ("Private", Value::Bool(repo.private)),
                    ("Trusted", Value::Bool(repo.trusted)),
                ]),
            ),
        ])
    }
}

/// drone-cache's metadata structs (its `internal/metadata` package): Go's name for each and its fields in
/// declaration order, which is how Go prints a struct (`{{ .Commit.Author }}` gives `{ zoe@example.com Zoë}`).
const STRUCTS: &[(&str, &[&str])] = &[
    ("metadata.Metadata", &["Build", "Commit", "Repo"]),
    ("metadata.Build", &["Created", "Deploy", "Event", "Finished", "Link", "Number", "Started", "Status"]),
    ("metadata.Commit", &["Author", "Branch", "Link", "Message", "Ref", "Remote", "Sha"]),
    ("metadata.Author", &["Avatar", "Email", "Name"]),
    ("metadata.Repo", &["Avatar", "Branch", "Link", "Name", "Namespace", "Owner", "Private", "Trusted"]),
];

/// The Go type of a struct value that [`Metadata::to_value`] made, known by its fields: its name and its
/// fields in Go's order. `None` for any other map.
pub(super) fn go_struct_type(fields: &BTreeMap<Arc<str>, Value>) -> Option<(&'static str, &'static [&'static str])> {
    STRUCTS
        .iter()
        .copied()
        .find(|(_, names)| names.len() == fields.len() && names.iter().all(|name| fields.contains_key(*name)))
}

/// A metadata struct as a template value: its fields by name ([`go_struct_type`] knows it by them).
fn go_struct<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::from(fields.into_iter().map(|(name, value)| (name.to_owned(), value)).collect::<BTreeMap<_, _>>())
}

/// Go's `strconv.ParseInt(value, 0, 64)`: an optional sign, then a base prefix (`0x`, `0o`, `0b`, or a
/// leading `0` for octal) or decimal digits, with `_` between digits.
pub(super) fn parse_go_int(value: &str) -> Option<i64> {
    let (negative, unsigned) = match value.as_bytes().first()? {
        b'-' => (true, &value[1..]),
        b'+' => (false, &value[1..]),
        _ => (false, value),
    };
    let lower = unsigned.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest, true)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest, true)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..], true)
    } else {
        (10, lower.as_str(), false)
    };
    // Go's underscoreOK: each `_` between digits, where a base prefix (or octal's leading 0) counts as one.
    if digits.ends_with('_') || digits.contains("__") || (digits.starts_with('_') && !prefixed) {
        return None;
    }
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let magnitude = u64::from_str_radix(&digits, radix).ok()?;
    if negative { 0i64.checked_sub_unsigned(magnitude) } else { i64::try_from(magnitude).ok() }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// What drone-cache's key generator makes of a `cache_key` template that parsed.
#[derive(Debug)]
pub enum RenderedKey {
    /// The template rendered to this key.
    Rendered(String),
    /// Executing the template failed (an unknown field, an index out of range, a function given the wrong
    /// arguments, …): drone-cache logs the error and uses its default key ([`default_cache_key`]) instead,
    /// and the step goes on.
    Fallback {
        /// The default key.
        key: String,
        /// Why the template did not render.
        error: TemplateError,
    },
}

impl RenderedKey {
    /// The key the step uses.
    pub fn key(&self) -> &str {
        match self {
            Self::Rendered(key) | Self::Fallback { key, .. } => key,
        }
    }
}

/// Renders a parsed `cache_key` template as drone-cache does: on an execution error, its default key.
pub fn render_key(template: &Template, context: &RenderContext<'_>) -> RenderedKey {
    match template.render(context) {
        Ok(key) => RenderedKey::Rendered(key),
        Err(error) => RenderedKey::Fallback { key: default_cache_key(context.metadata), error },
    }
}

/// A rendered key made storable the way drone-cache stores it: drone-cache names its objects
/// `filepath.Join(namespace, key, mount)`, and that join cleans the key ([`go_clean`]: `a//b` is `a/b`, a
/// trailing slash goes, `a/./b` is `a/b`, `a/x/../b` is `a/b`). A trailing line break (a YAML block scalar
/// `cache_key: |` ends with one) is dropped first: drone-cache keeps it inside its object names, which
/// chunkcache's key rule refuses. A leading `/` goes too, as a join below the namespace drops it.
pub fn normalise_key(key: &str) -> String {
    let key = key.trim_end_matches(['\n', '\r']);
    let cleaned = go_clean(key);
    let cleaned = cleaned.trim_start_matches('/');
    if cleaned == "." { String::new() } else { cleaned.to_owned() }
}

/// drone-cache's key when `cache_key` is empty, and its fallback when a template fails to render: the md5 hex
/// of the branch name (`keygen.NewHash(Commit.Branch)`). For the default branch `master` that is
/// `eb0a191797624dd3a48fa681d3061212`.
pub fn default_cache_key(metadata: &Metadata) -> String {
    hex(&md5::Md5::digest(metadata.commit.branch.as_bytes()))
}

/// The platform names `arch` and `os` render: Go's `GOARCH` and `GOOS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `GOOS`: `linux`, `darwin`, `windows`, …
    pub os: String,
    /// `GOARCH`: `amd64`, `arm64`, `386`, …
    pub arch: String,
}

impl Platform {
    /// The platform this binary was built for, in Go's names.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "powerpc" => "ppc",
            "mips" if cfg!(target_endian = "little") => "mipsle",
            "mips64" if cfg!(target_endian = "little") => "mips64le",
            "loongarch64" => "loong64",
            "wasm32" => "wasm",
            other => other,
        };
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        Self { os: os.to_owned(), arch: arch.to_owned() }
    }
}

/// The files `checksum` and `hashFiles` read: the engine touches no file system itself. Paths come as the
/// template writes them (relative to the workspace, or absolute), or as Go's glob builds them from those.
pub trait TemplateFiles: fmt::Debug + Send + Sync {
    /// Opens a file for reading. A missing file fails with [`io::ErrorKind::NotFound`]; a folder fails, here or
    /// on the first read, with [`io::ErrorKind::IsADirectory`].
    ///
    /// # Errors
    /// Whatever keeps the file from being opened.
    fn open(&self, path: &str) -> io::Result<Box<dyn Read + '_>>;

    /// Whether anything is at `path`, a dangling symbolic link included (Go's `os.Lstat`).
    fn exists(&self, path: &str) -> bool;

    /// The names in the folder at `path` (`.` is the workspace), links followed, in any order; `None` when it
    /// is not a folder or cannot be read. Names that are not UTF-8 are left out.
    fn list_folder(&self, path: &str) -> Option<Vec<String>>;
}

/// Files held in memory, by path: for tests, and to render without a workspace. The folders are the ones the
/// paths imply. Paths are matched as written, so `./a` is not `a`.
#[derive(Debug, Clone, Default)]
pub struct MemoryFiles {
    files: BTreeMap<String, Vec<u8>>,
}

impl MemoryFiles {
    /// These files and the folders they imply.
    pub fn new<P: Into<String>, C: Into<Vec<u8>>>(files: impl IntoIterator<Item = (P, C)>) -> Self {
        Self { files: files.into_iter().map(|(path, content)| (path.into(), content.into())).collect() }
    }

    /// The start of every path in the folder `path`.
    fn folder_prefix(path: &str) -> String {
        match path {
            "." => String::new(),
            path if path.ends_with('/') => path.to_owned(),
            path => format!("{path}/"),
        }
    }

    fn is_folder(&self, path: &str) -> bool {
        let prefix = Self::folder_prefix(path);
        self.files.keys().any(|file| file.len() > prefix.len() && file.starts_with(&prefix))
    }
}

impl TemplateFiles for MemoryFiles {
    fn open(&self, path: &str) -> io::Result<Box<dyn Read + '_>> {
        match self.files.get(path) {
            Some(content) => Ok(Box::new(content.as_slice())),
            None if self.is_folder(path) => Err(io::ErrorKind::IsADirectory.into()),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn exists(&self, path: &str) -> bool {
        self.files.contains_key(path) || self.is_folder(path)
    }

    fn list_folder(&self, path: &str) -> Option<Vec<String>> {
        if !self.is_folder(path) {
            return None;
        }
        let prefix = Self::folder_prefix(path);
        let mut names: Vec<String> = self
            .files
            .keys()
            .filter_map(|file| file.strip_prefix(&prefix)?.split('/').next().map(str::to_owned))
            .collect();
        names.dedup();
        Some(names)
    }
}

/// `epoch`: `now` in Unix seconds, rounded towards negative infinity as Go's `Time.Unix()` does.
pub(super) fn epoch(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            -whole - i64::from(before.subsec_nanos() > 0)
        }
    }
}

/// Streams a file through a hash.
fn hash_file<D: Digest>(files: &dyn TemplateFiles, path: &str) -> io::Result<Vec<u8>> {
    let mut file = files.open(path)?;
    let mut hasher = D::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(hasher.finalize().to_vec());
        }
        hasher.update(&buffer[..read]);
    }
}

/// drone-cache's `fileHash`: the digest of a file's content, or no bytes at all when it cannot be read (a
/// missing file, a folder, no permission). drone-cache logs such a failure and goes on; so does the caller.
fn file_digest<D: Digest>(files: &dyn TemplateFiles, path: &str) -> Vec<u8> {
    hash_file::<D>(files, &go_clean(path)).unwrap_or_default()
}

/// `checksum "path"`: the md5 hex of the file's content, or `""` when it cannot be read, as in drone-cache.
/// The path is cleaned lexically first (`a/../go.mod` is `go.mod`), as Go's `filepath.Clean` does.
pub(super) fn checksum(files: &dyn TemplateFiles, path: &str) -> String {
    hex(&file_digest::<md5::Md5>(files, path))
}

/// `hashFiles "glob" …`: the sha256 hex of the sha256 digests of every match of every pattern, in order, or
/// `""` when nothing matched. As in drone-cache, a malformed pattern is skipped and a match that cannot be
/// read (a folder, a dangling link) adds no bytes but still counts as a match.
pub(super) fn hash_files(files: &dyn TemplateFiles, patterns: &[String]) -> String {
    let mut digests = Vec::new();
    let mut matched = false;
    for pattern in patterns {
        let Ok(matches) = go_glob(pattern, files) else { continue };
        for found in matches {
            matched = true;
            digests.extend_from_slice(&file_digest::<sha2::Sha256>(files, &found));
        }
    }
    if !matched {
        return String::new();
    }
    hex(&sha2::Sha256::digest(&digests))
}

/// Go's `path.Clean`: the shortest path naming the same file by lexical processing alone. Repeated slashes
/// collapse, `.` segments go, `..` removes the segment before it (and at the root, itself), a trailing
/// slash goes; an empty result is `.`.
pub fn go_clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => match segments.last() {
                Some(&last) if last != ".." => {
                    segments.pop();
                }
                _ if rooted => {}
                _ => segments.push(".."),
            },
            segment => segments.push(segment),
        }
    }
    let joined = segments.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// The default restore prefix for a cache-key template: the template rendered up to, not including, the first
/// action that calls `checksum`, `hashFiles` or `epoch`. For
/// `container/pipeline/{{ .Commit.Branch }}-{{ checksum "build.gradle" }}` on `main` it is
/// `container/pipeline/main-`, so a restore finds the newest cache of the branch when the exact key is missing.
///
/// Returns `None` when the template calls none of these functions, or when the prefix would be empty (it would
/// match every key in the store).
///
/// # Errors
/// As [`render`](super::render), for the part that is rendered.
pub fn render_fallback_prefix(
    template: &str,
    metadata: &Metadata,
    files: Arc<dyn TemplateFiles>,
) -> Result<Option<String>, TemplateError> {
    Template::parse(template)?.render_fallback_prefix(&RenderContext::new(metadata, files))
}

/// The functions whose result changes when files or the clock do: a fallback prefix stops before them.
pub(super) const VOLATILE_FUNCTIONS: &[&str] = &["checksum", "hashFiles", "epoch"];

/// The names of drone-cache's functions.
pub(super) fn function_names() -> impl Iterator<Item = &'static str> {
    ["checksum", "hashFiles", "epoch", "arch", "os"].into_iter()
}

/// drone-cache's function map (`key/generator/metadata.go`), with Go's checks of the arguments.
pub(super) fn functions(files: &Arc<dyn TemplateFiles>, now: SystemTime, platform: &Platform) -> FuncMap {
    let mut map = FuncMap::new();
    let checksum_files = Arc::clone(files);
    map.insert(
        "checksum".into(),
        Arc::new(move |args: &[Value]| {
            let [path] = args else { return Err(arity("checksum", 1, args)) };
            Ok(Value::from(checksum(checksum_files.as_ref(), string_argument(path)?)))
        }),
    );
    let hash_files_files = Arc::clone(files);
    map.insert(
        "hashFiles".into(),
        Arc::new(move |args: &[Value]| {
            let patterns =
                args.iter().map(|arg| string_argument(arg).map(str::to_owned)).collect::<Result<Vec<_>, _>>()?;
            Ok(Value::from(hash_files(hash_files_files.as_ref(), &patterns)))
        }),
    );
    let constant = |name: &'static str, value: String| -> ValueFunc {
        Arc::new(
            move |args: &[Value]| {
                if args.is_empty() { Ok(Value::from(value.as_str())) } else { Err(arity(name, 0, args)) }
            },
        )
    };
    map.insert("epoch".into(), constant("epoch", epoch(now).to_string()));
    map.insert("arch".into(), constant("arch", platform.arch.clone()));
    map.insert("os".into(), constant("os", platform.os.clone()));
    map
}

fn arity(name: &str, expected: usize, args: &[Value]) -> gotmpl::TemplateError {
    gotmpl::TemplateError::ArgCount { name: name.to_owned(), expected, got: args.len() }
}

/// A string argument, as Go's reflection demands of a `string` parameter.
fn string_argument(value: &Value) -> Result<&str, gotmpl::TemplateError> {
    match value {
        Value::String(text) => Ok(text),
        other => Err(gotmpl::TemplateError::TypeMismatch { expected: "string", got: other.type_name() }),
    }
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------------------
// Go's filepath.Glob, which drone-cache's hashFiles uses.

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternItem {
    Star,
    AnyChar,
    Class { negated: bool, ranges: Vec<(char, char)> },
    Literal(char),
}

/// One path component of a Go `filepath.Match` pattern.
pub(super) struct GoPattern(Vec<PatternItem>);

impl GoPattern {
    pub(super) fn compile(pattern: &str) -> Result<Self, String> {
        let mut items = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    if items.last() != Some(&PatternItem::Star) {
                        items.push(PatternItem::Star);
                    }
                }
                '?' => items.push(PatternItem::AnyChar),
                '\\' => items.push(PatternItem::Literal(escaped(chars.next())?)),
                '[' => {
                    let negated = chars.next_if_eq(&'^').is_some();
                    let mut ranges = Vec::new();
                    loop {
                        let next = chars.next();
                        if next == Some(']') && !ranges.is_empty() {
                            break;
                        }
                        let low = class_char(next, &mut chars)?;
                        let high = if chars.next_if_eq(&'-').is_some() {
                            let next = chars.next();
                            class_char(next, &mut chars)?
                        } else {
                            low
                        };
                        ranges.push((low, high));
                    }
                    items.push(PatternItem::Class { negated, ranges });
                }
                c => items.push(PatternItem::Literal(c)),
            }
        }
        Ok(Self(items))
    }

    pub(super) fn matches(&self, name: &str) -> bool {
        let chars: Vec<char> = name.chars().collect();
        match_items(&self.0, &chars)
    }
}

fn escaped(c: Option<char>) -> Result<char, String> {
    c.ok_or_else(|| "it ends with a lone \\".to_owned())
}

/// One character of a `[ ]` set: `-` and `]` must be escaped.
fn class_char(c: Option<char>, chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, String> {
    match c {
        None => Err("a [ has no matching ]".to_owned()),
        Some('-' | ']') => Err("in a [ ] set, - and ] must be escaped as \\- and \\]".to_owned()),
        Some('\\') => escaped(chars.next()),
        Some(c) => Ok(c),
    }
}

fn match_items(items: &[PatternItem], chars: &[char]) -> bool {
    let Some((item, rest)) = items.split_first() else {
        return chars.is_empty();
    };
    match item {
        PatternItem::Star => (0..=chars.len())
            .take_while(|&taken| taken == 0 || chars[taken - 1] != '/')
            .any(|taken| match_items(rest, &chars[taken..])),
        PatternItem::AnyChar => chars.first().is_some_and(|&c| c != '/') && match_items(rest, &chars[1..]),
        PatternItem::Class { negated, ranges } => chars.first().is_some_and(|&c| {
            let inside = ranges.iter().any(|&(low, high)| low <= c && c <= high);
            inside != *negated && match_items(rest, &chars[1..])
        }),
        PatternItem::Literal(literal) => chars.first() == Some(literal) && match_items(rest, &chars[1..]),
    }
}

fn has_meta(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '\\'])
}

/// Go's `filepath.Glob(pattern)`, run over `files`: the matching paths, as Go would return them (relative
/// paths stay relative), in Go's order.
fn go_glob(pattern: &str, files: &dyn TemplateFiles) -> Result<Vec<String>, String> {
    for component in pattern.split('/') {
        GoPattern::compile(component)?;
    }
    glob_paths(pattern, files)
}

fn glob_paths(pattern: &str, files: &dyn TemplateFiles) -> Result<Vec<String>, String> {
    if !has_meta(pattern) {
        let exists = !pattern.is_empty() && files.exists(pattern);
        return Ok(if exists { vec![pattern.to_owned()] } else { Vec::new() });
    }
    let (dir, file) = match pattern.rfind('/') {
        Some(slash) => (&pattern[..=slash], &pattern[slash + 1..]),
        None => ("", pattern),
    };
    let dir = match dir {
        "" => ".",
        "/" => "/",
        dir => &dir[..dir.len() - 1],
    };
    let file_pattern = GoPattern::compile(file)?;
    if !has_meta(dir) {
        return Ok(glob_dir(dir, &file_pattern, files));
    }
    if dir == pattern {
        return Err("the pattern does not end in a file name".to_owned());
    }
    let mut found = Vec::new();
    for parent in glob_paths(dir, files)? {
        found.extend(glob_dir(&parent, &file_pattern, files));
    }
    Ok(found)
}

/// The entries of `dir` whose names match, sorted by name. Unreadable folders and names that are not UTF-8
/// give nothing.
fn glob_dir(dir: &str, pattern: &GoPattern, files: &dyn TemplateFiles) -> Vec<String> {
    let Some(mut names) = files.list_folder(dir) else {
        return Vec::new();
    };
    names.sort();
    names
        .into_iter()
        .filter(|name| pattern.matches(name))
        .map(|name| match dir {
            "." => name,
            dir if dir.ends_with('/') => format!("{dir}{name}"),
            dir => format!("{dir}/{name}"),
        })
        .collect()
}
