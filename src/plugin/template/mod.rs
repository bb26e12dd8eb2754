//! Cache-key templates, in Go `text/template` syntax, rendered to the same string that drone-cache renders.
//!
//! drone-cache (`key/generator/metadata.go`) executes the `cache_key` setting as a Go template over its
//! metadata struct ([`Metadata`]: `.Repo`, `.Build`, `.Commit`) with these functions:
//! - `checksum "path"`: the md5 hex of a file's content, the path cleaned (`a/../go.mod` is `go.mod`) and
//!   relative to the working directory (not `local_root`); `""` when the file is missing or is a folder;
//! - `hashFiles "glob" …`: for every pattern in order, Go's `filepath.Glob` (sorted within each folder, `**`
//!   is just two `*` and never crosses a `/`; a malformed pattern is skipped); for every match, the raw
//!   32-byte sha256 of its content (an unreadable match, such as a folder, adds nothing); the result is the
//!   sha256 hex of all those digests concatenated, or `""` when no pattern matched anything;
//! - `epoch`: Unix seconds; `arch` and `os`: Go's `GOARCH` and `GOOS` names (`amd64`, `arm64`, `linux`).
//!
//! The template language itself is Go's: the maintained port `gotmpl` parses and executes it (variables,
//! `range`, `define`, `block`, trim markers, comments, the builtins it gets right), and where `gotmpl` 0.6
//! behaves otherwise than Go 1.18 (see the layout below), the glue makes it Go's. `tests/template_diff.rs`
//! renders a corpus of templates, every `printf` verb with every flag, width and precision over every kind of
//! value, floats of every magnitude and random strings of template pieces, with Go itself and with the
//! binary, and fails on any difference but the listed gaps of `gotmpl`'s value model
//! (`tests/support/template_known_differences.txt`: complex numbers, the smallest int literal, int64 as a
//! type name, strings cut inside a character).
//!
//! Errors, as drone-cache has them: a template that does not parse, or calls a function that does not exist,
//! fails the step ([`TemplateError::Syntax`], naming line and column); a template that fails to execute (a
//! missing field, an index out of range, wrong arguments) renders drone-cache's default key instead
//! ([`render_key`], [`RenderedKey::Fallback`]: the md5 of the branch), and the step logs why and goes on.
//! A rendered key is made storable as drone-cache's path join makes it ([`normalise_key`]).
//!
//! The layout: `engine.rs` is the glue to `gotmpl`, which reads no file itself; `syntax.rs` holds what Go's
//! parser decides otherwise than `gotmpl`'s, `semantics.rs` Go's builtins and execution where `gotmpl`'s
//! differ, and `gofmt.rs` Go's `fmt` over template values; `drone.rs` holds drone-cache's own parts (metadata
//! and its Go types, the functions over [`TemplateFiles`], Go's glob, the fallback key and prefix). The
//! plugin hands in the real workspace ([`crate::fs::workspace::WorkspaceFiles`]).

mod drone;
mod engine;
mod gofmt;
mod semantics;
mod syntax;

pub use drone::{
    Author, Build, Commit, MemoryFiles, Metadata, Platform, RenderedKey, Repo, TemplateFiles, default_cache_key,
    go_clean, normalise_key, render_fallback_prefix, render_key,
};
pub use engine::{RenderContext, Template, TemplateError, render};

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use super::drone::{GoPattern, parse_go_int};
    use super::*;
    use crate::fs::workspace::WorkspaceFiles;

    const HARNESS_KEY: &str =
        "somecontainer/pipelineid/{{ .Commit.Branch }}-{{ checksum \"gradle-examples/x/build.gradle\" }}";
    /// md5 of "hello\n", computed outside this code.
    const MD5_HELLO: &str = "b1946ac92492d2347c6235b4d2611184";
    /// sha256(sha256("hello\n")), computed outside this code.
    const HASHFILES_HELLO: &str = "ecb65bb98f9d905b70458986c39fcbad7715e5f2fcc3b1f07767d7c83e2438cc";
    /// sha256(sha256("hello\n") ‖ sha256("hello\n")).
    const HASHFILES_HELLO_TWICE: &str = "1cfae540ea49bccd13b2aba8136c3e9dd2d26b974915c190ec3440fc3a16d35e";
    /// sha256(sha256("hello\n") ‖ sha256("plugins { id 'java' }\n")), and the reverse order.
    const HASHFILES_HELLO_THEN_JAVA: &str = "aaf7202f5171c18c3cb5aaa1ffad0c83ee2b23f4ff62386e940c5d29d2b14c1e";
    const HASHFILES_JAVA_THEN_HELLO: &str = "a21942b6772693eff0dadb2269a01bd00f81650d0c6f483031d8fb6e83442f56";
    const SHA256_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn metadata() -> Metadata {
        let env: BTreeMap<String, String> = [
            ("DRONE_REPO_NAME", "RepoName"),
            ("DRONE_COMMIT_BRANCH", "main"),
            ("DRONE_COMMIT_SHA", "0123abcd"),
            ("DRONE_COMMIT_REF", "refs/heads/main"),
            ("DRONE_BUILD_NUMBER", "42"),
            ("DRONE_COMMIT_AUTHOR", "Octo Cat"),
            ("DRONE_COMMIT_AUTHOR_EMAIL", "octo@example.com"),
            ("DRONE_REPO_PRIVATE", "true"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        Metadata::from_env(&env)
    }

    /// A workspace with the files the tests hash.
    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, content: &str| {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        };
        write("gradle-examples/x/build.gradle", "hello\n");
        write("checksum_file_test.txt", "hello\n");
        write("a/build.gradle", "hello\n");
        write("b/build.gradle", "plugins { id 'java' }\n");
        write("a/deep/er/build.gradle", "plugins { id 'java' }\n");
        dir
    }

    fn context(metadata: &Metadata, files: Arc<dyn TemplateFiles>) -> RenderContext<'_> {
        RenderContext {
            metadata,
            files,
            now: UNIX_EPOCH + Duration::from_secs(1_550_563_151),
            platform: Platform { os: "linux".into(), arch: "amd64".into() },
        }
    }

    fn render_in(template: &str, workdir: &Path) -> Result<String, TemplateError> {
        let metadata = metadata();
        Template::parse(template)?.render(&context(&metadata, Arc::new(WorkspaceFiles::new(workdir))))
    }

    fn ok(template: &str) -> String {
        let dir = workspace();
        render_in(template, dir.path()).unwrap_or_else(|error| panic!("{template}: {error}"))
    }

    fn err(template: &str) -> TemplateError {
        let dir = workspace();
        match render_in(template, dir.path()) {
            Ok(rendered) => panic!("{template} rendered {rendered:?}, expected an error"),
            Err(error) => error,
        }
    }

    /// `workspace()`'s files, in memory.
    fn memory_workspace() -> MemoryFiles {
        MemoryFiles::new([
            ("gradle-examples/x/build.gradle", "hello\n"),
            ("checksum_file_test.txt", "hello\n"),
            ("a/build.gradle", "hello\n"),
            ("b/build.gradle", "plugins { id 'java' }\n"),
            ("a/deep/er/build.gradle", "plugins { id 'java' }\n"),
        ])
    }

    #[test]
    fn file_functions_read_only_through_the_files_handed_in() {
        let metadata = metadata();
        let memory: Arc<dyn TemplateFiles> = Arc::new(memory_workspace());
        let dir = workspace();
        let disk: Arc<dyn TemplateFiles> = Arc::new(WorkspaceFiles::new(dir.path()));
        for template in [
            HARNESS_KEY,
            "{{ checksum \"checksum_file_test.txt\" }}",
            "{{ checksum \"x/../checksum_file_test.txt\" }}",
            "{{ checksum \"a\" }}-{{ checksum \"nowhere\" }}",
            "{{ hashFiles \"*/build.gradle\" }}",
            "{{ hashFiles \"**/build.gradle\" \"b/*\" }}",
            "{{ hashFiles \"[^b]/build.gradle\" \"missing.txt\" }}",
            "{{ hashFiles \"a/dee?\" }}",
            "{{ hashFiles \"*.nothing\" }}",
        ] {
            let parsed = Template::parse(template).unwrap();
            let in_memory = parsed.render(&context(&metadata, Arc::clone(&memory))).unwrap();
            assert_eq!(in_memory, parsed.render(&context(&metadata, Arc::clone(&disk))).unwrap(), "{template}");
        }
        let render =
            |template: &str| Template::parse(template).unwrap().render(&context(&metadata, Arc::clone(&memory)));
        assert_eq!(render("{{ hashFiles \"*/build.gradle\" }}").unwrap(), HASHFILES_HELLO_THEN_JAVA);
        assert_eq!(render("{{ hashFiles \"a/dee?\" }}").unwrap(), SHA256_EMPTY, "a folder match adds nothing");
        assert_eq!(render("{{ checksum \"x/../checksum_file_test.txt\" }}").unwrap(), MD5_HELLO);
    }

    /// drone-cache's `fileHash` hashes nothing for a file it cannot read, and `%x` of nothing is empty.
    #[test]
    fn checksum_of_a_missing_file_or_a_folder_is_empty() {
        assert_eq!(ok("key-{{ checksum \"gradle-examples/y/build.gradle\" }}"), "key-");
        assert_eq!(ok("key-{{ checksum \"a\" }}"), "key-");
    }

    #[test]
    fn harness_azure_page_key() {
        assert_eq!(ok(HARNESS_KEY), format!("somecontainer/pipelineid/main-{MD5_HELLO}"));
        // The convenience function, with the real clock and platform.
        let dir = workspace();
        assert_eq!(
            render(HARNESS_KEY, &metadata(), Arc::new(WorkspaceFiles::new(dir.path()))).unwrap(),
            format!("somecontainer/pipelineid/main-{MD5_HELLO}")
        );
    }

    /// drone-cache's own cases (`key/generator/metadata_test.go`), with our fixture file in place of
    /// theirs: metadata with only `Repo.Name` set, and a clock at 1550563151.
    #[test]
    fn drone_cache_generator_cases() {
        assert_eq!(ok("{{ .Repo.Name }}"), "RepoName");
        assert_eq!(ok("{{ checksum \"checksum_file_test.txt\"}}"), MD5_HELLO);
        assert_eq!(ok("{{ hashFiles \"\" }}"), "");
        assert_eq!(ok("{{ hashFiles \"checksum_file_test.txt\" }}"), HASHFILES_HELLO);
        assert_eq!(ok("{{ hashFiles \"checksum_file_test.txt\" \"checksum_file_test.txt\" }}"), HASHFILES_HELLO_TWICE);
        assert_eq!(ok("{{ hashFiles \"checksum_file_tes*.txt\" }}"), HASHFILES_HELLO);
        assert_eq!(ok("{{ epoch }}"), "1550563151");
        assert_eq!(ok("{{ arch }}"), "amd64");
        assert_eq!(ok("{{ os }}"), "linux");
        // The documented examples.
        assert_eq!(
            ok("{{ .Repo.Name }}-{{ .Commit.Branch }}-{{ checksum \"checksum_file_test.txt\" }}-yadayadayada"),
            format!("RepoName-main-{MD5_HELLO}-yadayadayada")
        );
        assert_eq!(
            ok(
                "{{ .Repo.Name }}_{{ checksum \"a/build.gradle\" }}_{{ checksum \"b/build.gradle\" }}_{{ arch }}_{{ os }}"
            ),
            format!("RepoName_{MD5_HELLO}_b0871a55596a1f3d7c593ca3a094dde6_amd64_linux")
        );
    }

    #[test]
    fn hash_files_follows_go_glob() {
        // Patterns in the order given; matches of one pattern sorted by path.
        assert_eq!(ok("{{ hashFiles \"*/build.gradle\" }}"), HASHFILES_HELLO_THEN_JAVA);
        assert_eq!(ok("{{ hashFiles \"b/build.gradle\" \"a/build.gradle\" }}"), HASHFILES_JAVA_THEN_HELLO);
        // `**` is two `*`: one folder level, as in Go. a/deep/er/build.gradle is not matched.
        assert_eq!(ok("{{ hashFiles \"**/build.gradle\" }}"), HASHFILES_HELLO_THEN_JAVA);
        assert_eq!(ok("{{ hashFiles \"[ab]/build.gradle\" }}"), HASHFILES_HELLO_THEN_JAVA);
        assert_eq!(ok("{{ hashFiles \"[^b]/build.gradle\" }}"), HASHFILES_HELLO);
        assert_eq!(ok("{{ hashFiles \"?/build.gradle\" \"nothing*\" }}"), HASHFILES_HELLO_THEN_JAVA);
        // No match at all renders empty; a folder match counts but adds nothing.
        assert_eq!(ok("{{ hashFiles \"*.nothing\" \"missing.txt\" }}"), "");
        assert_eq!(ok("{{ hashFiles }}"), "");
        assert_eq!(ok("{{ hashFiles \"a/dee?\" }}"), SHA256_EMPTY);
        // A malformed pattern is skipped, as drone-cache skips it.
        assert_eq!(ok("{{ hashFiles \"src/[\" \"a/build.gradle\" }}"), HASHFILES_HELLO);
        // Absolute patterns work too.
        let dir = workspace();
        let absolute = format!("{{{{ hashFiles \"{}/*/build.gradle\" }}}}", dir.path().display());
        assert_eq!(render_in(&absolute, dir.path()).unwrap(), HASHFILES_HELLO_THEN_JAVA);
    }

    #[test]
    fn go_patterns() {
        let matches = |pattern: &str, name: &str| GoPattern::compile(pattern).unwrap().matches(name);
        assert!(matches("*.gradle", "build.gradle"));
        assert!(matches("*", ".hidden"));
        assert!(!matches("*.gradle", "build.gradle.kts"));
        assert!(matches("build.gradle*", "build.gradle.kts"));
        assert!(matches("[a-c]?", "b1"));
        assert!(!matches("[^a-c]?", "b1"));
        assert!(matches("\\*", "*"));
        assert!(!matches("\\*", "x"));
        assert!(matches("[\\]]", "]"));
        for bad in ["[", "[]", "[a-", "a\\", "[-a]", "[^]"] {
            assert!(GoPattern::compile(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn default_key_is_md5_of_branch() {
        let mut metadata = Metadata::default();
        metadata.commit.branch = "master".into();
        assert_eq!(default_cache_key(&metadata), "eb0a191797624dd3a48fa681d3061212");
        // drone-cache's hash_test.go: NewHash().Generate("hash") == md5("hash").
        metadata.commit.branch = "hash".into();
        assert_eq!(default_cache_key(&metadata), "0800fc577294c34e0b28ad2839435945");
    }

    #[test]
    fn execution_errors_fall_back_to_the_default_key() {
        let metadata = metadata();
        let files: Arc<dyn TemplateFiles> = Arc::new(memory_workspace());
        let context = context(&metadata, files);
        for template in [
            "{{ .Commit.Nope }}",
            "x-{{ slice .Commit.Sha 0 99 }}",
            "{{ index \"abc\" 5 }}",
            "{{ checksum }}",
            "{{ checksum 1 }}",
            "{{ eq \"a\" 1 }}",
            "{{ nil }}",
        ] {
            let rendered = render_key(&Template::parse(template).unwrap(), &context);
            let RenderedKey::Fallback { key, error } = &rendered else { panic!("{template}: {rendered:?}") };
            assert_eq!(key, &default_cache_key(&metadata), "{template}");
            assert!(matches!(error, TemplateError::Execution(_)), "{template}: {error}");
        }
        let rendered = render_key(&Template::parse("{{ .Commit.Branch }}").unwrap(), &context);
        assert!(matches!(&rendered, RenderedKey::Rendered(key) if key == "main"), "{rendered:?}");
    }

    #[test]
    fn metadata_from_env_matches_drone_cache() {
        let metadata = Metadata::from_env(&BTreeMap::new());
        assert_eq!(metadata.commit.branch, "master");
        assert_eq!(metadata.build.event, "push");
        assert_eq!(metadata.build.status, "success");
        assert_eq!(metadata.build.number, 0);
        assert_eq!(default_cache_key(&metadata), "eb0a191797624dd3a48fa681d3061212");

        // .Commit.Ref is the SHA in drone-cache.
        assert_eq!(ok("{{ .Commit.Ref }}"), "0123abcd");
        assert_eq!(ok("{{ .Commit.Sha }}"), "0123abcd");
        assert_eq!(ok("{{ .Build.Number }}"), "42");
        assert_eq!(ok("{{ .Repo.Private }}/{{ .Repo.Trusted }}"), "true/false");
        assert_eq!(ok("{{ .Commit.Author.Name }} <{{ .Commit.Author.Email }}>"), "Octo Cat <octo@example.com>");
        // Set but empty stays empty, as with urfave/cli.
        let env = BTreeMap::from([("DRONE_COMMIT_BRANCH".to_owned(), String::new())]);
        assert_eq!(Metadata::from_env(&env).commit.branch, "");
    }

    /// Go's `strconv.ParseInt(s, 0, 64)`, as drone-cache's flags read `DRONE_BUILD_NUMBER`.
    #[test]
    fn integers_parse_as_go_base_zero() {
        for (text, expected) in [
            ("42", Some(42)),
            ("0x2A", Some(42)),
            ("0X2a", Some(42)),
            ("052", Some(42)),
            ("0o52", Some(42)),
            ("0b101010", Some(42)),
            ("1_000", Some(1000)),
            ("0x_2A", Some(42)),
            ("0_52", Some(42)),
            ("+7", Some(7)),
            ("-3", Some(-3)),
            ("0", Some(0)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("", None),
            ("_1", None),
            ("1_", None),
            ("1__0", None),
            ("0x", None),
            ("08", None),
            ("++5", None),
            (" 42", None),
            ("4 2", None),
        ] {
            assert_eq!(parse_go_int(text), expected, "{text:?}");
        }
    }

    /// drone-cache joins namespace, key and mount with `filepath.Join`, which cleans the key.
    #[test]
    fn keys_are_normalised_as_a_path_join_does() {
        for (key, expected) in [
            ("a//b", "a/b"),
            ("a/b/", "a/b"),
            ("key\n", "key"),
            ("key\r\n", "key"),
            ("/a/./b", "a/b"),
            ("a/x/../b", "a/b"),
            ("../a", "../a"),
            ("plain", "plain"),
            ("/", ""),
        ] {
            assert_eq!(normalise_key(key), expected, "{key:?}");
        }
        assert_eq!(go_clean(""), ".");
        assert_eq!(go_clean("/../a"), "/a");
        assert_eq!(go_clean("a/../.."), "..");
    }

    #[test]
    fn values_print_as_go_prints_them() {
        assert_eq!(ok("{{ 42 }}-{{ -7 }}-{{ 0x1F }}-{{ true }}"), "42--7-31-true");
        assert_eq!(ok("{{ $.Repo.Name }}"), "RepoName");
        assert_eq!(ok("{{ printf \"%05d|%.3s|%x\" .Build.Number .Commit.Sha \"ab\" }}"), "00042|012|6162");
        assert_eq!(ok("{{ printf \"%s\" 42 }}"), "%!s(int=42)");
        // Structs print as Go prints them, in drone-cache's field order, with its type names.
        assert_eq!(ok("{{ .Commit.Author }}"), "{ octo@example.com Octo Cat}");
        assert_eq!(
            ok("{{ printf \"%T %T %T %T %T\" . .Build .Commit .Commit.Author .Repo }}"),
            "metadata.Metadata metadata.Build metadata.Commit metadata.Author metadata.Repo"
        );
    }

    #[test]
    fn literal_text_trim_markers_and_comments() {
        assert_eq!(ok("no actions at all {} }} {"), "no actions at all {} }} {");
        assert_eq!(ok("a  {{- .Repo.Name -}}  \n b"), "aRepoNameb");
        assert_eq!(ok("a {{- .Repo.Name }} b"), "aRepoName b");
        assert_eq!(ok("{{-3}}"), "-3");
        assert_eq!(ok("x{{/* a comment */}}y"), "xy");
        assert_eq!(ok("x {{- /* trimmed */ -}} y"), "xy");
        assert_eq!(ok("{{\n  .Repo.Name\n}}"), "RepoName");
    }

    #[test]
    fn strings_variables_and_escapers() {
        assert_eq!(ok(r#"{{ "a\tb\u00e9\x41\101\"" }}"#), "a\tb\u{e9}AA\"");
        assert_eq!(ok("{{ `raw \\n {{ }}` }}"), "raw \\n {{ }}");
        assert_eq!(ok("{{ $b := .Commit.Branch }}{{ if true }}{{ $b = \"x\" }}{{ end }}{{ $b }}"), "x");
        assert_eq!(ok("{{ html \"a&b\" 1 }}|{{ urlquery \"a b\" \"c\" }}|{{ js \"<\" }}"), "a&amp;b1|a+bc|\\u003C");
        assert_eq!(ok("{{ html 1 2 }}"), "1 2");
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let error = Template::parse("a/\n  {{ foo \"x\" }}").unwrap_err();
        let TemplateError::Syntax { line, column, message } = &error else { panic!("{error}") };
        assert_eq!((*line, *column), (2, 6));
        assert!(message.contains("function \"foo\" not defined"), "{error}");
        assert!(message.contains("checksum, hashFiles"), "{error}");
        assert!(error.to_string().contains("line 2, column 6"), "{error}");

        for (template, expected, position) in [
            ("x\n{{ $nope }}", "undefined variable \"$nope\"", (2, 4)),
            ("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}", "undefined variable \"$y\"", (1, 39)),
            ("a{{ end }}", "unexpected {{end}}", (1, 2)),
            ("{{ else }}", "unexpected {{else}}", (1, 1)),
            ("x\n{{ if true }}x", "unexpected EOF", (2, 1)),
            ("{{ range .Commit }}x", "unexpected EOF", (1, 1)),
            ("{{ break }}", "{{break}} outside {{range}}", (1, 1)),
            ("x{{ /* c */ }}y", "unexpected \"/\" in command", (1, 5)),
            ("{{ print 1 \"a\"\"b\" }}", "unexpected \"\\\"b\\\"\" in operand", (1, 15)),
            ("{{ 1i }}", "complex constants such as 1i", (1, 5)),
        ] {
            let error = Template::parse(template).unwrap_err();
            let TemplateError::Syntax { line, column, message } = &error else { panic!("{template}: {error}") };
            assert!(message.contains(expected), "{template}: {error}");
            assert_eq!((*line, *column), position, "{template}: {error}");
        }
        for template in ["{{ \"abc }}", "{{ }}", "{{ | .A }}", "{{ .A | | }}", "{{/* open", "abc {{ .Commit.Branch "] {
            let error = Template::parse(template).unwrap_err();
            assert!(matches!(error, TemplateError::Syntax { .. }), "{template}: {error}");
        }
        // A trailing pipe ends the pipeline, as in Go; operands need a space between them.
        assert_eq!(ok("{{ .Repo.Name | }}{{ print (1 |) -}}"), "RepoName1");
        // Strings may hold anything, slashes and braces included.
        assert_eq!(ok("{{ \"a/b}}\" }}{{ `{{ end }}/` }}{{ '/' }}"), "a/b}}{{ end }}/47");
        assert_eq!(ok("{{ with $x := \"/*\" }}{{ $x }}{{ end }}"), "/*");
    }

    #[test]
    fn execution_errors() {
        for template in [
            "{{ .Commit.branch }}",
            "{{ .Prev.Build.Number }}",
            "{{ .Repo.Name.Length }}",
            "{{ checksum }}",
            "{{ checksum .Build.Number }}",
            "{{ eq .Build.Number \"42\" }}",
        ] {
            assert!(matches!(err(template), TemplateError::Execution(_)), "{template}");
        }
    }

    #[test]
    fn fallback_prefix_stops_before_volatile_parts() {
        let dir = workspace();
        let files: Arc<dyn TemplateFiles> = Arc::new(WorkspaceFiles::new(dir.path()));
        let metadata = metadata();
        let prefix = |template: &str| {
            Template::parse(template).unwrap().render_fallback_prefix(&context(&metadata, Arc::clone(&files))).unwrap()
        };
        assert_eq!(prefix(HARNESS_KEY).as_deref(), Some("somecontainer/pipelineid/main-"));
        assert_eq!(
            prefix("{{ .Repo.Name }}/{{ hashFiles \"**/*.gradle\" }}/{{ .Commit.Branch }}").as_deref(),
            Some("RepoName/")
        );
        assert_eq!(prefix("{{ .Repo.Name }}-{{ printf \"%s\" epoch }}").as_deref(), Some("RepoName-"));
        assert_eq!(prefix("{{ .Repo.Name }}-{{ if true }}{{ epoch }}{{ end }}").as_deref(), Some("RepoName-"));
        assert_eq!(prefix("{{ $b := .Commit.Branch }}{{ $b }}-{{ checksum \"x\" }}").as_deref(), Some("main-"));
        assert_eq!(prefix("{{ .Repo.Name }}-{{ .Commit.Branch }}"), None);
        assert_eq!(prefix("{{ checksum \"a/build.gradle\" }}-x"), None);
        // The prefix does not read the files the rest of the key needs.
        assert_eq!(prefix("p/{{ checksum \"does/not/exist\" }}").as_deref(), Some("p/"));
        assert_eq!(
            render_fallback_prefix(HARNESS_KEY, &metadata, Arc::clone(&files)).unwrap().as_deref(),
            Some("somecontainer/pipelineid/main-")
        );
    }

    #[test]
    fn epoch_before_1970_rounds_down() {
        let metadata = metadata();
        let mut context = context(&metadata, Arc::new(MemoryFiles::default()));
        context.now = UNIX_EPOCH - Duration::from_millis(1500);
        let rendered = Template::parse("{{ epoch }}").unwrap().render(&context).unwrap();
        assert_eq!(rendered, "-2");
    }

    /// Random templates built from template-ish pieces and arbitrary characters must give a result or an error,
    /// never a panic (`fuzz/fuzz_targets/key_template.rs` does the same for longer runs).
    #[test]
    fn arbitrary_templates_never_panic() {
        const PIECES: &[&str] = &[
            "{{",
            "}}",
            "{{-",
            "-}}",
            " ",
            "\n",
            ".",
            ".Repo",
            ".Name",
            "$",
            "\"",
            "\\",
            "`",
            "(",
            ")",
            "|",
            ":=",
            "checksum",
            "hashFiles",
            "epoch",
            "printf",
            "if",
            "else",
            "end",
            "with",
            "range",
            "define",
            "break",
            "\"%s\"",
            "\"a/*\"",
            "/*",
            "*/",
            "é",
            "-",
            "1",
            "0x",
            "[",
            "]",
            "'",
            "true",
            "nil",
            "x",
            "print",
            "println",
            "len",
            "eq",
            "lt",
            "ge",
            "and",
            "or",
            "not",
            "html",
            "urlquery",
            "slice",
            "index",
            "\"%q %x %v %d %t %5.2s %-3d %%\"",
            "\"%[2]*.[1]*x %[9]d %#0-+ 9.9é %U %c %e %#g %*d %\"",
            "\"% X %T %p %+q %#v %.0f %b\"",
            "template",
            "9223372036854775807",
            "-9223372036854775808",
            "18446744073709551616",
            "1e308",
            "1e999",
            "0x7fffffffffffffff",
            "'\\x'",
            "'\\u00e9'",
            ".Build.Number",
            ".Commit.Author.Email",
        ];
        let metadata = metadata();
        let context = context(&metadata, Arc::new(memory_workspace()));
        let mut random = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
        for _ in 0..5_000 {
            let mut template = String::new();
            for _ in 0..random.usize(..12) {
                // Mostly template pieces, sometimes any character at all.
                match char::from_u32(random.u32(..0x11_0000)) {
                    Some(any) if random.u8(..8) == 0 => template.push(any),
                    _ => template.push_str(PIECES[random.usize(..PIECES.len())]),
                }
            }
            if let Ok(parsed) = Template::parse(&template) {
                let _ = render_key(&parsed, &context);
                let _ = parsed.render_fallback_prefix(&context);
            }
        }
    }

    #[test]
    fn host_platform_uses_go_names() {
        let platform = Platform::host();
        assert!(!platform.os.is_empty() && !platform.arch.is_empty());
        assert_ne!(platform.arch, "x86_64");
        assert_ne!(platform.arch, "aarch64");
        assert_ne!(platform.os, "macos");
    }
}
