// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

// replicaMember opens a welcomed member connection whose credential
// names relay, as a replica when replica.
func (h *testHub) replicaMember(t *testing.T, node key.NodePrivate, relay string, replica bool) *noiseconn.Conn {
	t.Helper()
	pub := node.Public()
	c, err := h.auth.Issue(enroll.Member{ID: string(pub.ID()), NodeKey: pub.Raw32(), Relay: relay, Replica: replica})
	if err != nil {
		t.Fatal(err)
	}
	nc, m := h.dial(t, node, c)
	if m.Err != nil {
		t.Fatalf("member refused: %v", m.Err)
	}
	return nc
}

func register(t *testing.T, nc *noiseconn.Conn, relay string) *control.Error {
	t.Helper()
	return call(t, nc, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: relay}, nil)
}

// TestReplicaBinding: replicas of a replicas' name serve it together; a
// node without a replica credential is refused there, and a replica
// credential is refused at a sole owner's name, each with one line that
// says why, leaving the binding and its owners as they were.
func TestReplicaBinding(t *testing.T) {
	h := startHub(t, 0)
	ctx := context.Background()
	a, b, plain := key.NewNodePrivate(), key.NewNodePrivate(), key.NewNodePrivate()
	if e := register(t, h.replicaMember(t, a, "acme-relay", true), "acme-relay"); e != nil {
		t.Fatalf("first replica: %v", e)
	}
	if e := register(t, h.replicaMember(t, b, "acme-relay", true), "acme-relay"); e != nil {
		t.Fatalf("second replica: %v", e)
	}
	before, _ := h.srv.Relays(ctx)
	e := register(t, h.replicaMember(t, plain, "acme-relay", false), "acme-relay")
	if e == nil || e.Code != control.ErrCodeRelayTaken || !strings.Contains(e.Message, "is served by replicas") ||
		!strings.Contains(e.Message, "its ticket needs --replica") || strings.Contains(e.Message, "\n") {
		t.Fatalf("a plain credential at a replicas' name: %v", e)
	}
	// A sole owner's name takes no replica.
	solo, stray := key.NewNodePrivate(), key.NewNodePrivate()
	if e := register(t, h.replicaMember(t, solo, "solo-relay", false), "solo-relay"); e != nil {
		t.Fatal(e)
	}
	e = register(t, h.replicaMember(t, stray, "solo-relay", true), "solo-relay")
	if e == nil || e.Code != control.ErrCodeRelayTaken || !strings.Contains(e.Message, "as its sole owner, which takes no replica") ||
		!strings.Contains(e.Message, string(solo.Public().ID())) || strings.Contains(e.Message, "\n") {
		t.Fatalf("a replica credential at a sole owner's name: %v", e)
	}
	after, _ := h.srv.Relays(ctx)
	owners := func(name string, rs []hub.RelayStatus) []string {
		for _, r := range rs {
			if r.Name == name {
				var ids []string
				for _, o := range r.Owners {
					ids = append(ids, o.ID)
				}
				return ids
			}
		}
		return nil
	}
	wantAcme := []string{string(a.Public().ID()), string(b.Public().ID())}
	slices.Sort(wantAcme)
	if got := owners("acme-relay", after); !slices.Equal(got, wantAcme) || !slices.Equal(owners("acme-relay", before), got) {
		t.Fatalf("acme-relay's owners: before %v, after %v; want %v", owners("acme-relay", before), got, wantAcme)
	}
	if got := owners("solo-relay", after); !slices.Equal(got, []string{string(solo.Public().ID())}) {
		t.Fatalf("solo-relay's owners after a refused replica: %v", got)
	}
	for _, r := range after {
		if r.Replicas != (r.Name == "acme-relay") || r.Owner == string(plain.Public().ID()) || r.Owner == string(stray.Public().ID()) {
			t.Fatalf("binding %+v", r)
		}
	}
}

// TestReplicaSteering: with two replicas, a session for an outlet goes to
// one that does not report the outlet's target down, is not draining and
// is not avoided; sessions spread over both; with none able, the refusal
// names the relay and why for each; a sole owner whose target is down
// still gets its sessions (it refuses the portal itself).
func TestReplicaSteering(t *testing.T) {
	h := startHub(t, 0)
	ctx := context.Background()
	a, b := key.NewNodePrivate(), key.NewNodePrivate()
	ida, idb := string(a.Public().ID()), string(b.Public().ID())
	ca, cb := h.replicaMember(t, a, "acme-relay", true), h.replicaMember(t, b, "acme-relay", true)
	for _, nc := range []*noiseconn.Conn{ca, cb} {
		if e := register(t, nc, "acme-relay"); e != nil {
			t.Fatal(e)
		}
	}
	inlet := h.member(t, key.NewNodePrivate(), "")
	open := func(req control.OpenSessionRequest) (control.OpenSessionResponse, *control.Error) {
		t.Helper()
		var resp control.OpenSessionResponse
		e := call(t, inlet, control.TypeOpenSession, req, &resp)
		return resp, e
	}
	// Both healthy: the sessions spread (fewest sessions, ties in turn).
	seen := map[string]int{}
	for range 4 {
		resp, e := open(control.OpenSessionRequest{Relay: "acme-relay", Outlet: "web"})
		if e != nil {
			t.Fatal(e)
		}
		if resp.Healthy != 2 {
			t.Fatalf("healthy = %d, want 2", resp.Healthy)
		}
		seen[resp.Peer]++
	}
	if seen[ida] != 2 || seen[idb] != 2 {
		t.Fatalf("four sessions over two healthy replicas went %v", seen)
	}
	// Avoid one: the other.
	if resp, e := open(control.OpenSessionRequest{Relay: "acme-relay", Outlet: "web", Avoid: []string{idb}}); e != nil || resp.Peer != ida {
		t.Fatalf("avoiding B: %+v, %v", resp, e)
	}
	// A's target for web is down: every web session goes to B; another
	// outlet's still spread.
	if e := call(t, ca, control.TypeNodeState, control.NodeState{Down: []string{"web"}}, nil); e != nil {
		t.Fatal(e)
	}
	for range 3 {
		resp, e := open(control.OpenSessionRequest{Relay: "acme-relay", Outlet: "web"})
		if e != nil || resp.Peer != idb || resp.Healthy != 1 {
			t.Fatalf("with A's web target down: %+v, %v", resp, e)
		}
	}
	if resp, e := open(control.OpenSessionRequest{Relay: "acme-relay", Outlet: "db", Avoid: []string{idb}}); e != nil || resp.Peer != ida {
		t.Fatalf("another outlet on A: %+v, %v", resp, e)
	}
	// B drains: nobody can take web.
	if e := call(t, cb, control.TypeNodeState, control.NodeState{Draining: true}, nil); e != nil {
		t.Fatal(e)
	}
	_, e := open(control.OpenSessionRequest{Relay: "acme-relay", Outlet: "web"})
	want := "no replica of relay acme-relay can reach outlet web now: "
	if e == nil || e.Code != control.ErrCodeRelayUnhealthy || !strings.HasPrefix(e.Message, want) ||
		!strings.Contains(e.Message, "node "+ida+" target down") || !strings.Contains(e.Message, "node "+idb+" draining") {
		t.Fatalf("none healthy: %v", e)
	}
	// The relay's view: each owner with its health.
	rs, _ := h.srv.Relays(ctx)
	if len(rs) != 1 || len(rs[0].Owners) != 2 || !rs[0].Replicas {
		t.Fatalf("relay list: %+v", rs)
	}
	for _, o := range rs[0].Owners {
		if (o.ID == ida && !slices.Equal(o.Down, []string{"web"})) || (o.ID == idb && !o.Draining) {
			t.Fatalf("owner %+v: health not as reported", o)
		}
	}
	for _, n := range h.srv.Nodes(ctx) {
		if n.ID == idb && (!n.Draining || !n.Replica || n.Relay != "acme-relay") {
			t.Fatalf("live status of B: %+v", n)
		}
	}
	// B is back: web goes to B again.
	call(t, cb, control.TypeNodeState, control.NodeState{}, nil)
	if resp, e := open(control.OpenSessionRequest{Relay: "acme-relay", Outlet: "web"}); e != nil || resp.Peer != idb {
		t.Fatalf("B back: %+v, %v", resp, e)
	}
	// Bad input: a node state naming no outlet is refused and changes
	// nothing (A still reports web down only).
	if e := call(t, ca, control.TypeNodeState, control.NodeState{Down: []string{"web", "bad name"}}, nil); e == nil || e.Code != control.ErrCodeBadRequest {
		t.Fatalf("a bad node state: %v", e)
	}
	for _, n := range h.srv.Nodes(ctx) {
		if n.ID == ida && !slices.Equal(n.Down, []string{"web"}) {
			t.Fatalf("a refused node state changed A's health: %+v", n)
		}
	}
	// Bad input: too many owners to avoid.
	many := make([]string, control.MaxAvoid+1)
	if _, e := open(control.OpenSessionRequest{Relay: "acme-relay", Avoid: many}); e == nil || e.Code != control.ErrCodeBadRequest {
		t.Fatalf("too many to avoid: %v", e)
	}

	// A sole owner with its target down gets its sessions, as before.
	solo := key.NewNodePrivate()
	cs := h.member(t, solo, "solo-relay")
	if e := register(t, cs, "solo-relay"); e != nil {
		t.Fatal(e)
	}
	call(t, cs, control.TypeNodeState, control.NodeState{Down: []string{"web"}}, nil)
	if resp, e := open(control.OpenSessionRequest{Relay: "solo-relay", Outlet: "web"}); e != nil || resp.Peer != string(solo.Public().ID()) || resp.Healthy != 0 {
		t.Fatalf("a sole owner with its target down: %+v, %v", resp, e)
	}
}
