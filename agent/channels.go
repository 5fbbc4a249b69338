// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/internal/ratelimit"
	"github.com/edgeportal/connect/portal"
	"github.com/edgeportal/connect/wire/control"
)

// The node's channels: one end-to-end channel per peer node, carrying
// every portal between them as a stream. An inlet asks the relay for a
// session only when no usable channel to the relay's owner is up; an
// outlet accepts the channels that peers open (one per announced
// session).
//
// A relay served by replicas (the relay said so: more than one owner
// could take the outlet) gets a channel per replica, up to
// MaxChannelsPerRelay: extra ones are opened in the background, each
// asking the relay to avoid the peers this node has channels to, and
// portals spread over them (fewest open streams, ties in turn). A
// channel whose peer refused a stream with draining takes no new portal;
// one whose peer refused an outlet (target refused or timed out,
// paused, no such outlet) takes none for that outlet for RefusalMemory.
// With no usable channel left, a portal opens a new one, hinting the
// outlet and avoiding those peers; if the relay has no other owner that
// can take it, it uses the best it has (the peer says why, as a direct
// connection would). A relay with one owner keeps exactly one channel,
// as before replicas.

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
	// MaxChannelsPerRelay bounds the channels this node keeps to one
	// relay's replicas.
	MaxChannelsPerRelay = 8
	// RefusalMemory is how long a peer that refused an outlet (target
	// refused or timed out, paused) gets no new portal to it from here.
	RefusalMemory = 30 * time.Second
	// spreadProbe is how often, while a replicated relay has fewer
	// channels here than it had healthy owners, this node asks the relay
	// for one more (a replica that came back).
	spreadProbe = 30 * time.Second
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

	mu       sync.Mutex                   // guards the maps below, every relayChannels and every outChannel's marks
	byRelay  map[string]*relayChannels    // channels this node opened, by the relay asked for
	accepted map[*portal.Channel]struct{} // channels peers opened to this node
	portals  map[string]int               // portals open through this node's outlets, by peer node
	open     map[*outletPortal]struct{}   // the same portals, one by one (drain shows them)
}

// relayChannels are the channels to one relay's owners.
type relayChannels struct {
	chans   []*outChannel
	dialing *dialing // a channel being opened, or nil
	// want is how many owners the relay last said could take a portal
	// (at most MaxChannelsPerRelay); peak the most it ever said (while
	// there are fewer channels than that, a probe now and then looks for
	// a replica that came back).
	want, peak int
	// replicated: the relay said more than one owner could take a
	// portal; then portals avoid refusing peers and spread.
	replicated bool
	turn       uint      // round robin among equally loaded channels
	probed     time.Time // last background opening for spread
}

// outChannel is a channel this node opened, with what its peer refused.
type outChannel struct {
	ch       *portal.Channel
	draining bool                 // the peer is draining: no new portals
	refused  map[string]time.Time // outlet → when the peer last refused it
}

// dialing is a channel being opened; others wanting it wait on done.
type dialing struct {
	done chan struct{}
	oc   *outChannel
	err  error
}

func newChannels(n *Node) *channels {
	return &channels{n: n, rates: ratelimit.New(peerPortalRate, nil),
		byRelay:  map[string]*relayChannels{},
		accepted: map[*portal.Channel]struct{}{}, portals: map[string]int{}, open: map[*outletPortal]struct{}{}}
}

// relayLocked returns relay's channels (made if none), without those
// that ended. Called with cs.mu held.
func (cs *channels) relayLocked(relay string) *relayChannels {
	rc := cs.byRelay[relay]
	if rc == nil {
		rc = &relayChannels{}
		cs.byRelay[relay] = rc
	}
	rc.chans = slices.DeleteFunc(rc.chans, func(oc *outChannel) bool {
		select {
		case <-oc.ch.Done():
			return true
		default:
			return false
		}
	})
	return rc
}

// usableLocked reports whether oc may take a new portal to outlet now.
func (oc *outChannel) usableLocked(outlet string, now time.Time) bool {
	if oc.draining {
		return false
	}
	t, ok := oc.refused[outlet]
	return !ok || now.Sub(t) >= RefusalMemory
}

// pickLocked returns the least loaded of chans, ties in turn.
func (rc *relayChannels) pickLocked(chans []*outChannel) *outChannel {
	var best []*outChannel
	least := -1
	for _, oc := range chans {
		_, open := oc.ch.Activity()
		switch {
		case least < 0 || open < least:
			best, least = []*outChannel{oc}, open
		case open == least:
			best = append(best, oc)
		}
	}
	rc.turn++
	return best[int(rc.turn%uint(len(best)))]
}

// peersLocked returns the identifiers of the peers of chans.
func peersLocked(chans []*outChannel) []string {
	out := make([]string, 0, len(chans))
	for _, oc := range chans {
		if id := oc.ch.Peer().ID; !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// get returns a channel for a portal to outlet behind relay, opening
// one if none is usable. Concurrent first portals to a relay share one
// opening.
func (cs *channels) get(ctx context.Context, relay, outlet string) (*outChannel, error) {
	cs.mu.Lock()
	rc := cs.relayLocked(relay)
	now := time.Now()
	var usable []*outChannel
	for _, oc := range rc.chans {
		if !rc.replicated || oc.usableLocked(outlet, now) {
			usable = append(usable, oc)
		}
	}
	if len(usable) > 0 {
		oc := rc.pickLocked(usable)
		cs.spreadLocked(relay, rc, outlet, now)
		cs.mu.Unlock()
		return oc, nil
	}
	if d := rc.dialing; d != nil {
		cs.mu.Unlock()
		select {
		case <-d.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if d.err == nil {
			return d.oc, nil
		}
		return cs.fallback(relay, outlet, d.err)
	}
	d := cs.startDialLocked(relay, rc, outlet, peersLocked(rc.chans))
	cs.mu.Unlock()
	<-d.done // the opening outlives the portal that started it: others may wait on it
	if d.err == nil {
		return d.oc, nil
	}
	return cs.fallback(relay, outlet, d.err)
}

// fallback is a portal's channel when opening a new one failed (dialErr):
// the least bad one this node has (a peer that refused the outlet lately,
// rather than one draining), or dialErr.
func (cs *channels) fallback(relay, outlet string, dialErr error) (*outChannel, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	rc := cs.relayLocked(relay)
	var notDraining []*outChannel
	for _, oc := range rc.chans {
		if !oc.draining {
			notDraining = append(notDraining, oc)
		}
	}
	if len(notDraining) == 0 {
		return nil, dialErr
	}
	return rc.pickLocked(notDraining), nil
}

// spreadLocked opens one more channel to relay in the background when
// its replicas could take more than this node has (or, now and then,
// when it had more healthy owners lately).
func (cs *channels) spreadLocked(relay string, rc *relayChannels, outlet string, now time.Time) {
	if !rc.replicated || rc.dialing != nil || len(rc.chans) >= MaxChannelsPerRelay {
		return
	}
	if len(rc.chans) >= rc.want && (len(rc.chans) >= rc.peak || now.Sub(rc.probed) < spreadProbe) {
		return
	}
	rc.probed = now
	cs.startDialLocked(relay, rc, outlet, peersLocked(rc.chans))
}

// startDialLocked starts opening a channel to relay (for outlet,
// avoiding peers) on a goroutine the node tracks; it records the result
// in rc when done. Called with cs.mu held.
func (cs *channels) startDialLocked(relay string, rc *relayChannels, outlet string, avoid []string) *dialing {
	d := &dialing{done: make(chan struct{})}
	rc.dialing = d
	cs.n.goTracked(func() {
		var resp control.OpenSessionResponse
		var ch *portal.Channel
		ch, resp, d.err = cs.dial(cs.n.runCtx, relay, outlet, avoid)
		cs.mu.Lock()
		rc := cs.relayLocked(relay)
		rc.dialing = nil
		switch {
		case d.err == nil:
			d.oc = &outChannel{ch: ch}
			rc.chans = append(rc.chans, d.oc)
			rc.want = min(max(resp.Healthy, 1), MaxChannelsPerRelay)
			rc.peak = max(rc.want, rc.peak)
			if resp.Healthy > 1 {
				rc.replicated = true
			}
		default:
			// No other owner can take it now (or it failed): stop
			// spreading until the relay says otherwise; a probe asks
			// again after spreadProbe.
			rc.want = min(rc.want, len(rc.chans))
		}
		cs.mu.Unlock()
		close(d.done)
		if d.err == nil && cs.n.runCtx.Err() != nil {
			// The node stopped while it opened: closeAll may have missed it.
			ch.Close()
		}
	})
	return d
}

// replicated reports whether relay said more than one of its owners
// could take a portal (so a refused portal may try another).
func (cs *channels) replicated(relay string) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	rc := cs.byRelay[relay]
	return rc != nil && rc.replicated
}

// forget drops oc (it ended under a portal).
func (cs *channels) forget(relay string, oc *outChannel) {
	cs.mu.Lock()
	if rc := cs.byRelay[relay]; rc != nil {
		rc.chans = slices.DeleteFunc(rc.chans, func(c *outChannel) bool { return c == oc })
	}
	cs.mu.Unlock()
	oc.ch.Close()
}

// refused records that oc's peer refused a portal to outlet with code,
// and says whether the portal may try another channel: only to a
// replicated relay, and only for refusals another replica may not give.
func (cs *channels) refused(relay string, oc *outChannel, outlet, code string) (retry bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	switch code {
	case control.PortalDraining:
		oc.draining = true
	case control.PortalTargetRefused, control.PortalTargetTimeout, control.PortalPaused, control.PortalUnknownOutlet:
		if oc.refused == nil {
			oc.refused = map[string]time.Time{}
		}
		oc.refused[outlet] = time.Now()
	default:
		return false
	}
	rc := cs.byRelay[relay]
	return rc != nil && rc.replicated
}

// dial opens a channel to one of relay's owners: a session from the
// relay (for outlet, avoiding peers), a data connection, the handshake.
func (cs *channels) dial(ctx context.Context, relay, outlet string, avoid []string) (*portal.Channel, control.OpenSessionResponse, error) {
	n := cs.n
	start := time.Now()
	var resp control.OpenSessionResponse
	h, err := n.currentHub(ctx, 3*time.Second)
	if err != nil {
		return nil, resp, err
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
	req := control.OpenSessionRequest{Relay: relay, Outlet: outlet, Avoid: avoid}
	if err := callPolitely(ctx, h, control.TypeOpenSession, req, &resp); err != nil {
		if d := <-early; d.c != nil {
			d.c.Close()
		}
		return nil, resp, fmt.Errorf("the relay refused a session: %w", err)
	}
	d := <-early
	if d.err != nil {
		return nil, resp, d.err
	}
	data, err := bindData(d.c, resp.Token)
	if err != nil {
		return nil, resp, err
	}
	log := portal.LogAttrs(n.log, resp.Token).With("relay", relay)
	ch, err := portal.Dial(ctx, data, portal.DialOptions{Self: &n.self, Token: resp.Token, Relay: relay, PeerID: resp.Peer,
		Logger: log.With("component", "mux")})
	if err != nil {
		return nil, resp, err
	}
	n.metrics.channelSetup.Observe(time.Since(start).Seconds())
	n.metrics.channels.WithLabelValues("dialed", ch.Suite()).Inc()
	log.Info("channel open", "peer", ch.Peer().ID, "suite", ch.Suite(), "setup", time.Since(start).Round(time.Microsecond), "healthy_owners", resp.Healthy)
	// Serve what the peer sends on it (refreshed credentials); a portal
	// toward this node goes through the peer's own channel.
	n.goTracked(func() {
		cs.serve(n.runCtx, ch, nil, log)
		ch.Close()
	})
	return ch, resp, nil
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
	for relay := range cs.byRelay {
		for _, oc := range cs.relayLocked(relay).chans {
			out = append(out, oc.ch)
		}
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

// status describes the channels for `status`, oldest first.
func (cs *channels) status() []localapi.Channel {
	out := []localapi.Channel{}
	cs.mu.Lock()
	for relay := range cs.byRelay {
		for _, oc := range cs.relayLocked(relay).chans {
			c := channelStatus(oc.ch, "out", relay)
			c.Draining = oc.draining
			for outlet, at := range oc.refused {
				if time.Since(at) < RefusalMemory {
					c.Refused = append(c.Refused, outlet)
				}
			}
			sort.Strings(c.Refused)
			out = append(out, c)
		}
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
