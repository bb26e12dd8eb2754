//! Cache-key templates, in Go `text/template` syntax, rendered to the same string that drone-cache renders.
//!
//! drone-cache (`key/generator/metadata.go`) executes the `cache_key` setting as a Go template over its
//! metadata struct ([`Metadata`]: `.Repo`, `.Build`, `.Commit`) with these functions:
//! - `checksum "path"`: the md5 hex of a file's content, the path relative to the working directory;
//! - `hashFiles "glob" …`: for every pattern in order, Go's `filepath.Glob` (sorted within each folder, `**`
//!   is just two `*` and never crosses a `/`); for every match, the raw 32-byte sha256 of its content (an
//!   unreadable match, such as a folder, adds nothing); the result is the sha256 hex of all those digests
//!   concatenated, or `""` when no pattern matched anything;
//! - `epoch`: Unix seconds; `arch` and `os`: Go's `GOARCH` and `GOOS` names (`amd64`, `arm64`, `linux`).
//!
//! Keys rendered today must render to the same string, so this module mirrors Go where users can see it:
//! whitespace trim markers (`{{-` and `-}}`), comments, string escapes, pipelines (`{{ "go.mod" | checksum }}`),
//! parenthesised calls, `if`/`else`/`with`, Go's printing of values, and the builtins `print`, `printf`
//! (`%s %d %v %q %t %x`), `println`, `len`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `and`, `or`, `not`, `html` and
//! `urlquery`. `range`, `define`, `template`, `block` and variables other than `$` are refused with a clear
//! error: nothing in the metadata can be ranged over.
//!
//! Where drone-cache fails silently, chunkcache reports an error instead, because a key that silently loses
//! its checksum keeps matching a stale cache:
//! - `checksum` of a missing or unreadable file renders `""` in drone-cache; here it is
//!   [`TemplateError::Checksum`], naming the file.
//! - a malformed `hashFiles` pattern is skipped by drone-cache; here it is [`TemplateError::BadPattern`].
//!
//! drone-cache falls back to [`default_cache_key`] (the md5 of the branch) when rendering fails; the caller
//! decides whether to do the same.
//!
//! The layout: `engine.rs` is the generic Go template engine, which reads no file itself; `drone.rs` holds
//! drone-cache's own parts (metadata, the file functions over [`TemplateFiles`], Go's glob, the fallback
//! prefix). The plugin hands in the real workspace ([`crate::fs::workspace::WorkspaceFiles`]).

mod drone;
mod engine;

pub use drone::{
    Author, Build, Commit, MemoryFiles, Metadata, Platform, Repo, TemplateFiles, default_cache_key,
    render_fallback_prefix,
};
pub use engine::{Position, RenderContext, Template, TemplateError, render};

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;
    use std::io;
    use std::path::Path;
    use std::time::{Duration, UNIX_EPOCH};

    use super::drone::GoPattern;
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

    fn context<'a>(metadata: &'a Metadata, files: &'a dyn TemplateFiles) -> RenderContext<'a> {
        RenderContext {
            metadata,
            files,
            now: UNIX_EPOCH + Duration::from_secs(1_550_563_151),
            platform: Platform { os: "linux".into(), arch: "amd64".into() },
        }
    }

    fn render_in(template: &str, workdir: &Path) -> Result<String, TemplateError> {
        let metadata = metadata();
        Template::parse(template)?.render(&context(&metadata, &WorkspaceFiles::new(workdir)))
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
        let memory = memory_workspace();
        let dir = workspace();
        let disk = WorkspaceFiles::new(dir.path());
        for template in [
            HARNESS_KEY,
            "{{ checksum \"checksum_file_test.txt\" }}",
            "{{ hashFiles \"*/build.gradle\" }}",
            "{{ hashFiles \"**/build.gradle\" \"b/*\" }}",
            "{{ hashFiles \"[^b]/build.gradle\" \"missing.txt\" }}",
            "{{ hashFiles \"a/dee?\" }}",
            "{{ hashFiles \"*.nothing\" }}",
        ] {
            let parsed = Template::parse(template).unwrap();
            let in_memory = parsed.render(&context(&metadata, &memory)).unwrap();
            assert_eq!(in_memory, parsed.render(&context(&metadata, &disk)).unwrap(), "{template}");
        }
        let render = |template: &str| Template::parse(template).unwrap().render(&context(&metadata, &memory));
        assert_eq!(render("{{ hashFiles \"*/build.gradle\" }}").unwrap(), HASHFILES_HELLO_THEN_JAVA);
        assert_eq!(render("{{ hashFiles \"a/dee?\" }}").unwrap(), SHA256_EMPTY, "a folder match adds nothing");
        let error = render("{{ checksum \"a\" }}").unwrap_err();
        let TemplateError::Checksum { resolved, source, .. } = &error else { panic!("{error}") };
        assert_eq!((resolved.as_path(), source.kind()), (Path::new("a"), io::ErrorKind::IsADirectory));
        let error = render("{{ checksum \"nowhere\" }}").unwrap_err();
        assert!(error.to_string().contains("\"nowhere\""), "{error}");
    }

    #[test]
    fn harness_azure_page_key() {
        assert_eq!(ok(HARNESS_KEY), format!("somecontainer/pipelineid/main-{MD5_HELLO}"));
        // The convenience function, with the real clock and platform.
        let dir = workspace();
        assert_eq!(
            render(HARNESS_KEY, &metadata(), &WorkspaceFiles::new(dir.path())).unwrap(),
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
        let error = err("{{ hashFiles \"src/[\" }}");
        assert!(matches!(error, TemplateError::BadPattern { .. }), "{error}");
        assert!(error.to_string().contains("\"src/[\""), "{error}");
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

    #[test]
    fn values_print_as_go_prints_them() {
        assert_eq!(ok("{{ .Commit.Author }}"), "{ octo@example.com Octo Cat}");
        assert_eq!(ok("{{ .Build }}"), "{0  push 0  42 0 success}");
        assert_eq!(ok("{{ 42 }}-{{ -7 }}-{{ 0x1F }}-{{ true }}"), "42--7-31-true");
        assert_eq!(ok("{{ $.Repo.Name }}"), "RepoName");
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
    fn strings_and_escapes() {
        assert_eq!(ok(r#"{{ "a\tb\u00e9\x41\101\"" }}"#), "a\tb\u{e9}AA\"");
        assert_eq!(ok("{{ `raw \\n {{ }}` }}"), "raw \\n {{ }}");
        let error = err(r#"{{ "\q" }}"#);
        assert!(error.to_string().contains("unknown escape sequence"), "{error}");
    }

    #[test]
    fn pipelines_functions_and_conditionals() {
        assert_eq!(ok("{{ \"a/build.gradle\" | checksum }}"), MD5_HELLO);
        assert_eq!(ok("{{ (checksum \"a/build.gradle\") }}"), MD5_HELLO);
        assert_eq!(
            ok("{{ printf \"%s-%d-%v-%q-%t-%x\" .Repo.Name .Build.Number .Build.Number \"q\" true 255 }}"),
            "RepoName-42-42-\"q\"-true-ff"
        );
        assert_eq!(ok("{{ printf \"%s_%s\" os arch }}"), "linux_amd64");
        assert_eq!(ok("{{ .Commit.Branch | printf \"%s-cache\" }}"), "main-cache");
        assert_eq!(ok("{{ print \"a\" 1 2 \"b\" }}"), "a1 2b");
        assert_eq!(ok("{{ println \"a\" 1 }}"), "a 1\n");
        assert_eq!(ok("{{ len .Repo.Name }}"), "8");
        assert_eq!(ok("{{ urlquery \"a b/c\" }}|{{ html \"<a&b>\" }}"), "a+b%2Fc|&lt;a&amp;b&gt;");
        assert_eq!(ok("{{ if eq .Commit.Branch \"main\" \"master\" }}prod{{ else }}dev{{ end }}"), "prod");
        assert_eq!(
            ok("{{ if ne .Commit.Branch \"main\" }}dev{{ else if .Repo.Private }}private{{ else }}x{{ end }}"),
            "private"
        );
        assert_eq!(ok("{{ with .Commit.Author }}{{ .Name }}{{ end }}"), "Octo Cat");
        assert_eq!(ok("{{ with .Build.Deploy }}{{ . }}{{ else }}none{{ end }}"), "none");
        assert_eq!(ok("{{ if and .Repo.Name (not .Repo.Trusted) }}yes{{ end }}"), "yes");
        assert_eq!(ok("{{ or .Build.Deploy \"fallback\" }}"), "fallback");
        assert_eq!(ok("{{ if lt .Build.Number 100 }}small{{ end }}"), "small");
        // `and` stops before evaluating a failing operand.
        assert_eq!(ok("{{ and false (checksum \"missing\") }}"), "false");
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let error = Template::parse("abc {{ .Commit.Branch ").unwrap_err();
        let TemplateError::Syntax { position, message } = &error else { panic!("{error}") };
        assert_eq!((position.line, position.column, position.offset), (1, 5, 4));
        assert!(message.contains("unclosed action"), "{error}");

        let error = Template::parse("a/\n  {{ foo \"x\" }}").unwrap_err();
        let TemplateError::Syntax { position, message } = &error else { panic!("{error}") };
        assert_eq!((position.line, position.column), (2, 6));
        assert!(message.contains("function \"foo\" not defined"), "{error}");
        assert!(error.to_string().contains("line 2, column 6"), "{error}");
        assert!(message.contains("checksum, hashFiles"), "{error}");

        for (template, expected) in [
            ("{{ \"abc }}", "unterminated string"),
            ("{{ }}", "empty action"),
            ("{{ .A | }}", "missing value for command"),
            ("{{ (checksum \"x\" }}", "has no matching )"),
            ("{{ ) }}", "unexpected )"),
            ("{{ if .A }}x", "no matching {{end}}"),
            ("x{{ end }}", "unexpected {{end}}"),
            ("{{ else }}", "unexpected {{else}}"),
            ("{{ $x }}", "undefined variable"),
            ("{{/* open", "unclosed comment"),
            ("{{ /* not a comment */ }}", "unexpected '/'"),
            ("{{ 12ab }}", "bad number syntax"),
            ("{{ .Repo.Name\"x\" }}", "unexpected '\"'"),
        ] {
            let error = Template::parse(template).unwrap_err();
            assert!(matches!(error, TemplateError::Syntax { .. }), "{template}: {error}");
            assert!(error.to_string().contains(expected), "{template}: {error}");
        }
        for template in ["{{ range .Repo }}{{ end }}", "{{ $x := 1 }}", "{{ index .Repo 1 }}", "{{ 1.5 }}", "{{ nil }}"]
        {
            let error = Template::parse(template).unwrap_err();
            assert!(matches!(error, TemplateError::Unsupported { .. }), "{template}: {error}");
        }
    }

    #[test]
    fn missing_fields_are_errors_with_hints() {
        let error = err("{{ .Commit.branch }}");
        let TemplateError::MissingField { field, type_name, hint, position } = &error else { panic!("{error}") };
        assert_eq!((field.as_str(), *type_name), ("branch", "metadata.Commit"));
        assert!(hint.contains("did you mean Branch"), "{error}");
        assert_eq!(position.column, 4);

        let error = err("{{ .Prev.Build.Number }}");
        assert!(error.to_string().contains("can't evaluate field Prev in type metadata.Metadata"), "{error}");
        assert!(error.to_string().contains("Build, Commit, Repo"), "{error}");

        let error = err("{{ .Repo.Name.Length }}");
        assert!(error.to_string().contains("in type string"), "{error}");
    }

    #[test]
    fn call_errors() {
        let error = err("{{ checksum }}");
        assert!(error.to_string().contains("checksum: wrong number of args: want 1 got 0"), "{error}");
        let error = err("{{ checksum .Build.Number }}");
        assert!(error.to_string().contains("must be a string, got int"), "{error}");
        let error = err("{{ .Repo.Name \"x\" }}");
        assert!(error.to_string().contains("can't give argument to non-function"), "{error}");
        let error = err("{{ eq .Build.Number \"42\" }}");
        assert!(error.to_string().contains("incompatible types for comparison"), "{error}");
        let error = err("{{ printf \"%s %s\" \"a\" }}");
        assert!(error.to_string().contains("more verbs than arguments"), "{error}");
    }

    #[test]
    fn checksum_of_a_missing_file_names_it() {
        let dir = workspace();
        let error = render_in("key-{{ checksum \"gradle-examples/y/build.gradle\" }}", dir.path()).unwrap_err();
        let TemplateError::Checksum { path, resolved, source, position } = &error else { panic!("{error}") };
        assert_eq!(path, "gradle-examples/y/build.gradle");
        assert_eq!(resolved, &dir.path().join("gradle-examples/y/build.gradle"));
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
        assert_eq!(position.column, 8);
        let message = error.to_string();
        assert!(message.contains("gradle-examples/y/build.gradle"), "{message}");
        assert!(message.contains("relative to the workspace"), "{message}");

        let error = render_in("{{ checksum \"a\" }}", dir.path()).unwrap_err();
        assert!(matches!(error, TemplateError::Checksum { .. }), "a folder is not a file: {error}");
    }

    #[test]
    fn fallback_prefix_stops_before_volatile_parts() {
        let dir = workspace();
        let files = WorkspaceFiles::new(dir.path());
        let metadata = metadata();
        let prefix = |template: &str| {
            Template::parse(template).unwrap().render_fallback_prefix(&context(&metadata, &files)).unwrap()
        };
        assert_eq!(prefix(HARNESS_KEY).as_deref(), Some("somecontainer/pipelineid/main-"));
        assert_eq!(
            prefix("{{ .Repo.Name }}/{{ hashFiles \"**/*.gradle\" }}/{{ .Commit.Branch }}").as_deref(),
            Some("RepoName/")
        );
        assert_eq!(prefix("{{ .Repo.Name }}-{{ printf \"%s\" epoch }}").as_deref(), Some("RepoName-"));
        assert_eq!(prefix("{{ .Repo.Name }}-{{ if true }}{{ epoch }}{{ end }}").as_deref(), Some("RepoName-"));
        assert_eq!(prefix("{{ .Repo.Name }}-{{ .Commit.Branch }}"), None);
        assert_eq!(prefix("{{ checksum \"a/build.gradle\" }}-x"), None);
        // The prefix does not read the files the rest of the key needs.
        assert_eq!(prefix("p/{{ checksum \"does/not/exist\" }}").as_deref(), Some("p/"));
        assert_eq!(
            render_fallback_prefix(HARNESS_KEY, &metadata, &files).unwrap().as_deref(),
            Some("somecontainer/pipelineid/main-")
        );
    }

    #[test]
    fn epoch_before_1970_rounds_down() {
        let dir = workspace();
        let metadata = metadata();
        let files = WorkspaceFiles::new(dir.path());
        let mut context = context(&metadata, &files);
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
            "\"%q %x %v %d %t %5.2s %-3d %%\"",
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
        let dir = workspace();
        let metadata = metadata();
        let files = WorkspaceFiles::new(dir.path());
        let context = context(&metadata, &files);
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            let mut template = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let length = state % 12;
            for _ in 0..length {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Mostly template pieces, sometimes any character at all.
                match char::from_u32((state >> 40) as u32 % 0x11_0000) {
                    Some(any) if state.is_multiple_of(8) => template.push(any),
                    _ => template.push_str(PIECES[(state % PIECES.len() as u64) as usize]),
                }
            }
            if let Ok(parsed) = Template::parse(&template) {
                let _ = parsed.render(&context);
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
