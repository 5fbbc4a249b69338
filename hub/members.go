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

// all returns every live member connection.
func (t *memberConns) all() []*controlConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*controlConn
	for _, set := range t.byID {
		for cc := range set {
			out = append(out, cc)
		}
	}
	return out
}

// cutOff closes a revoked member's connections (after telling it why),
// sessions and live relays. It returns what it closed.
func (s *Server) cutOff(id string, at int64) (victims []*controlConn, sessions int) {
	victims = s.members.of(id)
	s.relays.dropMember(id)
	ss := s.sessions.dropMember(id)
	for _, cc := range victims {
		// Tell the node why, after anything already queued for it, then
		// hang up; a node whose queue is full is closed at once.
		if cc.push(control.TypeRevoked, control.RevokedPush{At: at}) != nil || cc.offer(nil) != nil {
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
	for _, sess := range ss {
		sess.close()
	}
	return victims, len(ss)
}

// credentialJanitor closes member connections whose credential expired
// without a refresh, until ctx ends.
func (s *Server) credentialJanitor(ctx context.Context) {
	tick := time.NewTicker(CredentialCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := s.now()
		for _, cc := range s.members.all() {
			if c := cc.credential(); c != nil && now.After(c.Expires().Add(enroll.ClockSkew)) {
				cc.log.Info("credential expired without a refresh; closing")
				cc.close()
			}
		}
	}
}

// attributeNames returns the attribute names of every connected member's
// credential.
func (t *memberConns) attributeNames() map[string]bool {
	t.mu.Lock()
	var conns []*controlConn
	for _, set := range t.byID {
		for cc := range set {
			conns = append(conns, cc)
			break // one connection per member is enough
		}
	}
	t.mu.Unlock()
	out := map[string]bool{}
	for _, cc := range conns {
		if c := cc.credential(); c != nil {
			for n := range c.Attributes {
				out[n] = true
			}
		}
	}
	return out
}
