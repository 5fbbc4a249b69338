// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/portal"
	"github.com/edgeportal/connect/wire/control"
)

// The outlet side of channels: the channels peers open to this node,
// who may have one, and the portals open through this node's outlets
// (bounded per peer, listed for a drain).

// outletPortal is one portal open through this node's outlets.
type outletPortal struct {
	outlet, peer string
	since        time.Time
}

// holdPortal counts a portal of peer to outlet through this node's
// outlets; it fails when the peer has MaxPortalsPerPeer open (over all
// its channels).
func (cs *channels) holdPortal(peer, outlet string) (release func(), ok bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.portals[peer] >= MaxPortalsPerPeer {
		return nil, false
	}
	cs.portals[peer]++
	p := &outletPortal{outlet: outlet, peer: peer, since: time.Now()}
	cs.open[p] = struct{}{}
	return func() {
		cs.mu.Lock()
		if cs.portals[peer]--; cs.portals[peer] <= 0 {
			delete(cs.portals, peer)
		}
		delete(cs.open, p)
		cs.mu.Unlock()
	}, true
}

// openPortals lists the portals open through this node's outlets, oldest
// first.
func (cs *channels) openPortals() []localapi.DrainPortal {
	cs.mu.Lock()
	out := make([]localapi.DrainPortal, 0, len(cs.open))
	for p := range cs.open {
		out = append(out, localapi.DrainPortal{Outlet: p.outlet, Peer: p.peer, Since: p.since.UTC()})
	}
	cs.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

// closeAccepted ends the channels peers opened to this node (a drain's
// end), and every portal in them.
func (cs *channels) closeAccepted() int {
	cs.mu.Lock()
	var chs []*portal.Channel
	for ch := range cs.accepted {
		chs = append(chs, ch)
	}
	cs.mu.Unlock()
	for _, ch := range chs {
		ch.Close()
	}
	return len(chs)
}

// accept answers a session the relay announced: the outlet side of a
// channel.
func (cs *channels) accept(ctx context.Context, addr string, inc control.Incoming) {
	n := cs.n
	start := time.Now()
	log := portal.LogAttrs(n.log, inc.Token).With("from", inc.From)
	data, err := n.dialData(ctx, addr, inc.Token)
	if err != nil {
		log.Warn("incoming channel failed", "err", err)
		return
	}
	ch, err := portal.Answer(ctx, data, portal.AnswerOptions{Self: &n.self, Token: inc.Token, Admit: n.admitPeer,
		Relay: n.relayName(), Logger: log.With("component", "mux"), MaxStreams: MaxPortalsPerPeer})
	if err != nil {
		var rej *portal.Rejection
		if errors.As(err, &rej) {
			n.metrics.denied.WithLabelValues("outlet", rej.Code).Inc()
		}
		log.Warn("incoming channel refused", "err", err)
		return
	}
	n.metrics.channels.WithLabelValues("accepted", ch.Suite()).Inc()
	log.Info("channel open", "peer", ch.Peer().ID, "suite", ch.Suite(), "setup", time.Since(start).Round(time.Microsecond))
	cs.mu.Lock()
	cs.accepted[ch] = struct{}{}
	cs.mu.Unlock()
	// The channel is served from a fresh goroutine: this one's stack grew
	// in the (hybrid) handshake, and an idle channel should not keep it.
	n.goTracked(func() {
		defer func() {
			cs.mu.Lock()
			delete(cs.accepted, ch)
			cs.mu.Unlock()
		}()
		cs.serve(ctx, ch, n.serveStream, log)
	})
}

// serve accepts the peer's streams until the channel ends, handing each
// portal to serveStream (nil: this side serves no portals on it).
func (cs *channels) serve(ctx context.Context, ch *portal.Channel, serveStream func(context.Context, *portal.Channel, *portal.Request), log *slog.Logger) {
	defer ch.Close()
	// A refreshed peer credential must keep what the first one proved.
	recheck := func(c *enroll.Credential) error {
		if serveStream == nil {
			if c.Relay != ch.Relay() {
				return fmt.Errorf("node %s no longer owns relay %q", c.ID, ch.Relay())
			}
			return nil
		}
		if rej := cs.n.admitPeer(c); rej != nil {
			return rej
		}
		return nil
	}
	for {
		req, err := ch.Accept(ctx, recheck)
		if err != nil {
			log.Info("channel closed", "peer", ch.Peer().ID, "err", err)
			return
		}
		if serveStream == nil {
			req.Refuse(&portal.Rejection{Code: control.PortalUnknownOutlet, Message: "open portals to this node through a channel of your own"})
			continue
		}
		cs.n.goTracked(func() { serveStream(ctx, ch, req) })
	}
}

// admitPeer decides whether a peer may have a channel to this node at
// all: some outlet must admit it (each portal is checked again against
// its outlet's policy).
func (n *Node) admitPeer(c *enroll.Credential) *portal.Rejection {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.paused {
		return &portal.Rejection{Code: control.PortalPaused, Message: "the node is paused by the customer"}
	}
	if n.drain != nil {
		return &portal.Rejection{Code: control.PortalDraining, Message: drainingMessage}
	}
	for _, o := range n.outlets {
		if portal.Check(o.effectiveAllow(n.cfg), "", c) == nil {
			return nil
		}
	}
	return &portal.Rejection{Code: control.PortalDenied, Message: fmt.Sprintf("no outlet of this node admits node %s", c.ID)}
}
