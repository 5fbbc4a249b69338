// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package buildinfo

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// tinyBinary builds a tiny Go program with the given go build flags.
func tinyBinary(t *testing.T, name string, flags ...string) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/tiny\n\ngo 1.24\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644)
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", append(append([]string{"build", "-o", out}, flags...), ".")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", flags, err, b)
	}
	return out
}

func TestReadVersion(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build the test binaries")
	}
	x := func(v string) string { return "-X " + VersionSymbol + "=" + v }
	tests := []struct {
		name    string
		flags   []string
		want    string
		wantErr bool
	}{
		{"stamped v1.2.0", []string{"-ldflags", x("v1.2.0")}, "v1.2.0", false},
		{"stamped v1.3.0 among other flags", []string{"-ldflags", "-s -w " + x("v1.3.0") + " -X 'example.com/x.name=Globex Agent'"}, "v1.3.0", false},
		{"the last -X wins", []string{"-ldflags", x("v1.0.0") + " " + x("v1.0.1")}, "v1.0.1", false},
		{"-trimpath drops the stamp", []string{"-trimpath", "-ldflags", x("v1.2.0")}, "", true},
		{"not stamped", nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin := tinyBinary(t, "tiny", tt.flags...)
			got, src, err := ReadVersion(bin)
			if tt.wantErr {
				if !errors.Is(err, ErrNoVersion) {
					t.Fatalf("ReadVersion = %q (%s), %v; want ErrNoVersion", got, src, err)
				}
				return
			}
			if err != nil || got != tt.want || src != "ldflags" {
				t.Fatalf("ReadVersion = %q (%s), %v; want %q from ldflags", got, src, err, tt.want)
			}
		})
	}
	t.Run("not a Go binary", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "script")
		os.WriteFile(p, []byte("#!/bin/sh\nexit 3\n"), 0o755)
		if _, _, err := ReadVersion(p); !errors.Is(err, ErrNoVersion) {
			t.Fatalf("a shell script: %v", err)
		}
	})
}

func TestVersionOf(t *testing.T) {
	tests := []struct {
		name     string
		bi       debug.BuildInfo
		want     string
		wantFrom string
	}{
		{"module version when nothing is stamped", debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0", "module"},
		{"the stamp wins over the module version", debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"},
			Settings: []debug.BuildSetting{{Key: "-ldflags", Value: "-X=" + VersionSymbol + "=v1.5.0"}}}, "v1.5.0", "ldflags"},
		{"per-package ldflags", debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "-ldflags", Value: "all=-X " + VersionSymbol + "=v2.0.0"}}}, "v2.0.0", "ldflags"},
		{"a quoted stamp", debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "-ldflags", Value: `-X "` + VersionSymbol + `=v2.1.0"`}}}, "v2.1.0", "ldflags"},
		{"another symbol is not the version", debug.BuildInfo{Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "-ldflags", Value: "-X " + VersionSymbol + "x=v9.9.9"}}}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, from, err := VersionOf(&tt.bi)
			if tt.want == "" {
				if !errors.Is(err, ErrNoVersion) {
					t.Fatalf("VersionOf = %q, %v; want ErrNoVersion", got, err)
				}
				return
			}
			if err != nil || got != tt.want || from != tt.wantFrom {
				t.Fatalf("VersionOf = %q (%s), %v; want %q (%s)", got, from, err, tt.want, tt.wantFrom)
			}
		})
	}
}

// FuzzStampedVersion: the -ldflags reader never panics, finds a stamp
// appended to any well-quoted flags, and finds nothing that is not there.
func FuzzStampedVersion(f *testing.F) {
	f.Add("-s -w", "v1.2.3")
	f.Add("-X 'example.com/x.name=Globex Agent' -X=a=b", "v0.0.1-dev.3")
	f.Add(`all=-X "`+VersionSymbol+`=v1"`, "v2.0.0")
	f.Add("'unclosed", "v1")
	f.Fuzz(func(t *testing.T, ldflags, v string) {
		got, ok := stampedVersion(ldflags)
		if ok && got == "" {
			t.Fatal("found an empty version")
		}
		if !strings.Contains(ldflags, VersionSymbol) && ok {
			t.Fatalf("found %q in flags that do not name the symbol: %q", got, ldflags)
		}
		words, err := splitQuoted(ldflags)
		if err != nil {
			return
		}
		if len(words) == 1 && !strings.HasPrefix(words[0], "-") {
			if p, rest, ok := strings.Cut(words[0], "="); ok && p != "" {
				words[0] = rest // the per-package form
			}
		}
		dangling := len(words) > 0 && (words[len(words)-1] == "-X" || words[len(words)-1] == "--X") // would take our -X as its value, as the linker would
		if dangling || strings.ContainsAny(v, " \t\r\n'\"") || v == "" {
			return
		}
		if got, ok := stampedVersion(ldflags + " -X " + VersionSymbol + "=" + v); !ok || got != v {
			t.Fatalf("stamp %q after %q: got %q, %v", v, ldflags, got, ok)
		}
	})
}
