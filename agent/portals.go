// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/edgeportal/connect/agent/command"
	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/policy"
	"github.com/edgeportal/connect/portal"
	"github.com/edgeportal/connect/portal/pipe"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
)

func (o *outlet) effectiveAllow(cfg *config.Config) policy.Expr {
	if o.expr != nil {
		return o.expr
	}
	return cfg.DefaultAllow(policy.TCPOutlet)
}

func (o *outlet) effectiveAllowText(cfg *config.Config) string {
	if e := o.effectiveAllow(cfg); e != nil {
		return e.String()
	}
	return ""
}

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

// loadPortals installs the config's outlets and inlets, then the ones
// saved from the CLI.
func (n *Node) loadPortals(ctx context.Context) error {
	for _, o := range n.cfg.Outlets {
		n.outlets[o.From] = &outlet{name: o.From, to: o.To, allow: o.Allow, expr: o.AllowExpr, origin: OriginConfig}
	}
	for _, in := range n.cfg.Inlets {
		if err := n.startInlet(ctx, &inlet{from: in.From, via: in.Via, to: in.To, allow: in.Allow, expr: in.AllowExpr, origin: OriginConfig}); err != nil {
			return err
		}
	}
	saved, err := loadPortals(n.opts.StateDir)
	if err != nil {
		return err
	}
	for _, so := range saved.Outlets {
		o := config.Outlet{From: so.Name, To: so.To, Allow: so.Allow}
		if err := config.ValidateOutlet(&o); err != nil {
			n.log.Error("skipping saved outlet", "outlet", so.Name, "err", err)
			continue
		}
		if _, dup := n.outlets[o.From]; dup {
			n.log.Warn("saved outlet shadowed by the config file", "outlet", o.From)
			continue
		}
		n.outlets[o.From] = &outlet{name: o.From, to: o.To, allow: o.Allow, expr: o.AllowExpr, origin: OriginCLI}
	}
	for _, si := range saved.Inlets {
		in := config.Inlet{From: si.From, Via: si.Via, To: si.To, Allow: si.Allow}
		if err := config.ValidateInlet(&in); err != nil {
			n.log.Error("skipping saved inlet", "inlet", si.From, "err", err)
			continue
		}
		if err := n.startInlet(ctx, &inlet{from: in.From, via: in.Via, to: in.To, allow: in.Allow, expr: in.AllowExpr, origin: OriginCLI}); err != nil {
			n.log.Error("saved inlet could not start", "inlet", si.From, "err", err)
		}
	}
	for _, o := range n.outlets {
		n.log.Info("outlet ready", "outlet", o.name, "to", o.to, "allow", o.effectiveAllowText(n.cfg), "origin", o.origin)
	}
	return nil
}

// savePortals persists the CLI-made outlets and inlets. Called with n.mu held.
func (n *Node) savePortalsLocked() error {
	var p savedPortals
	for _, o := range n.outlets {
		if o.origin == OriginCLI {
			p.Outlets = append(p.Outlets, savedOutlet{Name: o.name, To: o.to, Allow: o.allow})
		}
	}
	for _, in := range n.inlets {
		if in.origin == OriginCLI {
			p.Inlets = append(p.Inlets, savedInlet{From: in.from, Via: in.via, To: in.to, Allow: in.allow})
		}
	}
	return saveJSON(filepath.Join(n.opts.StateDir, PortalsFile), p)
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
	n.portalsWG.Add(1)
	go func() {
		defer n.portalsWG.Done()
		n.acceptInlet(ctx, in)
	}()
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
			time.Sleep(delay)
			continue
		}
		delay = 0
		n.portalsWG.Add(1)
		go func() {
			defer n.portalsWG.Done()
			n.serveInlet(ctx, in, c)
		}()
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
		c, err := n.connectData(ctx, h.addr)
		early <- dialed{c, err}
	}()
	var resp control.OpenSessionResponse
	if err := h.call(ctx, control.TypeOpenSession, control.OpenSessionRequest{Relay: in.via}, &resp); err != nil {
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

// serveIncoming answers a session the hub announced: the outlet side.
func (n *Node) serveIncoming(ctx context.Context, addr string, inc control.Incoming) {
	start := time.Now()
	log := portal.LogAttrs(n.log, inc.Token).With("from", inc.From)
	data, err := n.dialData(ctx, addr, inc.Token)
	if err != nil {
		log.Warn("incoming portal failed", "err", err)
		return
	}
	req, err := portal.Receive(ctx, data, inc.Token, &n.self)
	if err != nil {
		log.Warn("incoming portal refused", "err", err)
		return
	}
	log = log.With("peer", req.Peer.ID, "outlet", req.Outlet)
	n.mu.Lock()
	o := n.outlets[req.Outlet]
	var allow policy.Expr
	if o != nil {
		allow = o.effectiveAllow(n.cfg)
	}
	paused := n.paused
	n.mu.Unlock()
	entry := command.Entry{Kind: "portal", Peer: req.Peer.ID, Outlet: req.Outlet}
	deny := func(code, reason string) {
		n.metrics.denied.WithLabelValues("outlet", code).Inc()
		log.Warn("portal denied", "reason", reason)
		portal.Reject(req.Conn, code, reason)
		entry.Decision, entry.Reason = "denied", reason
		n.audit.Append(entry)
	}
	if paused {
		deny(control.PortalPaused, "the node is paused by the customer")
		return
	}
	if o == nil {
		deny(control.PortalUnknownOutlet, fmt.Sprintf("no outlet named %q on this node", req.Outlet))
		return
	}
	if rej := portal.Check(allow, fmt.Sprintf("tcp-outlet %q", o.name), req.Peer); rej != nil {
		deny(rej.Code, rej.Message)
		return
	}
	d := n.dialer
	d.Control = o.dialControl
	dialStart := time.Now()
	target, rej := portal.DialTarget(ctx, &d, o.to)
	n.metrics.dial.Observe(time.Since(dialStart).Seconds())
	if rej != nil {
		log.Warn("portal target unreachable", "to", o.to, "reason", rej.Message)
		deny(rej.Code, rej.Message)
		return
	}
	if err := portal.Accept(req.Conn); err != nil {
		target.Close()
		req.Conn.Close()
		log.Warn("portal failed", "err", err)
		return
	}
	log.Debug("portal open", "to", o.to, "setup", time.Since(start))
	n.metrics.opened.WithLabelValues("outlet").Inc()
	n.metrics.open.WithLabelValues("outlet").Inc()
	defer n.metrics.open.WithLabelValues("outlet").Dec()
	in, out, err := pipe.Pipe(ctx, req.Conn, target)
	n.metrics.bytes.WithLabelValues("outlet", "in").Add(float64(in))
	n.metrics.bytes.WithLabelValues("outlet", "out").Add(float64(out))
	d2 := time.Since(start)
	log.Debug("portal closed", "bytes_in", in, "bytes_out", out, "duration", d2.Round(time.Millisecond), "err", err)
	entry.Decision, entry.BytesIn, entry.BytesOut, entry.DurationMS = "allowed", in, out, d2.Milliseconds()
	n.audit.Append(entry)
}

// AddOutlet implements localapi.Backend.
func (n *Node) AddOutlet(ctx context.Context, lo localapi.Outlet) error {
	o := config.Outlet{From: lo.Name, To: lo.To, Allow: lo.Allow}
	if err := config.ValidateOutlet(&o); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if cur, dup := n.outlets[o.From]; dup {
		return fmt.Errorf("outlet %q already exists (origin %s)", o.From, cur.origin)
	}
	n.outlets[o.From] = &outlet{name: o.From, to: o.To, allow: o.Allow, expr: o.AllowExpr, origin: OriginCLI}
	if err := n.savePortalsLocked(); err != nil {
		delete(n.outlets, o.From)
		return fmt.Errorf("save outlet: %w", err)
	}
	n.log.Info("outlet ready", "outlet", o.From, "to", o.To, "allow", n.outlets[o.From].effectiveAllowText(n.cfg), "origin", OriginCLI)
	return nil
}

// RemoveOutlet implements localapi.Backend.
func (n *Node) RemoveOutlet(ctx context.Context, name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	o := n.outlets[name]
	if o == nil {
		return fmt.Errorf("no outlet named %q", name)
	}
	if o.origin != OriginCLI {
		return fmt.Errorf("outlet %q comes from the %s, not the CLI; remove it there", name, originPlace(o.origin))
	}
	delete(n.outlets, name)
	if err := n.savePortalsLocked(); err != nil {
		n.outlets[name] = o
		return fmt.Errorf("save outlets: %w", err)
	}
	n.log.Info("outlet removed", "outlet", name)
	return nil
}

func originPlace(origin string) string {
	switch origin {
	case OriginConfig:
		return "config file"
	case OriginVendor:
		return "vendor (use the vendor's outlet remove)"
	}
	return origin
}

// AddInlet implements localapi.Backend.
func (n *Node) AddInlet(ctx context.Context, li localapi.Inlet) (localapi.Inlet, error) {
	in := config.Inlet{From: li.From, Via: li.Via, To: li.To, Allow: li.Allow}
	if err := config.ValidateInlet(&in); err != nil {
		return localapi.Inlet{}, err
	}
	il := &inlet{from: in.From, via: in.Via, to: in.To, allow: in.Allow, expr: in.AllowExpr, origin: OriginCLI}
	if err := n.startInlet(n.runCtx, il); err != nil {
		return localapi.Inlet{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.savePortalsLocked(); err != nil {
		il.ln.Close()
		delete(n.inlets, il.from)
		return localapi.Inlet{}, fmt.Errorf("save inlet: %w", err)
	}
	return localapi.Inlet{From: il.from, Via: il.via, To: il.to, Allow: il.effectiveAllowText(n.cfg), Origin: il.origin, Listening: il.ln.Addr().String()}, nil
}

// RemoveInlet implements localapi.Backend.
func (n *Node) RemoveInlet(ctx context.Context, from string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	in := n.inlets[from]
	if in == nil {
		return fmt.Errorf("no inlet listens on %q", from)
	}
	if in.origin != OriginCLI {
		return fmt.Errorf("inlet %q comes from the %s, not the CLI; remove it there", from, originPlace(in.origin))
	}
	delete(n.inlets, from)
	if err := n.savePortalsLocked(); err != nil {
		n.inlets[from] = in
		return fmt.Errorf("save inlets: %w", err)
	}
	in.ln.Close()
	n.log.Info("inlet removed", "from", from)
	return nil
}
