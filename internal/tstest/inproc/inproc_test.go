// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package inproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/edgeportal/connect/agent"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/command"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/controlconn"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const outletNode = `
relay: acme-relay
tcp-outlet:
  from: echo
  to: $ECHO
  allow: inlet-node
remote-outlets:
  allow:
    - to: 127.0.0.1:*
      allow: inlet-node
`

const inletNode = `
tcp-inlet:
  - from: 127.0.0.1:0
    via: acme-relay
    to: echo
    allow: outlet-node
`

// pair starts a hub, an outlet node (relay acme-relay, outlet echo) and an
// inlet node with an inlet to it.
func pair(t *testing.T, inletYAML string) (w *World, outlet, inlet *Node) {
	t.Helper()
	w = NewWorld(t)
	w.StartHub()
	echo := Echo(t)
	outlet = w.StartNode("outlet", w.Ticket("outlet", enroll.TicketOptions{Relay: "acme-relay", Attributes: Attrs("outlet-node")}),
		outletNode, map[string]string{"ECHO": echo})
	outlet.AwaitRelayUp()
	inlet = w.StartNode("inlet", w.Ticket("inlet", enroll.TicketOptions{Attributes: Attrs("inlet-node")}), inletYAML, nil)
	inlet.AwaitHub()
	return w, outlet, inlet
}

func inletAddr(t *testing.T, n *Node, via string) string {
	t.Helper()
	st, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range st.Inlets {
		if in.Via == via {
			return in.Listening
		}
	}
	t.Fatalf("%s has no inlet via %s: %+v", n.Name, via, st.Inlets)
	return ""
}

// TestPortalsAndCommands runs a portal, a vendor command and a revocation
// through an in-process hub and two nodes, under the race detector.
func TestPortalsAndCommands(t *testing.T) {
	w, outlet, inlet := pair(t, inletNode)
	addr := inletAddr(t, inlet, "acme-relay")
	for i := range 5 {
		msg := fmt.Sprintf("hello %d", i)
		got, err := RoundTrip(addr, msg)
		if err != nil || got != msg {
			t.Fatalf("round trip %d: %q, %v", i, got, err)
		}
	}

	// A vendor outlet inside the customer's allow-list, then a portal to it.
	echo2 := Echo(t)
	res, err := w.Hub.Push(context.Background(), hub.PushRequest{Relay: "acme-relay", Op: command.OpOutletAdd,
		Outlet: command.OutletArgs{Name: "echo2", To: echo2, Allow: "inlet-node"}, Wait: 10 * time.Second})
	if err != nil || res.State != hub.CommandApplied {
		t.Fatalf("push: %+v, %v", res, err)
	}
	if _, err := inlet.N.AddInlet(context.Background(), inletFor("echo2")); err != nil {
		t.Fatal(err)
	}
	st, _ := inlet.Status()
	var addr2 string
	for _, in := range st.Inlets {
		if in.To == "echo2" {
			addr2 = in.Listening
		}
	}
	if got, err := RoundTrip(addr2, "vendor outlet"); err != nil || got != "vendor outlet" {
		t.Fatalf("vendor outlet: %q, %v", got, err)
	}

	// Revocation closes the inlet node's portals and stops it.
	ost, _ := outlet.Status()
	ist, _ := inlet.Status()
	if _, err := w.Hub.Authority.Revoke(context.Background(), ist.Identifier); err != nil {
		t.Fatal(err)
	}
	Await(t, 10*time.Second, "the revoked node stops", func() bool {
		done, _ := inlet.Exited()
		return done
	})
	if err := inlet.Stop(); !errors.Is(err, agent.ErrRevoked) {
		t.Fatalf("revoked node's Run returned %v, want ErrRevoked", err)
	}
	if ok, _ := outlet.Exited(); ok {
		t.Fatalf("outlet node %s stopped too", ost.Identifier)
	}
}

// TestVendorOutletCeiling replays the attack of a vendor outlet pushed
// with a policy wider than the customer's (here one that names the
// stranger; `identifier != "x"` would admit every member):
// the effective policy is the vendor's AND the customer's ceiling (the
// remote-outlets entry's own allow, else the tcp-outlet default, else
// nobody), so a member outside the customer's policy is refused.
func TestVendorOutletCeiling(t *testing.T) {
	w := NewWorld(t)
	w.StartHub()
	own, dflt := Echo(t), Echo(t)
	yaml := fmt.Sprintf(`relay: acme-relay
policy:
  resource-type: tcp-outlet
  allow: tier = gold
remote-outlets:
  allow:
    - to: %s
      allow: inlet-node
    - %s
`, own, dflt)
	outlet := w.StartNode("outlet", w.Ticket("outlet", enroll.TicketOptions{Relay: "acme-relay", Attributes: Attrs("outlet-node")}), yaml, nil)
	outlet.AwaitRelayUp()
	member := w.StartNode("member", w.Ticket("member", enroll.TicketOptions{Attributes: Attrs("inlet-node")}), "", nil)
	stranger := w.StartNode("stranger", w.Ticket("stranger", enroll.TicketOptions{Attributes: Attrs("stranger")}), "", nil)
	member.AwaitHub()
	stranger.AwaitHub()
	push := func(name, to, allow string) {
		t.Helper()
		res, err := w.Hub.Push(context.Background(), hub.PushRequest{Relay: "acme-relay", Op: command.OpOutletAdd,
			Outlet: command.OutletArgs{Name: name, To: to, Allow: allow}, Wait: 10 * time.Second})
		if err != nil || res.State != hub.CommandApplied {
			t.Fatalf("push %s: %+v, %v", name, res, err)
		}
	}
	through := func(n *Node, outlet string) error {
		t.Helper()
		in, err := n.N.AddInlet(context.Background(), localapi.Inlet{From: "127.0.0.1:0", Via: "acme-relay", To: outlet, Allow: "outlet-node"})
		if err != nil {
			t.Fatal(err)
		}
		defer n.N.RemoveInlet(context.Background(), in.From)
		got, err := RoundTrip(in.Listening, "hello "+outlet)
		if err == nil && got != "hello "+outlet {
			err = fmt.Errorf("echo %q", got)
		}
		return err
	}

	push("wide", own, "stranger or inlet-node")
	if err := through(stranger, "wide"); err == nil {
		t.Fatal("a member outside the customer's policy reached a vendor outlet whose own allow admits it")
	}
	if err := through(member, "wide"); err != nil {
		t.Fatalf("a member inside both policies: %v", err)
	}
	push("defaulted", dflt, "")
	if err := through(member, "defaulted"); err == nil {
		t.Fatal("the tcp-outlet default (tier = gold) did not bound a vendor outlet on an entry without its own allow")
	}
	ex := outlet.N.Explain(context.Background())
	want := map[string][3]string{
		"wide":      {"(stranger or inlet-node) and inlet-node", "stranger or inlet-node", "inlet-node"},
		"defaulted": {"tier = gold", "", "tier = gold"},
	}
	for _, e := range ex {
		w, ok := want[e.Outlet]
		if !ok {
			continue
		}
		delete(want, e.Outlet)
		if got := [3]string{e.Allow, e.VendorAllow, e.Ceiling}; got != w {
			t.Errorf("explain %s: effective, vendor, ceiling = %q, want %q (admits: %s)", e.Outlet, got, w, e.Admits)
		}
	}
	if len(want) > 0 {
		t.Errorf("explain lacks %v: %+v", want, ex)
	}
	audit := outlet.Logs.String()
	if !strings.Contains(audit, "no outlet of this node admits node") {
		t.Errorf("the outlet node's log does not show the stranger's refusal:\n%s", audit)
	}
}

// TestVendorOutletWithoutCeiling: an entry without its own allow on a
// node without a tcp-outlet default admits nobody.
func TestVendorOutletWithoutCeiling(t *testing.T) {
	w := NewWorld(t)
	w.StartHub()
	target := Echo(t)
	outlet := w.StartNode("outlet", w.Ticket("outlet", enroll.TicketOptions{Relay: "acme-relay", Attributes: Attrs("outlet-node")}),
		"relay: acme-relay\nremote-outlets:\n  allow:\n    - "+target+"\n", nil)
	outlet.AwaitRelayUp()
	member := w.StartNode("member", w.Ticket("member", enroll.TicketOptions{Attributes: Attrs("inlet-node")}), "", nil)
	member.AwaitHub()
	res, err := w.Hub.Push(context.Background(), hub.PushRequest{Relay: "acme-relay", Op: command.OpOutletAdd,
		Outlet: command.OutletArgs{Name: "open", To: target, Allow: "inlet-node"}, Wait: 10 * time.Second})
	if err != nil || res.State != hub.CommandApplied {
		t.Fatalf("push: %+v, %v", res, err)
	}
	in, err := member.N.AddInlet(context.Background(), localapi.Inlet{From: "127.0.0.1:0", Via: "acme-relay", To: "open", Allow: "outlet-node"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := RoundTrip(in.Listening, "x"); err == nil {
		t.Fatalf("a vendor outlet without a customer ceiling admitted a member: %q", got)
	}
	for _, e := range outlet.N.Explain(context.Background()) {
		if e.Outlet == "open" && !strings.HasPrefix(e.Admits, "nobody") {
			t.Errorf("explain open: %+v", e)
		}
	}
}

func inletFor(outlet string) localapi.Inlet {
	return localapi.Inlet{From: "127.0.0.3:0", Via: "acme-relay", To: outlet, Allow: "outlet-node"}
}

// TestSlowNodeDoesNotStallOthers: a member that stops reading its control
// connection, while another member floods it with session requests, must
// not delay the sessions and portals of others: neither new sessions to a
// healthy relay nor portals in an open channel, nor the inlet node's own
// attempts at a channel to the stuck relay.
func TestSlowNodeDoesNotStallOthers(t *testing.T) {
	yaml := inletNode + `
  - from: 127.0.0.2:0
    via: stuck-relay
    to: anything
    allow: outlet-node
`
	w, _, inlet := pair(t, yaml)
	good := inletAddr(t, inlet, "acme-relay")
	stuck := inletAddr(t, inlet, "stuck-relay")
	flooder := enrollRaw(t, w, "", 0)
	defer flooder.Close()
	var nextID uint64 = 10
	// session asks the relay for a session to relay and waits for the
	// answer, skipping the answers to earlier requests.
	session := func(relay string) (time.Duration, error) {
		nextID++
		id := nextID
		start := time.Now()
		b, _ := control.Encode(control.TypeOpenSession, id, control.OpenSessionRequest{Relay: relay})
		if err := wire.WriteMessage(flooder, b); err != nil {
			t.Fatal(err)
		}
		flooder.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			b, err := wire.ReadMessage(flooder)
			if err != nil {
				t.Fatal(err)
			}
			if m, _ := control.Decode(b); m.Type == control.TypeResponse && m.ID == id {
				if m.Err != nil {
					return time.Since(start), m.Err
				}
				return time.Since(start), nil
			}
		}
	}
	send := func(relay string, n int) {
		for range n {
			nextID++
			b, _ := control.Encode(control.TypeOpenSession, nextID, control.OpenSessionRequest{Relay: relay})
			if err := wire.WriteMessage(flooder, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	measure := func(n int) (sessions, portals time.Duration) {
		for i := range n {
			d, err := session("acme-relay")
			if err != nil {
				t.Fatalf("a session to the healthy relay: %v", err)
			}
			sessions = max(sessions, d)
			start := time.Now()
			msg := fmt.Sprint("ping ", i)
			if got, err := RoundTrip(good, msg); err != nil || got != msg {
				t.Fatalf("portal to the healthy relay: %q, %v", got, err)
			}
			portals = max(portals, time.Since(start))
		}
		return sessions, portals
	}
	baseSessions, basePortals := measure(10)

	// A member that registers stuck-relay and then stops reading, with a
	// receive buffer as small as the kernel allows, while the hub is
	// writing it a few MiB of release chunks it asked for: the hub's
	// writer for it is stuck in a write.
	bin := filepath.Join(w.Dir, "big")
	if err := os.WriteFile(bin, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Hub.Dir.Publish(hub.PublishOptions{Version: "v9.0.0", Files: map[string]string{"linux/amd64": bin}, Key: w.Hub.ReleaseKey}); err != nil {
		t.Fatal(err)
	}
	s := enrollRaw(t, w, "stuck-relay", 1024)
	defer s.Close()
	for i := range 16 {
		b, _ := control.Encode(control.TypeReleaseFetch, uint64(100+i), control.ReleaseFetch{
			Channel: "stable", Version: "v9.0.0", Platform: "linux/amd64", Offset: int64(i) * control.MaxChunk})
		if err := wire.WriteMessage(s, b); err != nil {
			t.Fatal(err)
		}
	}

	// The hub's read loop for the stuck member queues the chunks in the
	// order asked; wait until the kernel holds a MiB of them for the
	// member that does not read, so the writer is about to block on the
	// rest. Announcements sent before that would just pass.
	waitSendQueue(t, w.Hub.Addr, s.LocalAddr().String(), 1<<20)

	// Flood: the hub announces sessions to the stuck member until its
	// queue is full and it says so.
	full := false
	var last error
	for i := 0; i < 2*hub.OutboundQueue && !full; i++ {
		_, last = session("stuck-relay")
		full = last != nil && strings.Contains(last.Error(), "did not take the session")
	}
	if !full {
		t.Fatalf("the hub never gave up on the stuck member's queue (last answer: %v)", last)
	}
	// The inlet node tries its stuck inlet too: its channel attempt waits
	// for an owner that never answers, on its own.
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	hit := func(n int) {
		for range n {
			if c, err := net.DialTimeout("tcp", stuck, 5*time.Second); err == nil {
				clients = append(clients, c)
			}
		}
	}
	var worstSessions, worstPortals time.Duration
	for range 10 {
		hit(5)
		send("stuck-relay", 5)
		ws, wp := measure(1)
		worstSessions, worstPortals = max(worstSessions, ws), max(worstPortals, wp)
	}
	for _, c := range []struct {
		what          string
		worst, before time.Duration
	}{{"sessions", worstSessions, baseSessions}, {"portals", worstPortals, basePortals}} {
		if limit := max(2*time.Second, 20*c.before); c.worst > limit {
			t.Fatalf("%s to a healthy relay took up to %s while another member was stuck (baseline %s, limit %s)", c.what, c.worst, c.before, limit)
		}
		t.Logf("healthy %s: worst %s before, %s while another member is stuck", c.what, c.before, c.worst)
	}
}

// waitSendQueue waits until the kernel's send queue of the TCP connection
// from local to remote (both "ip:port", IPv4) holds at least n bytes, as
// /proc/net/tcp shows it. The test fails after 10 s.
func waitSendQueue(t *testing.T, local, remote string, n int64) {
	t.Helper()
	hex := func(hostport string) string {
		ap := netip.MustParseAddrPort(hostport)
		a := ap.Addr().As4()
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], ap.Port())
	}
	want := hex(local) + " " + hex(remote)
	var seen int64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 5 || f[1]+" "+f[2] != want {
				continue
			}
			tx, _, _ := strings.Cut(f[4], ":")
			seen, _ = strconv.ParseInt(tx, 16, 64)
			if seen >= n {
				return
			}
		}
	}
	t.Fatalf("the hub's send queue to the stuck member holds %d bytes after 10 s, want %d", seen, n)
}

// enrollRaw enrolls a hand-driven member that registers relay (if not
// "") and then does only what the test tells it: it never reads its
// control connection again unless the test does. rcvbuf 0 keeps the
// kernel's receive buffer.
func enrollRaw(t *testing.T, w *World, relay string, rcvbuf int) *noiseconn.Conn {
	t.Helper()
	path := w.Ticket("raw-"+relay+key.NewNodePrivate().Public().String()[8:16], enroll.TicketOptions{Relay: relay, Attributes: Attrs("outlet-node")})
	tk, _, err := enroll.ParseTicket(readFile(t, path))
	if err != nil {
		t.Fatal(err)
	}
	static := key.NewNodePrivate()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Redeem with the authority, end to end through the relay.
	ac, err := controlconn.Dial(ctx, controlconn.Options{Addr: w.Hub.Addr, Kind: wire.KindAuthority, Static: static,
		Peer: tk.AuthorityNoisePublic(), Hello: control.ClientHello{Version: wire.ProtocolVersion}})
	if err != nil {
		t.Fatal(err)
	}
	var cr control.CredentialResponse
	err = ac.Call(ctx, control.TypeRedeem, control.RedeemRequest{Secret: tk.Secret, Relay: relay}, &cr)
	ac.Close()
	if err != nil {
		t.Fatal(err)
	}
	// A control connection by hand, with a tiny receive buffer.
	c, err := net.Dial("tcp", w.Hub.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if rcvbuf > 0 {
		c.(*net.TCPConn).SetReadBuffer(rcvbuf)
	}
	c.Write(wire.Preface(wire.KindControl))
	hello, _ := wire.Marshal(control.ClientHello{Version: wire.ProtocolVersion, Credential: cr.Credential})
	nc, err := noiseconn.Initiate(ctx, c, hybrid(static, wire.Prologue("control", wire.OurOffer, nil)), func(key.NodePublic, []byte) ([]byte, error) { return hello, nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wire.ReadMessage(nc); err != nil { // the welcome
		t.Fatal(err)
	}
	if relay != "" {
		rawCall(t, nc, 2, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: relay})
	}
	return nc
}

func rawCall(t *testing.T, nc *noiseconn.Conn, id uint64, typ control.Type, req any) {
	t.Helper()
	b, _ := control.Encode(typ, id, req)
	if err := wire.WriteMessage(nc, b); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		b, err := wire.ReadMessage(nc)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := control.Decode(b)
		if m.Type != control.TypeResponse || m.ID != id {
			continue
		}
		if m.Err != nil {
			t.Fatalf("%d: %v", typ, m.Err)
		}
		return
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// hybrid is the Noise config the relay's control channel requires.
func hybrid(k key.NodePrivate, prologue []byte) *noiseconn.Config {
	st, err := noiseconn.NewStatic(k)
	if err != nil {
		panic(err)
	}
	return &noiseconn.Config{Static: st, Prologue: prologue, Mode: noiseconn.Hybrid}
}

// TestAuthorityRateLimits replays a member asking the authority for
// credentials without limit (each is a signature and a database write):
// past its bucket it is told to slow down; another member is not.
func TestAuthorityRateLimits(t *testing.T) {
	w := NewWorld(t)
	w.StartHub()
	redeem := func(name string) (key.NodePrivate, *enroll.Ticket) {
		tk, _, err := enroll.ParseTicket(readFile(t, w.Ticket(name, enroll.TicketOptions{})))
		if err != nil {
			t.Fatal(err)
		}
		static := key.NewNodePrivate()
		ask(t, w, static, tk, control.TypeRedeem, control.RedeemRequest{Secret: tk.Secret})
		return static, tk
	}
	flood, tk := redeem("flood")
	calm, _ := redeem("calm")
	var slowed *control.Error
	for i := 0; i < 20 && slowed == nil; i++ {
		if err := ask(t, w, flood, tk, control.TypeRefresh, control.RefreshRequest{}); err != nil {
			if !errors.As(err, &slowed) {
				t.Fatal(err)
			}
		}
	}
	if slowed == nil || slowed.Code != control.ErrCodeSlowDown || slowed.RetryAfter() <= 0 {
		t.Fatalf("20 refreshes in a row: %v", slowed)
	}
	if err := ask(t, w, calm, tk, control.TypeRefresh, control.RefreshRequest{}); err != nil {
		t.Fatalf("another member was slowed down: %v", err)
	}
}

// ask makes one request on a fresh channel to the authority.
func ask(t *testing.T, w *World, static key.NodePrivate, tk *enroll.Ticket, typ control.Type, req any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ac, err := controlconn.Dial(ctx, controlconn.Options{Addr: w.Hub.Addr, Kind: wire.KindAuthority, Static: static,
		Peer: tk.AuthorityNoisePublic(), Hello: control.ClientHello{Version: wire.ProtocolVersion}})
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	return ac.Call(ctx, typ, req, nil)
}

// TestPortalWarnings: an inlet via a relay nobody registered, an outlet
// whose target does not resolve and a policy naming an attribute no
// member has are created, each with a warning saying so; Check (doctor)
// lists them; a well-formed one has none.
func TestPortalWarnings(t *testing.T) {
	_, outlet, inlet := pair(t, inletNode)
	ctx := context.Background()
	in, err := inlet.N.AddInlet(ctx, localapi.Inlet{From: "127.0.0.5:0", Via: "nobodys-relay", To: "x", Allow: "ghost-attribute"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(in.Warnings, "\n"); !strings.Contains(got, `relay "nobodys-relay" is not known to the hub`) ||
		!strings.Contains(got, "no member connected to the hub now has attribute ghost-attribute") {
		t.Errorf("inlet warnings:\n%s", got)
	}
	o, err := outlet.N.AddOutlet(ctx, localapi.Outlet{Name: "nowhere", To: "no-such-host.invalid:80", Allow: "inlet-node"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(o.Warnings, "\n"); !strings.Contains(got, "target host no-such-host.invalid does not resolve") || strings.Contains(got, "attribute") {
		t.Errorf("outlet warnings:\n%s", got)
	}
	good, err := inlet.N.AddInlet(ctx, localapi.Inlet{From: "127.0.0.4:0", Via: "acme-relay", To: "echo", Allow: "outlet-node"})
	if err != nil || len(good.Warnings) > 0 {
		t.Errorf("a sound inlet: %v %v", good.Warnings, err)
	}
	var found bool
	for _, w := range outlet.N.Check(ctx) {
		found = found || w.Kind == "outlet" && w.Name == "nowhere" && strings.Contains(w.Message, "does not resolve")
		if w.Name == "echo" {
			t.Errorf("the sound outlet has a warning: %+v", w)
		}
	}
	if !found {
		t.Error("Check does not list the outlet whose target does not resolve")
	}
}
