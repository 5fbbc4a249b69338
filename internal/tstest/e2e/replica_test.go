// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Relay replicas on the customer side, with the real binaries: two
// nodes serve acme-relay on purpose (their tickets say --replica), each
// with outlet web to its own HTTP target.

// target is an HTTP target that can be stopped and started again on the
// same address.
type target struct {
	t    *testing.T
	body string
	addr string

	mu  sync.Mutex // guards srv
	srv *http.Server
}

func newTarget(t *testing.T, body string) *target {
	tg := &target{t: t, body: body, addr: "127.0.0.1:0"}
	tg.start()
	t.Cleanup(tg.stop)
	return tg
}

func (tg *target) start() {
	tg.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port of a stopped target may take a moment to be free
		if ln, err = net.Listen("tcp", tg.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		tg.t.Fatal(err)
	}
	tg.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, tg.body) })}
	tg.mu.Lock()
	tg.srv = srv
	tg.mu.Unlock()
	go srv.Serve(ln)
}

func (tg *target) stop() {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if tg.srv != nil {
		tg.srv.Close()
		tg.srv = nil
	}
}

// replicaWorld is a hub, two replicas of acme-relay and the vendor's
// node with an inlet to web.
type replicaWorld struct {
	env    *Env
	hub    *Hub
	ticket string // a replica ticket with uses to spare
	a, b   *Node
	ta, tb *target
	vendor *Node
	inlet  string
}

func replicaYAML(web string) string {
	return fmt.Sprintf("relay: acme-relay\ntcp-outlet:\n  from: web\n  to: %s\n  allow: inlet-from-saas\n", web)
}

// startReplica starts a replica node with its own copy of the replica
// ticket, serving web → to.
func (w *replicaWorld) startReplica(t *testing.T, name, to string, extra ...string) *Node {
	t.Helper()
	tk := filepath.Join(w.env.Dir, name+".ticket")
	os.WriteFile(tk, mustRead(t, w.ticket), 0o600)
	cfg := writeFile(t, w.env, name+".yaml", replicaYAML(to))
	n := w.env.StartNode(name, append([]string{"--enrollment-ticket", tk, "--config", cfg}, extra...)...)
	n.AwaitRelayUp()
	return n
}

func startReplicas(t *testing.T) *replicaWorld {
	t.Helper()
	w := &replicaWorld{env: NewEnv(t)}
	w.hub = w.env.NewHub().Start()
	w.ticket = w.hub.Ticket("replica.ticket", "--attribute", "outlet-from-saas", "--relay", "acme-relay", "--replica", "--usage-count", "5")
	w.ta, w.tb = newTarget(t, "replica A\n"), newTarget(t, "replica B\n")
	w.a = w.startReplica(t, "a", w.ta.addr)
	w.b = w.startReplica(t, "b", w.tb.addr)
	vt := w.hub.Ticket("vendor.ticket", "--attribute", "inlet-from-saas", "--relay", "saas-relay")
	vcfg := writeFile(t, w.env, "vendor.yaml", "policy:\n  resource-type: tcp-inlet\n  allow: outlet-from-saas\n")
	w.vendor = w.env.StartNode("vendor", "--enrollment-ticket", vt, "--config", vcfg)
	w.vendor.AwaitRelayUp()
	w.inlet = FreePort(t)
	if r := w.vendor.CLI([]string{"tcp-inlet", "create"}, "--from", w.inlet, "--via", "acme-relay", "--to", "web"); r.Code != 0 {
		t.Fatalf("tcp-inlet create: %s", r.Stderr)
	}
	return w
}

// gets fetches n portals' worth and counts who answered; any failure is
// fatal.
func (w *replicaWorld) gets(t *testing.T, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := range n {
		got, err := Get(w.inlet)
		if err != nil {
			t.Fatalf("portal %d: %v\nvendor:\n%s", i, err, w.vendor.Proc.Logs())
		}
		seen[got]++
	}
	return seen
}

type memberJSON struct {
	ID        string   `json:"identifier"`
	Replica   bool     `json:"replica"`
	Connected bool     `json:"connected"`
	Draining  bool     `json:"draining"`
	Down      []string `json:"down"`
	RelayUp   string   `json:"relay_up"`
}

func (w *replicaWorld) member(t *testing.T, id string) memberJSON {
	t.Helper()
	var ms []memberJSON
	json.Unmarshal([]byte(w.hub.CLI([]string{"members", "list"}, "--json").Stdout), &ms)
	for _, m := range ms {
		if m.ID == id {
			return m
		}
	}
	return memberJSON{}
}

type relayJSON struct {
	Name     string `json:"name"`
	Owner    string `json:"owner"`
	Replicas bool   `json:"replicas"`
	Owners   []struct {
		ID   string   `json:"id"`
		Down []string `json:"down"`
	} `json:"owners"`
}

func (w *replicaWorld) relays(t *testing.T) map[string]relayJSON {
	t.Helper()
	var rs []relayJSON
	r := w.hub.CLI([]string{"relay", "list"}, "--json")
	if err := json.Unmarshal([]byte(r.Stdout), &rs); err != nil {
		t.Fatalf("relay list: %v: %s %s", err, r.Stdout, r.Stderr)
	}
	out := map[string]relayJSON{}
	for _, r := range rs {
		out[r.Name] = r
	}
	return out
}

func ownerIDs(r relayJSON) []string {
	var ids []string
	for _, o := range r.Owners {
		ids = append(ids, o.ID)
	}
	slices.Sort(ids)
	return ids
}

func statusOf(t *testing.T, n *Node) localStatus {
	t.Helper()
	st, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}
	return localStatus{st.Identifier, st.Replica, st.Draining, st.Down}
}

type localStatus struct {
	ID       string
	Replica  bool
	Draining bool
	Down     []string
}

// heldPortal is an HTTP/1.1 connection through the inlet, kept alive.
type heldPortal struct {
	c net.Conn
	r *bufio.Reader
}

// get sends one request on the held connection and returns the body.
func (h heldPortal) get() (string, error) {
	h.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(h.c, "GET / HTTP/1.1\r\nHost: web\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(h.r, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// hold opens kept-alive portals until one is answered by want.
func (w *replicaWorld) hold(t *testing.T, want string) heldPortal {
	t.Helper()
	for range 20 {
		c, err := net.DialTimeout("tcp", w.inlet, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		h := heldPortal{c, bufio.NewReader(c)}
		got, err := h.get()
		if err != nil {
			t.Fatalf("held portal: %v", err)
		}
		if got == want {
			t.Cleanup(func() { c.Close() })
			return h
		}
		c.Close()
	}
	t.Fatalf("no portal reached %q", want)
	return heldPortal{}
}

// TestReplicas: portals spread over two replicas; a replica whose target
// stops gets no new portal (and says so in members list); a replica
// killed gets none; a replica drained lets its open portal finish while
// new ones go to the other, and drain returns when it is done; after a
// restart it serves again; a drain whose deadline comes first says what
// it cut.
func TestReplicas(t *testing.T) {
	w := startReplicas(t)
	a, b := statusOf(t, w.a), statusOf(t, w.b)
	if !a.Replica || !b.Replica {
		t.Fatalf("status does not say replica: %+v %+v", a, b)
	}
	if r := w.a.CLI([]string{"status"}); !strings.Contains(r.Stdout, "Replica     yes") {
		t.Fatalf("status text: %s", r.Stdout)
	}
	acme := w.relays(t)["acme-relay"]
	if !acme.Replicas || !slices.Equal(ownerIDs(acme), sorted(a.ID, b.ID)) {
		t.Fatalf("relay list: %+v", acme)
	}
	if m := w.member(t, a.ID); !m.Replica || !m.Connected {
		t.Fatalf("members list for A: %+v", m)
	}

	// Spread: portals reach both.
	var seen map[string]int
	Await(t, 20*time.Second, "portals reaching both replicas", func() bool {
		for k, v := range w.gets(t, 2) {
			if seen == nil {
				seen = map[string]int{}
			}
			seen[k] += v
		}
		return seen["replica A\n"] > 0 && seen["replica B\n"] > 0
	})
	if s := w.gets(t, 10); s["replica A\n"] < 3 || s["replica B\n"] < 3 {
		t.Fatalf("10 portals over two healthy replicas: %v", s)
	}

	// A's target stops: A reports it down (members list says so) and
	// every new portal goes to B.
	w.ta.stop()
	stopped := time.Now()
	Await(t, 20*time.Second, "members list showing A's web down", func() bool {
		return slices.Equal(w.member(t, a.ID).Down, []string{"web"})
	})
	t.Logf("A's target stopped: members list showed it down %s later", time.Since(stopped).Round(100*time.Millisecond))
	if r := w.hub.CLI([]string{"members", "list"}); !strings.Contains(r.Stdout, "online, down: web") {
		t.Fatalf("members list text: %s", r.Stdout)
	}
	if st := statusOf(t, w.a); !slices.Equal(st.Down, []string{"web"}) {
		t.Fatalf("A's status: %+v", st)
	}
	if r := w.a.CLI([]string{"status"}); !strings.Contains(r.Stdout, "TARGET DOWN") || !strings.Contains(r.Stdout, "reported to the relay as down: web") {
		t.Fatalf("A's status text: %s", r.Stdout)
	}
	if s := w.gets(t, 10); s["replica B\n"] != 10 {
		t.Fatalf("with A's target down: %v", s)
	}
	if r := w.hub.CLI([]string{"relay", "list"}); !strings.Contains(r.Stdout, a.ID+" (down: web)") {
		t.Fatalf("relay list text: %s", r.Stdout)
	}

	// A's target is back; B is killed: new portals go to A.
	w.ta.start()
	Await(t, 20*time.Second, "A's target up again", func() bool { return len(w.member(t, a.ID).Down) == 0 })
	w.b.Proc.Kill()
	killed := time.Now()
	Await(t, 20*time.Second, "B gone from relay list", func() bool {
		return slices.Equal(ownerIDs(w.relays(t)["acme-relay"]), []string{a.ID})
	})
	t.Logf("B killed: gone from relay list %s later", time.Since(killed).Round(10*time.Millisecond))
	if s := w.gets(t, 10); s["replica A\n"] != 10 {
		t.Fatalf("with B killed: %v", s)
	}

	// B restarts and serves again; then it drains with a portal open.
	w.b.Restart()
	w.b.AwaitRelayUp()
	held := w.hold(t, "replica B\n")
	drain := w.env.Start("drain", w.env.AgentBin, "drain", "--state-dir", w.b.StateDir, "--deadline", "1m")
	Await(t, 20*time.Second, "drain waiting for the open portal", func() bool {
		return strings.Contains(drain.Logs(), "waiting for 1 open portal: web from "+statusOf(t, w.vendor).ID)
	})
	Await(t, 20*time.Second, "members list showing B draining", func() bool { return w.member(t, b.ID).Draining })
	if s := w.gets(t, 10); s["replica A\n"] != 10 {
		t.Fatalf("with B draining: %v", s)
	}
	if st := statusOf(t, w.b); !st.Draining {
		t.Fatalf("B's status while draining: %+v", st)
	}
	if got, err := held.get(); err != nil || got != "replica B\n" {
		t.Fatalf("the open portal on the draining replica: %q, %v", got, err)
	}
	if drain.Exited() {
		t.Fatalf("drain returned with a portal open:\n%s", drain.Logs())
	}
	held.c.Close()
	closed := time.Now()
	if code := drain.Wait(t, 20*time.Second); code != 0 || !strings.Contains(drain.Logs(), "drained: no portal open") {
		t.Fatalf("drain: exit %d\n%s", code, drain.Logs())
	}
	t.Logf("drain returned %s after the last open portal closed:\n%s", time.Since(closed).Round(10*time.Millisecond), drain.Logs())
	// The restart the drain was for: B serves again.
	w.b.Restart()
	w.b.AwaitRelayUp()
	if st := statusOf(t, w.b); st.Draining {
		t.Fatal("B still draining after a restart")
	}
	Await(t, 20*time.Second, "portals reaching B again", func() bool { return w.gets(t, 2)["replica B\n"] > 0 })

	// A drain whose deadline comes first names what it cut, exit 1.
	held = w.hold(t, "replica B\n")
	r := w.b.CLI([]string{"drain"}, "--deadline", "2s")
	oneLine(t, "drain past its deadline", r, "deadline reached: closed 1 portal still open: web from "+statusOf(t, w.vendor).ID)
	if _, err := held.get(); err == nil {
		t.Error("the portal the deadline cut still works")
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

// TestReplicaRefusals: a node with a plain credential for a replicas'
// relay, and one with a replica credential for a sole owner's relay, are
// refused, one line each, and nothing changes: the bindings and their
// live owners stay, portals keep working.
func TestReplicaRefusals(t *testing.T) {
	w := startReplicas(t)
	solo := w.env.StartNode("solo", "--enrollment-ticket", w.hub.Ticket("solo.ticket", "--relay", "solo-relay"))
	solo.AwaitRelayUp()
	before := w.relays(t)

	plain := w.env.StartNode("plain", "--enrollment-ticket", w.hub.Ticket("plain.ticket", "--attribute", "outlet-from-saas", "--relay", "acme-relay"),
		"--config", writeFile(t, w.env, "plain.yaml", replicaYAML(w.ta.addr)))
	stray := w.env.StartNode("stray", "--enrollment-ticket", w.hub.Ticket("stray.ticket", "--relay", "solo-relay", "--replica"))
	for _, c := range []struct {
		n    *Node
		want string
	}{
		{plain, `relay name "acme-relay" is served by replicas`},
		{stray, `relay name "solo-relay" belongs to node ` + statusOf(t, solo).ID},
	} {
		var relayErr string
		Await(t, 20*time.Second, c.n.Proc.Name+" refused", func() bool {
			st, err := c.n.Status()
			relayErr = st.Relay.Error
			return err == nil && strings.Contains(relayErr, c.want)
		})
		if strings.Contains(relayErr, "\n") || st(t, c.n).Relay.Connected {
			t.Fatalf("%s: %q", c.n.Proc.Name, relayErr)
		}
		t.Logf("%s: %s", c.n.Proc.Name, relayErr)
	}
	if !strings.Contains(st(t, plain).Relay.Error, "its ticket needs --replica") || !strings.Contains(st(t, stray).Relay.Error, "takes no replica") {
		t.Fatalf("the refusals do not say why: %q / %q", st(t, plain).Relay.Error, st(t, stray).Relay.Error)
	}
	after := w.relays(t)
	for _, name := range []string{"acme-relay", "solo-relay"} {
		if before[name].Owner != after[name].Owner || before[name].Replicas != after[name].Replicas ||
			!slices.Equal(ownerIDs(before[name]), ownerIDs(after[name])) {
			t.Fatalf("%s changed: before %+v, after %+v", name, before[name], after[name])
		}
	}
	if s := w.gets(t, 4); s["replica A\n"]+s["replica B\n"] != 4 {
		t.Fatalf("portals after the refusals: %v", s)
	}
}

func st(t *testing.T, n *Node) struct {
	Relay struct {
		Connected bool
		Error     string
	}
} {
	t.Helper()
	s, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Relay struct {
			Connected bool
			Error     string
		}
	}
	out.Relay.Connected, out.Relay.Error = s.Relay.Connected, s.Relay.Error
	return out
}
