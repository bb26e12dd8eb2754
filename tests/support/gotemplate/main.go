// The reference for chunkcache's cache-key templates: Go's own text/template with drone-cache's function
// map (meltwater/drone-cache key/generator/metadata.go) over drone-cache's metadata, read from the same
// DRONE_* variables as drone-cache's main.go. Standard library only; tests/template_diff.rs builds and runs it.
//
// Usage: gotemplate CORPUS EPOCH
//
// CORPUS holds templates, each after a line "%% NAME" (the template is the lines up to the next "%% " line,
// joined by newlines: an empty last line gives a trailing newline). EPOCH is the Unix time `epoch` renders, so
// the comparison is deterministic. For every template it prints one JSON line: {"name", "outcome", "key"},
// where outcome is "ok" (key rendered), "fallback" (execution failed: key is drone-cache's fallback, the md5
// of the branch) or "parse_error" (drone-cache refuses the step).
package main

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/template"
	"time"

	"gotemplate/metadata"
)

// As urfave/cli v2 reads flags from the environment: a variable that is set wins, even when empty.
func str(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func integer(name string) int64 {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 0, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "could not parse %q as int value from %s\n", v, name)
		os.Exit(2)
	}
	return n
}

func boolean(name string) bool {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "could not parse %q as bool value from %s\n", v, name)
		os.Exit(2)
	}
	return b
}

func buildMetadata() metadata.Metadata {
	return metadata.Metadata{
		Repo: metadata.Repo{
			Namespace: str("DRONE_REPO_NAMESPACE", ""),
			Owner:     str("DRONE_REPO_OWNER", ""),
			Name:      str("DRONE_REPO_NAME", ""),
			Link:      str("DRONE_REPO_LINK", ""),
			Avatar:    str("DRONE_REPO_AVATAR", ""),
			Branch:    str("DRONE_REPO_BRANCH", ""),
			Private:   boolean("DRONE_REPO_PRIVATE"),
			Trusted:   boolean("DRONE_REPO_TRUSTED"),
		},
		Build: metadata.Build{
			Number:   int(integer("DRONE_BUILD_NUMBER")),
			Event:    str("DRONE_BUILD_EVENT", "push"),
			Status:   str("DRONE_BUILD_STATUS", "success"),
			Deploy:   str("DRONE_DEPLOY_TO", ""),
			Created:  integer("DRONE_BUILD_CREATED"),
			Started:  integer("DRONE_BUILD_STARTED"),
			Finished: integer("DRONE_BUILD_FINISHED"),
			Link:     str("DRONE_BUILD_LINK", ""),
		},
		Commit: metadata.Commit{
			Remote:  str("DRONE_REMOTE_URL", ""),
			Sha:     str("DRONE_COMMIT_SHA", ""),
			Ref:     str("DRONE_COMMIT_SHA", ""),
			Link:    str("DRONE_COMMIT_LINK", ""),
			Branch:  str("DRONE_COMMIT_BRANCH", "master"),
			Message: str("DRONE_COMMIT_MESSAGE", ""),
			Author: metadata.Author{
				Name:   str("DRONE_COMMIT_AUTHOR", ""),
				Email:  str("DRONE_COMMIT_AUTHOR_EMAIL", ""),
				Avatar: str("DRONE_COMMIT_AUTHOR_AVATAR", ""),
			},
		},
	}
}

// drone-cache's fileHash: any failure (missing file, a folder) hashes as no bytes.
func fileHash(path string, hasher func() hash.Hash) []byte {
	path, err := filepath.Abs(filepath.Clean(path))
	if err != nil {
		return []byte{}
	}
	f, err := os.Open(path)
	if err != nil {
		return []byte{}
	}
	defer f.Close()
	h := hasher()
	if _, err := io.Copy(h, f); err != nil {
		return []byte{}
	}
	return h.Sum(nil)
}

func funcMap(now time.Time) template.FuncMap {
	return template.FuncMap{
		"checksum": func(p string) string { return fmt.Sprintf("%x", fileHash(p, md5.New)) },
		"hashFiles": func(patterns ...string) string {
			var readers []io.Reader
			for _, pattern := range patterns {
				paths, err := filepath.Glob(pattern)
				if err != nil {
					continue
				}
				for _, p := range paths {
					readers = append(readers, bytes.NewReader(fileHash(p, sha256.New)))
				}
			}
			if len(readers) == 0 {
				return ""
			}
			h := sha256.New()
			for _, r := range readers {
				io.Copy(h, r)
			}
			return fmt.Sprintf("%x", h.Sum(nil))
		},
		"epoch": func() string { return strconv.FormatInt(now.Unix(), 10) },
		"arch":  func() string { return runtime.GOARCH },
		"os":    func() string { return runtime.GOOS },
	}
}

type entry struct {
	name, template string
}

func corpus(path string) []entry {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer f.Close()
	var entries []entry
	var lines []string
	flush := func() {
		if len(entries) > 0 {
			entries[len(entries)-1].template = strings.Join(lines, "\n")
		}
		lines = nil
	}
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line := scanner.Text()
		if strings.HasPrefix(line, "%% ") {
			flush()
			entries = append(entries, entry{name: strings.TrimPrefix(line, "%% ")})
		} else if len(entries) > 0 {
			lines = append(lines, line)
		}
	}
	flush()
	return entries
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gotemplate CORPUS EPOCH")
		os.Exit(2)
	}
	seconds, err := strconv.ParseInt(os.Args[2], 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	funcs := funcMap(time.Unix(seconds, 0))
	data := buildMetadata()
	fallback := fmt.Sprintf("%x", md5.Sum([]byte(data.Commit.Branch)))
	out := json.NewEncoder(os.Stdout)
	for _, e := range corpus(os.Args[1]) {
		result := map[string]string{"name": e.name}
		t, err := template.New("cacheKey").Funcs(funcs).Parse(e.template)
		if err != nil {
			result["outcome"], result["key"] = "parse_error", err.Error()
		} else {
			var b strings.Builder
			if err := t.Execute(&b, data); err != nil {
				result["outcome"], result["key"] = "fallback", fallback
			} else {
				result["outcome"], result["key"] = "ok", b.String()
			}
		}
		if err := out.Encode(result); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
}
