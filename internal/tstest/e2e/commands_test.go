// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/agent/command"
	wcommand "github.com/edgeportal/connect/wire/command"
	"github.com/edgeportal/connect/wire/key"
)

func TestVendorCommands(t *testing.T) {
	github := HTTPServer(t, "github\n")
	jira := HTTPServer(t, "jira\n")
	db := HTTPServer(t, "db\n")
	_, jiraPort, _ := strings.Cut(jira, ":")
	_, dbPort, _ := strings.Cut(db, ":")
	cfg := fmt.Sprintf(`relay: acme-relay
tcp-outlet:
  from: github
  to: %s
policy:
  resource-type: tcp-outlet
  allow: inlet-from-saas
remote-outlets:
  allow:
    - localhost:%s
    - 127.0.0.0/8:%s
`, github, jiraPort, dbPort)
	p := startPair(t, cfg, nil)
	st, _ := p.customer.Status()
	customerID := st.Identifier
	push := func(args ...string) Result {
		t.Helper()
		return p.hub.CLI([]string{"outlet", "push"}, append([]string{"--relay", "acme-relay", "--wait", "15s"}, args...)...)
	}

	// A pushed outlet inside the allow-list is applied, reachable, and shown as the vendor's.
	if r := push("--from", "jira", "--to", "localhost:"+jiraPort); r.Code != 0 || !strings.Contains(r.Stdout, "applied") {
		t.Fatalf("push jira: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	jiraIn := p.inlet(t, "jira")
	if got, err := Get(jiraIn); err != nil || got != "jira\n" {
		t.Fatalf("jira through the pushed outlet: %q %v", got, err)
	}
	st, _ = p.customer.Status()
	found := false
	for _, o := range st.Outlets {
		found = found || o.Name == "jira" && o.Origin == "vendor"
	}
	if !found {
		t.Errorf("status outlets: %+v", st.Outlets)
	}
	if r := p.customer.CLI([]string{"explain"}); !strings.Contains(r.Stdout, "jira") || !strings.Contains(r.Stdout, "vendor") || !strings.Contains(r.Stdout, "inlet-from-saas") {
		t.Errorf("explain:\n%s%s", r.Stdout, r.Stderr)
	}
	// Through a CIDR entry, checked against the dialled address.
	if r := push("--from", "db", "--to", "127.0.0.1:"+dbPort); r.Code != 0 {
		t.Fatalf("push db: %s %s", r.Stdout, r.Stderr)
	}
	dbIn := p.inlet(t, "db")
	if got, err := Get(dbIn); err != nil || got != "db\n" {
		t.Fatalf("db: %q %v", got, err)
	}

	// Refusals, each with a reason and nothing changed.
	refusals := []struct {
		args []string
		want string
	}{
		{[]string{"--from", "evil", "--to", "evil.example:80"}, "outside the customer's remote-outlets allow-list"},
		{[]string{"--from", "ssh", "--to", "127.0.0.1:22"}, "outside the customer's remote-outlets allow-list"},
		{[]string{"--from", "github", "--to", "localhost:" + jiraPort}, "defined locally"},
	}
	for _, rf := range refusals {
		r := push(rf.args...)
		if r.Code == 0 || !strings.Contains(r.Stdout, "refused: ") || !strings.Contains(r.Stdout, rf.want) {
			t.Errorf("push %v: %d %q %q", rf.args, r.Code, r.Stdout, r.Stderr)
		}
	}
	if got, err := Get(p.inlet(t, "github")); err != nil || got != "github\n" {
		t.Errorf("the local github outlet changed: %q %v", got, err)
	}

	// Raw commands: tampered, foreign key, replayed, expired, other node,
	// malformed policy, garbage.
	var hubCfg struct{ Project string }
	b, _ := os.ReadFile(filepath.Join(p.hub.AuthDir, "authority.json"))
	json.Unmarshal(b, &hubCfg)
	var cmdKey key.SigningPrivate
	if err := key.ReadFile(filepath.Join(p.hub.VendorDir, "command.key"), &cmdKey); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mk := func(k key.SigningPrivate, mod func(*wcommand.Command)) []byte {
		c := wcommand.Command{Project: hubCfg.Project, Target: customerID, Relay: "acme-relay", Seq: 100, IssuedAt: now.Unix(),
			ExpiresAt: now.Add(time.Hour).Unix(), Op: wcommand.OpOutletAdd, Outlet: &wcommand.OutletArgs{Name: "x", To: "localhost:" + jiraPort}}
		mod(&c)
		data, err := wcommand.Sign(k, c)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	sendRaw := func(name string, data []byte) Result {
		f := filepath.Join(p.env.Dir, name+".cmd")
		os.WriteFile(f, data, 0o600)
		return p.hub.CLI([]string{"commands", "send-raw"}, "--relay", "acme-relay", "--file", f, "--wait", "15s")
	}
	// Signed sequence numbers follow the hub's queue for this node, as the
	// hub's own commands do.
	nextSeq := func() uint64 {
		r := p.hub.CLI([]string{"commands", "list"}, "--relay", "acme-relay", "--json")
		var cs []json.RawMessage
		json.Unmarshal([]byte(r.Stdout), &cs)
		return uint64(len(cs) + 1)
	}
	first := mk(cmdKey, func(c *wcommand.Command) { c.Seq = nextSeq(); c.Outlet.Name = "raw-ok" })
	if r := sendRaw("first", first); r.Code != 0 {
		t.Fatalf("a good raw command: %s %s", r.Stdout, r.Stderr)
	}
	tampered := append([]byte(nil), first...)
	tampered[len(tampered)-70] ^= 0x20
	raws := []struct {
		name string
		data func() []byte
		want string
	}{
		{"tampered", func() []byte { return tampered }, ""},
		{"other key", func() []byte { return mk(key.NewSigningPrivate(), func(c *wcommand.Command) { c.Seq = nextSeq() }) }, "bad signature"},
		{"replayed", func() []byte { return first }, "replayed"},
		{"older", func() []byte { return mk(cmdKey, func(c *wcommand.Command) { c.Seq = 1; c.Outlet.Name = "old" }) }, "replayed"},
		{"expired", func() []byte {
			return mk(cmdKey, func(c *wcommand.Command) { c.Seq = nextSeq(); c.ExpiresAt = now.Add(-time.Minute).Unix() })
		}, "command expired"},
		{"other node", func() []byte {
			return mk(cmdKey, func(c *wcommand.Command) { c.Seq = nextSeq(); c.Target = "I00000000000000000000000000000000" })
		}, "command is for another node"},
		{"bad policy", func() []byte {
			return mk(cmdKey, func(c *wcommand.Command) { c.Seq = nextSeq(); c.Outlet.Allow = "a and (" })
		}, "malformed allow expression"},
		{"garbage", func() []byte { return []byte("\x00\xffthis is not a command") }, "garbage on the command stream"},
	}
	for _, rw := range raws {
		r := sendRaw(strings.ReplaceAll(rw.name, " ", "-"), rw.data())
		if r.Code == 0 || !strings.Contains(r.Stdout, "refused: "+rw.want) {
			t.Errorf("%s: %d %q %q", rw.name, r.Code, r.Stdout, r.Stderr)
		}
	}
	st, _ = p.customer.Status()
	if len(st.Outlets) != 4 { // github, jira, db, raw-ok
		t.Errorf("refused raw commands changed the outlets: %+v", st.Outlets)
	}

	// Pause: nothing served, commands refused, the vendor sees it.
	if r := p.customer.CLI([]string{"pause"}); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	if _, err := Get(jiraIn); err == nil {
		t.Error("a paused node served a portal")
	}
	if r := push("--from", "wiki", "--to", "localhost:"+jiraPort); !strings.Contains(r.Stdout, "refused: the node is paused") {
		t.Errorf("push while paused: %q %q", r.Stdout, r.Stderr)
	}
	if r := p.hub.CLI([]string{"members", "list"}); !strings.Contains(r.Stdout, "paused") {
		t.Errorf("the vendor does not see the pause:\n%s", r.Stdout)
	}
	p.customer.Restart() // the pause survives a restart
	p.customer.AwaitRelayUp()
	if st, _ := p.customer.Status(); !st.Paused {
		t.Error("pause lost on restart")
	}
	if r := p.customer.CLI([]string{"resume"}); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	Await(t, 10*time.Second, "jira after resume", func() bool { got, err := Get(jiraIn); return err == nil && got == "jira\n" })

	// Offline queueing: the node is down, the hub restarts, the command
	// waits and is delivered in order when the node comes back.
	p.customer.Proc.Stop()
	r := p.hub.CLI([]string{"outlet", "remove"}, "--relay", "acme-relay", "--from", "jira", "--wait", "1s")
	if r.Code == 0 || !strings.Contains(r.Stderr, "not acknowledged") {
		t.Errorf("remove while offline: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	p.hub.Proc.Stop()
	p.hub.Start()
	p.customer.Restart()
	p.customer.AwaitRelayUp()
	p.vendor.AwaitRelayUp()
	Await(t, 20*time.Second, "the queued remove to apply", func() bool {
		r := p.hub.CLI([]string{"commands", "list"}, "--relay", "acme-relay")
		for _, line := range strings.Split(r.Stdout, "\n") {
			if strings.Contains(line, "outlet remove jira") && strings.Contains(line, "applied") {
				return true
			}
		}
		return false
	})
	if _, err := Get(jiraIn); err == nil {
		t.Error("the removed outlet still serves new connections")
	}
	if got, err := Get(dbIn); err != nil || got != "db\n" {
		t.Errorf("the pushed db outlet did not survive restarts: %q %v", got, err)
	}

	// The audit log has every command and portal, in order, and is intact.
	r = p.customer.CLI([]string{"audit"}, "--json")
	var entries []command.Entry
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		var e command.Entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit --json line %q: %v", line, err)
		}
		entries = append(entries, e)
	}
	var cmds, refusedCmds, portals int
	for i, e := range entries {
		if e.N != uint64(i+1) {
			t.Fatalf("audit out of order at %d", i)
		}
		switch {
		case e.Kind == "command" && e.Decision == "refused":
			refusedCmds++
			cmds++
		case e.Kind == "command":
			cmds++
		case e.Kind == "portal" && e.Decision == "allowed" && e.Peer != "" && e.DurationMS >= 0:
			portals++
		}
	}
	if cmds < 14 || refusedCmds < 12 || portals < 3 {
		t.Errorf("audit: %d commands (%d refused), %d portals:\n%s", cmds, refusedCmds, portals, r.Stdout)
	}
	if r := p.customer.CLI([]string{"audit", "verify"}); r.Code != 0 {
		t.Errorf("audit verify: %s %s", r.Stdout, r.Stderr)
	}
	log := filepath.Join(p.customer.StateDir, "audit.log")
	b, _ = os.ReadFile(log)
	os.WriteFile(log, []byte(strings.Replace(string(b), `"refused"`, `"applied"`, 1)), 0o600)
	if r := p.customer.CLI([]string{"audit", "verify"}); r.Code == 0 || !strings.Contains(r.Stderr, "edited") {
		t.Errorf("audit verify after an edit: %s %s", r.Stdout, r.Stderr)
	}
}
