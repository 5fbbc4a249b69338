// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/policy"
	"github.com/edgeportal/connect/portal"
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
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
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

// serveInlet carries one client connection through a portal.
func (n *Node) serveInlet(ctx context.Context, in *inlet, client net.Conn) {
	start := time.Now()
	log := n.log.With("inlet", in.from, "via", in.via, "outlet", in.to, "client", client.RemoteAddr().String())
	fail := func(msg string, err error) {
		log.Warn(msg, "err", err)
		if tc, ok := client.(*net.TCPConn); ok {
			tc.SetLinger(0) // reset, as a refused direct connection would look
		}
		client.Close()
	}
	h, err := n.currentHub(ctx, 3*time.Second)
	if err != nil {
		fail("portal not opened", err)
		return
	}
	// Connect the data connection while the hub answers (saves a round trip).
	type dialed struct {
		c   net.Conn
		err error
	}
	early := make(chan dialed, 1)
	go func() {
		c, err := n.connectData(ctx, h.Addr())
		early <- dialed{c, err}
	}()
	var resp control.OpenSessionResponse
	if err := callPolitely(ctx, h, control.TypeOpenSession, control.OpenSessionRequest{Relay: in.via}, &resp); err != nil {
		if d := <-early; d.c != nil {
			d.c.Close()
		}
		fail("portal not opened: hub refused the session", err)
		return
	}
	d := <-early
	if d.err != nil {
		fail("portal not opened", d.err)
		return
	}
	data, err := bindData(d.c, resp.Token)
	if err != nil {
		fail("portal not opened", err)
		return
	}
	log = portal.LogAttrs(log, resp.Token)
	n.mu.Lock()
	allow := in.effectiveAllow(n.cfg)
	n.mu.Unlock()
	nc, peer, err := portal.Open(ctx, data, resp.Token, &n.self, in.via, resp.Peer, in.to, allow)
	if err != nil {
		var rej *portal.Rejection
		reason := "error"
		if errors.As(err, &rej) {
			reason = rej.Code
		}
		n.metrics.denied.WithLabelValues("inlet", reason).Inc()
		if reason == control.PortalDenied {
			fail("portal denied", err)
		} else {
			fail("portal failed", err)
		}
		return
	}
	log = log.With("peer", peer.ID)
	n.metrics.setup.Observe(time.Since(start).Seconds())
	n.metrics.opened.WithLabelValues("inlet").Inc()
	n.metrics.open.WithLabelValues("inlet").Inc()
	defer n.metrics.open.WithLabelValues("inlet").Dec()
	log.Debug("portal open", "setup", time.Since(start))
	up, down, err := pipe.Pipe(ctx, client, nc)
	n.metrics.bytes.WithLabelValues("inlet", "out").Add(float64(up))
	n.metrics.bytes.WithLabelValues("inlet", "in").Add(float64(down))
	log.Debug("portal closed", "bytes_out", up, "bytes_in", down, "duration", time.Since(start).Round(time.Millisecond), "err", err)
}

// AddInlet implements localapi.Backend.
func (n *Node) AddInlet(ctx context.Context, li localapi.Inlet) (localapi.Inlet, error) {
	in := config.Inlet{From: li.From, Via: li.Via, To: li.To, Allow: li.Allow}
	if err := config.ValidateInlet(&in); err != nil {
		return localapi.Inlet{}, err
	}
	il := &inlet{from: in.From, via: in.Via, to: in.To, allow: in.Allow, expr: in.AllowExpr, origin: OriginCLI}
	n.portalsMu.Lock()
	defer n.portalsMu.Unlock()
	if err := n.startInlet(n.runCtx, il); err != nil {
		return localapi.Inlet{}, err
	}
	if err := n.savePortals(); err != nil {
		n.mu.Lock()
		delete(n.inlets, il.from)
		n.mu.Unlock()
		il.ln.Close()
		return localapi.Inlet{}, fmt.Errorf("save inlet: %w", err)
	}
	return localapi.Inlet{From: il.from, Via: il.via, To: il.to, Allow: il.effectiveAllowText(n.cfg), Origin: il.origin, Listening: il.ln.Addr().String()}, nil
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
