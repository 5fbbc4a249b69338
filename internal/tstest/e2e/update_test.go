// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/hub/vendor"
	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/release"
)

// buildAgent builds the agent stamped with version into dir.
func buildAgent(t *testing.T, dir, version string) string {
	t.Helper()
	return buildStamped(t, dir, "initech-agent", "./cmd/agent", version)
}

// buildBroken builds a release that crashes at start (but carries the
// right version stamp, so it passes every check before it runs).
func buildBroken(t *testing.T, dir, version string) string {
	t.Helper()
	return buildStamped(t, dir, "initech-agent", "./internal/tstest/brokenagent", version)
}

// buildStamped builds pkg stamped with version as dir/name.
func buildStamped(t *testing.T, dir, name, pkg, version string) string {
	t.Helper()
	root, _ := moduleRoot()
	out := filepath.Join(dir, name)
	os.MkdirAll(dir, 0o755)
	cmd := exec.Command("go", "build", "-o", out, "-ldflags", "-X "+buildinfo.VersionSymbol+"="+version, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s %s: %v\n%s", pkg, version, err, b)
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

// TestSelfUpdate runs a foreground node (no service manager): the update
// is staged in the state directory, passes a trial run, and the launcher
// (the installed binary, which is never rewritten) runs it from then on.
// TestSystemdUpdate is the same under a real systemd.
func TestSelfUpdate(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub().Start()
	platform := runtime.GOOS + "/" + runtime.GOARCH
	installed := buildAgent(t, filepath.Join(env.Dir, "installed"), "v1.0.0")
	v110 := buildAgent(t, filepath.Join(env.Dir, "build-1.1.0"), "v1.1.0")
	publish := func(version string, files ...string) Result {
		t.Helper()
		args := []string{"--version", version}
		for _, f := range files {
			args = append(args, "--file", f)
		}
		return h.CLI([]string{"release", "publish"}, args...)
	}
	mustPublish := func(version string, files ...string) {
		t.Helper()
		if r := publish(version, files...); r.Code != 0 {
			t.Fatalf("publish %s: %s", version, r.Stderr)
		}
	}
	mustPublish("v1.1.0", platform+"="+v110)

	// The install directory is read-only, as /usr/bin is under the
	// hardened unit: the update must not need to write there.
	dir := filepath.Dir(installed)
	if os.Geteuid() == 0 {
		if out, err := exec.Command("mount", "--bind", "-o", "ro", dir, dir).CombinedOutput(); err != nil {
			t.Fatalf("read-only bind mount: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", dir).Run() })
	} else {
		os.Chmod(dir, 0o555)
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
	}

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
	if v := exeVersion(t, installed); v != "v1.0.0" {
		t.Fatalf("the installed binary was rewritten: it is %s", v)
	}
	Await(t, 10*time.Second, "the hub to record the update", func() bool {
		r := h.CLI([]string{"members", "list"})
		return strings.Contains(r.Stdout, "v1.0.0 → v1.1.0 ok")
	})
	// The launcher runs the confirmed version at every start.
	n.Restart()
	Await(t, 30*time.Second, "the restarted node to run v1.1.0 again", func() bool {
		st, err := n.Status()
		return err == nil && st.Version == "v1.1.0" && st.Relay.Connected
	})
	if !strings.Contains(n.Proc.Logs(), "launcher: running verified v1.1.0") {
		t.Errorf("the launcher did not say what it ran:\n%s", n.Proc.Logs())
	}

	// A broken build (exits at start) fails its trial run and is not
	// switched to, nor tried again automatically.
	mustPublish("v1.2.0", platform+"="+buildBroken(t, filepath.Join(env.Dir, "broken"), "v1.2.0"))
	r := n.CLI([]string{"update"})
	if r.Code == 0 || !strings.Contains(r.Stderr, "failed its trial") || !strings.Contains(r.Stderr, "rolled back to v1.1.0") {
		t.Fatalf("broken update: %s %s", r.Stdout, r.Stderr)
	}
	if st, err := n.Status(); err != nil || st.Version != "v1.1.0" || !st.Relay.Connected {
		t.Fatalf("after the failed trial: %+v %v", st, err)
	}
	Await(t, 10*time.Second, "the hub to record the failure", func() bool {
		return strings.Contains(h.CLI([]string{"members", "list"}).Stdout, "v1.1.0 → v1.2.0 FAILED")
	})
	if r := n.CLI([]string{"update"}); r.Code != 0 || !strings.Contains(r.Stdout, "failed on this node before") {
		t.Fatalf("a failed release was retried: %s %s", r.Stdout, r.Stderr)
	}

	// Each bad release is refused with a reason; the node keeps running.
	// Every one is a binary stamped with its own version (publish checks),
	// spoiled on the hub afterwards.
	stamped := func(version string) string {
		return buildAgent(t, filepath.Join(env.Dir, "build-"+version), version)
	}
	rel := func(version string) string { return filepath.Join(h.Dir, "releases", "stable", version) }
	bin := func(version string) string {
		return filepath.Join(rel(version), strings.ReplaceAll(platform, "/", "_"))
	}

	mustPublish("v1.3.0", platform+"="+stamped("v1.3.0")) // tampered manifest
	m, _ := os.ReadFile(filepath.Join(rel("v1.3.0"), "manifest.cbor"))
	m[len(m)/2] ^= 1
	os.WriteFile(filepath.Join(rel("v1.3.0"), "manifest.cbor"), m, 0o600)

	mustPublish("v1.3.1", platform+"="+stamped("v1.3.1")) // signed by another key
	var hubCfg struct{ Project string }
	other, _ := release.Sign(key.NewSigningPrivate(), release.Manifest{Project: hubCfg.Project, Version: "v1.3.1", Channel: "stable"})
	os.WriteFile(filepath.Join(rel("v1.3.1"), "manifest.cbor"), other, 0o600)

	mustPublish("v1.3.2", platform+"="+stamped("v1.3.2")) // binary altered after signing
	b, _ := os.ReadFile(bin("v1.3.2"))
	b[len(b)/2] ^= 1
	os.WriteFile(bin("v1.3.2"), b, 0o600)

	mustPublish("v1.3.3", platform+"="+stamped("v1.3.3")) // truncated on the hub
	b, _ = os.ReadFile(bin("v1.3.3"))
	os.WriteFile(bin("v1.3.3"), b[:len(b)/3], 0o600)

	mustPublish("v1.3.4", "windows/amd64="+stamped("v1.3.4")) // another platform only

	refusals := []struct{ version, want string }{
		{"v1.3.0", "signature does not verify"},
		{"v1.3.1", "signature does not verify"},
		{"v1.3.2", "checksum does not match"},
		{"v1.3.3", "truncated"},
		{"v1.3.4", "has no build for " + platform},
		{"v0.9.0", "not published"},
	}
	// A release whose binary is another version (the update loop's
	// cause): refused by `release publish`, and by the node when a hub
	// published it anyway (signed with the real key, the check skipped).
	v130 := filepath.Join(env.Dir, "build-v1.3.0", "initech-agent")
	if r := publish("v1.4.0", platform+"="+v130); r.Code == 0 || !strings.Contains(r.Stderr, "the binary says it is v1.3.0") {
		t.Errorf("publish of a v1.3.0 binary as v1.4.0: %d %s", r.Code, r.Stderr)
	}
	relKey, err := vendor.LoadPrivate(filepath.Join(h.VendorDir, vendor.ReleaseKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	hd, err := hub.LoadDir(h.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hd.Publish(hub.PublishOptions{Version: "v1.4.0", Files: map[string]string{platform: v130}, Key: relKey}); err != nil {
		t.Fatal(err)
	}
	refusals = append(refusals, struct{ version, want string }{"v1.4.0", "the binary says it is v1.3.0"})
	for _, rf := range refusals {
		r := n.CLI([]string{"update"}, "--version", rf.version)
		if r.Code == 0 || !strings.Contains(r.Stderr, rf.want) {
			t.Errorf("update to %s: %d %q %q", rf.version, r.Code, r.Stdout, r.Stderr)
		}
	}
	if st, err := n.Status(); err != nil || st.Version != "v1.1.0" || !st.Relay.Connected {
		t.Errorf("the node stopped working: %+v %v", st, err)
	}
	// Nothing but the running version (and the one it replaced) is kept.
	ents, _ := os.ReadDir(filepath.Join(n.StateDir, "update", "bin"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "v1.1.0" {
		t.Errorf("staged versions left: %v", names)
	}
}

// TestSystemdUpdate updates the agent installed as a real systemd service
// (hardened unit: unprivileged account, read-only system): v1 → v2 through
// the launcher and a restart by systemd; a v2 that crashes at start is
// retried by systemd, counted by the launcher and rolled back; a v2 that
// cannot reach the hub within its deadline is rolled back too and the
// result reaches the hub when it is back; no release is retried in a loop;
// a binary planted in the state directory is not run.
func TestSystemdUpdate(t *testing.T) {
	env := NewEnv(t)
	platform := runtime.GOOS + "/" + runtime.GOARCH
	a := newBoxAgent(t, "update", buildAgent(t, filepath.Join(env.Dir, "v1.0.0"), "v1.0.0"))
	h := env.NewHub().Start()
	publish := func(version, bin string) {
		t.Helper()
		if r := h.CLI([]string{"release", "publish"}, "--version", version, "--file", platform+"="+bin); r.Code != 0 {
			t.Fatalf("publish %s: %s", version, r.Stderr)
		}
	}
	lastUpdate := func() string {
		for _, l := range strings.Split(h.CLI([]string{"members", "list"}).Stdout, "\n") {
			if strings.Contains(l, "acme-relay") {
				return l
			}
		}
		return ""
	}
	tk := h.Ticket("t.ticket", "--relay", "acme-relay")
	a.copyIn(tk, "/root/t.ticket")
	a.must("install", "--ticket", "/root/t.ticket")
	a.awaitUp(30*time.Second, "v1.0.0")

	// v1.0.0 → v1.1.0 through systemd.
	publish("v1.1.0", buildAgent(t, filepath.Join(env.Dir, "v1.1.0"), "v1.1.0"))
	start := time.Now()
	mustContain(t, "update", a.must("update"), "updated v1.0.0 → v1.1.0; restarting into it through the service manager")
	a.awaitUp(60*time.Second, "v1.1.0")
	t.Logf("update v1.0.0 → v1.1.0 through systemd: %s from `update` to the relay registered by v1.1.0", time.Since(start).Round(time.Millisecond))
	exe := strings.TrimSpace(a.box.Must("readlink", fmt.Sprintf("/proc/%d/exe", a.mainPID())))
	if exe != a.state+"/update/bin/v1.1.0/initech-agent" {
		t.Errorf("the service runs %s", exe)
	}
	mustContain(t, "installed binary", a.must("version"), "initech-agent v1.0.0")
	if got := a.systemctl("show", "-p", "ProtectSystem", "--value", "initech-agent"); got != "strict" {
		t.Errorf("ProtectSystem=%s", got)
	}
	Await(t, 10*time.Second, "the hub to record the update", func() bool { return strings.Contains(lastUpdate(), "v1.0.0 → v1.1.0 ok") })
	j := a.journal()
	mustContain(t, "journal", j, "launcher: starting v1.1.0 on trial (attempt 1 of 3, from v1.0.0)", "update complete")
	for _, l := range strings.Split(j, "\n") {
		if strings.Contains(l, "launcher") || strings.Contains(l, "exiting with status 75") || strings.Contains(l, "update complete") {
			t.Logf("journal: %s", l)
		}
	}
	// Every start runs the confirmed version.
	a.must("restart")
	a.awaitUp(30*time.Second, "v1.1.0")
	mustContain(t, "journal", a.journal(), "launcher: running verified v1.1.0 (installed binary v1.0.0)")

	// A v1.2.0 that crashes at start: systemd restarts it, the launcher
	// counts, v1.1.0 comes back, the hub hears why, nothing loops.
	publish("v1.2.0", buildBroken(t, filepath.Join(env.Dir, "v1.2.0"), "v1.2.0"))
	start = time.Now()
	mustContain(t, "update", a.must("update"), "updated v1.1.0 → v1.2.0")
	Await(t, 90*time.Second, "the hub to hear that v1.2.0 failed", func() bool {
		return strings.Contains(lastUpdate(), "v1.1.0 → v1.2.0 FAILED")
	})
	a.awaitUp(30*time.Second, "v1.1.0")
	t.Logf("crashing v1.2.0 → back at v1.1.0 and reported: %s", time.Since(start).Round(time.Millisecond))
	mustContain(t, "hub", lastUpdate(), "v1.2.0 exited 3 times before it reached the hub")
	mustContain(t, "journal", a.journal(), "this build is broken", "launcher: v1.2.0 exited 3 times before it reached the hub: rolled back to v1.1.0")
	restarts := a.systemctl("show", "-p", "NRestarts", "--value", "initech-agent")
	time.Sleep(5 * time.Second)
	if again := a.systemctl("show", "-p", "NRestarts", "--value", "initech-agent"); again != restarts {
		t.Fatalf("the service keeps restarting after the rollback: NRestarts %s → %s", restarts, again)
	}
	if staged := strings.Fields(a.box.Must("ls", a.state+"/update/bin")); strings.Join(staged, " ") != "v1.1.0" {
		t.Errorf("staged after the rollback: %v", staged)
	}
	mustContain(t, "update again", a.must("update"), "failed on this node before")
	if st, _ := a.status(); st.Version != "v1.1.0" {
		t.Fatalf("after a refused retry: %s", st.Version)
	}

	// A v1.3.0 that cannot reach the hub within its deadline (the hub is
	// down): rolled back; the result reaches the hub once it is up.
	a.box.Must("systemctl", "set-environment", "INITECH_UPDATE_TRIAL_TIMEOUT=4s")
	defer a.box.Exec("systemctl", "unset-environment", "INITECH_UPDATE_TRIAL_TIMEOUT")
	publish("v1.3.0", buildAgent(t, filepath.Join(env.Dir, "v1.3.0"), "v1.3.0"))
	mustContain(t, "update", a.must("update"), "updated v1.1.0 → v1.3.0")
	start = time.Now()
	h.Proc.Stop()
	Await(t, 60*time.Second, "v1.3.0 to give up and v1.1.0 to run again", func() bool {
		st, err := a.status()
		return err == nil && st.Version == "v1.1.0" && strings.Contains(a.journal(), "launcher: v1.3.0 gave up its trial")
	})
	t.Logf("v1.3.0 cut off from the hub, 4s trial deadline → v1.1.0 running again: %s", time.Since(start).Round(time.Millisecond))
	h.Start()
	a.awaitUp(60*time.Second, "v1.1.0")
	Await(t, 20*time.Second, "the hub to hear that v1.3.0 failed", func() bool {
		return strings.Contains(lastUpdate(), "v1.1.0 → v1.3.0 FAILED")
	})
	mustContain(t, "hub", lastUpdate(), "did not reach the hub and register its relay within 4s")

	// A binary planted in the state directory is never run.
	a.box.Must("cp", "--remove-destination", a.bin, a.state+"/update/bin/v1.1.0/initech-agent")
	a.must("restart")
	a.awaitUp(30*time.Second, "v1.0.0")
	mustContain(t, "journal", a.journal(), "launcher: refusing to run staged v1.1.0", "checksum does not match")
}
