// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
)

// The relay's side of the authority: the authority's control connection
// (it dials out to the relay, proving itself with a statement signed by
// the authority key), the revocation notices it sends, and the authority
// connections nodes open to reach it end to end. The relay forwards those
// without reading them: it never sees a ticket secret.

// Authority connection status bytes, written after an 'A' preface.
const (
	authorityReady   byte = 0 // the authority is being connected: Noise with it follows
	authorityMissing byte = 1 // no authority is connected to this relay
)

// authoritySlot holds the authority's control connection.
type authoritySlot struct {
	mu     sync.Mutex // guards cc and closed
	cc     *controlConn
	closed bool
}

func (a *authoritySlot) get() *controlConn {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cc
}

// set makes cc the authority's connection and returns the one it
// replaces; false means the server is shutting down.
func (a *authoritySlot) set(cc *controlConn) (old *controlConn, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, false
	}
	old, a.cc = a.cc, cc
	return old, true
}

func (a *authoritySlot) clear(cc *controlConn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cc == cc {
		a.cc = nil
	}
}

func (a *authoritySlot) closeAll() *controlConn {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	return a.cc
}

// revokedSet is the identities the authority revoked, with when.
type revokedSet struct {
	mu sync.Mutex // guards m
	m  map[string]int64
}

func (r *revokedSet) load(ctx context.Context, st Store) error {
	list, err := st.ListRevocations(ctx)
	if err != nil {
		return err
	}
	r.m = make(map[string]int64, len(list))
	for _, v := range list {
		r.m[v.ID] = v.RevokedAt
	}
	return nil
}

func (r *revokedSet) at(id string) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.m[id]
	return t, ok
}

// add records a revocation; it reports whether it is new.
func (r *revokedSet) add(id string, at int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[id]; ok {
		return false
	}
	r.m[id] = at
	return true
}

// serveAuthorityConn runs the authority's control connection.
func (s *Server) serveAuthorityConn(ctx context.Context, cc *controlConn) {
	old, ok := s.authority.set(cc)
	if !ok {
		cc.nc.Close()
		return
	}
	if old != nil {
		old.log.Info("authority reconnected; closing its previous connection")
		old.close()
	}
	cc.startWriting()
	if s.cluster != nil {
		s.goTracked(func() { s.heartbeat(ctx) }) // say at once that the authority is here
	}
	defer func() {
		cc.close()
		cc.wg.Wait()
		s.authority.clear(cc)
		cc.log.Info("authority disconnected")
		if s.cluster != nil {
			s.goTracked(func() {
				hctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				s.heartbeat(hctx)
			})
		}
	}()
	cc.log.Info("authority connected")
	s.runReadLoop(ctx, cc)
}

// handleRevocations applies the authority's revocation notices: each is
// verified with the authority key, kept, and closes the member's
// connections, sessions and relays at once.
func handleRevocations(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	req, err := body[control.Revocations](m)
	if err != nil {
		return nil, err
	}
	for _, n := range req.Notices {
		r, err := enroll.VerifyRevocation(s.authorityKey, s.project, n)
		if err != nil {
			return nil, &control.Error{Code: control.ErrCodeBadRequest, Message: err.Error()}
		}
		if err := s.applyRevocation(ctx, r, n); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// applyRevocation keeps a verified revocation and cuts the member off.
func (s *Server) applyRevocation(ctx context.Context, r enroll.Revocation, notice []byte) error {
	if err := s.store.AddRevocation(ctx, Revoked{ID: r.ID, RevokedAt: r.RevokedAt, Notice: notice}); err != nil {
		return fmt.Errorf("keep revocation: %w", err)
	}
	fresh := s.revoked.add(r.ID, r.RevokedAt)
	freed, err := s.store.ReleaseRelaysOf(ctx, r.ID)
	if err != nil {
		return fmt.Errorf("free the relays of %s: %w", r.ID, err)
	}
	victims, sessions := s.cutOff(r.ID, r.RevokedAt)
	if fresh || len(victims) > 0 {
		s.log.Info("member revoked", "node", r.ID, "revoked_at", time.Unix(r.RevokedAt, 0).UTC().Format(time.RFC3339),
			"connections_closed", len(victims), "sessions_closed", sessions, "relays_freed", len(freed))
	}
	return nil
}

// handleLiveStatus tells the authority what the relay knows of nodes.
func handleLiveStatus(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	return control.LiveStatus{Nodes: s.liveNodes(ctx)}, nil
}

// liveNodes merges the stored node records with the live connections.
func (s *Server) liveNodes(ctx context.Context) []control.NodeLive {
	recs, _ := s.store.ListNodes(ctx)
	byID := map[string]*control.NodeLive{}
	var out []control.NodeLive
	for _, r := range recs {
		out = append(out, control.NodeLive{ID: r.ID, Version: r.Version, Platform: r.Platform, LastSeen: r.LastSeen, LastUpdate: r.LastUpdate})
	}
	for i := range out {
		byID[out[i].ID] = &out[i]
	}
	for _, cc := range s.members.all() {
		n := byID[cc.id]
		if n == nil {
			out = append(out, control.NodeLive{ID: cc.id})
			n = &out[len(out)-1]
			byID[cc.id] = n
		}
		n.Connected = true
		cc.mu.Lock()
		n.Paused = n.Paused || cc.health.Paused
		n.Draining = n.Draining || cc.health.Draining
		if len(cc.health.Down) > 0 {
			n.Down = slices.Clone(cc.health.Down)
		}
		if cc.relay != "" {
			n.Relay, n.Replica = cc.relay, cc.replica
		}
		cc.mu.Unlock()
	}
	if s.cluster != nil {
		ps, _ := s.cluster.store.ListPresence(ctx)
		for _, p := range ps {
			n := byID[p.Owner]
			if n == nil {
				out = append(out, control.NodeLive{ID: p.Owner})
				n = &out[len(out)-1]
				byID[p.Owner] = n
			}
			if n.Connected && n.Relay != "" {
				continue // connected here: its connection is the truth
			}
			n.Connected, n.Relay = true, p.Relay
			n.Paused, n.Draining, n.Down = p.Paused, p.Draining, p.Down
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// serveAuthoritySession connects a node's authority connection to the
// authority: the authority dials a data connection with a fresh token and
// the relay splices the two. The connection counts against the admission
// caps for its whole life (the relay cannot tell who is on it), and is
// bounded in bytes and time.
//
// In a cluster, a relay node without the authority forwards the
// connection to the one that has it (mayForward; a forwarded one is not
// forwarded again).
func (s *Server) serveAuthoritySession(ctx context.Context, c net.Conn, offer wire.Offer, mayForward bool) {
	defer c.Close()
	a := s.authority.get()
	if a == nil && mayForward && s.cluster != nil && s.forwardAuthority(ctx, c, offer) {
		return
	}
	if a == nil {
		c.Write([]byte{authorityMissing})
		s.log.Debug("authority connection refused: no authority connected", "remote", c.RemoteAddr().String())
		return
	}
	sess, err := s.sessions.openAuthority(s.now())
	if err != nil {
		c.Write([]byte{authorityMissing})
		return
	}
	if err := a.push(control.TypeAuthoritySession, control.AuthoritySession{Token: sess.token[:], Offer: []byte{offer.Min, offer.Max}}); err != nil {
		s.sessions.cancel(sess)
		c.Write([]byte{authorityMissing})
		return
	}
	if _, err := c.Write([]byte{authorityReady}); err != nil {
		s.sessions.cancel(sess)
		return
	}
	t := time.NewTimer(SessionPairTimeout)
	defer t.Stop()
	var peer net.Conn
	select {
	case peer = <-sess.peer:
	case <-t.C:
		s.sessions.cancel(sess)
		s.log.Debug("the authority did not take an authority connection", "remote", c.RemoteAddr().String())
		return
	case <-ctx.Done():
		s.sessions.cancel(sess)
		return
	}
	defer s.sessions.done(sess)
	deadline := time.Now().Add(AuthoritySessionTime)
	c.SetDeadline(deadline)
	peer.SetDeadline(deadline)
	spliceLimited(c, peer, AuthoritySessionBytes)
}

// spliceLimited is splice with a byte limit per direction: past it, both
// connections are closed.
func spliceLimited(a, b net.Conn, limit int64) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		n, err := io.Copy(dst, io.LimitReader(src, limit+1))
		if err != nil || n > limit {
			a.Close()
			b.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}
