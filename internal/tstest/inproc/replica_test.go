// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package inproc

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/enroll"
)

// namedEcho is a target that says its name on every connection, then
// echoes. Stop closes its listener and its connections; Start listens
// again on the same address.
type namedEcho struct {
	t    *testing.T
	name string
	addr string

	mu    sync.Mutex // guards ln and conns
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newNamedEcho(t *testing.T, name string) *namedEcho {
	e := &namedEcho{t: t, name: name, addr: "127.0.0.1:0", conns: map[net.Conn]struct{}{}}
	e.Start()
	t.Cleanup(e.Stop)
	return e
}

func (e *namedEcho) Start() {
	e.t.Helper()
	ln, err := net.Listen("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.mu.Lock()
	e.ln = ln
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns[c] = struct{}{}
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				io.WriteString(c, e.name+"\n")
				io.Copy(c, c)
				c.Close()
				e.mu.Lock()
				delete(e.conns, c)
				e.mu.Unlock()
			}()
		}
	}()
}

// Stop closes the listener (new dials are refused) but leaves open
// connections alone unless all is true.
func (e *namedEcho) stop(all bool) {
	e.mu.Lock()
	if e.ln != nil {
		e.ln.Close()
		e.ln = nil
	}
	if all {
		for c := range e.conns {
			c.Close()
		}
	}
	e.mu.Unlock()
	if all {
		e.wg.Wait()
	}
}

func (e *namedEcho) Stop() { e.stop(true) }

// whoAnswers opens a portal through the inlet at addr, sends a line and
// returns the name of the target that answered (it checks the echo).
func whoAnswers(addr string) (string, error) {
	got, err := RoundTrip(addr, "ping\n")
	if err != nil {
		return "", err
	}
	name, rest, _ := strings.Cut(got, "\n")
	if rest != "ping\n" {
		return name, io.ErrUnexpectedEOF
	}
	return name, nil
}

const replicaNode = `
relay: acme-relay
tcp-outlet:
  from: web
  to: $WEB
  allow: inlet-node
`

const webInlet = `
tcp-inlet:
  - from: 127.0.0.1:0
    via: acme-relay
    to: web
    allow: outlet-node
`

// TestReplicas, in one process (race detector, leak check): two replicas
// of acme-relay, each with outlet web to its own target. Portals spread
// over both; with A's target down (A reports it), every new portal goes
// to B, the first one after it too (A refuses it and the inlet tries B
// with the same bytes); with A back and B draining, new portals go to A
// while B's open portal finishes, then B's drain is done; with B stopped,
// portals go to A.
func TestReplicas(t *testing.T) {
	w := NewWorld(t)
	w.StartHub()
	targetA, targetB := newNamedEcho(t, "A"), newNamedEcho(t, "B")
	rt := enroll.TicketOptions{Relay: "acme-relay", Replica: true, Attributes: Attrs("outlet-node"), Uses: 2}
	ticket := w.Ticket("replica", rt)
	// Both replicas redeem the one two-use ticket (copies of it).
	a := w.StartNode("a", copyFile(t, ticket, "a.ticket"), replicaNode, map[string]string{"WEB": targetA.addr})
	a.AwaitRelayUp()
	b := w.StartNode("b", copyFile(t, ticket, "b.ticket"), replicaNode, map[string]string{"WEB": targetB.addr})
	b.AwaitRelayUp()
	if st, _ := a.Status(); !st.Replica {
		t.Fatalf("a's status does not say replica: %+v", st)
	}
	in := w.StartNode("inlet", w.Ticket("inlet", enroll.TicketOptions{Attributes: Attrs("inlet-node")}), webInlet, nil)
	in.AwaitHub()
	addr := inletAddr(t, in, "acme-relay")

	// Spread: both answer within a few portals (the second channel opens
	// in the background after the first portal).
	seen := map[string]int{}
	Await(t, 10*time.Second, "portals reaching both replicas", func() bool {
		name, err := whoAnswers(addr)
		if err != nil {
			t.Fatalf("portal: %v", err)
		}
		seen[name]++
		return seen["A"] > 0 && seen["B"] > 0
	})
	for range 10 {
		name, err := whoAnswers(addr)
		if err != nil {
			t.Fatal(err)
		}
		seen[name]++
	}
	if seen["A"] < 3 || seen["B"] < 3 {
		t.Fatalf("portals over two healthy replicas: %v", seen)
	}

	// A's target goes down: A reports it; every portal goes to B, the
	// first ones too (A's refusal is retried on B).
	targetA.stop(false)
	a.await("report its target down", func(st localapi.Status) bool { return len(st.Down) == 1 && st.Down[0] == "web" })
	for i := range 10 {
		name, err := whoAnswers(addr)
		if err != nil || name != "B" {
			t.Fatalf("portal %d with A's target down: %q, %v", i, name, err)
		}
	}
	if !in.Logs.Contains("portal refused by a replica; trying another") {
		t.Error("no portal went to A and was retried on B: the retry is untested")
	}
	rs, _ := w.Hub.Srv.Relays(context.Background())
	if len(rs) != 1 || len(rs[0].Owners) != 2 {
		t.Fatalf("relay list: %+v", rs)
	}
	for _, o := range rs[0].Owners {
		if down := strings.Join(o.Down, ","); (o.ID == idOf(t, a)) != (down == "web") {
			t.Fatalf("owner %s reported down %q", o.ID, down)
		}
	}

	// A is back; B drains while a portal to it is open.
	targetA.Start()
	a.await("report its target up", func(st localapi.Status) bool { return len(st.Down) == 0 })
	held, name := holdPortal(t, addr, "B")
	if name != "B" {
		t.Fatalf("the held portal went to %s", name)
	}
	ds, err := b.N.Drain(context.Background(), localapi.DrainRequest{Deadline: 20 * time.Second})
	if err != nil || !ds.Draining || !ds.Started || len(ds.Open) != 1 || ds.Open[0].Outlet != "web" {
		t.Fatalf("drain: %+v, %v", ds, err)
	}
	for i := range 10 {
		name, err := whoAnswers(addr)
		if err != nil || name != "A" {
			t.Fatalf("portal %d with B draining: %q, %v", i, name, err)
		}
	}
	// The open portal still works, then finishes; the drain is done.
	if _, err := io.WriteString(held.c, "still there?\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := held.r.ReadString('\n'); err != nil || line != "still there?\n" {
		t.Fatalf("the open portal on the draining replica: %q, %v", line, err)
	}
	if st := b.N.DrainStatus(context.Background()); st.Done {
		t.Fatal("the drain finished with a portal open")
	}
	held.c.Close()
	Await(t, 5*time.Second, "b's drain done", func() bool { return b.N.DrainStatus(context.Background()).Done })
	if st := b.N.DrainStatus(context.Background()); st.DeadlineReached || len(st.Cut) != 0 {
		t.Fatalf("drain: %+v", st)
	}

	// B goes away altogether: portals go to A.
	b.Stop()
	for i := range 5 {
		name, err := whoAnswers(addr)
		if err != nil || name != "A" {
			t.Fatalf("portal %d with B stopped: %q, %v", i, name, err)
		}
	}
}

type heldPortal struct {
	c net.Conn
	r *bufio.Reader
}

// holdPortal opens portals until one reaches want and keeps it open.
func holdPortal(t *testing.T, addr, want string) (heldPortal, string) {
	t.Helper()
	for range 20 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(c)
		name, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		name = strings.TrimSpace(name)
		if name == want {
			t.Cleanup(func() { c.Close() })
			return heldPortal{c, r}, name
		}
		c.Close()
	}
	t.Fatalf("no portal reached %s", want)
	return heldPortal{}, ""
}

func idOf(t *testing.T, n *Node) string {
	t.Helper()
	st, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}
	return st.Identifier
}

func copyFile(t *testing.T, src, name string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(filepath.Dir(src), name)
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}
