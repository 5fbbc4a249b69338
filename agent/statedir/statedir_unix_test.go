// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !windows

package statedir

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestCheckUnix(t *testing.T) {
	base := t.TempDir()
	mk := func(name string, mode os.FileMode) string {
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	tests := []struct {
		name    string
		dir     string
		wantErr string
	}{
		{"private", mk("ok", 0o700), ""},
		{"group can read", mk("g", 0o750), "has mode 0750; it must not be accessible to group or others (chmod 700"},
		{"others can enter", mk("o", 0o701), "has mode 0701"},
		{"missing", filepath.Join(base, "missing"), "no such file"},
	}
	f := filepath.Join(base, "file")
	os.WriteFile(f, nil, 0o600)
	tests = append(tests, struct{ name, dir, wantErr string }{"a file", f, "is not a directory"})
	for _, tt := range tests {
		err := Check(tt.dir)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: Check = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
	if os.Geteuid() == 0 {
		other := mk("other", 0o700)
		if err := os.Chown(other, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		if err := Check(other); err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
			t.Errorf("a directory of another user: %v", err)
		}
	}
}

func TestCheckFileUnix(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o600, true}, {0o400, true}, {0o640, false}, {0o604, false}, {0o666, false}} {
		p := filepath.Join(dir, NodeKey)
		os.Remove(p)
		os.WriteFile(p, []byte("k"), tt.mode)
		os.Chmod(p, tt.mode)
		err := CheckFile(p)
		if tt.ok != (err == nil) || err != nil && !strings.Contains(err.Error(), "it must be 0600") {
			t.Errorf("mode %04o: %v", tt.mode, err)
		}
	}
}

func TestSecureAndEnsureUnix(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	base := t.TempDir()
	dir := filepath.Join(base, "a", "state")
	if err := Ensure(dir, false); err == nil {
		t.Error("Ensure without create made or accepted a missing directory")
	}
	if err := Ensure(dir, true); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("created with mode %04o", fi.Mode().Perm())
	}
	os.Chmod(dir, 0o755)
	if err := Ensure(dir, true); err == nil {
		t.Error("Ensure accepted an existing 0755 directory")
	}
	if err := Secure(dir); err != nil {
		t.Fatal(err)
	}
	if err := Check(dir); err != nil {
		t.Errorf("after Secure: %v", err)
	}
}
