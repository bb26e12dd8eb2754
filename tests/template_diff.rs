//! Cache keys render what drone-cache renders (issue 12), checked against a reference nobody here wrote:
//! Go's own `text/template` with drone-cache's function map (`tests/support/gotemplate`, standard library
//! only, built here with the `go` that scripts/install-test-servers.sh installs).
//!
//! Every template of `tests/support/template_corpus.txt` (real pipelines' keys, drone-cache's and Harness's
//! documented keys, and the cases of Go's template documentation) is rendered by the Go reference and by
//! the real binary (`chunkcache plugin-key`, the plugin step's key rendering) in the same workspace with the
//! same `DRONE_*` variables. `epoch` is deterministic: both sides render the same fixed Unix time, the
//! reference from its argument and the binary from `--epoch`. A template that fails to execute gives
//! drone-cache's default key on both sides; one that does not parse fails the step, naming its line.
//! The only differences allowed are listed, with their reasons, in
//! `tests/support/template_known_differences.txt`; the test fails on any other.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::util::{chunkcache, scratch, stderr};

/// The time `epoch` renders on both sides.
const EPOCH: u64 = 1_550_563_151;

/// The build both sides see: Drone's variables, with a branch holding a slash and non-ASCII letters and a
/// commit message holding HTML, quotes and a line break (for `js`, `html` and `urlquery`).
const DRONE_ENV: &[(&str, &str)] = &[
    ("DRONE_REPO_NAME", "chunkcache"),
    ("DRONE_REPO_OWNER", "acme"),
    ("DRONE_REPO_NAMESPACE", "acme"),
    ("DRONE_REPO_BRANCH", "main"),
    ("DRONE_REPO_PRIVATE", "true"),
    ("DRONE_COMMIT_BRANCH", "feature/Login-ü"),
    ("DRONE_COMMIT_SHA", "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"),
    ("DRONE_COMMIT_REF", "refs/heads/feature/Login-ü"),
    ("DRONE_COMMIT_MESSAGE", "Fix <b>\"quotes\" & 'apos'\nsecond line"),
    ("DRONE_COMMIT_AUTHOR", "Zoë Ångström"),
    ("DRONE_COMMIT_AUTHOR_EMAIL", "zoe@example.com"),
    ("DRONE_BUILD_NUMBER", "42"),
    ("DRONE_BUILD_EVENT", "push"),
    ("DRONE_BUILD_CREATED", "1700000000"),
];

/// The Go reference, built once per test run.
fn reference() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let temp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let binary = temp.join("gotemplate");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/gotemplate");
        let output = Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&binary)
            .arg(".")
            .current_dir(&source)
            .env("GOCACHE", temp.join("gocache"))
            .env("GOPATH", temp.join("gopath"))
            .env("GOFLAGS", "-mod=mod")
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run `go` ({error}): install it with scripts/install-test-servers.sh (Debian golang-go)")
            });
        assert!(output.status.success(), "go build failed:\n{}", String::from_utf8_lossy(&output.stderr));
        binary
    })
}

/// A workspace with the files real pipelines hash, and a folder (`vendor`).
fn workspace() -> tempfile::TempDir {
    let dir = scratch();
    for (path, content) in [
        ("go.mod", "module example.com/x\n\ngo 1.21\n"),
        ("go.sum", "example.com/y v1.0.0 h1:abc=\n"),
        ("package-lock.json", "{\"lockfileVersion\": 3}\n"),
        ("yarn.lock", "# yarn lockfile v1\n"),
        ("build.gradle", "plugins { id 'java' }\n"),
        ("settings.gradle", "rootProject.name = 'x'\n"),
        ("gradle/wrapper/gradle-wrapper.properties", "distributionUrl=gradle-8.5-bin.zip\n"),
        ("app/build.gradle.kts", "plugins { kotlin(\"jvm\") }\n"),
        ("lib/build.gradle.kts", "plugins { `java-library` }\n"),
        ("poetry.lock", "[[package]]\n"),
        ("Cargo.lock", "version = 3\n"),
        ("vendor/modules.txt", "x\n"),
    ] {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    dir
}

/// One template as the corpus names it, and what Go made of it.
#[derive(serde::Deserialize)]
struct Reference {
    name: String,
    /// `ok`, `fallback` (execution failed: `key` is drone-cache's default key) or `parse_error` (`key` is
    /// Go's message).
    outcome: String,
    key: String,
}

/// Reads the corpus format the Go reference reads: `%% NAME` starts a template, which runs to the next
/// such line.
fn read_corpus(path: &Path) -> Vec<(String, String)> {
    let text = fs::read_to_string(path).unwrap();
    let mut entries: Vec<(String, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        match line.strip_prefix("%% ") {
            Some(name) => entries.push((name.to_owned(), Vec::new())),
            None => entries.last_mut().expect("the corpus starts with a %% line").1.push(line),
        }
    }
    entries.into_iter().map(|(name, lines)| (name, lines.join("\n"))).collect()
}

/// Renders every template of `corpus` with the reference and with the binary, in a fresh workspace, with
/// `env` as the build's variables; returns how many templates there were, how many of them Go rendered (no
/// fallback, no parse error) and, by name, a report of each mismatch.
fn compare(corpus: &Path, env: &[(&str, &str)], lines: Lines) -> (usize, usize, BTreeMap<String, String>) {
    let dir = workspace();
    let output = Command::new(reference())
        .arg(corpus)
        .arg(EPOCH.to_string())
        .current_dir(dir.path())
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(output.status.success(), "the Go reference failed: {}", String::from_utf8_lossy(&output.stderr));
    let references: Vec<Reference> =
        String::from_utf8(output.stdout).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let templates = read_corpus(corpus);
    assert_eq!(references.len(), templates.len(), "the reference and this test read the corpus alike");

    let mut mismatches = BTreeMap::new();
    for ((name, template), reference) in templates.iter().zip(&references) {
        assert_eq!(*name, reference.name);
        let ours = chunkcache(dir.path())
            .args(["plugin-key", "--epoch", &EPOCH.to_string()])
            .env_clear()
            .envs(env.iter().copied())
            .env("PLUGIN_CACHE_KEY", template)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&ours.stdout);
        let stderr = String::from_utf8_lossy(&ours.stderr);
        let same = match reference.outcome.as_str() {
            "parse_error" => {
                // Go names the line ("template: cacheKey:3: …"); the step must fail naming line and column.
                let line = match lines {
                    Lines::Go => reference.key.split(':').nth(2).unwrap_or_default(),
                    Lines::Any => "",
                };
                !ours.status.success() && stderr.contains(&format!("line {line}")) && stderr.contains(", column ")
            }
            _ => ours.status.success() && stdout == reference.key,
        };
        if !same {
            let theirs = match reference.outcome.as_str() {
                "ok" => format!("{:?}", reference.key),
                other => format!("{other}: {:?}", reference.key),
            };
            let status = ours.status.code().map_or_else(|| "a signal".to_owned(), |code| code.to_string());
            let report = format!(
                "{name}\n  template: {template:?}\n  Go:       {theirs}\n  ours:     {stdout:?} (exit {status}) {}",
                stderr.trim()
            );
            mismatches.insert(name.clone(), report);
        }
    }
    let rendered = references.iter().filter(|reference| reference.outcome == "ok").count();
    (templates.len(), rendered, mismatches)
}

/// The corpus templates known to render differently, by name (`tests/support/template_known_differences.txt`:
/// gaps of the gotmpl crate, each with its reason there).
fn known_differences() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/template_known_differences.txt");
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Which line a parse error must name: Go's, or any (a template with several errors may have another found
/// first).
#[derive(Clone, Copy)]
enum Lines {
    Go,
    Any,
}

/// Compares, prints the counts, and fails on any mismatch not in `known`, and on any template of `known` that
/// renders like Go now. Returns how many templates there were and how many of them Go rendered.
fn assert_no_mismatch(corpus: &Path, env: &[(&str, &str)], known: &[String], lines: Lines) -> (usize, usize) {
    let (count, rendered, mut mismatches) = compare(corpus, env, lines);
    eprintln!(
        "{}: {count} templates ({rendered} rendered by Go), {} identical, {} different ({} known)",
        corpus.display(),
        count - mismatches.len(),
        mismatches.len(),
        known.len()
    );
    let fixed: Vec<&String> = known.iter().filter(|name| mismatches.remove(*name).is_none()).collect();
    assert!(
        mismatches.is_empty(),
        "{} of {count} templates render differently from Go:\n{}",
        mismatches.len(),
        mismatches.into_values().collect::<Vec<_>>().join("\n")
    );
    assert!(fixed.is_empty(), "these now render like Go: remove them from template_known_differences.txt: {fixed:?}");
    (count, rendered)
}

#[test]
fn every_corpus_template_renders_what_go_renders() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/template_corpus.txt");
    let (count, _) = assert_no_mismatch(&corpus, DRONE_ENV, &known_differences(), Lines::Go);
    assert!(count >= 100, "the corpus holds at least 100 templates");
}

/// Go's `fmt` through `printf`, verb by verb: each verb with each set of flags, width and precision, applied
/// in one template to a value of every kind a template holds (ints, a string's byte, floats, strings, booleans,
/// nil, a struct), so that what every combination means for every type is Go's.
#[test]
fn printf_verbs_flags_width_and_precision_print_what_go_prints() {
    const VALUES: &[&str] = &[
        "42",
        "-7",
        "0",
        "(index \"é\" 0)",
        "3.25",
        "-1234567.0",
        "0.00001234",
        "0.0",
        "1e21",
        "\"héllo\"",
        "\"\"",
        "true",
        "nil",
        ".Commit.Author",
    ];
    let dir = scratch();
    let corpus = dir.path().join("printf.txt");
    let mut text = String::new();
    for verb in "vdsqxXobcUeEfgGtT".chars() {
        for flags in ["", "+", "-", "#", " ", "0", "#+", "0 ", "-#"] {
            for width in ["", "7", ".2", "9.3", ".0"] {
                let spec = format!("%{flags}{width}{verb}");
                let format = vec![spec.as_str(); VALUES.len()].join("|");
                text.push_str(&format!("%% {spec}\n{{{{ printf \"{format}\" {} }}}}\n", VALUES.join(" ")));
            }
        }
    }
    fs::write(&corpus, text).unwrap();
    let (count, rendered) = assert_no_mismatch(&corpus, DRONE_ENV, &[], Lines::Go);
    assert_eq!(rendered, count, "Go renders every generated template");
}

/// Floats print as Go prints them (shortest digits, exponents, rounding at a precision, hex and binary
/// forms), for floats of every magnitude: 200 from random bit patterns and decimal ties, each printed by
/// `print` and by a dozen `printf` verbs.
#[test]
fn floats_print_what_go_prints() {
    let mut random = fastrand::Rng::with_seed(0x9E37_79B9_7F4A_7C15);
    let floats: Vec<String> = (0..200)
        .map(|index| {
            let float = match index % 4 {
                0 => f64::from_bits(random.u64(..)),
                1 => f64::from(random.u32(..1_000_000)) + 0.5 + f64::from(random.u32(..1000)) * 0.001,
                2 => f64::from(random.u32(..100_000)) / 8.0,
                _ => f64::from_bits(random.u64(..)) % 1e6,
            };
            if float.is_finite() { format!("{float:e}") } else { "1.5".to_owned() }
        })
        .collect();
    let dir = scratch();
    let corpus = dir.path().join("floats.txt");
    let mut text = String::new();
    for (index, chunk) in floats.chunks(20).enumerate() {
        text.push_str(&format!("%% print {index}\n{{{{ print {} }}}}\n", chunk.join(" ")));
        let format = "%v|%.3f|%e|%.2e|%g|%.5g|%x|%.3x|%#g|%b|%08.2f|%+.0e";
        for float in chunk {
            let args = [float.as_str(); 12].join(" ");
            text.push_str(&format!("%% printf {float}\n{{{{ printf \"{format}\" {args} }}}}\n"));
        }
    }
    fs::write(&corpus, text).unwrap();
    let (count, rendered) = assert_no_mismatch(&corpus, DRONE_ENV, &[], Lines::Go);
    assert_eq!(rendered, count, "Go renders every generated template");
}

/// Go's grammar, from outside the corpus: 600 templates strung together at random from the pieces of the
/// template language (delimiters, trim markers, fields, variables, keywords, functions, literals, pipes,
/// parentheses, comments) parse, fail to parse and execute as Go's do. Templates of nothing but spaces are left
/// out: a setting of only spaces counts as unset here, where drone-cache would render a key of spaces.
#[test]
fn random_templates_parse_and_render_as_go_does() {
    const PIECES: &[&str] = &[
        "{{",
        "}}",
        "{{- ",
        " -}}",
        "{{ ",
        "}} ",
        " ",
        "\n",
        ".",
        ".Repo",
        ".Name",
        ".Commit",
        ".Build.Number",
        "$",
        "$x",
        "{{ $x := ",
        "{{ $y = ",
        ":=",
        "=",
        "\"",
        "\"a\"",
        "`r`",
        "(",
        ")",
        "|",
        " | ",
        ",",
        "printf",
        "\"%d\"",
        "\"%v-%s\"",
        "if",
        "else",
        "end",
        "with",
        "range",
        "define",
        "\"t\"",
        "template",
        "block",
        "break",
        "continue",
        "eq",
        "ne",
        "lt",
        "and",
        "or",
        "not",
        "len",
        "index",
        "slice",
        "print",
        "println",
        "html",
        "js",
        "urlquery",
        "1",
        "0",
        "-1",
        "2.5",
        "'c'",
        "true",
        "false",
        "nil",
        "/* c */",
        "x",
        "é",
        "0x1F",
        "1e3",
    ];
    let mut random = fastrand::Rng::with_seed(0x2545_F491_4F6C_DD1D);
    let mut text = String::new();
    let mut count = 0;
    while count < 600 {
        let length = random.usize(2..14);
        let template: String = (0..length).map(|_| PIECES[random.usize(..PIECES.len())]).collect();
        if !template.trim().is_empty() {
            text.push_str(&format!("%% random {count}\n{template}\n"));
            count += 1;
        }
    }
    let dir = scratch();
    let corpus = dir.path().join("random.txt");
    fs::write(&corpus, text).unwrap();
    let (_, rendered) = assert_no_mismatch(&corpus, DRONE_ENV, &[], Lines::Any);
    assert!(rendered >= 60, "Go renders some of the random templates, not only errors ({rendered})");
}

/// `DRONE_BUILD_NUMBER` parses as Go's base-0 `strconv.ParseInt` does (drone-cache's urfave/cli flag):
/// `0x`, `0o`, `0b` and a leading `0` pick the base, `_` separates digits, a sign is allowed.
#[test]
fn build_numbers_parse_as_go_parses_them() {
    let dir = scratch();
    let corpus = dir.path().join("corpus.txt");
    fs::write(&corpus, "%% build number\n{{ .Build.Number }}\n%% padded\n{{ printf \"%05d\" .Build.Number }}\n")
        .unwrap();
    for number in ["0x2A", "052", "0o52", "0b101010", "1_000", "+7", "-3", "0", ""] {
        let mut env = BTreeMap::from_iter(DRONE_ENV.iter().copied());
        env.insert("DRONE_BUILD_NUMBER", number);
        let env: Vec<(&str, &str)> = env.into_iter().collect();
        assert_no_mismatch(&corpus, &env, &[], Lines::Go);
    }
}

/// A plugin step on the filesystem backend in a fresh workspace (`drone/src`, with `build.gradle` holding
/// "hello\n" and a mount folder), with `DRONE_OUTPUT` read back.
struct Step {
    _dir: tempfile::TempDir,
    workspace: PathBuf,
    cache_root: PathBuf,
    outputs: PathBuf,
}

impl Step {
    fn new() -> Self {
        let dir = scratch();
        let workspace = dir.path().join("drone/src");
        fs::create_dir_all(workspace.join("project/deps")).unwrap();
        fs::write(workspace.join("build.gradle"), "hello\n").unwrap();
        fs::write(workspace.join("project/deps/dep.jar"), "jar bytes").unwrap();
        let (cache_root, outputs) = (dir.path().join("cache"), dir.path().join("outputs.env"));
        Self { _dir: dir, workspace, cache_root, outputs }
    }

    /// Runs `rebuild` or `restore` (`mode`) with `cache_key` (none when `None`) and `extra` settings.
    fn run(&self, mode: &str, cache_key: Option<&str>, extra: &[(&str, &str)]) -> Output {
        let _ = fs::remove_file(&self.outputs);
        let mut command = crate::util::plugin(&self.workspace);
        command.envs([
            (mode, "true"),
            ("PLUGIN_BACKEND", "filesystem"),
            ("PLUGIN_FILESYSTEM_CACHE_ROOT", self.cache_root.to_str().unwrap()),
            ("PLUGIN_MOUNT", "project/deps"),
            ("DRONE_REPO_NAME", "app"),
            ("DRONE_COMMIT_BRANCH", "dev"),
            ("DRONE_OUTPUT", self.outputs.to_str().unwrap()),
        ]);
        if let Some(key) = cache_key {
            command.env("PLUGIN_CACHE_KEY", key);
        }
        command.envs(extra.iter().copied()).output().unwrap()
    }

    /// The `cache_key` the step wrote to `DRONE_OUTPUT`.
    fn cache_key(&self) -> String {
        let outputs = fs::read_to_string(&self.outputs).unwrap();
        outputs.lines().find_map(|line| line.strip_prefix("cache_key=")).expect("cache_key in DRONE_OUTPUT").to_owned()
    }
}

fn assert_code(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "stderr: {}", stderr(output));
}

/// md5("dev"): drone-cache's default key on branch `dev`.
const DEFAULT_KEY_DEV: &str = "e77989ed21758e78331b20e477fc5582";
/// md5("hello\n").
const MD5_HELLO: &str = "b1946ac92492d2347c6235b4d2611184";

/// An execution error (here an unknown field) logs why and falls back to drone-cache's default key, the md5
/// of the branch, and the step goes on: a step without `cache_key` (drone-cache's default key) then finds it.
#[test]
fn a_template_that_fails_to_execute_falls_back_to_the_default_key_and_the_step_goes_on() {
    let step = Step::new();
    let saved = step.run("PLUGIN_REBUILD", Some("gradle-{{ .Commit.Nope }}"), &[]);
    assert_code(&saved, 0);
    let log = stderr(&saved);
    assert!(log.contains("warning: PLUGIN_CACHE_KEY (setting cache_key) failed to render"), "{log}");
    assert!(log.contains("Nope") && log.contains(&format!("default key \"{DEFAULT_KEY_DEV}\"")), "{log}");
    assert_eq!(step.cache_key(), format!("app/{DEFAULT_KEY_DEV}"));
    fs::remove_dir_all(step.workspace.join("project/deps")).unwrap();
    let restored = step.run("PLUGIN_RESTORE", None, &[]);
    assert_code(&restored, 0);
    assert!(stderr(&restored).contains("cache hit"), "{}", stderr(&restored));
    assert_eq!(fs::read(step.workspace.join("project/deps/dep.jar")).unwrap(), b"jar bytes");
}

/// A template that does not parse, or calls a function that does not exist, fails the step as drone-cache
/// refuses it, naming the setting, the line and the column.
#[test]
fn parse_errors_and_unknown_functions_fail_the_step_naming_line_and_column() {
    let step = Step::new();
    for (template, expected) in [
        ("gradle-\n{{ if .Repo.Name }}x", "line 2, column 1: unexpected EOF"),
        ("gradle-{{ sha1 \"build.gradle\" }}", "line 1, column 11: function \"sha1\" not defined"),
        ("{{ .Commit.Branch ", "line 1, column "),
    ] {
        let failed = step.run("PLUGIN_REBUILD", Some(template), &[]);
        assert_code(&failed, 1);
        let log = stderr(&failed);
        assert!(log.contains("PLUGIN_CACHE_KEY (setting cache_key) is not a valid template"), "{template:?}: {log}");
        assert!(log.contains(expected), "{template:?}: {log}");
    }
}

/// drone-cache stores under `filepath.Join(namespace, key, mount)`, which cleans the key: `//`, a trailing
/// slash and (dropped first) a trailing line break, as a YAML block scalar gives, are normalised, not refused.
#[test]
fn keys_are_normalised_as_drone_cache_joins_them() {
    let step = Step::new();
    let saved = step.run("PLUGIN_REBUILD", Some("{{ .Commit.Branch }}//gradle/\n"), &[]);
    assert_code(&saved, 0);
    assert!(stderr(&saved).contains("normalised to \"dev/gradle\""), "{}", stderr(&saved));
    assert_eq!(step.cache_key(), "app/dev/gradle");
    let restored = step.run("PLUGIN_RESTORE", Some("dev/gradle"), &[]);
    assert_code(&restored, 0);
    assert!(stderr(&restored).contains("cache hit"), "{}", stderr(&restored));
}

/// drone-cache reads `checksum` paths from its working directory, whatever `local_root` says; a file that is
/// missing there renders `""`.
#[test]
fn checksum_reads_the_working_directory_not_local_root() {
    let step = Step::new();
    let key = "k-{{ checksum \"build.gradle\" }}-{{ checksum \"deps/dep.jar\" }}";
    let saved = step.run("PLUGIN_REBUILD", Some(key), &[("PLUGIN_LOCAL_ROOT", "project"), ("PLUGIN_MOUNT", "deps")]);
    assert_code(&saved, 0);
    assert_eq!(step.cache_key(), format!("app/k-{MD5_HELLO}-"));
}
