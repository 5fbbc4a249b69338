// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// agentEnv runs the agent with extra environment variables.
func (e *Env) agentEnv(env []string, args ...string) Result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.AgentBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

func TestInstallRefusesBadInputOffline(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub() // not running: nothing below may need it
	good := h.Ticket("good.ticket", "--relay", "acme-relay")
	expired := h.Ticket("expired.ticket", "--expires-in", "1s")
	time.Sleep(1100 * time.Millisecond)
	garbled := filepath.Join(env.Dir, "garbled.ticket")
	os.WriteFile(garbled, []byte("ticket-v1:AAAA:00000000\n"), 0o600)
	badCfg := filepath.Join(env.Dir, "bad.yaml")
	os.WriteFile(badCfg, []byte("relay: acme-relay\ntcp-outlet:\n  from: github\n  targt: x\n"), 0o600)
	wrongRelay := filepath.Join(env.Dir, "wrong.yaml")
	os.WriteFile(wrongRelay, []byte("relay: other-relay\n"), 0o600)
	root, _ := moduleRoot()
	customer := filepath.Join(root, "examples", "customer.yaml")
	state := filepath.Join(env.Dir, "state")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no ticket", []string{}, "install needs --ticket FILE"},
		{"garbled ticket", []string{"--ticket", garbled}, "ticket checksum"},
		{"expired ticket", []string{"--ticket", expired}, "expired"},
		{"unknown config key", []string{"--ticket", good, "--config", badCfg}, `line 4: unknown key "targt"`},
		{"unset variable", []string{"--ticket", good, "--config", customer, "--variable", "RELAY=acme-relay"}, "variable $GITHUB_ADDRESS is not set"},
		{"refused relay", []string{"--ticket", good, "--config", wrongRelay}, `relay name "other-relay" refused`},
		{"unreachable hub", []string{"--ticket", good}, "preflight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := env.Agent(append([]string{"install", "--user", "--state-dir", state}, tt.args...)...)
			oneLine(t, tt.name, r, tt.want)
			if _, err := os.Stat(state); err == nil {
				t.Fatalf("a refused install left %s behind", state)
			}
		})
	}
}

func TestInstallRoot(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub()
	tk := h.Ticket("t.ticket", "--relay", "acme-relay")
	root := filepath.Join(env.Dir, "root")
	r := env.Agent("install", "--ticket", tk, "--root", root, "--dry-run")
	if r.Code != 0 || !strings.Contains(r.Stdout, "NoNewPrivileges=yes") || !strings.Contains(r.Stdout, "/var/lib/initech-agent") ||
		!strings.Contains(r.Stdout, "(secret, not shown)") || strings.Contains(r.Stdout, "ticket-v1:") {
		t.Fatalf("dry run:\n%s%s", r.Stdout, r.Stderr)
	}
	if _, err := os.Stat(root); err == nil {
		t.Fatal("--dry-run wrote files")
	}
	r = env.Agent("install", "--ticket", tk, "--root", root)
	if r.Code != 0 {
		t.Fatalf("install --root: %s", r.Stderr)
	}
	unit := filepath.Join(root, "etc/systemd/system/initech-agent.service")
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"User=initech-agent", "Restart=always", "RestartSec=2s", "ProtectSystem=strict", "PrivateTmp=yes",
		"CapabilityBoundingSet=\n", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "ExecStart=/usr/bin/initech-agent run --state-dir /var/lib/initech-agent"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	if strings.Contains(string(b), "enrollment.ticket") || strings.Contains(string(b), "--ticket ") || strings.Contains(string(b), "ticket-v1:") {
		t.Error("the unit mentions the ticket")
	}
	fi, err := os.Stat(filepath.Join(root, "var/lib/initech-agent"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v %v", fi, err)
	}
	fi, err = os.Stat(filepath.Join(root, "var/lib/initech-agent/enrollment.ticket"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ticket file: %v %v", fi, err)
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is not installed (scripts/test.sh installs it)")
	}
	out, err := exec.Command("systemd-analyze", "verify", "--recursive-errors=no", "--man=no", "--generators=no",
		"--root="+root, "/etc/systemd/system/initech-agent.service").CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestInstallFlow installs as a (fake-managed) service with real processes:
// the ticket is consumed only after the preflight, the node comes up,
// re-install changes nothing, doctor diagnoses, uninstall --revoke leaves.
func TestInstallFlow(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub().Start()
	github := HTTPServer(t, "github\n")
	tk := h.Ticket("acme.ticket", "--relay", "acme-relay", "--attribute", "outlet-from-saas")
	root, _ := moduleRoot()
	state := filepath.Join(env.Dir, "state")
	fake := []string{"INITECH_INSECURE_FAKE_SERVICE_MANAGER=" + filepath.Join(env.Dir, "services")}
	base := []string{"--user", "--state-dir", state}
	t.Cleanup(func() { env.agentEnv(fake, append([]string{"stop"}, base...)...) })

	// A used-up ticket fails the preflight and changes nothing.
	used := h.Ticket("used.ticket")
	env.StartNode("other", "--enrollment-ticket", used).AwaitHub()
	r := env.agentEnv(fake, append([]string{"install", "--ticket", used}, base...)...)
	oneLine(t, "used ticket", r, "preflight: the authority refuses this ticket: ticket is used up")
	if _, err := os.Stat(state); err == nil {
		t.Fatal("refused install left state behind")
	}

	r = env.agentEnv(fake, append([]string{"install", "--ticket", tk, "--config", filepath.Join(root, "examples", "customer.yaml"),
		"--variable", "RELAY=acme-relay", "--variable", "GITHUB_ADDRESS=" + github}, base...)...)
	if r.Code != 0 {
		t.Fatalf("install: %s\n%s", r.Stdout, r.Stderr)
	}
	for _, want := range []string{"checked      hub", "installed    service initech-agent", "started", "enrolled     as I", "relay        acme-relay connected", "outlet       github → " + github + " ready"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("install output lacks %q:\n%s", want, r.Stdout)
		}
	}
	// The ticket is gone from the state dir once redeemed, and never was on a command line.
	if _, err := os.Stat(filepath.Join(state, "enrollment.ticket")); err == nil {
		t.Error("the redeemed ticket is still in the state directory")
	}
	rec, _ := os.ReadFile(filepath.Join(env.Dir, "services", "initech-agent.json"))
	if strings.Contains(string(rec), "ticket-v1:") || strings.Contains(string(rec), "acme.ticket") || strings.Contains(string(rec), "GITHUB") {
		t.Errorf("secret on the service command line: %s", rec)
	}

	// Installing again with the stale ticket changes nothing.
	r = env.agentEnv(fake, append([]string{"install", "--ticket", tk}, base...)...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "already installed") {
		t.Fatalf("re-install: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if r := env.agentEnv(fake, "status", "--state-dir", state); r.Code != 0 || !strings.Contains(r.Stdout, "acme-relay, connected") {
		t.Fatalf("status: %s %s", r.Stdout, r.Stderr)
	}

	// doctor: healthy, then each broken case it detects.
	r = env.agentEnv(fake, append([]string{"doctor"}, base...)...)
	if r.Code != 0 || strings.Contains(r.Stdout, "FAIL") || !strings.Contains(r.Stdout, "installed and running") {
		t.Fatalf("doctor on a healthy node:\n%s%s", r.Stdout, r.Stderr)
	}
	h.Proc.Stop()
	r = env.agentEnv(fake, append([]string{"doctor"}, base...)...)
	if r.Code == 0 || !strings.Contains(r.Stdout, "FAIL hub") {
		t.Errorf("doctor with the hub down:\n%s", r.Stdout)
	}
	h.Start()
	if r := env.agentEnv(fake, append([]string{"stop"}, base...)...); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	r = env.agentEnv(fake, append([]string{"doctor"}, base...)...)
	if r.Code == 0 || !strings.Contains(r.Stdout, "FAIL node") || !strings.Contains(r.Stdout, "FAIL service") {
		t.Errorf("doctor with the service stopped:\n%s", r.Stdout)
	}
	if r := env.agentEnv(fake, append([]string{"start"}, base...)...); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	Await(t, 20*time.Second, "the restarted service", func() bool {
		r := env.agentEnv(fake, "status", "--state-dir", state)
		return r.Code == 0 && strings.Contains(r.Stdout, "acme-relay, connected")
	})
	os.Chmod(state, 0o755)
	r = env.agentEnv(fake, append([]string{"doctor"}, base...)...)
	if r.Code == 0 || !strings.Contains(r.Stdout, "FAIL state directory") {
		t.Errorf("doctor with a loose state dir:\n%s", r.Stdout)
	}
	os.Chmod(state, 0o700)

	// uninstall --revoke: the service is gone, the hub revoked us, the identity stays.
	r = env.agentEnv(fake, append([]string{"uninstall", "--revoke"}, base...)...)
	if r.Code != 0 {
		t.Fatalf("uninstall: %s %s", r.Stdout, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(state, "node.key")); err != nil {
		t.Error("uninstall without --purge removed the identity")
	}
	if m := h.CLI([]string{"members", "list"}); !strings.Contains(m.Stdout, "revoked") {
		t.Errorf("members after uninstall --revoke:\n%s", m.Stdout)
	}
	r = env.agentEnv(fake, append([]string{"uninstall", "--purge"}, base...)...)
	if _, err := os.Stat(state); err == nil {
		t.Errorf("--purge kept the state dir: %s %s", r.Stdout, r.Stderr)
	}
}
