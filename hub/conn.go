// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
	"github.com/edgeportal/connect/wire/signed"
)

// errSlowPeer means a connection's outbound queue is full: its node is
// not reading. Only messages from other connections see it.
var errSlowPeer = errors.New("the node is not reading its control connection")

// controlConn is one node's authenticated control channel. Its read loop
// runs on the goroutine that accepted it; a writer goroutine drains out.
type controlConn struct {
	s        *Server
	nc       *noiseconn.Conn
	peer     key.NodePublic
	id       string
	version  string
	platform string
	log      *slog.Logger

	out       outQueue      // messages for the writer; bounded by OutboundQueue
	done      chan struct{} // closed when the connection is closed
	closeOnce sync.Once
	wg        sync.WaitGroup // the writer and the goroutines this connection started

	role string // control.RoleMember or control.RoleAuthority; set before the read loop

	mu      sync.Mutex         // guards cred, credRaw, relay, replica and health
	cred    *enroll.Credential // the member's current credential (members only)
	credRaw []byte             // its signed bytes
	relay   string             // the relay this connection registered, or ""
	replica bool               // it registered relay as a replica
	health  Health             // the node's last NodeState (paused, draining, outlets down)

	cmdMu     sync.Mutex // serializes command delivery; guards delivered
	delivered uint64     // highest command seq pushed on this connection
}

// credential returns the member's current credential.
func (cc *controlConn) credential() *enroll.Credential {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.cred
}

func (cc *controlConn) relayName() string {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.relay
}

func (cc *controlConn) isReplica() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.replica
}

// state returns the node's last reported health (a copy).
func (cc *controlConn) state() Health {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	h := cc.health
	h.Down = slices.Clone(h.Down)
	return h
}

// close closes the connection; the read loop and the writer then end.
func (cc *controlConn) close() {
	cc.closeOnce.Do(func() {
		cc.out.close() // before anyone waits for cc.wg: no writer starts after
		close(cc.done)
		cc.nc.Close()
	})
}

// startWriting lets the writer run whenever messages wait.
func (cc *controlConn) startWriting() { cc.out.start(func() { cc.goTracked(cc.writer) }) }

// goTracked runs f in a goroutine the connection waits for when it ends.
func (cc *controlConn) goTracked(f func()) {
	cc.wg.Add(1)
	go func() {
		defer cc.wg.Done()
		f()
	}()
}

// outQueue is a connection's outbound queue, bounded by OutboundQueue
// messages, and its writer. Both hold memory only while messages wait:
// the writer goroutine runs while the queue has messages and ends when it
// is empty, so an idle connection (most of a large relay's) keeps neither
// a buffer of OutboundQueue slots nor a writer's stack.
type outQueue struct {
	mu      sync.Mutex // guards the fields below
	q       [][]byte
	writing bool          // a writer goroutine runs
	started bool          // start was called: put may start writers
	closed  bool          // the connection is closed: no writer starts again
	spawn   func()        // starts a writer (the connection's tracked goroutine)
	space   chan struct{} // capacity 1: signalled when q has room again
}

func newOutQueue() outQueue { return outQueue{space: make(chan struct{}, 1)} }

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// put queues b and reports true, or reports false when the queue is full
// or closed.
func (o *outQueue) put(b []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || len(o.q) >= OutboundQueue {
		return false
	}
	o.q = append(o.q, b)
	if len(o.q) < OutboundQueue {
		signal(o.space) // another waiting sender may go on too
	}
	o.startLocked()
	return true
}

// start lets writers run (from now on, whenever messages wait).
func (o *outQueue) start(spawn func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.started, o.spawn = true, spawn
	o.startLocked()
}

func (o *outQueue) startLocked() {
	if o.started && !o.writing && !o.closed && len(o.q) > 0 {
		o.writing = true
		o.spawn()
	}
}

// close stops writers from starting again; the connection then waits for
// the one running, if any.
func (o *outQueue) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
}

// take returns the oldest message; when none waits it reports false and
// the calling writer must end (a later put starts another).
func (o *outQueue) take() ([]byte, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.q) == 0 {
		o.writing = false
		return nil, false
	}
	b := o.q[0]
	o.q[0] = nil
	if o.q = o.q[1:]; len(o.q) == 0 {
		o.q = nil // give the backing array back
	}
	signal(o.space)
	return b, true
}

// writer writes queued messages until none is left or the connection
// closes. A failed or timed-out write closes the connection.
func (cc *controlConn) writer() {
	for {
		b, ok := cc.out.take()
		if !ok {
			return
		}
		select {
		case <-cc.done:
			return
		default:
		}
		if b == nil { // queued by dispatch: close once the answers before it are out
			cc.close()
			return
		}
		cc.nc.SetWriteDeadline(time.Now().Add(WriteTimeout))
		if err := wire.WriteMessage(cc.nc, b); err != nil {
			cc.log.Debug("control write failed; closing", "err", err)
			cc.close()
			return
		}
	}
}

// send queues b, waiting while the queue is full. Only the connection's
// own goroutines use it: they may wait for their own node.
func (cc *controlConn) send(b []byte) error {
	for {
		select {
		case <-cc.done:
			return net.ErrClosed
		default:
		}
		if cc.out.put(b) {
			return nil
		}
		select {
		case <-cc.out.space:
		case <-cc.done:
			return net.ErrClosed
		}
	}
}

// offer queues b without waiting. Other connections' goroutines use it,
// so one node's slowness never blocks another's read loop.
func (cc *controlConn) offer(b []byte) error {
	select {
	case <-cc.done:
		return net.ErrClosed
	default:
	}
	if !cc.out.put(b) {
		return errSlowPeer
	}
	return nil
}

// push offers a hub-initiated message (ID 0).
func (cc *controlConn) push(t control.Type, v any) error {
	b, err := control.Encode(t, 0, v)
	if err != nil {
		return err
	}
	return cc.offer(b)
}

// serveControl runs the relay side of a control connection's handshake,
// checks the credential in the hello, then runs its read loop until the
// connection ends. Until the credential verifies, the connection counts
// against the admission caps.
func (s *Server) serveControl(ctx context.Context, c net.Conn, offer wire.Offer, slot *pendingSlot) {
	version, _ := offer.Choose() // ReadPreface refused a range with none in common
	hctx, cancel := context.WithTimeout(ctx, s.handshakeTimeout)
	defer cancel()
	hello, _ := wire.Marshal(control.ServerHello{
		Version:  version,
		Project:  s.project,
		HubBuild: buildinfo.Version(),
		TimeUnix: s.now().Unix(),
	})
	hsStart := time.Now()
	nc, payload, err := noiseconn.Respond(hctx, c, &noiseconn.Config{Static: s.static, Prologue: wire.Prologue("control", offer, nil),
		Mode: noiseconn.Hybrid, MaxMessage: MaxPreAuthMessage}, hello)
	if err != nil {
		s.metrics.rejected.WithLabelValues("handshake").Inc()
		s.log.Debug("control handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	var ch control.ClientHello
	if err := wire.Unmarshal(payload, &ch); err != nil {
		s.log.Debug("bad client hello", "remote", c.RemoteAddr().String(), "err", err)
		nc.Close()
		return
	}
	peer := nc.Peer()
	if s.cluster != nil && s.cluster.isRelayKey(peer) {
		var h linkHello
		if len(ch.Credential) > maxLinkHello || wire.UnmarshalStrict(ch.Credential, &h) != nil {
			s.log.Info("relay node link refused: bad hello", "remote", c.RemoteAddr().String())
			c.Close()
			return
		}
		s.serveLink(ctx, c, peer, h, slot)
		return
	}
	role, cred, refusal := s.admit(peer, ch.Credential)
	if refusal != nil {
		s.metrics.rejected.WithLabelValues(refusal.Code).Inc()
		s.log.Info("connection refused", "node", string(peer.ID()), "remote", c.RemoteAddr().String(), "code", refusal.Code, "reason", refusal.Message)
		b, _ := control.EncodeMsg(control.Msg{Type: control.TypeWelcome, Err: refusal})
		nc.SetWriteDeadline(time.Now().Add(time.Second))
		wire.WriteMessage(nc, b)
		nc.Close()
		return
	}
	s.metrics.handshake.Observe(time.Since(hsStart).Seconds())
	c.SetDeadline(time.Time{})
	slot.release()
	cc := &controlConn{
		s: s, nc: nc, peer: peer, id: string(peer.ID()), version: ch.Build, platform: ch.Platform,
		role: role, cred: cred, credRaw: ch.Credential,
		out: newOutQueue(), done: make(chan struct{}),
	}
	cc.log = s.log.With("node", cc.id)
	if role == control.RoleAuthority {
		cc.log = s.log.With("authority", cc.id)
	}
	welcome, _ := control.Encode(control.TypeWelcome, 0, control.Welcome{Role: role})
	cc.out.put(welcome) // the queue is empty: this never fails; it goes out once writing starts
	if role == control.RoleAuthority {
		s.serveAuthorityConn(ctx, cc)
		return
	}
	if !s.members.add(cc) {
		nc.Close() // the server is shutting down
		return
	}
	s.stats.ControlConns.Add(1)
	s.touch(cc.id, ch.Build, ch.Platform)
	cc.startWriting()
	cc.log.Debug("control connection up", "remote", c.RemoteAddr().String())
	cc.goTracked(func() { s.deliverPending(ctx, cc) })
	// The read loop runs on a fresh goroutine: this one's stack grew in
	// the (hybrid) handshake, and an idle connection should not keep it.
	s.goTracked(func() {
		defer func() {
			cc.close()
			cc.wg.Wait()
			s.removeConn(cc)
			s.stats.ControlConns.Add(-1)
		}()
		s.runReadLoop(ctx, cc)
	})
}

// runReadLoop runs cc's read loop; after a handler asked to close, it
// lets the writer flush the last answer first.
func (s *Server) runReadLoop(ctx context.Context, cc *controlConn) {
	if errors.Is(cc.readLoop(ctx), errClosing) {
		// The writer closes the connection once the last answer is out.
		t := time.NewTimer(WriteTimeout)
		defer t.Stop()
		select {
		case <-cc.done:
		case <-t.C:
		}
	}
}

// errClosing means a handler asked to close the connection after its
// answer: the read loop stops and the writer flushes, then closes.
var errClosing = errors.New("closing after the answer")

// admit checks the credential a hello carries: a member's credential, or
// the authority's statement of its key. The refusal says what is wrong.
func (s *Server) admit(peer key.NodePublic, cred []byte) (string, *enroll.Credential, *control.Error) {
	if len(cred) == 0 {
		return "", nil, &control.Error{Code: control.ErrCodeNotMember, Message: "no credential: this relay admits only members of the project (redeem a ticket first)"}
	}
	if env, err := signed.Open(cred); err == nil && env.Context == signed.ContextAuthority {
		if err := enroll.VerifyStatement(s.authorityKey, s.project, cred, peer, s.now()); err != nil {
			return "", nil, &control.Error{Code: control.ErrCodeBadCredential, Message: err.Error()}
		}
		return control.RoleAuthority, nil, nil
	}
	c, refusal := s.checkCredential(peer, cred)
	if refusal != nil {
		return "", nil, refusal
	}
	return control.RoleMember, c, nil
}

// checkCredential verifies a member credential for peer: signed by the
// project's authority, bound to peer, valid now, not revoked.
func (s *Server) checkCredential(peer key.NodePublic, data []byte) (*enroll.Credential, *control.Error) {
	c, err := enroll.VerifyCredential(s.authorityKey, data, peer, s.now())
	switch {
	case errors.Is(err, enroll.ErrCredentialExpired):
		return nil, &control.Error{Code: control.ErrCodeCredentialOld, Message: err.Error() + ": refresh it with the authority"}
	case errors.Is(err, signed.ErrBadSignature):
		return nil, &control.Error{Code: control.ErrCodeBadCredential, Message: "credential is not signed by this project's authority"}
	case err != nil:
		return nil, &control.Error{Code: control.ErrCodeBadCredential, Message: err.Error()}
	case c.Project != s.project:
		return nil, &control.Error{Code: control.ErrCodeBadCredential, Message: fmt.Sprintf("credential is for project %s, not %s", c.Project, s.project)}
	}
	if at, ok := s.revoked.at(c.ID); ok {
		return nil, &control.Error{Code: control.ErrCodeRevoked, Message: fmt.Sprintf("node %s's membership was revoked at %s; it needs a new identity and ticket", c.ID, time.Unix(at, 0).UTC().Format(time.RFC3339))}
	}
	return c, nil
}

// readLoop reads and dispatches messages until the connection ends.
func (cc *controlConn) readLoop(ctx context.Context) error {
	for {
		cc.nc.SetReadDeadline(time.Now().Add(ControlIdleTimeout))
		b, err := wire.ReadMessage(cc.nc)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				cc.log.Debug("control connection ended", "err", err)
			}
			return err
		}
		m, err := control.Decode(b)
		if err != nil {
			cc.log.Warn("bad control message; closing", "err", err)
			return err
		}
		if err := cc.s.dispatch(ctx, cc, m); err != nil {
			return err
		}
	}
}

// removeConn forgets a closed connection: its member entry and the relay
// it held.
func (s *Server) removeConn(cc *controlConn) {
	s.members.remove(cc)
	if name := s.relays.release(cc); name != "" {
		cc.log.Info("relay down", "relay", name)
		if s.cluster != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s.cluster.store.DropPresence(ctx, name, cc.id, s.cluster.id)
			cancel()
		}
	}
	s.touch(cc.id, "", "")
}

// touch records that a node was seen (and its build), best effort.
func (s *Server) touch(id, version, platform string) {
	s.store.UpdateNode(context.Background(), id, func(n *NodeRecord) {
		n.LastSeen = s.now().Unix()
		if version != "" {
			n.Version = version
		}
		if platform != "" {
			n.Platform = platform
		}
	})
}
