// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"sync"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/wire/control"
)

// memberConns tracks the live control connections of each member (a node
// may briefly have two while it reconnects).
type memberConns struct {
	mu     sync.Mutex // guards byID and closed
	byID   map[string]map[*controlConn]struct{}
	closed bool // the server is shutting down: no new connections
}

func (t *memberConns) init() { t.byID = map[string]map[*controlConn]struct{}{} }

// add registers cc; false means the server is shutting down.
func (t *memberConns) add(cc *controlConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	set := t.byID[cc.id]
	if set == nil {
		set = map[*controlConn]struct{}{}
		t.byID[cc.id] = set
	}
	set[cc] = struct{}{}
	return true
}

func (t *memberConns) remove(cc *controlConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if set := t.byID[cc.id]; set != nil {
		delete(set, cc)
		if len(set) == 0 {
			delete(t.byID, cc.id)
		}
	}
}

// of returns the live connections of one member.
func (t *memberConns) of(id string) []*controlConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*controlConn, 0, len(t.byID[id]))
	for cc := range t.byID[id] {
		out = append(out, cc)
	}
	return out
}

// closeAll refuses new connections and returns every live one.
func (t *memberConns) closeAll() []*controlConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	var out []*controlConn
	for _, set := range t.byID {
		for cc := range set {
			out = append(out, cc)
		}
	}
	return out
}

// revokeGrace is how long a revoked node's connection may take to flush
// the notice before it is closed regardless.
const revokeGrace = time.Second

// Revoke revokes a member and closes its connections and sessions at once.
func (s *Server) Revoke(ctx context.Context, id string) (enroll.Member, error) {
	m, err := s.auth.Revoke(ctx, id)
	if err != nil {
		return m, err
	}
	victims := s.members.of(id)
	s.relays.dropMember(id)
	sessions := s.sessions.dropMember(id)
	for _, cc := range victims {
		// Tell the node why, after anything already queued for it, then
		// hang up; a node whose queue is full is closed at once.
		if cc.push(control.TypeRevoked, control.Empty{}) != nil || cc.offer(nil) != nil {
			cc.close()
			continue
		}
		// A writer stuck on a node that does not read must not delay it.
		s.goTracked(func() {
			t := time.NewTimer(revokeGrace)
			defer t.Stop()
			select {
			case <-cc.done:
			case <-t.C:
				cc.close()
			}
		})
	}
	for _, sess := range sessions {
		sess.close()
	}
	s.log.Info("member revoked", "node", id, "connections_closed", len(victims), "sessions_closed", len(sessions))
	return m, nil
}

// Live reports whether a member has a control connection, which relay it
// registered and whether its customer paused it.
func (s *Server) Live(id string) (connected bool, relay string, paused bool) {
	for _, cc := range s.members.of(id) {
		connected = true
		cc.mu.Lock()
		paused = paused || cc.paused
		if cc.relay != "" {
			relay = cc.relay
		}
		cc.mu.Unlock()
	}
	return connected, relay, paused
}

// Members implements Admin for a running hub.
func (s *Server) Members(ctx context.Context) ([]MemberStatus, error) {
	ms, err := s.store.ListMembers(ctx)
	out := make([]MemberStatus, 0, len(ms))
	for _, m := range ms {
		c, r, p := s.Live(m.ID)
		out = append(out, MemberStatus{Member: m, Connected: c, RelayUp: r, Paused: p})
	}
	return out, err
}
