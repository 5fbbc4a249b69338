// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/release"
)

// buildAgent builds the agent stamped with version into dir.
func buildAgent(t *testing.T, dir, version string) string {
	t.Helper()
	root, _ := moduleRoot()
	out := filepath.Join(dir, "initech-agent")
	os.MkdirAll(dir, 0o755)
	cmd := exec.Command("go", "build", "-o", out, "-ldflags", "-X github.com/edgeportal/connect/internal/buildinfo.version="+version, "./cmd/agent")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", version, err, b)
	}
	return out
}

func exeVersion(t *testing.T, exe string) string {
	t.Helper()
	out, err := exec.Command(exe, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", exe, err)
	}
	return strings.Fields(string(out))[1]
}

func TestSelfUpdate(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub().Start()
	platform := runtime.GOOS + "/" + runtime.GOARCH
	installed := buildAgent(t, filepath.Join(env.Dir, "installed"), "v1.0.0")
	v110 := buildAgent(t, filepath.Join(env.Dir, "build-1.1.0"), "v1.1.0")
	publish := func(version string, files ...string) {
		t.Helper()
		args := []string{"--version", version}
		for _, f := range files {
			args = append(args, "--file", f)
		}
		if r := h.CLI([]string{"release", "publish"}, args...); r.Code != 0 {
			t.Fatalf("publish %s: %s", version, r.Stderr)
		}
	}
	publish("v1.1.0", platform+"="+v110)

	tk := h.Ticket("t.ticket", "--relay", "acme-relay")
	n := &Node{env: env, StateDir: filepath.Join(env.Dir, "node")}
	n.Args = []string{"run", "--state-dir", n.StateDir, "--enrollment-ticket", tk, "--log-level", "debug"}
	n.Proc = env.Start("node", installed, n.Args...)
	n.AwaitRelayUp()
	if st, _ := n.Status(); st.Version != "v1.0.0" {
		t.Fatalf("running %s", st.Version)
	}

	if r := n.CLI([]string{"update"}, "--check"); r.Code != 0 || !strings.Contains(r.Stdout, "v1.1.0 is available") {
		t.Fatalf("update --check: %s %s", r.Stdout, r.Stderr)
	}
	if r := n.CLI([]string{"update"}); r.Code != 0 || !strings.Contains(r.Stdout, "updated v1.0.0 → v1.1.0") {
		t.Fatalf("update: %s %s", r.Stdout, r.Stderr)
	}
	Await(t, 30*time.Second, "the node to run v1.1.0", func() bool {
		st, err := n.Status()
		return err == nil && st.Version == "v1.1.0" && st.Relay.Connected
	})
	if v := exeVersion(t, installed); v != "v1.1.0" {
		t.Fatalf("binary on disk is %s", v)
	}
	Await(t, 10*time.Second, "the hub to record the update", func() bool {
		r := h.CLI([]string{"members", "list"})
		return strings.Contains(r.Stdout, "v1.0.0 → v1.1.0 ok")
	})

	// A broken build (exits at start) fails its trial and is rolled back.
	broken := filepath.Join(env.Dir, "broken")
	os.WriteFile(broken, []byte("#!/bin/sh\necho this build is broken >&2\nexit 3\n"), 0o755)
	publish("v1.2.0", platform+"="+broken)
	r := n.CLI([]string{"update"})
	if r.Code == 0 || !strings.Contains(r.Stderr, "failed its trial") || !strings.Contains(r.Stderr, "rolled back to v1.1.0") {
		t.Fatalf("broken update: %s %s", r.Stdout, r.Stderr)
	}
	if v := exeVersion(t, installed); v != "v1.1.0" {
		t.Fatalf("after rollback the binary is %s", v)
	}
	if st, err := n.Status(); err != nil || st.Version != "v1.1.0" {
		t.Fatalf("after rollback: %+v %v", st, err)
	}
	Await(t, 10*time.Second, "the hub to record the failure", func() bool {
		return strings.Contains(h.CLI([]string{"members", "list"}).Stdout, "v1.1.0 → v1.2.0 FAILED")
	})

	// Each bad release is refused with a reason; the old binary stays.
	v130 := buildAgent(t, filepath.Join(env.Dir, "build-1.3.0"), "v1.3.0")
	rel := func(version string) string { return filepath.Join(h.Dir, "releases", "stable", version) }
	bin := func(version string) string {
		return filepath.Join(rel(version), strings.ReplaceAll(platform, "/", "_"))
	}

	publish("v1.3.0", platform+"="+v130) // tampered manifest
	m, _ := os.ReadFile(filepath.Join(rel("v1.3.0"), "manifest.cbor"))
	m[len(m)/2] ^= 1
	os.WriteFile(filepath.Join(rel("v1.3.0"), "manifest.cbor"), m, 0o600)

	publish("v1.3.1", platform+"="+v130) // signed by another key
	var hubCfg struct{ Project string }
	other, _ := release.Sign(key.NewSigningPrivate(), release.Manifest{Project: hubCfg.Project, Version: "v1.3.1", Channel: "stable"})
	os.WriteFile(filepath.Join(rel("v1.3.1"), "manifest.cbor"), other, 0o600)

	publish("v1.3.2", platform+"="+v130) // binary altered after signing
	b, _ := os.ReadFile(bin("v1.3.2"))
	b[len(b)/2] ^= 1
	os.WriteFile(bin("v1.3.2"), b, 0o600)

	publish("v1.3.3", platform+"="+v130) // truncated on the hub
	b, _ = os.ReadFile(bin("v1.3.3"))
	os.WriteFile(bin("v1.3.3"), b[:len(b)/3], 0o600)

	publish("v1.3.4", "windows/amd64="+v130) // another platform only

	refusals := []struct{ version, want string }{
		{"v1.3.0", "signature does not verify"},
		{"v1.3.1", "signature does not verify"},
		{"v1.3.2", "checksum does not match"},
		{"v1.3.3", "truncated"},
		{"v1.3.4", "has no build for " + platform},
		{"v0.9.0", "not published"},
	}
	for _, rf := range refusals {
		r := n.CLI([]string{"update"}, "--version", rf.version)
		if r.Code == 0 || !strings.Contains(r.Stderr, rf.want) {
			t.Errorf("update to %s: %d %q %q", rf.version, r.Code, r.Stdout, r.Stderr)
		}
		if v := exeVersion(t, installed); v != "v1.1.0" {
			t.Fatalf("a refused update (%s) changed the binary to %s", rf.version, v)
		}
	}

	// A read-only install directory: refused before anything is replaced.
	dir := filepath.Dir(installed)
	if os.Geteuid() == 0 {
		if out, err := exec.Command("mount", "--bind", "-o", "ro", dir, dir).CombinedOutput(); err != nil {
			t.Fatalf("read-only bind mount: %v %s", err, out)
		}
		defer exec.Command("umount", dir).Run()
	} else {
		os.Chmod(dir, 0o555)
		defer os.Chmod(dir, 0o755)
	}
	publish("v1.4.0", platform+"="+v130)
	r = n.CLI([]string{"update"}, "--version", "v1.4.0")
	if r.Code == 0 || !strings.Contains(r.Stderr, "cannot replace") {
		t.Errorf("read-only install dir: %q %q", r.Stdout, r.Stderr)
	}
	if st, err := n.Status(); err != nil || st.Version != "v1.1.0" || !st.Relay.Connected {
		t.Errorf("the node stopped working: %+v %v", st, err)
	}
}
