// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/edgeportal/connect/agent/command"
	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/internal/atomicfile"
	"github.com/edgeportal/connect/policy"
	"github.com/edgeportal/connect/portal"
	"github.com/edgeportal/connect/portal/pipe"
	"github.com/edgeportal/connect/wire/control"
)

func (o *outlet) effectiveAllow(cfg *config.Config) policy.Expr {
	if o.origin == OriginVendor {
		return o.effective // the vendor's allow can only narrow the customer's
	}
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

// savePortals persists the CLI-made outlets and inlets. The caller holds
// n.portalsMu (not n.mu: the write syncs to disk).
func (n *Node) savePortals() error {
	n.mu.Lock()
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
	n.mu.Unlock()
	return atomicfile.WriteJSON(filepath.Join(n.opts.StateDir, statedir.Portals), p)
}

// serveStream answers one portal a peer opened on a channel: the
// outlet's checks, then the target, then the bytes. Nothing reaches the
// target before every check has passed.
func (n *Node) serveStream(ctx context.Context, ch *portal.Channel, req *portal.Request) {
	start := time.Now()
	peer := req.Peer
	log := newPortalLog(n.log, "peer", peer.ID, "relay", ch.Relay())
	entry := command.Entry{Kind: "portal", Peer: peer.ID, Outlet: req.Outlet}
	// deny refuses the stream; a peer past its denial rate is still
	// refused, but counted in the audit log's coalesced record only.
	deny := func(code, reason string) {
		n.metrics.denied.WithLabelValues("outlet", code).Inc()
		req.Refuse(&portal.Rejection{Code: code, Message: reason})
		if ok, _ := n.channels.rates.Allow(peer.ID, rateDenials); ok {
			log.Warn("portal denied", "outlet", command.Escape(req.Outlet), "reason", reason)
		}
		entry.Decision, entry.Reason = "denied", reason
		n.audit.Append(entry)
	}
	if err := config.ValidName(req.Outlet); err != nil {
		// A peer-chosen name no outlet can have: refused before it reaches
		// a log line or the audit log as anything but escaped.
		deny(control.PortalUnknownOutlet, "not an outlet name")
		return
	}
	log = log.with("outlet", req.Outlet)
	if ok, _ := n.channels.rates.Allow(peer.ID, ratePortals); !ok {
		deny(control.PortalSlowDown, fmt.Sprintf("node %s opens portals faster than this node allows", peer.ID))
		return
	}
	release, ok := n.channels.holdPortal(peer.ID, req.Outlet)
	if !ok {
		deny(control.PortalSlowDown, fmt.Sprintf("node %s has %d portals open to this node, the most it may", peer.ID, MaxPortalsPerPeer))
		return
	}
	defer release()
	n.mu.Lock()
	o := n.outlets[req.Outlet]
	var allow policy.Expr
	if o != nil {
		allow = o.effectiveAllow(n.cfg)
	}
	paused, draining := n.paused, n.drain != nil
	n.mu.Unlock()
	if paused {
		deny(control.PortalPaused, "the node is paused by the customer")
		return
	}
	if draining {
		deny(control.PortalDraining, drainingMessage)
		return
	}
	if o == nil {
		deny(control.PortalUnknownOutlet, fmt.Sprintf("no outlet named %q on this node", req.Outlet))
		return
	}
	if rej := portal.Check(allow, fmt.Sprintf("tcp-outlet %q", o.name), peer); rej != nil {
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
	st, err := req.Accept()
	if err != nil {
		target.Close()
		log.Warn("portal failed", "err", err)
		return
	}
	log.Debug("portal open", "to", o.to, "setup", time.Since(start))
	n.metrics.opened.WithLabelValues("outlet").Inc()
	n.metrics.open.WithLabelValues("outlet").Inc()
	defer n.metrics.open.WithLabelValues("outlet").Dec()
	in, out, err := pipe.Pipe(ctx, st, target)
	n.metrics.bytes.WithLabelValues("outlet", "in").Add(float64(in))
	n.metrics.bytes.WithLabelValues("outlet", "out").Add(float64(out))
	d2 := time.Since(start)
	log.Debug("portal closed", "bytes_in", in, "bytes_out", out, "duration", d2.Round(time.Millisecond), "err", err)
	entry.Decision, entry.BytesIn, entry.BytesOut, entry.DurationMS = "allowed", in, out, d2.Milliseconds()
	n.audit.Append(entry)
}

// AddOutlet implements localapi.Backend: the outlet, then its warnings
// (a DNS lookup and a question to the hub, outside the lock).
func (n *Node) AddOutlet(ctx context.Context, lo localapi.Outlet) (localapi.Outlet, error) {
	res, allow, err := n.addOutlet(lo)
	if err != nil {
		return res, err
	}
	res.Warnings = n.portalWarnings(ctx, "", res.To, allow)
	for _, w := range res.Warnings {
		n.log.Warn("outlet may not work", "outlet", res.Name, "reason", w)
	}
	return res, nil
}

func (n *Node) addOutlet(lo localapi.Outlet) (localapi.Outlet, policy.Expr, error) {
	o := config.Outlet{From: lo.Name, To: lo.To, Allow: lo.Allow}
	if err := config.ValidateOutlet(&o); err != nil {
		return localapi.Outlet{}, nil, err
	}
	n.portalsMu.Lock()
	defer n.portalsMu.Unlock()
	n.mu.Lock()
	if cur, dup := n.outlets[o.From]; dup {
		n.mu.Unlock()
		return localapi.Outlet{}, nil, fmt.Errorf("outlet %q already exists (origin %s)", o.From, cur.origin)
	}
	added := &outlet{name: o.From, to: o.To, allow: o.Allow, expr: o.AllowExpr, origin: OriginCLI}
	n.outlets[o.From] = added
	n.mu.Unlock()
	if err := n.savePortals(); err != nil {
		n.mu.Lock()
		delete(n.outlets, o.From)
		n.mu.Unlock()
		return localapi.Outlet{}, nil, fmt.Errorf("save outlet: %w", err)
	}
	n.log.Info("outlet ready", "outlet", o.From, "to", o.To, "allow", added.effectiveAllowText(n.cfg), "origin", OriginCLI)
	return localapi.Outlet{Name: o.From, To: o.To, Allow: added.effectiveAllowText(n.cfg), Origin: OriginCLI}, added.effectiveAllow(n.cfg), nil
}

// RemoveOutlet implements localapi.Backend.
func (n *Node) RemoveOutlet(ctx context.Context, name string) error {
	n.portalsMu.Lock()
	defer n.portalsMu.Unlock()
	n.mu.Lock()
	o := n.outlets[name]
	if o == nil {
		n.mu.Unlock()
		return fmt.Errorf("no outlet named %q", name)
	}
	if o.origin != OriginCLI {
		n.mu.Unlock()
		return fmt.Errorf("outlet %q comes from the %s, not the CLI; remove it there", name, originPlace(o.origin))
	}
	delete(n.outlets, name)
	n.mu.Unlock()
	if err := n.savePortals(); err != nil {
		n.mu.Lock()
		n.outlets[name] = o
		n.mu.Unlock()
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
