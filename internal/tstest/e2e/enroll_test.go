// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// oneLine checks an error output is one line naming the problem.
func oneLine(t *testing.T, what string, r Result, want string) {
	t.Helper()
	if r.Code == 0 {
		t.Errorf("%s: exit 0, want failure", what)
		return
	}
	msg := strings.TrimSpace(r.Stderr)
	if strings.Count(msg, "\n") > 0 {
		// A node logs before it fails; its last line is the verdict.
		lines := strings.Split(msg, "\n")
		msg = lines[len(lines)-1]
	}
	if !strings.Contains(msg, want) {
		t.Errorf("%s: last line %q does not say %q\nfull output:\n%s", what, msg, want, r.Stderr)
	}
}

func members(t *testing.T, h *Hub) int {
	t.Helper()
	r := h.CLI([]string{"members", "list"})
	if r.Code != 0 {
		t.Fatalf("members list: %s", r.Stderr)
	}
	return strings.Count(r.Stdout, "\nI")
}

func TestTicketCreateRefusals(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub() // not running: admin commands use the store directly
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--usage-count", "0"}, "usage count must be at least 1"},
		{[]string{"--expires-in", "-1h"}, "must be positive"},
		{[]string{"--expires-in", "soon"}, "not a duration"},
		{[]string{"--attribute", "has space"}, "invalid"},
		{[]string{"--attribute", "="}, "attribute name is empty"},
		{[]string{"--relay", "bad relay"}, "relay name"},
	}
	for _, tt := range tests {
		r := h.CLI([]string{"ticket", "create"}, tt.args...)
		oneLine(t, strings.Join(tt.args, " "), r, tt.want)
		if r.Stdout != "" {
			t.Errorf("%v printed a ticket: %q", tt.args, r.Stdout)
		}
	}
	// And a good one works offline, then inspect shows it without using it.
	path := h.Ticket("ok.ticket", "--attribute", "a=b", "--relay", "r1", "--usage-count", "3")
	r := env.Agent("ticket", "inspect", path)
	if r.Code != 0 || !strings.Contains(r.Stdout, "a=b") || !strings.Contains(r.Stdout, "r1") || !strings.Contains(r.Stdout, h.Addr) {
		t.Errorf("ticket inspect:\n%s%s", r.Stdout, r.Stderr)
	}
}

// runNode runs `agent run` expecting it to exit by itself.
// copyTicket copies a ticket file, for a test that gives the same ticket
// to several nodes (each deletes its file once it redeemed a one-time
// ticket).
func copyTicket(t *testing.T, env *Env, path, name string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, env, name, string(b))
}

func runNode(t *testing.T, env *Env, name string, args ...string) (Result, string) {
	t.Helper()
	dir := filepath.Join(env.Dir, name)
	r := env.Agent(append([]string{"run", "--state-dir", dir}, args...)...)
	return r, dir
}

func TestBadTickets(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub().Start()
	good := h.Ticket("good.ticket", "--relay", "acme-relay")

	// Used up: the first node takes it (and deletes its copy of the
	// redeemed one-time ticket), the second is refused.
	firstCopy := copyTicket(t, env, good, "first.ticket")
	first := env.StartNode("first", "--enrollment-ticket", firstCopy)
	first.AwaitRelayUp()
	if _, err := os.Stat(firstCopy); err == nil {
		t.Error("the node kept the one-time ticket it redeemed")
	}
	r, dir := runNode(t, env, "second", "--enrollment-ticket", good)
	oneLine(t, "used-up ticket", r, "used up")
	if _, err := os.Stat(filepath.Join(dir, "enrollment.json")); err == nil {
		t.Error("refused node wrote an enrollment")
	}

	// Expired.
	exp := h.Ticket("exp.ticket", "--expires-in", "1s")
	time.Sleep(2100 * time.Millisecond)
	r, _ = runNode(t, env, "expired", "--enrollment-ticket", exp)
	oneLine(t, "expired ticket", r, "expired")

	// Garbled and truncated files.
	b, _ := os.ReadFile(good)
	trunc := filepath.Join(env.Dir, "trunc.ticket")
	os.WriteFile(trunc, b[:len(b)/2], 0o600)
	r, _ = runNode(t, env, "trunc", "--enrollment-ticket", trunc)
	oneLine(t, "truncated ticket", r, "ticket checksum")
	garbled := filepath.Join(env.Dir, "garbled.ticket")
	os.WriteFile(garbled, []byte("this is not a ticket\n"), 0o600)
	r, _ = runNode(t, env, "garbled", "--enrollment-ticket", garbled)
	oneLine(t, "garbled ticket", r, "not an enrollment ticket")

	// A ticket for another hub: same address, other keys.
	other := filepath.Join(env.Dir, "otherhub")
	if r := env.Run(env.HubBin, "init", "--dir", other, "--addr", h.Addr); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	if r := env.Run(env.HubBin, "authority", "init", "--dir", other+"-auth", "--hub-dir", other); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	otherTicket := filepath.Join(env.Dir, "other.ticket")
	if r := env.Run(env.HubBin, "ticket", "create", "--dir", other+"-auth", "--out", otherTicket); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	r, _ = runNode(t, env, "otherhub-node", "--enrollment-ticket", otherTicket)
	oneLine(t, "ticket for another hub", r, "for another hub")

	// A copy of the relay's directory cannot mint a ticket at all: it
	// holds no signing key.
	r = env.Run(env.HubBin, "ticket", "create", "--dir", h.Dir)
	oneLine(t, "ticket from the relay's directory", r, "is not an authority directory")

	// A ticket whose secret the authority never issued: a copy of the
	// authority's keys (not its store) minted it offline.
	clone := filepath.Join(env.Dir, "clone")
	os.Mkdir(clone, 0o700)
	for _, f := range []string{"authority.json", "authority.key", "authority-noise.key"} {
		b, err := os.ReadFile(filepath.Join(h.AuthDir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(clone, f), b, 0o600)
	}
	unknown := filepath.Join(env.Dir, "unknown.ticket")
	if r := env.Run(env.HubBin, "ticket", "create", "--dir", clone, "--out", unknown); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	r, _ = runNode(t, env, "unknown-node", "--enrollment-ticket", unknown)
	oneLine(t, "unknown secret", r, "not known to this hub")

	// A relay name the ticket does not grant.
	relayTicket := h.Ticket("relay.ticket", "--relay", "beta-relay")
	cfg := filepath.Join(env.Dir, "wrong-relay.yaml")
	os.WriteFile(cfg, []byte("relay: globex-relay\n"), 0o600)
	r, _ = runNode(t, env, "wrong-relay", "--enrollment-ticket", relayTicket, "--config", cfg)
	oneLine(t, "refused relay name", r, `relay name "globex-relay" refused`)

	// Only the first node became a member; the relay ticket is still usable.
	if n := members(t, h); n != 1 {
		t.Errorf("%d members after refusals, want 1", n)
	}
	env.StartNode("relay-ok", "--enrollment-ticket", relayTicket).AwaitRelayUp()
	if n := members(t, h); n != 2 {
		t.Errorf("%d members, want 2", n)
	}
}

func TestStateDirPermissions(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub().Start()
	tk := h.Ticket("t.ticket")
	loose := filepath.Join(env.Dir, "loose")
	os.Mkdir(loose, 0o755)
	os.Chmod(loose, 0o755)
	r := env.Agent("run", "--state-dir", loose, "--enrollment-ticket", tk)
	oneLine(t, "loose state dir", r, "must not be accessible to group or others")
	if os.Geteuid() == 0 {
		foreign := filepath.Join(env.Dir, "foreign")
		os.Mkdir(foreign, 0o700)
		os.Chown(foreign, 65534, 65534)
		r := env.Agent("run", "--state-dir", foreign, "--enrollment-ticket", tk)
		oneLine(t, "foreign state dir", r, "not by this user")
	}
	if n := members(t, h); n != 0 {
		t.Errorf("refused runs made %d members", n)
	}
	// status with no node running says so and fails.
	r = env.Agent("status", "--state-dir", loose)
	oneLine(t, "status without a node", r, "no node is running")
}

func TestUnreachableHubRetries(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub() // initialised but not serving yet
	tk := h.Ticket("t.ticket", "--relay", "r1")
	n := env.StartNode("patient", "--enrollment-ticket", tk)
	Await(t, 20*time.Second, "the node to say the hub is unreachable", func() bool {
		return strings.Contains(n.Proc.Logs(), "authority not reachable; retrying")
	})
	if n.Proc.Exited() {
		t.Fatalf("node gave up:\n%s", n.Proc.Logs())
	}
	h.Start()
	n.AwaitRelayUp()
}

func TestConcurrentRedemption(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub().Start()
	tk := h.Ticket("once.ticket")
	var wg sync.WaitGroup
	results := make([]Result, 6)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := filepath.Join(env.Dir, "racer", string(rune('a'+i)))
			os.MkdirAll(filepath.Dir(dir), 0o700)
			// Each racer stops itself once enrolled (or fails at once).
			r := env.Run("timeout", "-s", "INT", "8", env.AgentBin, "run", "--state-dir", dir, "--enrollment-ticket", copyTicket(t, env, tk, fmt.Sprint("racer-", i, ".ticket")))
			results[i] = r
		}()
	}
	wg.Wait()
	enrolled, refused := 0, 0
	for _, r := range results {
		switch {
		case strings.Contains(r.Stderr, "enrolled; the ticket has been redeemed"):
			enrolled++
		case strings.Contains(r.Stderr, "used up"):
			refused++
		}
	}
	if enrolled != 1 || refused != len(results)-1 {
		for _, r := range results {
			t.Logf("exit %d: %s", r.Code, r.Stderr)
		}
		t.Fatalf("%d enrolled, %d refused; want exactly one winner", enrolled, refused)
	}
	if n := members(t, h); n != 1 {
		t.Errorf("%d members", n)
	}
}

func TestCredentialRefresh(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub()
	cfg := filepath.Join(h.AuthDir, "authority.json")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), `"hubs"`, `"credential_ttl": "4s",
  "hubs"`, 1)), 0o600)
	h.Start()
	n := env.StartNode("short-lived", "--enrollment-ticket", h.Ticket("t.ticket", "--relay", "r1"))
	first := n.AwaitRelayUp().CredentialExpires
	if d := time.Until(first); d > 5*time.Second {
		t.Fatalf("credential valid for %s; authority.json asked for 4s", d)
	}
	Await(t, 20*time.Second, "a refreshed credential", func() bool {
		st, err := n.Status()
		return err == nil && st.CredentialExpires.After(first)
	})
	// The revoked member gets no more refreshes and is cut off.
	st, _ := n.Status()
	if r := h.CLI([]string{"members", "revoke"}, st.Identifier); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	if code := n.Proc.Wait(t, 15*time.Second); code == 0 {
		t.Error("revoked node exited 0")
	}
}
