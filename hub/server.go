// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/internal/ratelimit"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

// Limits. Each is a named constant with a regression test.
const (
	// HandshakeTimeout bounds the preface, Noise handshake and (for data
	// connections) the token: a peer that stalls is dropped after it.
	HandshakeTimeout = 10 * time.Second
	// MaxPendingPerSource bounds connections from one IP that have not yet
	// finished their handshake (or, for data connections, sent a known
	// token), so one source cannot exhaust the hub. A busy node opening
	// hundreds of portals at once stays well under it.
	MaxPendingPerSource = 1024
	// MaxPending bounds unauthenticated connections from all sources.
	MaxPending = 8192
	// ControlIdleTimeout closes a control connection that sent nothing
	// (not even a ping) for this long.
	ControlIdleTimeout = 90 * time.Second
	// WriteTimeout bounds one write to a node.
	WriteTimeout = 15 * time.Second
	// OutboundQueue is how many messages may wait for one connection's
	// writer. A node that stops reading fills only its own queue. Each
	// idle connection holds the queue (24 bytes a slot, 6 KiB); a burst
	// of hundreds of portals to one outlet node needs it (data path v1
	// announces every portal).
	OutboundQueue = 256
	// SessionPairTimeout is how long a data connection waits for its peer.
	SessionPairTimeout = 15 * time.Second
	// MaxSessionsPerNode bounds session tokens outstanding per node.
	MaxSessionsPerNode = 4096
	// AuthoritySessionBytes bounds what one authority connection carries
	// each way (a redemption is a few KiB), and AuthoritySessionTime how
	// long it lasts: the relay cannot tell a node from a stranger there.
	AuthoritySessionBytes = 256 << 10
	AuthoritySessionTime  = time.Minute
	// MaxPreAuthMessage bounds every message a connection sends before
	// its credential is verified (the handshake, whose last message
	// carries the credential): a stranger costs the relay a few KiB.
	MaxPreAuthMessage = 4 << 10
	// MaxReason bounds what the relay keeps of a reason a node gives (a
	// command refusal, an update failure).
	MaxReason = 512
	// CredentialCheckInterval is how often the relay closes connections
	// whose credential expired without a refresh.
	CredentialCheckInterval = 10 * time.Second
)

// Options configure a Server.
type Options struct {
	Dir    *Dir         // non-nil
	Store  Store        // non-nil
	Logger *slog.Logger // nil means discard
	// Now is the clock; nil means time.Now. For tests only.
	Now func() time.Time
	// HandshakeTimeout overrides the package constant. For tests only.
	HandshakeTimeout time.Duration
	// Metrics, if not nil, receives the hub's metrics.
	Metrics *prometheus.Registry
}

// Server is a relay. Serve runs it; every goroutine it starts is waited
// for before Serve returns. It holds no signing key: it admits members by
// verifying their credentials with the authority's public key.
type Server struct {
	dir          *Dir
	static       *noiseconn.Static // the relay's Noise key, parsed once
	store        Store
	project      string
	authorityKey key.SigningPublic
	log          *slog.Logger
	now          func() time.Time

	handshakeTimeout time.Duration
	metrics          *hubMetrics
	stats            Stats

	admission admission   // connections before authentication
	members   memberConns // live control connections by member
	relays    relayTable  // relay name → connection
	sessions  sessionTable
	waiters   commandWaiters
	authority authoritySlot // the authority's control connection
	revoked   revokedSet    // identities the authority revoked
	limits    *ratelimit.Limiter
	cluster   *clusterState // nil unless the store is shared by relay nodes

	// wg tracks every goroutine the server starts (connections,
	// revocations, the session janitor). Serve waits for it.
	wg sync.WaitGroup
}

// Stats are counters for tests and metrics.
type Stats struct {
	ControlConns   atomic.Int64
	ActiveSessions atomic.Int64
	SessionsOpened atomic.Int64
	Rejected       atomic.Int64
}

// New returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Dir == nil || opts.Store == nil {
		return nil, errors.New("hub: Options.Dir and Options.Store are required")
	}
	if opts.Dir.Config.AuthorityKey.IsZero() {
		return nil, ErrNoAuthority
	}
	static, err := noiseconn.NewStatic(opts.Dir.RelayKey)
	if err != nil {
		return nil, fmt.Errorf("relay key: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	s := &Server{
		dir:              opts.Dir,
		static:           static,
		store:            opts.Store,
		project:          opts.Dir.Project(),
		authorityKey:     opts.Dir.Config.AuthorityKey,
		log:              log,
		now:              now,
		handshakeTimeout: HandshakeTimeout,
	}
	if opts.HandshakeTimeout > 0 {
		s.handshakeTimeout = opts.HandshakeTimeout
	}
	s.admission.init()
	s.members.init()
	s.relays.init()
	s.sessions.init()
	s.waiters.init()
	if err := s.revoked.load(context.Background(), opts.Store); err != nil {
		return nil, fmt.Errorf("relay store: %w", err)
	}
	if cs, ok := opts.Store.(ClusterStore); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.joinCluster(ctx, cs)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	s.limits = ratelimit.New(memberLimits, now)
	s.metrics = newHubMetrics(s, opts.Metrics)
	return s, nil
}

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// goTracked runs f in a goroutine that Serve waits for.
func (s *Server) goTracked(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Serve accepts connections on ln and on more (the same protocol on each:
// plain, or wrapped in outer TLS) until ctx is done or accepting fails,
// then closes every connection and waits for every goroutine it started.
func (s *Server) Serve(ctx context.Context, ln net.Listener, more ...net.Listener) error {
	lns := append([]net.Listener{ln}, more...)
	for _, l := range lns {
		s.log.Info("relay serving", "addr", l.Addr().String(), "project", s.project,
			"relay_key", s.dir.RelayKey.Public().String(), "version", buildinfo.Version())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The closer goroutine is owned here: it ends when ctx ends, which the
	// deferred cancel guarantees on every return path.
	var closer sync.WaitGroup
	closer.Add(1)
	go func() {
		defer closer.Done()
		<-ctx.Done()
		for _, l := range lns {
			l.Close()
		}
	}()
	s.goTracked(func() { s.sessions.janitor(ctx) })
	s.goTracked(func() { s.credentialJanitor(ctx) })
	if s.cluster != nil {
		s.log.Info("relay node of a cluster", "relay_node", s.cluster.id, "relay_nodes", len(s.cluster.listing()))
		s.goTracked(func() { s.runCluster(ctx) })
	}
	// One accept loop per listener (the plain one and, with --tls-addr,
	// the TLS one); the first to fail ends them all.
	errs := make(chan error, len(lns))
	var loops sync.WaitGroup
	for _, l := range lns {
		loops.Add(1)
		go func() {
			defer loops.Done()
			err := s.acceptLoop(ctx, l)
			errs <- err
			cancel()
		}()
	}
	loops.Wait()
	close(errs)
	var err error
	for e := range errs {
		if e != nil && err == nil {
			err = e
		}
	}
	closer.Wait()
	s.shutdown()
	s.wg.Wait()
	return err
}

func (s *Server) acceptLoop(ctx context.Context, ln net.Listener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; backing off", "err", err, "delay", delay)
				select {
				case <-time.After(delay):
				case <-ctx.Done():
					return nil
				}
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		delay = 0
		ip := sourceIP(c.RemoteAddr())
		if !s.admission.admit(ip) {
			s.stats.Rejected.Add(1)
			s.metrics.rejected.WithLabelValues("pending-limit").Inc()
			c.Close()
			continue
		}
		s.goTracked(func() { s.handleConn(ctx, c, ip) })
	}
}

// shutdown closes every connection and session (and refuses new ones);
// their goroutines then end on their own and Serve waits for them.
func (s *Server) shutdown() {
	for _, cc := range s.members.closeAll() {
		cc.close()
	}
	if a := s.authority.closeAll(); a != nil {
		a.close()
	}
	s.sessions.closeAll()
}
