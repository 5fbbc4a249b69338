// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package installer

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestCheckExecutable(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only the Linux unit hides directories from the service")
	}
	tests := []struct {
		spec Spec
		bad  string // the directory the error must name, or "" for no error
	}{
		{Spec{Executable: "/usr/local/bin/initech-agent"}, ""},
		{Spec{Executable: "/opt/initech/initech-agent"}, ""},
		{Spec{Executable: "/home/ann/initech-agent"}, "/home"},
		{Spec{Executable: "/root/go/bin/initech-agent"}, "/root"},
		{Spec{Executable: "/tmp/x/initech-agent"}, "/tmp"},
		{Spec{Executable: "/var/tmp/initech-agent"}, "/var/tmp"},
		{Spec{Executable: "/run/user/1000/initech-agent"}, "/run/user"},
		{Spec{Executable: "/tmpfoo/initech-agent"}, ""}, // a sibling of /tmp, not inside it
		{Spec{Executable: "/home/ann/initech-agent", User: true}, ""},
		{Spec{Executable: "/home/ann/initech-agent", Root: "/img"}, ""},
		{Spec{Executable: "/home/ann/initech-agent", Packaged: true}, ""},
	}
	for _, tt := range tests {
		err := CheckExecutable(tt.spec)
		switch {
		case tt.bad == "" && err != nil:
			t.Errorf("%+v: %v", tt.spec, err)
		case tt.bad != "" && (err == nil || !errors.Is(err, ErrHiddenExecutable) || !strings.Contains(err.Error(), "under "+tt.bad+",") ||
			!strings.Contains(err.Error(), SuggestedExecutable())):
			t.Errorf("%+v: %v, want a refusal naming %s and %s", tt.spec, err, tt.bad, SuggestedExecutable())
		}
	}
}

func TestCheckStateDir(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	dir := filepath.Join(tmp, "dir")
	os.Mkdir(dir, 0o700)
	tests := []struct {
		path, want string
	}{
		{dir, ""},
		{filepath.Join(tmp, "new", "state"), ""},
		{file, "is a file, not a directory"},
		{filepath.Join(file, "state"), "cannot be created: " + file + " is a file"},
	}
	for _, tt := range tests {
		err := CheckStateDir(Spec{StateDir: tt.path})
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v, want %q", tt.path, err, tt.want)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("the check changed the directory's mode: %v", fi.Mode())
	}
	if _, err := os.Stat(filepath.Join(tmp, "new")); err == nil {
		t.Error("the check created a directory")
	}
	// With a root, the path inside it.
	if err := CheckStateDir(Spec{StateDir: "/state", Root: file}); err == nil {
		t.Error("a root that is a file passed")
	}
}

func TestCheckManager(t *testing.T) {
	t.Setenv("INITECH_"+InsecureFakeManagerEnv, "")
	if err := CheckManager(Spec{User: true}); err != nil {
		t.Errorf("per-user: %v", err)
	}
	if err := CheckManager(Spec{Root: "/img"}); err != nil {
		t.Errorf("alternate root: %v", err)
	}
	err := CheckManager(Spec{})
	if want := serviceAccountSupported && os.Geteuid() != 0; want != errors.Is(err, ErrNeedsRoot) {
		t.Errorf("system service as uid %d: %v", os.Geteuid(), err)
	}
	t.Setenv("INITECH_"+InsecureFakeManagerEnv, t.TempDir())
	if err := CheckManager(Spec{}); err != nil {
		t.Errorf("fake manager: %v", err)
	}
}
