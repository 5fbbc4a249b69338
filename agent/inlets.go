// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/policy"
	"github.com/edgeportal/connect/portal"
	"github.com/edgeportal/connect/portal/mux"
	"github.com/edgeportal/connect/portal/pipe"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
)

func (in *inlet) effectiveAllow(cfg *config.Config) policy.Expr {
	if in.expr != nil {
		return in.expr
	}
	return cfg.DefaultAllow(policy.TCPInlet)
}

func (in *inlet) effectiveAllowText(cfg *config.Config) string {
	if e := in.effectiveAllow(cfg); e != nil {
		return e.String()
	}
	return ""
}

func (n *Node) startInlet(ctx context.Context, in *inlet) error {
	n.mu.Lock()
	if _, dup := n.inlets[in.from]; dup {
		n.mu.Unlock()
		return fmt.Errorf("an inlet already listens on %s", in.from)
	}
	n.mu.Unlock()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", in.from)
	if err != nil {
		return fmt.Errorf("inlet %s: %w", in.from, err)
	}
	in.ln = ln
	n.mu.Lock()
	n.inlets[in.from] = in
	n.mu.Unlock()
	n.log.Info("inlet listening", "from", ln.Addr().String(), "via", in.via, "to", in.to, "allow", in.effectiveAllowText(n.cfg), "origin", in.origin)
	n.goTracked(func() { n.acceptInlet(ctx, in) })
	return nil
}

func (n *Node) acceptInlet(ctx context.Context, in *inlet) {
	var delay time.Duration
	for {
		c, err := in.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			n.log.Warn("inlet accept failed", "from", in.from, "err", err)
			if sleepCtx(ctx, delay) != nil {
				return
			}
			continue
		}
		delay = 0
		n.goTracked(func() { n.serveInlet(ctx, in, c) })
	}
}

func (n *Node) closeInlets() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, in := range n.inlets {
		if in.ln != nil {
			in.ln.Close()
		}
	}
}

// dialData opens a data connection to the hub bound to token.
func (n *Node) dialData(ctx context.Context, addr string, token []byte) (net.Conn, error) {
	c, err := n.connectData(ctx, addr)
	if err != nil {
		return nil, err
	}
	return bindData(c, token)
}

// connectData opens the TCP connection of a data connection; bindData
// then names its session. Splitting them lets an inlet connect while it
// waits for the hub's answer.
func (n *Node) connectData(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, err := n.dial()(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("data connection to hub: %w", err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	return c, nil
}

func bindData(c net.Conn, token []byte) (net.Conn, error) {
	msg := append(wire.Preface(wire.KindData), token...)
	if _, err := c.Write(msg); err != nil {
		c.Close()
		return nil, fmt.Errorf("data connection to hub: %w", err)
	}
	return c, nil
}

// maxPortalAttempts bounds how many replicas one portal tries.
const maxPortalAttempts = 3

// serveInlet carries one client connection through a portal: a stream
// of a channel to the relay's owner (opened first if none is usable).
// To a relay served by replicas, a portal that a replica refuses before
// any byte reached its target (target refused or timed out, draining,
// paused) is tried on another, with the client's first bytes replayed:
// the client sees one connection.
func (n *Node) serveInlet(ctx context.Context, in *inlet, client net.Conn) {
	start := time.Now()
	log := newPortalLog(n.log, "inlet", in.from, "via", in.via, "outlet", in.to, "client", client.RemoteAddr().String())
	fail := func(msg string, err error) {
		reason := "error"
		var rej *portal.Rejection
		if errors.As(err, &rej) {
			reason = rej.Code
		}
		n.metrics.denied.WithLabelValues("inlet", reason).Inc()
		log.Warn(msg, "err", err)
		if tc, ok := client.(*net.TCPConn); ok {
			tc.SetLinger(0) // reset, as a refused direct connection would look
		}
		client.Close()
	}
	var rp *replayConn // the client, kept for a retry (a replicated relay only)
	early := &earlyBytes{c: client}
	for attempt := 0; ; attempt++ {
		oc, st, err := n.openPortal(ctx, in, early)
		if err != nil {
			fail("portal not opened", err)
			return
		}
		conn := client
		tc, isTCP := client.(*net.TCPConn)
		switch {
		case rp != nil:
			rp = rp.again()
			conn = rp
		case isTCP && n.channels.replicated(in.via):
			rp = newReplayConn(tc)
			conn = rp
		}
		plog := log.with("peer", oc.ch.Peer().ID)
		// The bytes flow at once; the portal counts as open once the outlet
		// node accepts it (a refusal counts as a denial instead).
		const pending, accepted, over = 0, 1, 2
		var state atomic.Int32
		st.OnAccept(func() {
			if rp != nil {
				rp.accepted()
			}
			if state.CompareAndSwap(pending, accepted) {
				n.metrics.setup.Observe(time.Since(start).Seconds())
				n.metrics.opened.WithLabelValues("inlet").Inc()
				n.metrics.open.WithLabelValues("inlet").Inc()
			}
		})
		plog.Debug("portal opening", "channel_wait", time.Since(start), "attempt", attempt+1)
		up, down, err := pipe.Pipe(ctx, conn, st)
		up += int64(len(early.b))
		if !state.CompareAndSwap(pending, over) {
			n.metrics.open.WithLabelValues("inlet").Dec()
		}
		n.metrics.bytes.WithLabelValues("inlet", "out").Add(float64(up))
		n.metrics.bytes.WithLabelValues("inlet", "in").Add(float64(down))
		if rej, ok := portal.Refused(err); ok {
			// The outlet node refused it before any byte reached the target.
			n.metrics.denied.WithLabelValues("inlet", rej.Code).Inc()
			retry := n.channels.refused(in.via, oc, in.to, rej.Code)
			if retry && rp != nil && rp.replayable() && attempt+1 < maxPortalAttempts && ctx.Err() == nil {
				plog.Info("portal refused by a replica; trying another", "code", rej.Code, "reason", rej.Message)
				continue
			}
			if rej.Code == control.PortalDenied {
				plog.Warn("portal denied", "err", rej)
			} else {
				plog.Warn("portal failed", "err", rej)
			}
			rp.finish()
			return
		}
		rp.finish()
		plog.Debug("portal closed", "bytes_out", up, "bytes_in", down, "duration", time.Since(start).Round(time.Millisecond), "err", err)
		return
	}
}

// openPortal opens a stream to in's outlet on a channel to in's relay,
// once the outlet node passes the inlet's policy, with the client's first
// bytes if they are there already. A channel that ended just now is
// opened again, once.
func (n *Node) openPortal(ctx context.Context, in *inlet, early *earlyBytes) (*outChannel, *mux.Stream, error) {
	for attempt := 0; ; attempt++ {
		oc, err := n.channels.get(ctx, in.via, in.to)
		if err != nil {
			return nil, nil, err
		}
		n.mu.Lock()
		allow := in.effectiveAllow(n.cfg)
		n.mu.Unlock()
		if rej := portal.Check(allow, fmt.Sprintf("tcp-inlet %s", in.from), oc.ch.Peer()); rej != nil {
			return nil, nil, rej
		}
		first, err := early.get()
		if err != nil {
			return nil, nil, err
		}
		st, err := oc.ch.Open(ctx, in.to, first)
		if err == nil {
			return oc, st, nil
		}
		if attempt > 0 || ctx.Err() != nil {
			return nil, nil, err
		}
		n.channels.forget(in.via, oc)
	}
}

// maxEarly bounds the client bytes a portal's open carries.
const maxEarly = 16 << 10

var earlyPool = sync.Pool{New: func() any { b := make([]byte, maxEarly); return &b }}

// earlyBytes is what the client sent before its portal opened, read once
// (without waiting) just before the first open and sent with every open
// of the portal: a retry on another replica sends them again, ahead of
// what the replay connection kept after them.
type earlyBytes struct {
	c    net.Conn
	read bool
	b    []byte
}

func (e *earlyBytes) get() ([]byte, error) {
	if e.read {
		return e.b, nil
	}
	e.read = true
	tc, ok := e.c.(*net.TCPConn)
	if !ok {
		return nil, nil
	}
	bp := earlyPool.Get().(*[]byte)
	defer earlyPool.Put(bp)
	k, err := readyBytes(tc, *bp)
	if k > 0 {
		e.b = append([]byte(nil), (*bp)[:k]...)
	}
	return e.b, err
}

// maxReplay bounds the client bytes kept for a portal's retry: a client
// that sent more before the outlet node answered is not retried.
const maxReplay = 64 << 10

// replayConn is an inlet's client connection while its portal waits for
// the outlet node's answer: what the client sends is kept (up to
// maxReplay), and pipe.Pipe's close or reset only interrupts the read,
// so a portal a replica refused can go to another with the same bytes.
// Once the outlet node accepts, it is the client connection as it is.
//
// It embeds the *net.TCPConn itself (not a net.Conn): writes to the
// client keep the socket's vectored writes (net.Buffers finds them on
// the embedded connection), and only the reading methods are its own.
type replayConn struct {
	*net.TCPConn
	active atomic.Bool // keeping or replaying: Read takes the slow path

	mu          sync.Mutex // guards the fields below
	keep        bool       // before the answer: record what is read
	buf         []byte     // what was read while keeping
	eof         bool       // the client's end was read while keeping
	overflow    bool       // more than maxReplay was read: no retry
	interrupted bool       // the pipe closed or reset it while keeping
	reset       bool       // and it asked for a reset
	replay      []byte     // read these first (a retry)
	replayEOF   bool       // then the client's end
}

func newReplayConn(c *net.TCPConn) *replayConn {
	rc := &replayConn{TCPConn: c, keep: true}
	rc.active.Store(true)
	return rc
}

// again returns a fresh wrapper of the same client that first replays
// what this one kept.
func (rc *replayConn) again() *replayConn {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.TCPConn.SetReadDeadline(time.Time{})
	next := &replayConn{TCPConn: rc.TCPConn, keep: true, replay: rc.buf, replayEOF: rc.eof}
	next.active.Store(true)
	return next
}

// replayable reports whether a retry can give the next replica what the
// client sent.
func (rc *replayConn) replayable() bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.keep && !rc.overflow
}

// accepted ends the keeping: the outlet node took the portal.
func (rc *replayConn) accepted() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.keep, rc.buf = false, nil
	rc.active.Store(len(rc.replay) > 0 || rc.replayEOF)
}

// WriteTo copies the client to w through Read (never around it).
func (rc *replayConn) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, struct{ io.Reader }{rc})
}

func (rc *replayConn) Read(p []byte) (int, error) {
	if !rc.active.Load() {
		return rc.TCPConn.Read(p)
	}
	rc.mu.Lock()
	if len(rc.replay) > 0 {
		n := copy(p, rc.replay)
		rc.replay = rc.replay[n:]
		rc.recordLocked(p[:n], nil)
		rc.active.Store(rc.keep || len(rc.replay) > 0 || rc.replayEOF)
		rc.mu.Unlock()
		return n, nil
	}
	if rc.replayEOF {
		rc.replayEOF = false
		rc.recordLocked(nil, io.EOF)
		rc.active.Store(rc.keep)
		rc.mu.Unlock()
		return 0, io.EOF
	}
	rc.mu.Unlock()
	n, err := rc.TCPConn.Read(p)
	rc.mu.Lock()
	rc.recordLocked(p[:n], err)
	rc.mu.Unlock()
	return n, err
}

// recordLocked keeps what a read returned while keeping.
func (rc *replayConn) recordLocked(b []byte, err error) {
	if !rc.keep || rc.overflow {
		return
	}
	if len(rc.buf)+len(b) > maxReplay {
		rc.overflow, rc.buf = true, nil
		return
	}
	rc.buf = append(rc.buf, b...)
	if errors.Is(err, io.EOF) {
		rc.eof = true
	}
}

// Close, while keeping, only interrupts a read in progress.
func (rc *replayConn) Close() error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.keep {
		rc.interrupted = true
		return rc.TCPConn.SetReadDeadline(time.Now())
	}
	return rc.TCPConn.Close()
}

// SetLinger is how pipe resets a connection: while keeping, it is
// remembered for finish.
func (rc *replayConn) SetLinger(sec int) error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.keep {
		rc.reset = rc.reset || sec == 0
		return nil
	}
	return rc.TCPConn.SetLinger(sec)
}

// finish does what the pipe asked while keeping (the portal will not be
// retried): close the client, with a reset if it was one. A nil
// replayConn (no replicas) has nothing to do.
func (rc *replayConn) finish() {
	if rc == nil {
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !rc.interrupted {
		return
	}
	if rc.reset {
		rc.TCPConn.SetLinger(0)
	}
	rc.TCPConn.Close()
}

// AddInlet implements localapi.Backend: the inlet, then its warnings
// (checked with the hub, outside the lock).
func (n *Node) AddInlet(ctx context.Context, li localapi.Inlet) (localapi.Inlet, error) {
	res, allow, err := n.addInlet(li)
	if err != nil {
		return res, err
	}
	res.Warnings = n.portalWarnings(ctx, res.Via, "", allow)
	for _, w := range res.Warnings {
		n.log.Warn("inlet may not work", "inlet", res.Listening, "reason", w)
	}
	return res, nil
}

func (n *Node) addInlet(li localapi.Inlet) (localapi.Inlet, policy.Expr, error) {
	in := config.Inlet{From: li.From, Via: li.Via, To: li.To, Allow: li.Allow}
	if err := config.ValidateInlet(&in); err != nil {
		return localapi.Inlet{}, nil, err
	}
	il := &inlet{from: in.From, via: in.Via, to: in.To, allow: in.Allow, expr: in.AllowExpr, origin: OriginCLI}
	n.portalsMu.Lock()
	defer n.portalsMu.Unlock()
	if err := n.startInlet(n.runCtx, il); err != nil {
		return localapi.Inlet{}, nil, err
	}
	if err := n.savePortals(); err != nil {
		n.mu.Lock()
		delete(n.inlets, il.from)
		n.mu.Unlock()
		il.ln.Close()
		return localapi.Inlet{}, nil, fmt.Errorf("save inlet: %w", err)
	}
	return localapi.Inlet{From: il.from, Via: il.via, To: il.to, Allow: il.effectiveAllowText(n.cfg), Origin: il.origin, Listening: il.ln.Addr().String()}, il.effectiveAllow(n.cfg), nil
}

// RemoveInlet implements localapi.Backend.
func (n *Node) RemoveInlet(ctx context.Context, from string) error {
	n.portalsMu.Lock()
	defer n.portalsMu.Unlock()
	n.mu.Lock()
	in := n.inlets[from]
	if in == nil {
		n.mu.Unlock()
		return fmt.Errorf("no inlet listens on %q", from)
	}
	if in.origin != OriginCLI {
		n.mu.Unlock()
		return fmt.Errorf("inlet %q comes from the %s, not the CLI; remove it there", from, originPlace(in.origin))
	}
	delete(n.inlets, from)
	n.mu.Unlock()
	if err := n.savePortals(); err != nil {
		n.mu.Lock()
		n.inlets[from] = in
		n.mu.Unlock()
		return fmt.Errorf("save inlets: %w", err)
	}
	in.ln.Close()
	n.log.Info("inlet removed", "from", from)
	return nil
}
