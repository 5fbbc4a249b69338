// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub/vendor"
)

// The trust model, tried as an attacker would: whoever holds the relay
// (its process, or a copy of its directory) gains nothing beyond moving
// ciphertext.

// TestRelayHoldsNoSigningKey: nothing in the relay's directory is a
// signing key, and with only that directory no ticket, command or release
// can be made that a node accepts.
func TestRelayHoldsNoSigningKey(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub().Start()
	filepath.WalkDir(h.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Type()&fs.ModeSocket != 0 {
			return err
		}
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte("sigpriv:")) {
			t.Errorf("%s holds a signing private key", path)
		}
		return nil
	})
	// The relay process read nothing but its directory: its command line.
	if strings.Contains(strings.Join(h.Proc.cmd.Args, " "), h.AuthDir) || strings.Contains(strings.Join(h.Proc.cmd.Args, " "), h.VendorDir) {
		t.Errorf("the relay was given another directory: %v", h.Proc.cmd.Args)
	}
	n := env.StartNode("customer", "--enrollment-ticket", h.Ticket("c.ticket", "--relay", "acme-relay", "--attribute", "outlet-from-saas"))
	n.AwaitRelayUp()

	r := h.env.Run(env.HubBin, "ticket", "create", "--dir", h.Dir)
	oneLine(t, "a ticket from the relay's directory", r, "is not an authority directory")
	r = h.env.Run(env.HubBin, "outlet", "push", "--dir", h.Dir, "--relay", "acme-relay", "--from", "x", "--to", "127.0.0.1:1")
	oneLine(t, "a command without the command key", r, "--command-key FILE is required")
	// An attacker's own keys: the relay refuses the command before
	// queueing it, and a release before serving it.
	evil := filepath.Join(env.Dir, "evil")
	if _, _, err := vendor.Create(evil); err != nil {
		t.Fatal(err)
	}
	before := h.CLI([]string{"commands", "list"}, "--json").Stdout
	r = h.env.Run(env.HubBin, "outlet", "push", "--dir", h.Dir, "--command-key", filepath.Join(evil, vendor.CommandKeyFile),
		"--relay", "acme-relay", "--from", "x", "--to", "127.0.0.1:1")
	oneLine(t, "a command signed by another key", r, "not signed by this project's command key")
	if after := h.CLI([]string{"commands", "list"}, "--json").Stdout; after != before {
		t.Errorf("a refused command was queued: %s", after)
	}
	// A real agent binary stamped with the version it is published as,
	// so only the key is wrong.
	ver := "v9.0.0"
	stamped := buildAgent(t, filepath.Join(env.Dir, "build-"+ver), ver)
	r = h.env.Run(env.HubBin, "release", "publish", "--dir", h.Dir, "--release-key", filepath.Join(evil, vendor.ReleaseKeyFile),
		"--version", ver, "--file", "linux/amd64="+stamped)
	oneLine(t, "a release signed by another key", r, "is not this project's")
	if _, err := os.Stat(filepath.Join(h.Dir, "releases", "stable", ver)); err == nil {
		t.Error("a refused release was published")
	}
	// And a credential made with an attacker's key gets no one in: see
	// TestHostileRelay (the relay makes one itself) and the relay's unit
	// tests (TestAdmission).
}

// TestRedemptionSecretNeverCrossesTheRelay records every byte between a
// node and the relay while the node redeems its ticket: the ticket's
// secret, in any encoding, is not among them.
func TestRedemptionSecretNeverCrossesTheRelay(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub().Start()
	tp := startTap(t, h.Addr)
	path := h.Ticket("t.ticket", "--relay", "r1")
	b, _ := os.ReadFile(path)
	tk, _, err := enroll.ParseTicket(string(b))
	if err != nil {
		t.Fatal(err)
	}
	n := env.StartNode("node", "--enrollment-ticket", path, "--hub", tp.addr)
	n.AwaitRelayUp()
	if tp.seen.Len() < 1000 {
		t.Fatalf("the tap saw only %d bytes: the node did not go through it", tp.seen.Len())
	}
	for _, form := range []string{string(tk.Secret), hex.EncodeToString(tk.Secret), base64.StdEncoding.EncodeToString(tk.Secret),
		base64.RawURLEncoding.EncodeToString(tk.Secret), strings.TrimSpace(string(b))} {
		if tp.contains(form) {
			t.Fatalf("the ticket's secret crossed the relay in clear (as %q…)", form[:8])
		}
	}
	if !strings.Contains(h.AuthProc.Logs(), "node enrolled") {
		t.Error("the authority did not redeem the ticket")
	}
}

// TestHostileRelay: a relay that answers a portal itself, with its own
// Noise key and the best credentials it has (the relay owner's genuine
// one, and one it signs itself), gets refused by both nodes; the client
// sees a prompt close, and both logs say why.
func TestHostileRelay(t *testing.T) {
	env := NewEnv(t)
	env.HubBin = HostileHubBinary(t)
	target := echoServer(t)
	p := startPairIn(t, env, outletYAML(outletItem("echo", target, "inlet-from-saas")), nil)
	in := p.inlet(t, "echo")
	c, err := net.Dial("tcp", in)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello?"))
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	start := time.Now()
	got, err := io.ReadAll(c)
	if len(got) > 0 {
		t.Fatalf("the client got %q through a hostile relay", got)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the client was left hanging")
	}
	t.Logf("client closed after %s (%v)", time.Since(start).Round(time.Millisecond), err)
	Await(t, 10*time.Second, "the inlet node to say why", func() bool {
		return strings.Contains(p.vendor.Proc.Logs(), "credential is bound to another node key")
	})
	Await(t, 10*time.Second, "the outlet node to say why", func() bool {
		l := p.customer.Proc.Logs()
		return strings.Contains(l, "incoming channel refused") && strings.Contains(l, "signature does not verify")
	})
	if !strings.Contains(p.hub.Proc.Logs(), "HOSTILE RELAY") {
		t.Fatal("the relay did not play hostile: this test proves nothing")
	}
}

// TestRelayTakeover: with the owner of a relay name stopped, another
// member whose credential names the same relay is refused (naming the
// owner); the owner comes back and has its relay; portals reach it.
func TestRelayTakeover(t *testing.T) {
	target := echoServer(t)
	p := startPair(t, outletYAML(outletItem("echo", target, "inlet-from-saas")), nil)
	owner, _ := p.customer.Status()
	p.customer.Proc.Stop()
	thief := p.env.StartNode("thief", "--enrollment-ticket",
		p.hub.Ticket("thief.ticket", "--attribute", "outlet-from-saas", "--relay", "acme-relay"),
		"--config", writeFile(t, p.env, "thief.yaml", "relay: acme-relay\n"))
	var st = thief.AwaitHub()
	Await(t, 15*time.Second, "the second identity to be refused", func() bool {
		st, _ = thief.Status()
		return strings.Contains(st.Relay.Error, "belongs to node "+owner.Identifier)
	})
	if st.Relay.Connected {
		t.Fatal("a second identity took the relay")
	}
	// The owner restarts and gets its relay back within its backoff.
	p.customer.Restart()
	p.customer.AwaitRelayUp()
	in := p.inlet(t, "echo")
	if got, err := roundTrip(in, "to the owner"); err != nil || got != "to the owner" {
		t.Fatalf("portal after the owner came back: %q %v", got, err)
	}
	if st, _ := thief.Status(); st.Relay.Connected {
		t.Fatal("the thief has the relay")
	}
	// The vendor frees the name (here with the owner revoked): only then
	// may another identity have it, and the thief, retrying, gets it.
	if r := p.hub.CLI([]string{"members", "revoke"}, owner.Identifier); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	thief.AwaitRelayUp()
}

// TestScopedEnroller: an enroller scoped to inlet-to-saas and acme-*
// cannot mint outlet-to-saas, nor other-relay; every refusal names the
// part, and makes no ticket.
func TestScopedEnroller(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub().Start()
	tk := h.Ticket("enroller.ticket", "--relay", "saas-relay", "--enroller", "--enroller-may-grant", "inlet-to-saas", "--enroller-relays", "acme-*")
	n := env.StartNode("saas", "--enrollment-ticket", tk)
	n.AwaitRelayUp()
	count := func() int {
		var ts []json.RawMessage
		json.Unmarshal([]byte(h.CLI([]string{"ticket", "list"}, "--json").Stdout), &ts)
		return len(ts)
	}
	before := count()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--attribute", "outlet-to-saas"}, `attribute "outlet-to-saas" is not one it may grant`},
		{[]string{"--relay", "other-relay"}, `relay name "other-relay" does not match`},
		{[]string{"--attribute", "inlet-to-saas", "--usage-count", "1000"}, "1000 uses is more than its most"},
	} {
		r := n.CLI([]string{"ticket", "create"}, c.args...)
		oneLine(t, "out of scope "+strings.Join(c.args, " "), r, c.want)
	}
	if after := count(); after != before {
		t.Fatalf("refused grants made %d tickets", after-before)
	}
	r := n.CLI([]string{"ticket", "create"}, "--attribute", "inlet-to-saas", "--relay", "acme-relay")
	if r.Code != 0 || !strings.HasPrefix(strings.TrimSpace(r.Stdout), enroll.TicketPrefix) {
		t.Fatalf("inside the scope: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if count() != before+1 {
		t.Error("the granted ticket is not at the authority")
	}
}

// TestEditedTicketRefused: a ticket whose relay address was edited (the
// attacker's relay, same checksum recomputed) fails offline, naming the
// field, and makes no member.
func TestEditedTicketRefused(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub().Start()
	b, _ := os.ReadFile(h.Ticket("t.ticket", "--relay", "r1"))
	tk, _, err := enroll.ParseTicket(string(b))
	if err != nil {
		t.Fatal(err)
	}
	tk.Hubs = []string{"127.0.0.1:1"}
	edited, _ := tk.Encode()
	path := writeFile(t, env, "edited.ticket", edited)
	r := env.Agent("ticket", "inspect", path)
	oneLine(t, "inspect an edited ticket", r, "ticket hub addresses: differs from the value the authority signed")
	r, _ = runNode(t, env, "edited", "--enrollment-ticket", path)
	oneLine(t, "run with an edited ticket", r, "ticket hub addresses")
	if n := members(t, h); n != 0 {
		t.Errorf("%d members after an edited ticket", n)
	}
}

func writeFile(t *testing.T, env *Env, name, content string) string {
	t.Helper()
	p := filepath.Join(env.Dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
