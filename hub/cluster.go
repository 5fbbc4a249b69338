// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
)

// The cluster: several relay nodes of one project sharing a store that
// implements ClusterStore (PostgreSQL).
//
//   - Listing. Each relay node is listed in the store with its identifier,
//     its Noise key and its addresses (by `init --store` or `store
//     migrate`); a relay node that is not listed, or listed with another
//     key, refuses to start.
//   - Presence. The relay node that holds a relay name's live registration
//     for an owner (a relay served by replicas has one per replica) says
//     so in the store with a lease it renews every HeartbeatInterval, and
//     with the health the owner reports; a node that dies loses its
//     leases after PresenceLease by itself.
//   - Links. An inlet on relay node A asking for a relay whose owner is
//     connected to B: A dials B, and the two run Noise XX with their own
//     keys (each pins the other's listed key, and the dialled one checks
//     the dialler's is listed, so a stranger cannot pose as a relay node).
//     The link then carries the session's raw bytes, which are the nodes'
//     own end-to-end ciphertext: it only had to prove who dialled. A
//     relay node without the authority forwards an authority connection
//     ('A') the same way to the node that has it.
//   - Events. Revocations, relays that moved or were released, queued
//     commands and their answers reach the node holding the connection
//     as store events (NOTIFY, within milliseconds), and a node that lost
//     its listener resyncs when it is back.

// clusterState is a relay node's view of its cluster.
type clusterState struct {
	store ClusterStore
	id    string

	mu    sync.Mutex // guards nodes and known
	nodes []RelayNode
	// known is the last presence read of each relay: while the database
	// is away, sessions still find the relay nodes that held it (whose
	// link answer is the final word).
	known    map[string][]Presence
	queries  func() int64 // the store's statement counter, or nil
	lastSeen time.Time    // of the listing
}

func (c *clusterState) listing() []RelayNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes
}

func (c *clusterState) setListing(ns []RelayNode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes, c.lastSeen = ns, time.Now()
}

// lookup returns relay's presences from the store, or (the store being
// unreachable) the last ones read.
func (c *clusterState) lookup(ctx context.Context, relay string) ([]Presence, error) {
	p, err := c.store.LookupPresence(ctx, relay)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err == nil:
		c.known[relay] = p
	case errors.Is(err, ErrNotFound):
		delete(c.known, relay)
	default:
		if k, ok := c.known[relay]; ok {
			return k, nil
		}
	}
	return p, err
}

func (c *clusterState) forget(relay string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.known, relay)
}

// node returns a listed relay node by identifier.
func (c *clusterState) node(id string) (RelayNode, bool) {
	for _, n := range c.listing() {
		if n.ID == id {
			return n, true
		}
	}
	return RelayNode{}, false
}

// isRelayKey reports whether k is a listed relay node's key.
func (c *clusterState) isRelayKey(k key.NodePublic) bool {
	for _, n := range c.listing() {
		if n.Key.Equal(k) {
			return true
		}
	}
	return false
}

// joinCluster checks this relay node is listed with its key and loads
// the listing. The refusal is one line naming the node and the key.
func (s *Server) joinCluster(ctx context.Context, cs ClusterStore) error {
	ns, err := cs.RelayNodes(ctx)
	if err != nil {
		return fmt.Errorf("cluster listing: %w", err)
	}
	me, pub := s.dir.NodeID(), s.dir.RelayKey.Public()
	i := slices.IndexFunc(ns, func(n RelayNode) bool { return n.ID == me })
	if i < 0 {
		return fmt.Errorf("relay node %s (key %s) is %w: list it with `init --dir DIR --addr ADDR --store URL`, or move its state there with `store migrate`",
			me, pub.String(), ErrNotListed)
	}
	if !ns[i].Key.Equal(pub) {
		return fmt.Errorf("relay node %s is listed in the cluster's database with key %s, but its directory holds key %s: refusing to start",
			me, ns[i].Key.String(), pub.String())
	}
	s.cluster = &clusterState{store: cs, id: me, nodes: ns, known: map[string][]Presence{}}
	if q, ok := cs.(interface{ Queries() int64 }); ok {
		s.cluster.queries = q.Queries
	}
	return nil
}

// runCluster renews this node's leases and keeps its listing fresh, and
// listens for events, until ctx ends.
func (s *Server) runCluster(ctx context.Context) {
	c := s.cluster
	s.goTracked(func() {
		if err := c.store.Listen(ctx, func(ev Event) { s.onEvent(ctx, ev) }, func() { s.resync(ctx) }); err != nil {
			s.log.Error("cluster events stopped", "err", err)
		}
	})
	s.heartbeat(ctx)
	tick := time.NewTicker(HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.heartbeat(ctx)
		}
	}
}

// heartbeat renews the leases and reloads the listing. A database that is
// down only delays it: connected nodes stay connected meanwhile.
func (s *Server) heartbeat(ctx context.Context) {
	c := s.cluster
	if err := c.store.Heartbeat(ctx, c.id, s.authority.get() != nil, PresenceLease); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("cluster heartbeat failed; connected nodes stay connected, leases are renewed when the database is back", "err", err)
		}
		return
	}
	if ns, err := c.store.RelayNodes(ctx); err == nil {
		c.setListing(ns)
	}
}

// onEvent acts on another relay node's change.
func (s *Server) onEvent(ctx context.Context, ev Event) {
	switch ev.Kind {
	case EventCommand:
		// Delivery may wait for the node's queue: not on the listener.
		for _, cc := range s.members.of(ev.Target) {
			s.goTracked(func() { s.deliverPending(ctx, cc) })
		}
	case EventAcked:
		s.waiters.answer(CommandRecord{Target: ev.Target, Seq: ev.Seq, State: ev.State, Reason: ev.Reason})
	case EventRevoked:
		s.syncRevocations(ctx)
	case EventReleased:
		s.cluster.forget(ev.Relay)
		for _, cc := range s.relays.dropRelay(ev.Relay) {
			cc.log.Info("relay released elsewhere in the cluster; closing", "relay", ev.Relay)
			cc.close()
		}
	case EventMoved:
		s.cluster.forget(ev.Relay)
		if ev.Node == s.cluster.id {
			return
		}
		// Target is the owner that registered again elsewhere (a replica's
		// move leaves the relay's other owners here alone).
		if cc := s.relays.holder(ev.Relay, ev.Target); cc != nil {
			s.relays.release(cc)
			cc.log.Info("relay registered again on another relay node; closing this stale connection", "relay", ev.Relay, "relay_node", ev.Node)
			cc.close()
		}
	}
}

// resync catches up on what happened while the listener was away:
// revocations, commands queued, relays that moved.
func (s *Server) resync(ctx context.Context) {
	s.syncRevocations(ctx)
	for _, cc := range s.members.all() {
		s.deliverPending(ctx, cc)
		name := cc.relayName()
		if name == "" {
			continue
		}
		ps, err := s.cluster.store.LookupPresence(ctx, name)
		if err != nil && !errors.Is(err, ErrNotFound) {
			continue
		}
		i := slices.IndexFunc(ps, func(p Presence) bool { return p.Owner == cc.id })
		switch {
		case i >= 0 && ps[i].Node != s.cluster.id:
			s.onEvent(ctx, Event{Kind: EventMoved, Relay: name, Node: ps[i].Node, Target: cc.id})
		case i < 0:
			// Our lease ran out while the database was away: take it again.
			s.cluster.store.ClaimPresence(ctx, Presence{Relay: name, Owner: cc.id, Node: s.cluster.id, Health: cc.state()}, PresenceLease)
		}
	}
}

// syncRevocations applies revocations the store has and this node has
// not: each notice is verified again with the authority key (the store
// is shared, so it is not trusted to say who is revoked).
func (s *Server) syncRevocations(ctx context.Context) {
	list, err := s.store.ListRevocations(ctx)
	if err != nil {
		s.log.Warn("reading revocations", "err", err)
		return
	}
	for _, v := range list {
		if _, ok := s.revoked.at(v.ID); ok {
			continue
		}
		r, err := enroll.VerifyRevocation(s.authorityKey, s.project, v.Notice)
		if err != nil || r.ID != v.ID {
			s.log.Warn("a stored revocation does not verify; ignored", "node", v.ID, "err", err)
			continue
		}
		s.revoked.add(r.ID, r.RevokedAt)
		victims, sessions := s.cutOff(r.ID, r.RevokedAt)
		s.log.Info("member revoked (through the cluster)", "node", r.ID, "connections_closed", len(victims), "sessions_closed", sessions)
	}
}

// claimPresence records that this node holds relay for cc's node, with
// the health it reported.
func (s *Server) claimPresence(ctx context.Context, cc *controlConn, relay string) error {
	prev, err := s.cluster.store.ClaimPresence(ctx, Presence{Relay: relay, Owner: cc.id, Node: s.cluster.id, Health: cc.state()}, PresenceLease)
	if err != nil {
		return fmt.Errorf("record the relay's presence: %w", err)
	}
	if prev != "" {
		cc.log.Info("relay moved here from another relay node", "relay", relay, "from", prev)
	}
	return nil
}

// ClusterNodesType is the authority's request for the cluster's relay
// nodes (answered with ClusterNodes): the authority writes their
// addresses into tickets and dials another when its relay node goes. The
// number is above wire/control's range, which does not know it.
const ClusterNodesType control.Type = 64

// ClusterNodes lists a cluster's relay nodes for the authority.
type ClusterNodes struct {
	Nodes []ClusterNode `cbor:"1,keyasint"`
}

// ClusterNode is one relay node, as the authority sees it.
type ClusterNode struct {
	ID    string   `cbor:"1,keyasint"`
	Key   [32]byte `cbor:"2,keyasint"`
	Addrs []string `cbor:"3,keyasint"`
	Alive bool     `cbor:"4,keyasint,omitempty"`
}

func handleClusterNodes(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	if s.cluster == nil {
		return ClusterNodes{Nodes: []ClusterNode{{ID: s.dir.NodeID(), Key: s.dir.RelayKey.Public().Raw32(), Addrs: s.dir.PublicAddrs(), Alive: true}}}, nil
	}
	ns, err := s.cluster.store.RelayNodes(ctx)
	if err != nil {
		return nil, err
	}
	out := ClusterNodes{}
	for _, n := range ns {
		out.Nodes = append(out.Nodes, ClusterNode{ID: n.ID, Key: n.Key.Raw32(), Addrs: n.Addrs, Alive: n.Alive || n.ID == s.cluster.id})
	}
	return out, nil
}

// Queries is the store's statement counter (0 when it has none).
func (s *Server) Queries() int64 {
	if s.cluster != nil && s.cluster.queries != nil {
		return s.cluster.queries()
	}
	return 0
}
