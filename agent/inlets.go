// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
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

// serveInlet carries one client connection through a portal: a stream
// of the channel to the relay's owner (opened first if none is up).
func (n *Node) serveInlet(ctx context.Context, in *inlet, client net.Conn) {
	start := time.Now()
	log := n.log.With("inlet", in.from, "via", in.via, "outlet", in.to, "client", client.RemoteAddr().String())
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
	var st *mux.Stream
	var ch *portal.Channel
	// A channel that ended just now is opened again, once.
	for attempt := 0; ; attempt++ {
		var err error
		ch, err = n.channels.get(ctx, in.via)
		if err != nil {
			fail("portal not opened", err)
			return
		}
		n.mu.Lock()
		allow := in.effectiveAllow(n.cfg)
		n.mu.Unlock()
		if rej := portal.Check(allow, fmt.Sprintf("tcp-inlet %s", in.from), ch.Peer()); rej != nil {
			fail("portal denied", rej)
			return
		}
		st, err = ch.Open(ctx, in.to)
		if err == nil {
			break
		}
		if attempt > 0 || ctx.Err() != nil {
			fail("portal not opened", err)
			return
		}
		n.channels.forget(in.via, ch)
	}
	log = log.With("peer", ch.Peer().ID)
	// The bytes flow at once; the portal counts as open once the outlet
	// node accepts it (a refusal counts as a denial instead).
	const pending, accepted, over = 0, 1, 2
	var state atomic.Int32
	st.OnAccept(func() {
		if state.CompareAndSwap(pending, accepted) {
			n.metrics.setup.Observe(time.Since(start).Seconds())
			n.metrics.opened.WithLabelValues("inlet").Inc()
			n.metrics.open.WithLabelValues("inlet").Inc()
		}
	})
	defer func() {
		if !state.CompareAndSwap(pending, over) {
			n.metrics.open.WithLabelValues("inlet").Dec()
		}
	}()
	log.Debug("portal opening", "channel_wait", time.Since(start))
	up, down, err := pipe.Pipe(ctx, client, st)
	n.metrics.bytes.WithLabelValues("inlet", "out").Add(float64(up))
	n.metrics.bytes.WithLabelValues("inlet", "in").Add(float64(down))
	if rej, ok := portal.Refused(err); ok {
		// The outlet node refused it before any byte reached the target.
		n.metrics.denied.WithLabelValues("inlet", rej.Code).Inc()
		if rej.Code == control.PortalDenied {
			log.Warn("portal denied", "err", rej)
		} else {
			log.Warn("portal failed", "err", rej)
		}
		return
	}
	log.Debug("portal closed", "bytes_out", up, "bytes_in", down, "duration", time.Since(start).Round(time.Millisecond), "err", err)
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
