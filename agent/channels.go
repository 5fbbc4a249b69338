// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/internal/ratelimit"
	"github.com/edgeportal/connect/portal"
	"github.com/edgeportal/connect/wire/control"
)

// The node's channels: one end-to-end channel per peer node, carrying
// every portal between them as a stream. An inlet asks the relay for a
// session only when no channel to the relay's owner is up; an outlet
// accepts the channels that peers open (one per announced session).

// Channel limits.
const (
	// ChannelIdle closes a channel that carried no stream for this long.
	ChannelIdle = 5 * time.Minute
	// channelCheck is how often idle channels and expired peer
	// credentials are looked for.
	channelCheck = 15 * time.Second
	// MaxPortalsPerPeer bounds the portals one peer node may have open
	// through this node's outlets at once (more are refused): a
	// connection pool of a thousand fits, with room.
	MaxPortalsPerPeer = 2048
)

// peerPortalRate bounds how fast one peer node may open portals to this
// node's outlets, and how fast its denied attempts are recorded.
var peerPortalRate = map[int]ratelimit.Rule{
	ratePortals: {Every: 500, Per: time.Second, Burst: 2000},
	rateDenials: {Every: 20, Per: time.Second, Burst: 50},
}

// Rate kinds, per peer node.
const (
	ratePortals = iota // portals opened
	rateDenials        // denials logged one by one
)

// channels are this node's channels.
type channels struct {
	n     *Node
	rates *ratelimit.Limiter

	mu       sync.Mutex                   // guards the maps below
	byRelay  map[string]*portal.Channel   // channels this node opened, by the relay asked for
	dialing  map[string]*dialing          // channels being opened, by relay
	accepted map[*portal.Channel]struct{} // channels peers opened to this node
	portals  map[string]int               // portals open through this node's outlets, by peer node
}

// dialing is a channel being opened; others wanting it wait on done.
type dialing struct {
	done chan struct{}
	ch   *portal.Channel
	err  error
}

func newChannels(n *Node) *channels {
	return &channels{n: n, rates: ratelimit.New(peerPortalRate, nil),
		byRelay: map[string]*portal.Channel{}, dialing: map[string]*dialing{},
		accepted: map[*portal.Channel]struct{}{}, portals: map[string]int{}}
}

// get returns the channel to relay's owner, opening it if none is up.
// Concurrent first portals to a relay share one opening.
func (cs *channels) get(ctx context.Context, relay string) (*portal.Channel, error) {
	cs.mu.Lock()
	if ch := cs.byRelay[relay]; ch != nil {
		select {
		case <-ch.Done():
			delete(cs.byRelay, relay)
		default:
			cs.mu.Unlock()
			return ch, nil
		}
	}
	if d := cs.dialing[relay]; d != nil {
		cs.mu.Unlock()
		select {
		case <-d.done:
			return d.ch, d.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	d := &dialing{done: make(chan struct{})}
	cs.dialing[relay] = d
	cs.mu.Unlock()
	// The opening outlives the portal that started it: others may wait on it.
	d.ch, d.err = cs.dial(cs.n.runCtx, relay)
	cs.mu.Lock()
	delete(cs.dialing, relay)
	if d.err == nil {
		cs.byRelay[relay] = d.ch
	}
	cs.mu.Unlock()
	close(d.done)
	if d.err == nil && cs.n.runCtx.Err() != nil {
		// The node stopped while it opened: closeAll may have missed it.
		d.ch.Close()
	}
	return d.ch, d.err
}

// forget drops ch as the channel to relay (it ended under a portal).
func (cs *channels) forget(relay string, ch *portal.Channel) {
	cs.mu.Lock()
	if cs.byRelay[relay] == ch {
		delete(cs.byRelay, relay)
	}
	cs.mu.Unlock()
	ch.Close()
}

// holdPortal counts a portal of peer through this node's outlets; it
// fails when the peer has MaxPortalsPerPeer open (over all its channels).
func (cs *channels) holdPortal(peer string) (release func(), ok bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.portals[peer] >= MaxPortalsPerPeer {
		return nil, false
	}
	cs.portals[peer]++
	return func() {
		cs.mu.Lock()
		if cs.portals[peer]--; cs.portals[peer] <= 0 {
			delete(cs.portals, peer)
		}
		cs.mu.Unlock()
	}, true
}

// dial opens a channel to relay's owner: a session from the relay, a
// data connection, the handshake.
func (cs *channels) dial(ctx context.Context, relay string) (*portal.Channel, error) {
	n := cs.n
	start := time.Now()
	h, err := n.currentHub(ctx, 3*time.Second)
	if err != nil {
		return nil, err
	}
	// Connect the data connection while the relay answers.
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
	if err := callPolitely(ctx, h, control.TypeOpenSession, control.OpenSessionRequest{Relay: relay}, &resp); err != nil {
		if d := <-early; d.c != nil {
			d.c.Close()
		}
		return nil, fmt.Errorf("the relay refused a session: %w", err)
	}
	d := <-early
	if d.err != nil {
		return nil, d.err
	}
	data, err := bindData(d.c, resp.Token)
	if err != nil {
		return nil, err
	}
	log := portal.LogAttrs(n.log, resp.Token).With("relay", relay)
	ch, err := portal.Dial(ctx, data, portal.DialOptions{Self: &n.self, Token: resp.Token, Relay: relay, PeerID: resp.Peer,
		Logger: log.With("component", "mux")})
	if err != nil {
		return nil, err
	}
	n.metrics.channelSetup.Observe(time.Since(start).Seconds())
	n.metrics.channels.WithLabelValues("dialed", ch.Suite()).Inc()
	log.Info("channel open", "peer", ch.Peer().ID, "suite", ch.Suite(), "setup", time.Since(start).Round(time.Microsecond))
	// Serve what the peer sends on it (refreshed credentials); a portal
	// toward this node goes through the peer's own channel.
	n.goTracked(func() {
		cs.serve(n.runCtx, ch, nil, log)
		cs.forget(relay, ch)
	})
	return ch, nil
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
	defer func() {
		cs.mu.Lock()
		delete(cs.accepted, ch)
		cs.mu.Unlock()
	}()
	cs.serve(ctx, ch, n.serveStream, log)
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

// janitor closes idle channels and those whose peer's credential expired
// without a refresh, until ctx ends.
func (cs *channels) janitor(ctx context.Context) {
	t := time.NewTicker(channelCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		for _, ch := range cs.all() {
			last, open := ch.Activity()
			switch {
			case ch.PeerExpired(now):
				cs.n.log.Info("closing a channel: the peer's credential expired without a refresh", "peer", ch.Peer().ID)
				ch.Close()
			case open == 0 && now.Sub(last) > ChannelIdle:
				cs.n.log.Debug("closing an idle channel", "peer", ch.Peer().ID, "idle", now.Sub(last).Round(time.Second))
				ch.Close()
			}
		}
	}
}

// all returns every live channel.
func (cs *channels) all() []*portal.Channel {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	out := make([]*portal.Channel, 0, len(cs.byRelay)+len(cs.accepted))
	for _, ch := range cs.byRelay {
		out = append(out, ch)
	}
	for ch := range cs.accepted {
		out = append(out, ch)
	}
	return out
}

// closeAll ends every channel (at shutdown).
func (cs *channels) closeAll() {
	for _, ch := range cs.all() {
		ch.Close()
	}
}

// credentialRefreshed hands every peer this node's new credential.
func (cs *channels) credentialRefreshed(ctx context.Context) {
	for _, ch := range cs.all() {
		if err := ch.SendCredential(ctx); err != nil {
			cs.n.log.Warn("the peer refused this node's refreshed credential; closing the channel", "peer", ch.Peer().ID, "err", err)
			ch.Close()
		}
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
	for _, o := range n.outlets {
		if portal.Check(o.effectiveAllow(n.cfg), "", c) == nil {
			return nil
		}
	}
	return &portal.Rejection{Code: control.PortalDenied, Message: fmt.Sprintf("no outlet of this node admits node %s", c.ID)}
}

// status describes the channels for `status`, oldest first.
func (cs *channels) status() []localapi.Channel {
	out := []localapi.Channel{}
	cs.mu.Lock()
	for relay, ch := range cs.byRelay {
		out = append(out, channelStatus(ch, "out", relay))
	}
	for ch := range cs.accepted {
		out = append(out, channelStatus(ch, "in", ch.Relay()))
	}
	cs.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

func channelStatus(ch *portal.Channel, dir, relay string) localapi.Channel {
	_, open := ch.Activity()
	c := localapi.Channel{Peer: ch.Peer().ID, Relay: relay, Direction: dir, Suite: ch.Suite(), Streams: open, Since: ch.Since().UTC()}
	if rtt := ch.RTT(); rtt > 0 {
		c.RTT = rtt.Round(time.Microsecond).String()
	}
	return c
}
