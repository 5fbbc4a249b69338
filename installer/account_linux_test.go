// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package installer

import (
	"bytes"
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestRunAsServiceAccount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("dropping to a service account needs root")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no nobody account to stand in for the service account")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// Under the system temp dir: a test's own temp dir is 0700 root.
	parent, err := os.MkdirTemp("", "svcacct-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	os.Chmod(parent, 0o755)
	dir := filepath.Join(parent, "state")
	os.Mkdir(dir, 0o700)
	os.Chown(dir, uid, gid)
	spec := Spec{Name: "x-agent", StateDir: dir, RunAs: "nobody"}
	var out bytes.Buffer
	ran, code, err := RunAsServiceAccount(context.Background(), spec, "/bin/sh", []string{"-c", "id -u; test -w .; exit 4"}, nil, &out, &out)
	if !ran || err != nil || code != 4 {
		t.Fatalf("ran %v code %d err %v: %s", ran, code, err, out.String())
	}
	if got := strings.TrimSpace(out.String()); got != u.Uid {
		t.Fatalf("ran as uid %s, want %s", got, u.Uid)
	}
	tests := []struct {
		name string
		spec Spec
	}{
		{"per-user service", Spec{StateDir: dir, RunAs: "nobody", User: true}},
		{"no service account", Spec{StateDir: dir}},
		{"state dir of another owner", Spec{StateDir: t.TempDir(), RunAs: "nobody"}},
		{"unknown account", Spec{StateDir: dir, RunAs: "no-such-account-xyz"}},
		{"alternate root", Spec{StateDir: dir, RunAs: "nobody", Root: "/mnt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ran, _, _ := RunAsServiceAccount(context.Background(), tt.spec, "/bin/true", nil, nil, nil, nil); ran {
				t.Fatal("dropped to the service account where it should not")
			}
		})
	}
}
