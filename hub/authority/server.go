// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package authority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/internal/ratelimit"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/controlconn"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

// Limits of the authority's side of a node's channel.
const (
	// RequestTimeout bounds the wait for each request on a node's channel.
	RequestTimeout = 20 * time.Second
	// MaxRequestsPerSession bounds what one channel may ask.
	MaxRequestsPerSession = 16
	// maxRequestMessage bounds a handshake message from a node: it has
	// proven nothing yet.
	maxRequestMessage = 4 << 10
	// revocationBatch is how many notices go in one message to the relay.
	revocationBatch = 256
	// keepAlive is how often the authority pings the relay.
	keepAlive  = 20 * time.Second
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// Options configure a Server.
type Options struct {
	Dir    *Dir         // non-nil
	Store  enroll.Store // non-nil
	Logger *slog.Logger // nil means discard
	// Dial opens connections to the relay; nil means plain TCP.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Now is the clock; nil means time.Now. For tests only.
	Now func() time.Time
}

// Server is a running authority.
type Server struct {
	dir    *Dir
	static *noiseconn.Static // the authority's Noise key, parsed once
	auth   *enroll.Authority
	log    *slog.Logger
	dial   func(ctx context.Context, addr string) (net.Conn, error)

	limits, strangers *ratelimit.Limiter

	mu    sync.Mutex        // guards relay, hubs and skipped
	relay *controlconn.Conn // the control connection to the relay, or nil
	// hubs are the relay addresses the authority dials and writes into
	// tickets: authority.json's, then every relay node of the cluster
	// that answers with the relay key tickets pin.
	hubs    []string
	skipped map[string]bool // relay nodes left out of tickets (another key), logged once

	wg sync.WaitGroup // node channels in progress; Run waits for them
}

// New returns a Server.
func New(o Options) (*Server, error) {
	if o.Dir == nil || o.Store == nil {
		return nil, errors.New("authority: Options.Dir and Options.Store are required")
	}
	a, err := o.Dir.Authority(o.Store)
	if err != nil {
		return nil, err
	}
	a.Now = o.Now
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dial := o.Dial
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: controlconn.DialTimeout, KeepAlive: 15 * time.Second}
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	static, err := noiseconn.NewStatic(o.Dir.NoiseKey)
	if err != nil {
		return nil, fmt.Errorf("authority Noise key: %w", err)
	}
	return &Server{dir: o.Dir, static: static, auth: a, log: log, dial: dial, hubs: slices.Clone(o.Dir.Config.Hubs), skipped: map[string]bool{},
		limits: ratelimit.New(nodeLimits, o.Now), strangers: ratelimit.New(strangersLimit, o.Now)}, nil
}

// Authority is the enrollment authority this server runs.
func (s *Server) Authority() *enroll.Authority { return s.auth }

func (s *Server) goTracked(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Run keeps a control connection to the relay until ctx ends, serving the
// channels nodes open to the authority. It returns after every goroutine
// it started has.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info("authority starting", "project", s.dir.Config.Project, "authority_key", s.dir.Signer.Public().String(),
		"noise_key", s.dir.NoiseKey.Public().String(), "relays", s.dir.Config.Hubs, "version", buildinfo.Version())
	defer s.wg.Wait()
	backoff := minBackoff
	for attempt := 0; ctx.Err() == nil; attempt++ {
		hubs := s.hubList()
		addr := hubs[attempt%len(hubs)]
		start := time.Now()
		err := s.session(ctx, addr)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > time.Minute {
			backoff = minBackoff
		}
		var ce *control.Error
		switch {
		case errors.As(err, &ce) && ce.Code == control.ErrCodeBadCredential && strings.Contains(ce.Message, "clock skew"):
			s.log.Error("the relay's clock and the authority's differ by more than the tolerance; fix their time (NTP)", "relay", addr, "err", err)
		case errors.As(err, &ce) && ce.Code == control.ErrCodeBadCredential:
			s.log.Error("the relay does not trust this authority's key: run `trust --authority-key` on it", "relay", addr, "err", err)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		s.log.Warn("relay connection lost; reconnecting", "relay", addr, "err", err, "retry_in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
	return nil
}

// session runs one control connection to the relay until it ends.
func (s *Server) session(ctx context.Context, addr string) error {
	st, err := s.auth.Statement()
	if err != nil {
		return err
	}
	var relay *controlconn.Conn
	onPush := func(m control.Msg) {
		if m.Type != control.TypeAuthoritySession {
			return
		}
		var as control.AuthoritySession
		if err := control.DecodeBody(m, &as); err != nil || len(as.Token) != wire.TokenLen || len(as.Offer) != 2 {
			s.log.Warn("bad authority-session push", "err", err)
			return
		}
		s.goTracked(func() { s.serveNode(ctx, addr, as) })
	}
	relay, err = controlconn.Dial(ctx, controlconn.Options{
		Addr: addr, Dial: s.dial, Kind: wire.KindControl, Static: s.dir.NoiseKey, Peer: s.dir.Config.RelayKey,
		Hello:  control.ClientHello{Version: wire.ProtocolVersion, Build: buildinfo.Version(), Platform: buildinfo.Platform(), Credential: st},
		OnPush: onPush,
	})
	if err != nil {
		return err
	}
	defer relay.Close()
	relay.SetReadIdle(3 * keepAlive)
	if err := s.sendRevocations(ctx, relay); err != nil {
		return fmt.Errorf("revocations: %w", err)
	}
	s.mu.Lock()
	s.relay = relay
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.relay = nil
		s.mu.Unlock()
	}()
	s.log.Info("connected to the relay", "relay", addr)
	s.learnCluster(ctx, relay)
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-relay.Done():
			return relay.Err()
		case <-ping.C:
			s.learnCluster(ctx, relay)
			pctx, cancel := context.WithTimeout(ctx, keepAlive)
			err := relay.Call(pctx, control.TypePing, control.Ping{TimeUnix: time.Now().Unix()}, nil)
			cancel()
			if err != nil {
				return fmt.Errorf("keepalive: %w", err)
			}
		}
	}
}

// hubList returns the relay addresses, in order.
func (s *Server) hubList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hubs
}

// ticketAuthority is the authority with the cluster's relay addresses
// now, starting at a random one so new nodes spread over the relay nodes.
func (s *Server) ticketAuthority() *enroll.Authority {
	a := *s.auth
	hubs := s.hubList()
	if len(hubs) > 1 {
		i := rand.N(len(hubs))
		a.Hubs = append(slices.Clone(hubs[i:]), hubs[:i]...)
	}
	return &a
}

// learnCluster asks the relay for the cluster's relay nodes and keeps the
// addresses of those that answer with the relay key tickets pin. A relay
// that does not know the request (a single node of an older build) keeps
// the configured addresses.
func (s *Server) learnCluster(ctx context.Context, relay *controlconn.Conn) {
	var cn hub.ClusterNodes
	cctx, cancel := context.WithTimeout(ctx, keepAlive)
	defer cancel()
	if err := relay.Call(cctx, hub.ClusterNodesType, control.Empty{}, &cn); err != nil {
		s.log.Debug("the relay did not list its cluster", "err", err)
		return
	}
	want := s.dir.Config.RelayKey.Raw32()
	var hubs []string
	for _, n := range cn.Nodes {
		if n.Key != want {
			s.mu.Lock()
			first := !s.skipped[n.ID]
			s.skipped[n.ID] = true
			s.mu.Unlock()
			if first {
				s.log.Warn("relay node left out of tickets: it answers with another key than the one tickets pin (nodes pin one relay key; give it the cluster's with `init --key-from`)",
					"relay_node", n.ID, "addrs", n.Addrs)
			}
			continue
		}
		for _, a := range n.Addrs {
			if !slices.Contains(hubs, a) {
				hubs = append(hubs, a)
			}
		}
	}
	if len(hubs) == 0 {
		return
	}
	s.mu.Lock()
	changed := !slices.Equal(hubs, s.hubs)
	s.hubs = hubs
	s.mu.Unlock()
	if !changed {
		return
	}
	s.log.Info("relay addresses for tickets", "hubs", hubs)
	d := *s.dir
	d.Config.Hubs = hubs
	if err := d.SaveConfig(); err != nil {
		s.log.Warn("could not record the relay addresses", "err", err)
	}
}

// sendRevocations hands the relay every revocation, so one that happened
// while the authority was away (or the relay was down) reaches it.
func (s *Server) sendRevocations(ctx context.Context, relay *controlconn.Conn) error {
	all, err := s.auth.Revocations(ctx)
	if err != nil {
		return err
	}
	for len(all) > 0 {
		n := min(len(all), revocationBatch)
		if err := relay.Call(ctx, control.TypeRevocations, control.Revocations{Notices: all[:n]}, nil); err != nil {
			return err
		}
		all = all[n:]
	}
	return nil
}

// serveNode answers one node's channel: the authority dials a data
// connection with the token and runs Noise end to end with the node.
func (s *Server) serveNode(ctx context.Context, addr string, as control.AuthoritySession) {
	ctx, cancel := context.WithTimeout(ctx, 2*RequestTimeout)
	defer cancel()
	c, err := s.dial(ctx, addr)
	if err != nil {
		s.log.Warn("node channel: could not reach the relay", "err", err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(RequestTimeout))
	if _, err := c.Write(append(wire.Preface(wire.KindData), as.Token...)); err != nil {
		return
	}
	offer := wire.Offer{Min: as.Offer[0], Max: as.Offer[1]}
	if _, err := offer.Choose(); err != nil {
		s.log.Info("node channel refused", "err", err)
		return
	}
	nc, payload, err := noiseconn.Respond(ctx, c, &noiseconn.Config{Static: s.static, Prologue: wire.Prologue("authority", offer, nil),
		Mode: noiseconn.Hybrid, MaxMessage: maxRequestMessage}, nil)
	if err != nil {
		s.log.Debug("node channel handshake failed", "err", err)
		return
	}
	defer nc.Close()
	var hello control.ClientHello
	wire.Unmarshal(payload, &hello)
	peer := nc.Peer()
	log := s.log.With("node", string(peer.ID()))
	for range MaxRequestsPerSession {
		nc.SetDeadline(time.Now().Add(RequestTimeout))
		b, err := wire.ReadMessage(nc)
		if err != nil {
			return
		}
		m, err := control.Decode(b)
		if err != nil {
			return
		}
		resp, err := s.answer(ctx, log, peer, hello, m)
		var out []byte
		if err != nil {
			out, _ = control.EncodeError(m.ID, errorFor(err))
		} else {
			out, _ = control.Encode(control.TypeResponse, m.ID, resp)
		}
		if err := wire.WriteMessage(nc, out); err != nil {
			return
		}
	}
}

// nodeLimits are how often one identity may ask the authority for each
// kind of request; strangersLimit bounds redemptions by anyone (each is a
// signature and a database write), whatever key they come with.
var (
	nodeLimits = map[int]ratelimit.Rule{
		int(control.TypePing):         {Every: 1, Per: time.Second, Burst: 10},
		int(control.TypeRedeem):       {Every: 1, Per: time.Second, Burst: 5},
		int(control.TypeRefresh):      {Every: 10, Per: time.Hour, Burst: 6},
		int(control.TypeCreateTicket): {Every: 1, Per: time.Second, Burst: 10},
		int(control.TypeLeave):        {Every: 1, Per: time.Minute, Burst: 3},
	}
	strangersLimit = map[int]ratelimit.Rule{int(control.TypeRedeem): {Every: 50, Per: time.Second, Burst: 200}}
)

// answer handles one request from a node.
func (s *Server) answer(ctx context.Context, log *slog.Logger, peer key.NodePublic, hello control.ClientHello, m control.Msg) (any, error) {
	if ok, wait := s.limits.Allow(string(peer.ID()), int(m.Type)); !ok {
		log.Info("slowed down", "type", m.Type, "wait", wait)
		return nil, control.SlowDown("authority", wait)
	}
	if ok, wait := s.strangers.Allow("*", int(m.Type)); !ok {
		log.Warn("redemptions come faster than the authority allows; slowed down", "wait", wait)
		return nil, control.SlowDown("redeem", wait)
	}
	switch m.Type {
	case control.TypePing:
		return control.Ping{TimeUnix: time.Now().Unix()}, nil
	case control.TypeRedeem:
		var req control.RedeemRequest
		if err := control.DecodeBody(m, &req); err != nil {
			return nil, badRequest(err)
		}
		mem, cred, err := s.auth.Redeem(ctx, enroll.RedeemOptions{Node: peer, Secret: req.Secret, Relay: req.Relay, DryRun: req.DryRun,
			Version: hello.Build, Platform: hello.Platform})
		if err != nil {
			log.Info("ticket refused", "err", err, "dry_run", req.DryRun)
			return nil, err
		}
		if req.DryRun {
			return control.CredentialResponse{}, nil
		}
		log.Info("node enrolled", "ticket", mem.TicketID, "relay", mem.Relay, "replica", mem.Replica, "enroller", mem.Enroller)
		return control.CredentialResponse{Credential: cred}, nil
	case control.TypeRefresh:
		cred, err := s.auth.Refresh(ctx, peer)
		if err != nil {
			return nil, err
		}
		return control.CredentialResponse{Credential: cred}, nil
	case control.TypeCreateTicket:
		var req control.CreateTicketRequest
		if err := control.DecodeBody(m, &req); err != nil {
			return nil, badRequest(err)
		}
		text, g, err := s.ticketAuthority().CreateTicketAs(ctx, peer, enroll.TicketOptions{
			Attributes: req.Attributes, Relay: req.Relay, Replica: req.Replica, ExpiresIn: time.Duration(req.ExpiresIn) * time.Second, Uses: req.Uses,
		})
		if err != nil {
			log.Info("enroller ticket refused", "err", err)
			return nil, err
		}
		log.Info("ticket created by enroller", "ticket", g.TicketID, "relay", g.Relay, "replica", g.Replica, "uses", g.Uses)
		return control.CreateTicketResponse{Ticket: text}, nil
	case control.TypeLeave:
		if _, err := s.auth.Member(ctx, peer); err != nil {
			return nil, err
		}
		log.Info("node left: revoking its own membership")
		if _, err := s.Revoke(ctx, string(peer.ID())); err != nil {
			return nil, err
		}
		return control.Empty{}, nil
	}
	return nil, &control.Error{Code: control.ErrCodeUnsupported, Message: fmt.Sprintf("the authority does not answer message type %d", m.Type)}
}

func badRequest(err error) error {
	return &control.Error{Code: control.ErrCodeBadRequest, Message: err.Error()}
}

// errorFor maps an authority error to the refusal a node sees.
func errorFor(err error) *control.Error {
	var ce *control.Error
	if errors.As(err, &ce) {
		return ce
	}
	if errors.Is(err, hub.ErrStoreUnavailable) {
		return hub.Unavailable("the authority's", err)
	}
	code := control.ErrCodeInternal
	switch {
	case errors.Is(err, enroll.ErrTicketUnknown):
		code = control.ErrCodeTicketUnknown
	case errors.Is(err, enroll.ErrTicketUsedUp):
		code = control.ErrCodeTicketUsedUp
	case errors.Is(err, enroll.ErrTicketExpired):
		code = control.ErrCodeTicketExpired
	case errors.Is(err, enroll.ErrRelayRefused):
		code = control.ErrCodeRelayRefused
	case errors.Is(err, enroll.ErrNotMember):
		code = control.ErrCodeNotMember
	case errors.Is(err, enroll.ErrRevoked):
		code = control.ErrCodeRevoked
	case errors.Is(err, enroll.ErrNotEnroller):
		code = control.ErrCodeForbidden
	case errors.Is(err, enroll.ErrOutsideScope):
		code = control.ErrCodeOutsideScope
	}
	return &control.Error{Code: code, Message: err.Error()}
}

// relayConn returns the live connection to the relay, or nil.
func (s *Server) relayConn() *controlconn.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.relay
}

// Revoke revokes a member and hands the relay the notice at once (the
// relay closes the member's connections); a relay that is not connected
// gets it when it is.
func (s *Server) Revoke(ctx context.Context, id string) (enroll.Member, error) {
	m, notice, err := s.auth.Revoke(ctx, id)
	if err != nil {
		return m, err
	}
	if relay := s.relayConn(); relay != nil {
		if err := relay.Call(ctx, control.TypeRevocations, control.Revocations{Notices: [][]byte{notice}}, nil); err != nil {
			s.log.Warn("the relay did not take a revocation now; it gets it when it reconnects", "node", id, "err", err)
		}
	}
	s.log.Info("member revoked", "node", id)
	return m, nil
}

// live asks the relay what it knows of nodes (nil when not connected).
func (s *Server) live(ctx context.Context) map[string]control.NodeLive {
	relay := s.relayConn()
	if relay == nil {
		return nil
	}
	var ls control.LiveStatus
	if err := relay.Call(ctx, control.TypeLiveStatus, control.Empty{}, &ls); err != nil {
		return nil
	}
	out := map[string]control.NodeLive{}
	for _, n := range ls.Nodes {
		out[n.ID] = n
	}
	return out
}
