// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/edgeportal/connect/internal/escape"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/outer"
)

type token = [wire.TokenLen]byte

// session is a pending or spliced pair of data connections, or a node's
// authority connection waiting for the authority's data connection.
type session struct {
	token    token
	from, to string // member ids: initiator, relay owner ("" for an authority session)
	relay    string
	expires  time.Time // a pending session is dropped after this
	// peer, for an authority session, receives the authority's data
	// connection; the node's connection waits on it (buffered: 1).
	peer chan net.Conn

	mu    sync.Mutex // guards first and conns
	first net.Conn   // the first data connection, waiting for its peer
	conns []net.Conn // both, once spliced
}

func (sess *session) close() {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.first != nil {
		sess.first.Close()
	}
	for _, c := range sess.conns {
		c.Close()
	}
}

// sessionTable holds pending sessions (by token) and spliced ones.
type sessionTable struct {
	mu      sync.Mutex // guards pending, spliced, perNode, perOwner and closed
	pending map[token]*session
	spliced map[*session]struct{}
	perNode map[string]int // pending sessions each node opened
	// perOwner counts the live sessions (pending or spliced) to each
	// relay owner, for steering among a relay's replicas.
	perOwner map[string]int
	closed   bool // the server is shutting down
}

func (t *sessionTable) init() {
	t.pending = map[token]*session{}
	t.spliced = map[*session]struct{}{}
	t.perNode = map[string]int{}
	t.perOwner = map[string]int{}
}

// load returns how many live sessions go to each of owners.
func (t *sessionTable) load(owners []string) []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]int, len(owners))
	for i, o := range owners {
		out[i] = t.perOwner[o]
	}
	return out
}

func (t *sessionTable) ownerAddLocked(owner string, d int) {
	if owner == "" {
		return
	}
	if t.perOwner[owner] += d; t.perOwner[owner] <= 0 {
		delete(t.perOwner, owner)
	}
}

// open creates a pending session from one member to a relay's owner.
func (t *sessionTable) open(from, to, relay string, now time.Time) (*session, error) {
	sess := &session{from: from, to: to, relay: relay, expires: now.Add(SessionPairTimeout)}
	rand.Read(sess.token[:])
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, net.ErrClosed
	}
	if t.perNode[from] >= MaxSessionsPerNode {
		return nil, &control.Error{Code: control.ErrCodeForbidden, Message: "too many pending sessions"}
	}
	t.pending[sess.token] = sess
	t.perNode[from]++
	t.ownerAddLocked(to, 1)
	return sess, nil
}

// openLinked creates a pending session whose first half is a link from
// the relay node that holds the inlet's half, under that node's token.
func (t *sessionTable) openLinked(tok token, from, to, relay string, link net.Conn, now time.Time) (*session, error) {
	sess := &session{token: tok, from: from, to: to, relay: relay, expires: now.Add(SessionPairTimeout), first: link}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, net.ErrClosed
	}
	if t.pending[tok] != nil {
		return nil, errors.New("token already in use")
	}
	if t.perNode[from] >= MaxSessionsPerNode {
		return nil, &control.Error{Code: control.ErrCodeForbidden, Message: "too many pending sessions"}
	}
	t.pending[tok] = sess
	t.perNode[from]++
	t.ownerAddLocked(to, 1)
	return sess, nil
}

// attach makes link the first half of a pending session (the peer's half
// arrives over it); false if the session is gone.
func (t *sessionTable) attach(sess *session, link net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending[sess.token] != sess {
		return false
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.first != nil {
		return false
	}
	sess.first = link
	return true
}

// openAuthority creates a pending authority session.
func (t *sessionTable) openAuthority(now time.Time) (*session, error) {
	sess := &session{expires: now.Add(SessionPairTimeout), peer: make(chan net.Conn, 1)}
	rand.Read(sess.token[:])
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, net.ErrClosed
	}
	t.pending[sess.token] = sess
	return sess, nil
}

// unpendLocked removes a pending session. Called with t.mu held.
func (t *sessionTable) unpendLocked(sess *session) {
	if t.pending[sess.token] != sess {
		return
	}
	delete(t.pending, sess.token)
	t.ownerAddLocked(sess.to, -1)
	if sess.from == "" {
		return
	}
	if t.perNode[sess.from]--; t.perNode[sess.from] <= 0 {
		delete(t.perNode, sess.from)
	}
}

// cancel drops a pending session that could not be announced.
func (t *sessionTable) cancel(sess *session) {
	t.mu.Lock()
	t.unpendLocked(sess)
	t.mu.Unlock()
	sess.close()
}

// janitor drops pending sessions whose peer never came, until ctx ends.
func (t *sessionTable) janitor(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			var expired []*session
			t.mu.Lock()
			for _, sess := range t.pending {
				if now.After(sess.expires) {
					t.unpendLocked(sess)
					expired = append(expired, sess)
				}
			}
			t.mu.Unlock()
			for _, sess := range expired {
				sess.close()
			}
		}
	}
}

// dropMember removes and returns every session a member is part of.
func (t *sessionTable) dropMember(id string) []*session {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*session
	for sess := range t.spliced {
		if sess.from == id || sess.to == id {
			out = append(out, sess)
		}
	}
	for _, sess := range t.pending {
		if sess.from == id || sess.to == id {
			t.unpendLocked(sess)
			out = append(out, sess)
		}
	}
	return out
}

// dropRelay removes and returns every session to a relay name (its
// binding was released: channels to its old owner end).
func (t *sessionTable) dropRelay(relay string) []*session {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*session
	for sess := range t.spliced {
		if sess.peer == nil && sess.relay == relay {
			out = append(out, sess)
		}
	}
	for _, sess := range t.pending {
		if sess.peer == nil && sess.relay == relay {
			t.unpendLocked(sess)
			out = append(out, sess)
		}
	}
	return out
}

// closeAll closes every session and refuses new ones.
func (t *sessionTable) closeAll() {
	t.mu.Lock()
	t.closed = true
	var all []*session
	for sess := range t.spliced {
		all = append(all, sess)
	}
	for _, sess := range t.pending {
		all = append(all, sess)
	}
	t.mu.Unlock()
	for _, sess := range all {
		sess.close()
	}
}

// pair adds data connection c to the session of tok. The first one waits
// (nil, false); the second gets the first back (first, true) and the
// session moves to spliced.
func (t *sessionTable) pair(tok token, c net.Conn) (sess *session, first net.Conn, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sess = t.pending[tok]
	if sess == nil {
		return nil, nil, false
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.peer != nil {
		// An authority session: hand c to the node's waiting connection.
		sess.conns = []net.Conn{c}
		t.unpendLocked(sess)
		t.spliced[sess] = struct{}{}
		sess.peer <- c
		return sess, c, true
	}
	if sess.first == nil {
		sess.first = c
		return sess, nil, true
	}
	first = sess.first
	sess.first = nil
	sess.conns = []net.Conn{first, c}
	t.unpendLocked(sess)
	t.spliced[sess] = struct{}{}
	t.ownerAddLocked(sess.to, 1)
	return sess, first, true
}

func (t *sessionTable) done(sess *session) {
	t.mu.Lock()
	if _, ok := t.spliced[sess]; ok {
		delete(t.spliced, sess)
		t.ownerAddLocked(sess.to, -1)
	}
	t.mu.Unlock()
}

// handleOpenSession opens a session to one of the relay's owners: the
// only one, or the replica steering picks (steering.go). The owner held
// here gets the announcement on its queue; one held by another relay
// node is reached over a link.
func handleOpenSession(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	req, err := body[control.OpenSessionRequest](m)
	if err != nil {
		return nil, err
	}
	if len(req.Avoid) > control.MaxAvoid {
		return nil, &control.Error{Code: control.ErrCodeBadRequest, Message: fmt.Sprintf("open session: %d owners to avoid, at most %d", len(req.Avoid), control.MaxAvoid)}
	}
	cands, err := s.candidates(ctx, req.Relay)
	if err != nil {
		return nil, err
	}
	if len(cands) == 0 {
		return nil, &control.Error{Code: control.ErrCodeRelayUnknown, Message: fmt.Sprintf("relay %q is not connected to the hub", req.Relay)}
	}
	// An owner that cannot take the session after all (its queue is
	// full, its relay node does not answer the link) is left out and the
	// next one picked.
	var last error
	for len(cands) > 0 {
		pick, healthy, refusal := s.steer(req.Relay, req.Outlet, req.Avoid, cands)
		if refusal != nil {
			if last != nil {
				return nil, last
			}
			cc.log.Info("no owner of the relay can take a session", "relay", req.Relay, "outlet", escape.String(req.Outlet), "reason", refusal.Message)
			return nil, refusal
		}
		resp, err := s.openTo(ctx, cc, req.Relay, pick)
		if err == nil {
			resp.Healthy = healthy
			return resp, nil
		}
		var ce *control.Error
		if !errors.As(err, &ce) || ce.Code != control.ErrCodeRelayUnknown {
			return nil, err
		}
		last = err
		cands = slices.DeleteFunc(cands, func(c candidate) bool { return c.id == pick.id })
	}
	return nil, last
}

// openTo opens a session from cc to one owner of relay: held here, its
// node gets the announcement on its queue; held elsewhere, over a link.
func (s *Server) openTo(ctx context.Context, cc *controlConn, relay string, pick candidate) (control.OpenSessionResponse, error) {
	if pick.conn == nil {
		return s.openRemoteSession(ctx, cc, relay, pick.presence)
	}
	owner := pick.conn
	sess, err := s.sessions.open(cc.id, owner.id, relay, s.now())
	if err != nil {
		return control.OpenSessionResponse{}, err
	}
	// Hand the announcement to the owner's queue: never wait for another
	// node here.
	if err := owner.push(control.TypeIncoming, control.Incoming{Token: sess.token[:], Relay: relay, From: cc.id}); err != nil {
		s.sessions.cancel(sess)
		return control.OpenSessionResponse{}, &control.Error{Code: control.ErrCodeRelayUnknown, Message: fmt.Sprintf("relay %q: its node did not take the session: %v", relay, err)}
	}
	s.stats.SessionsOpened.Add(1)
	s.metrics.sessionsOpened.Inc()
	return control.OpenSessionResponse{Token: sess.token[:], Peer: owner.id}, nil
}

// serveData pairs a data connection with its peer by token and splices
// the two.
func (s *Server) serveData(c net.Conn, slot *pendingSlot) {
	var tok token
	if _, err := io.ReadFull(c, tok[:]); err != nil {
		c.Close()
		return
	}
	sess, first, ok := s.sessions.pair(tok, c)
	if !ok {
		s.log.Debug("data connection with unknown token", "remote", c.RemoteAddr().String())
		c.Close()
		return
	}
	slot.release()
	if sess.peer != nil {
		return // the node's authority connection splices it
	}
	if first == nil {
		// Wait for the peer; the janitor closes c if none comes.
		c.SetDeadline(time.Now().Add(SessionPairTimeout))
		return
	}
	first.SetDeadline(time.Time{})
	c.SetDeadline(time.Time{})
	// The same channel id as the nodes log (first bytes of the one-time
	// token, useless once the session is paired).
	s.log.Debug("channel spliced", "channel", fmt.Sprintf("%x", tok[:6]), "from", sess.from, "to", sess.to, "relay", sess.relay)
	s.stats.ActiveSessions.Add(1)
	if hostileSplice != nil {
		hostileSplice(s, sess, first, c)
	} else {
		// Plain connections of a dual (plain and TLS) listener splice as
		// the TCP connections they are, in the kernel.
		splice(outer.Plain(first), outer.Plain(c))
	}
	s.stats.ActiveSessions.Add(-1)
	s.sessions.done(sess)
}

// hostileSplice, when set (only in a build with the hostilerelay tag, for
// the tests of a compromised relay), replaces splicing.
var hostileSplice func(s *Server, sess *session, a, b net.Conn)

// splice copies both ways until both directions end, carrying half-close.
// On Linux io.Copy between two *net.TCPConn uses splice(2): the bytes never
// enter user space, and they are ciphertext anyway.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if err != nil {
			// A reset on one side: tear down both so nothing hangs.
			a.Close()
			b.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}
