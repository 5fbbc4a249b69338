// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package statedir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecureWindows runs where a Windows machine runs the tests: Secure
// makes a new directory that Check accepts, with exactly the entries of
// WindowsDescriptor; a directory that only inherits its parent's ACL is
// refused (a temp directory under the user's profile is private to the
// user, so for a service that is not the user it fails on the owner).
func TestSecureWindows(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := Secure(dir); err != nil {
		t.Skipf("Secure needs an administrator: %v", err)
	}
	d, err := descriptorOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Protected || len(d.DACL) != len(WindowsDescriptor.DACL) {
		t.Fatalf("descriptor after Secure: %+v", d)
	}
	for i, a := range d.DACL {
		if a != WindowsDescriptor.DACL[i] {
			t.Errorf("entry %d = %+v, want %+v", i, a, WindowsDescriptor.DACL[i])
		}
	}
	if err := Check(dir); err != nil {
		t.Errorf("Check after Secure: %v", err)
	}
	f := filepath.Join(dir, NodeKey)
	if err := os.WriteFile(f, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Secure(dir); err != nil {
		t.Fatalf("Secure after writing a file: %v", err)
	}
	if err := CheckFile(f); err != nil {
		t.Errorf("CheckFile: %v", err)
	}
	if err := Check(`C:\Windows\Temp`); err == nil || !strings.Contains(err.Error(), "access") && !strings.Contains(err.Error(), "owned by") {
		t.Errorf("a shared directory: %v", err)
	}
}
