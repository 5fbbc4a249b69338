// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package repotest holds repository-wide checks that run inside `go test`:
// gofmt, license headers, one package doc per package, the dependency
// direction between packages, and cross-compilation for every target.
package repotest

import (
	"bytes"
	"encoding/json"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/edgeportal/connect"

const header = "// Copyright 2026 The edgeportal authors.\n// SPDX-License-Identifier: Apache-2.0\n"

func root(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func goFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	r := root(t)
	filepath.WalkDir(r, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") && path != r || d.Name() == "dist") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, ".go") {
			files = append(files, path)
		}
		return nil
	})
	return files
}

func TestGofmt(t *testing.T) {
	args := append([]string{"-l"}, goFiles(t)...)
	out, err := exec.Command("gofmt", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("gofmt: %v\n%s", err, out)
	}
	if len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("files need gofmt:\n%s", out)
	}
}

func TestLicenseHeader(t *testing.T) {
	for _, f := range goFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte(header)) {
			t.Errorf("%s does not start with the license header", f)
		}
	}
}

func TestPackageDocs(t *testing.T) {
	docs := map[string]bool{}
	for _, f := range goFiles(t) {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		dir := filepath.Dir(f)
		if _, ok := docs[dir]; !ok {
			docs[dir] = false
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		if af.Doc != nil && strings.HasPrefix(af.Doc.Text(), "Package "+af.Name.Name) || af.Name.Name == "main" && af.Doc != nil {
			docs[dir] = true
		}
	}
	for dir, ok := range docs {
		if !ok {
			t.Errorf("package in %s has no package doc", dir)
		}
	}
}

type pkg struct {
	ImportPath string
	Name       string
	Deps       []string
	Imports    []string
}

// badDeps says, for a package prefix, which imports are forbidden and why
// (except, when set, names the one package under dep that is allowed).
var badDeps = []struct {
	pkg, dep, why, except string
}{
	{"hub", "agent", "hub and agent never import each other", ""},
	{"hub", "portal", "the hub must not even link the portal code: it cannot read portal traffic", ""},
	{"hub", "installer", "the hub installs nothing", ""},
	{"hub", "github.com/kardianos/service", "service management belongs to the agent's installer", ""},
	{"hub", "github.com/minio/selfupdate", "the hub does not update itself", ""},
	{"agent", "hub", "hub and agent never import each other", ""},
	{"portal", "agent", "portal is below agent", ""},
	{"portal", "hub", "portal knows nothing about the hub", ""},
	{"enroll", "agent", "enroll is below agent", ""},
	{"enroll", "hub", "enroll is below hub", ""},
	{"enroll", "portal", "enroll is below portal", ""},
	{"policy", module + "/", "policy is a leaf", ""},
	{"wire", "enroll", "wire is the bottom layer", ""},
	{"wire", "portal", "wire is the bottom layer", ""},
	{"wire", "policy", "wire is the bottom layer", ""},
	{"wire", "agent", "wire is the bottom layer", ""},
	{"wire", "hub", "wire is the bottom layer", ""},
	{"internal/brand", module + "/", "brand is a leaf", ""},
	{"internal/buildinfo", module + "/", "buildinfo is a leaf", ""},
	{"installer", "agent", "the installer installs a command line, not a node (it shares only the state directory's layout)", "agent/statedir"},
	{"installer", "hub", "the installer installs the agent", ""},
	{"agent/statedir", module + "/", "statedir is a leaf (file names, the install marker, privacy checks)", "internal/atomicfile"},
	{"wire/outer", module + "/", "the outer TLS layer is a leaf", ""},
	{"internal/unixhttp", module + "/", "unixhttp is a leaf", ""},
	{"hub", "agent/statedir", "the hub knows nothing of a node's state directory", ""},
	{"portal/mux", module + "/", "the multiplexer knows only its Noise channel", "wire/noiseconn"},
}

// binaries are the programs a user installs: nothing in them may link the
// testing package (no test hook ships).
var binaries = []string{"cmd/agent", "cmd/hub"}

func TestDependencyDirection(t *testing.T) {
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = root(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	n := 0
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		n++
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if err := internalLayout(rel, p); err != "" {
			t.Errorf("%s: %s", rel, err)
		}
		for _, d := range p.Deps {
			for _, b := range badDeps {
				if rel != b.pkg && !strings.HasPrefix(rel, b.pkg+"/") {
					continue
				}
				target := b.dep
				if !strings.Contains(target, ".") {
					target = module + "/" + target
					if d != target && !strings.HasPrefix(d, target+"/") {
						continue
					}
				} else if !strings.HasPrefix(d, target) {
					continue
				}
				if strings.HasPrefix(d, module+"/"+b.pkg) {
					continue // its own subpackages
				}
				if b.except != "" && (d == module+"/"+b.except || strings.HasPrefix(d, module+"/"+b.except+"/")) {
					continue
				}
				t.Errorf("%s depends on %s: %s", rel, d, b.why)
			}
		}
		for _, bin := range binaries {
			if rel != bin {
				continue
			}
			for _, d := range p.Deps {
				if d == "testing" || strings.HasPrefix(d, module+"/internal/tstest") {
					t.Errorf("the %s binary links %s: no test code ships", bin, d)
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("go list found only %d packages", n)
	}
}

// internalLayout says what is wrong with where p sits under internal/ (""
// when nothing): internal/ holds libraries, internal/cmd/ the tools (package
// main), internal/tstest/ the harnesses and test helpers; a library
// outside tstest does not import testing.
func internalLayout(rel string, p pkg) string {
	switch {
	case !strings.HasPrefix(rel, "internal/"), strings.HasPrefix(rel, "internal/tstest/"):
		return ""
	case strings.HasPrefix(rel, "internal/cmd/"):
		if p.Name != "main" {
			return "internal/cmd holds commands (package main) only; a library belongs in internal/"
		}
		return ""
	case p.Name == "main":
		return "a command belongs in internal/cmd/"
	case slices.Contains(p.Imports, "testing"):
		return "a library in internal/ imports testing: test helpers belong in internal/tstest/"
	}
	return ""
}

func TestCrossCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compilation takes a while; run without -short")
	}
	for _, goos := range []string{"linux", "darwin", "windows"} {
		for _, goarch := range []string{"amd64", "arm64"} {
			t.Run(goos+"_"+goarch, func(t *testing.T) {
				cmd := exec.Command("go", "build", "./...")
				cmd.Dir = root(t)
				cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("GOOS=%s GOARCH=%s go build ./...: %v\n%s", goos, goarch, err, out)
				}
			})
		}
	}
}
