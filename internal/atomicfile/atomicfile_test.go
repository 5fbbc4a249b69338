// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package atomicfile

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(b) != "new" || runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Fatalf("after WriteFile: %q, mode %v", b, fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

// TestWriteFileFails: a write that cannot finish leaves the old content
// and no temporary file, and says which file.
func TestWriteFileFails(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	os.WriteFile(p, []byte("old"), 0o600)
	// A directory where the file should be: the rename fails.
	q := filepath.Join(dir, "sub")
	os.Mkdir(q, 0o700)
	os.WriteFile(filepath.Join(q, "x"), nil, 0o600)
	err := WriteFile(q, []byte("new"), 0o600)
	if err == nil || !strings.Contains(err.Error(), q) {
		t.Fatalf("WriteFile over a directory: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Fatalf("other file changed: %q", b)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("temporary files left: %v", ents)
	}
	if err := WriteFile(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Fatal("WriteFile into a missing directory succeeded")
	}
}

func TestWriteJSON(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.json")
	if err := WriteJSON(p, map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "{\n  \"a\": 1\n}\n" {
		t.Fatalf("WriteJSON wrote %q", b)
	}
	if err := WriteJSON(p, func() {}); err == nil {
		t.Fatal("WriteJSON of a func succeeded")
	}
	if b, _ := os.ReadFile(p); !strings.Contains(string(b), `"a": 1`) {
		t.Fatalf("a failed WriteJSON changed the file: %q", b)
	}
}
