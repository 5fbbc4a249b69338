// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package hub is the vendor's hub: one TCP listener that is both the
// enrollment authority (ticket redemption, credential refresh, tickets made
// by enrollers) and the relay service (relay registry, session tokens, and
// splicing of data connections).
//
// The hub never holds portal keys: the two nodes of a portal run their own
// Noise handshake over the spliced data connections. The hub does not even
// link the portal package (a test enforces it).
//
// Every connection opens with a wire preface naming its kind. Control
// connections speak Noise XX with the hub's static key and then
// wire/control messages; data connections send a session token and are
// spliced to the other node's data connection with that token.
//
// Imports: wire/*, enroll, policy, internal/*. Imported by cmd/*-hub and by
// hub/store implementations. Never imports agent, portal or installer.
package hub

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
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
	// SessionPairTimeout is how long a data connection waits for its peer.
	SessionPairTimeout = 15 * time.Second
	// MaxSessionsPerNode bounds session tokens outstanding per node.
	MaxSessionsPerNode = 4096
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

// Server is a running hub.
type Server struct {
	dir       *Dir
	store     Store
	auth      *enroll.Authority
	log       *slog.Logger
	hello     []byte
	ctx       context.Context
	cancelAll context.CancelFunc

	mu       sync.Mutex
	conns    map[string]map[*controlConn]bool // member id → live control conns
	relays   map[string]*controlConn          // relay name → registering conn
	sessions map[[wire.TokenLen]byte]*session // pending sessions by token
	spliced  map[*session]bool                // active spliced sessions
	pending  map[string]int                   // source IP → connections before handshake
	nPending int
	waiters  map[waitKey]chan CommandRecord

	handshakeTimeout time.Duration
	metrics          *hubMetrics

	stats Stats
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
	auth, err := opts.Dir.Authority(opts.Store)
	if err != nil {
		return nil, err
	}
	auth.Now = opts.Now
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		dir:      opts.Dir,
		store:    opts.Store,
		auth:     auth,
		log:      log,
		conns:    map[string]map[*controlConn]bool{},
		relays:   map[string]*controlConn{},
		sessions: map[[wire.TokenLen]byte]*session{},
		spliced:  map[*session]bool{},
		pending:  map[string]int{},
		waiters:  map[waitKey]chan CommandRecord{},

		handshakeTimeout: HandshakeTimeout,
	}
	if opts.HandshakeTimeout > 0 {
		s.handshakeTimeout = opts.HandshakeTimeout
	}
	s.ctx, s.cancelAll = context.WithCancel(context.Background())
	s.metrics = newHubMetrics(s, opts.Metrics)
	return s, nil
}

// Authority returns the hub's enrollment authority.
func (s *Server) Authority() *enroll.Authority { return s.auth }

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

func (s *Server) now() time.Time {
	if s.auth.Now != nil {
		return s.auth.Now()
	}
	return time.Now()
}

// Serve accepts connections on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.log.Info("hub serving", "addr", ln.Addr().String(), "project", s.dir.Config.Project,
		"hub_key", s.dir.HubKey.Public().Fingerprint(), "version", buildinfo.Version())
	go func() {
		<-ctx.Done()
		ln.Close()
		s.cancelAll()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				s.closeAll()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; backing off", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		delay = 0
		ip := sourceIP(c.RemoteAddr())
		if !s.admitPending(ip) {
			s.stats.Rejected.Add(1)
			s.metrics.rejected.WithLabelValues("pending-limit").Inc()
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handleConn(c, ip)
		}()
	}
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, set := range s.conns {
		for cc := range set {
			cc.conn.Close()
		}
	}
	for sess := range s.spliced {
		sess.close()
	}
	for _, sess := range s.sessions {
		sess.close()
	}
}

func sourceIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

func (s *Server) admitPending(ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nPending >= MaxPending || s.pending[ip] >= MaxPendingPerSource {
		return false
	}
	s.pending[ip]++
	s.nPending++
	return true
}

func (s *Server) donePending(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nPending--
	if s.pending[ip]--; s.pending[ip] <= 0 {
		delete(s.pending, ip)
	}
}

func (s *Server) handleConn(c net.Conn, ip string) {
	released := false
	release := func() {
		if !released {
			released = true
			s.donePending(ip)
		}
	}
	defer release()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	c.SetDeadline(time.Now().Add(s.handshakeTimeout))
	kind, err := wire.ReadPreface(c)
	if err != nil {
		s.metrics.rejected.WithLabelValues("bad-preface").Inc()
		s.log.Debug("dropped connection", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	switch kind {
	case wire.KindControl:
		s.handleControl(c, release)
	case wire.KindData:
		s.handleData(c, release)
	}
}

// controlConn is one node's authenticated control channel.
type controlConn struct {
	s        *Server
	conn     *noiseconn.Conn
	peer     key.NodePublic
	id       string
	wmu      sync.Mutex
	member   bool // has redeemed or was a member at connect
	relay    string
	version  string
	platform string
	paused   bool
	log      *slog.Logger

	cmdMu     sync.Mutex
	delivered uint64 // highest command seq pushed on this connection
}

func (cc *controlConn) send(b []byte) error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	cc.conn.SetWriteDeadline(time.Now().Add(WriteTimeout))
	err := wire.WriteMessage(cc.conn, b)
	if err != nil {
		cc.conn.Close()
	}
	return err
}

func (cc *controlConn) push(t control.Type, v any) error {
	b, err := control.Encode(t, 0, v)
	if err != nil {
		return err
	}
	return cc.send(b)
}

func (s *Server) handleControl(c net.Conn, release func()) {
	ctx, cancel := context.WithTimeout(s.ctx, s.handshakeTimeout)
	defer cancel()
	hello, _ := wire.Marshal(control.ServerHello{
		Version:  wire.ProtocolVersion,
		Project:  s.dir.Config.Project,
		HubBuild: buildinfo.Version(),
		TimeUnix: s.now().Unix(),
	})
	hsStart := time.Now()
	nc, payload, err := noiseconn.Server(ctx, c, s.dir.HubKey, wire.Prologue("control", nil), hello)
	if err != nil {
		s.metrics.rejected.WithLabelValues("handshake").Inc()
		s.log.Debug("control handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	var ch control.ClientHello
	if err := wire.Unmarshal(payload, &ch); err != nil || ch.Version != wire.ProtocolVersion {
		s.log.Debug("bad client hello", "remote", c.RemoteAddr().String(), "err", err, "version", ch.Version)
		nc.Close()
		return
	}
	s.metrics.handshake.Observe(time.Since(hsStart).Seconds())
	c.SetDeadline(time.Time{})
	release()
	peer := nc.Peer()
	cc := &controlConn{s: s, conn: nc, peer: peer, id: string(peer.ID()), version: ch.Build, platform: ch.Platform}
	cc.log = s.log.With("node", cc.id)
	if _, err := s.auth.Member(s.ctx, peer); err == nil {
		cc.member = true
		s.touch(cc.id, ch.Build, ch.Platform)
	}
	s.stats.ControlConns.Add(1)
	defer s.stats.ControlConns.Add(-1)
	s.addConn(cc)
	defer s.removeConn(cc)
	cc.log.Debug("control connection up", "member", cc.member, "remote", c.RemoteAddr().String())
	if cc.member {
		go s.deliverPending(cc)
	}
	for {
		nc.SetReadDeadline(time.Now().Add(ControlIdleTimeout))
		b, err := wire.ReadMessage(nc)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				cc.log.Debug("control connection ended", "err", err)
			}
			nc.Close()
			return
		}
		m, err := control.Decode(b)
		if err != nil {
			cc.log.Warn("bad control message; closing", "err", err)
			nc.Close()
			return
		}
		s.dispatch(cc, m)
	}
}

func (s *Server) addConn(cc *controlConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.conns[cc.id]
	if set == nil {
		set = map[*controlConn]bool{}
		s.conns[cc.id] = set
	}
	set[cc] = true
}

func (s *Server) removeConn(cc *controlConn) {
	s.mu.Lock()
	if set := s.conns[cc.id]; set != nil {
		delete(set, cc)
		if len(set) == 0 {
			delete(s.conns, cc.id)
		}
	}
	if cc.relay != "" && s.relays[cc.relay] == cc {
		delete(s.relays, cc.relay)
		cc.log.Info("relay down", "relay", cc.relay)
	}
	member := cc.member
	s.mu.Unlock()
	if member {
		s.touch(cc.id, "", "")
	}
}

func (s *Server) touch(id, version, platform string) {
	s.store.UpdateMember(context.Background(), id, func(m *enroll.Member) error {
		m.LastSeen = s.now().Unix()
		if version != "" {
			m.Version = version
		}
		if platform != "" {
			m.Platform = platform
		}
		return nil
	})
}

func errorFor(err error) *control.Error {
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
	}
	var ce *control.Error
	if errors.As(err, &ce) {
		return ce
	}
	return &control.Error{Code: code, Message: err.Error()}
}

func (s *Server) dispatch(cc *controlConn, m control.Msg) {
	reply := func(v any, err error) {
		var b []byte
		if err != nil {
			b, _ = control.EncodeError(m.ID, errorFor(err))
		} else {
			b, _ = control.Encode(control.TypeResponse, m.ID, v)
		}
		cc.send(b)
	}
	// decode parses the request body, answering bad-request when it can't.
	decode := func(v any) bool {
		if err := control.DecodeBody(m, v); err != nil {
			reply(nil, &control.Error{Code: control.ErrCodeBadRequest, Message: err.Error()})
			return false
		}
		return true
	}
	ctx := s.ctx
	switch m.Type {
	case control.TypePing:
		reply(control.Ping{TimeUnix: s.now().Unix()}, nil)
	case control.TypeRedeem:
		var req control.RedeemRequest
		if !decode(&req) {
			return
		}
		mem, cred, err := s.auth.Redeem(ctx, enroll.RedeemOptions{
			Node: cc.peer, Secret: req.Secret, Relay: req.Relay, DryRun: req.DryRun,
			Version: cc.version, Platform: cc.platform,
		})
		if err != nil {
			cc.log.Info("ticket refused", "err", err, "dry_run", req.DryRun)
			reply(nil, err)
			return
		}
		if req.DryRun {
			reply(control.CredentialResponse{}, nil)
			return
		}
		cc.member = true
		cc.log.Info("node enrolled", "ticket", mem.TicketID, "relay", mem.Relay, "enroller", mem.Enroller)
		go s.deliverPending(cc)
		reply(control.CredentialResponse{Credential: cred}, nil)
	case control.TypeRefresh:
		cred, err := s.auth.Refresh(ctx, cc.peer)
		if err != nil {
			reply(nil, err)
			if errors.Is(err, enroll.ErrRevoked) {
				cc.conn.Close()
			}
			return
		}
		cc.member = true
		s.touch(cc.id, cc.version, cc.platform)
		reply(control.CredentialResponse{Credential: cred}, nil)
	case control.TypeRegisterRelay:
		var req control.RegisterRelayRequest
		if !decode(&req) {
			return
		}
		reply(control.Empty{}, s.registerRelay(ctx, cc, req.Name))
	case control.TypeOpenSession:
		var req control.OpenSessionRequest
		if !decode(&req) {
			return
		}
		resp, err := s.openSession(ctx, cc, req.Relay)
		reply(resp, err)
	case control.TypeCreateTicket:
		var req control.CreateTicketRequest
		if !decode(&req) {
			return
		}
		text, err := s.enrollerTicket(ctx, cc, req)
		reply(control.CreateTicketResponse{Ticket: text}, err)
	case control.TypeCommandAck:
		var ack control.CommandAck
		if !decode(&ack) {
			return
		}
		if _, err := s.auth.Member(ctx, cc.peer); err != nil {
			reply(nil, err)
			return
		}
		reply(control.Empty{}, s.ackCommand(cc, ack))
	case control.TypeNodeState:
		var ns control.NodeState
		if !decode(&ns) {
			return
		}
		s.mu.Lock()
		cc.paused = ns.Paused
		s.mu.Unlock()
		cc.log.Info("node state", "paused", ns.Paused)
		reply(control.Empty{}, nil)
	case control.TypeReleaseCheck:
		var req control.ReleaseCheck
		if !decode(&req) {
			return
		}
		if !cc.member {
			reply(nil, enroll.ErrNotMember)
			return
		}
		b, err := s.dir.ManifestBytes(req.Channel, req.Version)
		if err != nil {
			reply(nil, &control.Error{Code: control.ErrCodeBadRequest, Message: err.Error()})
			return
		}
		reply(control.ReleaseManifest{Manifest: b}, nil)
	case control.TypeReleaseFetch:
		var req control.ReleaseFetch
		if !decode(&req) {
			return
		}
		if !cc.member {
			reply(nil, enroll.ErrNotMember)
			return
		}
		b, err := s.dir.ReadChunk(req.Channel, req.Version, req.Platform, req.Offset, control.MaxChunk)
		if err != nil {
			reply(nil, &control.Error{Code: control.ErrCodeBadRequest, Message: err.Error()})
			return
		}
		reply(control.ReleaseChunk{Data: b}, nil)
	case control.TypeUpdateResult:
		var req control.UpdateResult
		if !decode(&req) {
			return
		}
		s.metrics.updates.WithLabelValues(map[bool]string{true: "ok", false: "failed"}[req.OK]).Inc()
		res := fmt.Sprintf("%s → %s ok", req.From, req.To)
		if !req.OK {
			res = fmt.Sprintf("%s → %s FAILED, rolled back: %s", req.From, req.To, req.Reason)
		}
		res += " at " + s.now().UTC().Format(time.RFC3339)
		s.store.UpdateMember(ctx, cc.id, func(m *enroll.Member) error { m.LastUpdate = res; return nil })
		cc.log.Info("update result", "from", req.From, "to", req.To, "ok", req.OK, "reason", req.Reason)
		reply(control.Empty{}, nil)
	case control.TypeLeave:
		if _, err := s.auth.Member(ctx, cc.peer); err != nil {
			reply(nil, err)
			return
		}
		cc.log.Info("node left: revoking its own membership")
		reply(control.Empty{}, nil)
		go s.Revoke(context.Background(), cc.id)
	default:
		reply(nil, &control.Error{Code: control.ErrCodeUnsupported, Message: fmt.Sprintf("unsupported control message type %d", m.Type)})
	}
}

func (s *Server) registerRelay(ctx context.Context, cc *controlConn, name string) error {
	mem, err := s.auth.Member(ctx, cc.peer)
	if err != nil {
		return err
	}
	if name == "" || name != mem.Relay {
		allowed := "no relay"
		if mem.Relay != "" {
			allowed = fmt.Sprintf("only %q", mem.Relay)
		}
		return &control.Error{Code: control.ErrCodeRelayRefused, Message: fmt.Sprintf("relay name %q refused: this node's credential allows %s", name, allowed)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.relays[name]; cur != nil && cur != cc {
		if cur.id != cc.id {
			return &control.Error{Code: control.ErrCodeRelayTaken, Message: fmt.Sprintf("relay name %q is already registered by another node (%s)", name, cur.id)}
		}
		// The same node reconnected; its old connection is stale.
		cur.relay = ""
		cur.conn.Close()
	}
	s.relays[name] = cc
	cc.relay = name
	cc.log.Info("relay up", "relay", name)
	return nil
}

func (s *Server) enrollerTicket(ctx context.Context, cc *controlConn, req control.CreateTicketRequest) (string, error) {
	mem, err := s.auth.Member(ctx, cc.peer)
	if err != nil {
		return "", err
	}
	if !mem.Enroller {
		return "", &control.Error{Code: control.ErrCodeForbidden, Message: "this node is not an enroller: its ticket did not grant the enroller role"}
	}
	text, g, err := s.auth.CreateTicket(ctx, enroll.TicketOptions{
		Attributes: req.Attributes,
		Relay:      req.Relay,
		ExpiresIn:  time.Duration(req.ExpiresIn) * time.Second,
		Uses:       req.Uses,
		CreatedBy:  cc.id,
	})
	if err != nil {
		return "", &control.Error{Code: control.ErrCodeBadRequest, Message: err.Error()}
	}
	cc.log.Info("ticket created by enroller", "ticket", g.TicketID, "relay", g.Relay, "uses", g.Uses)
	return text, nil
}

// session is a pending or spliced pair of data connections.
type session struct {
	token    [wire.TokenLen]byte
	from, to string // member ids: initiator, relay owner
	relay    string
	mu       sync.Mutex
	first    net.Conn
	conns    []net.Conn
}

func (sess *session) close() {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.first != nil {
		sess.first.Close()
	}
	for _, c := range sess.conns {
		c.Close()
	}
}

func (s *Server) openSession(ctx context.Context, cc *controlConn, relay string) (control.OpenSessionResponse, error) {
	if _, err := s.auth.Member(ctx, cc.peer); err != nil {
		return control.OpenSessionResponse{}, err
	}
	s.mu.Lock()
	owner := s.relays[relay]
	if owner == nil {
		s.mu.Unlock()
		return control.OpenSessionResponse{}, &control.Error{Code: control.ErrCodeRelayUnknown, Message: fmt.Sprintf("relay %q is not connected to the hub", relay)}
	}
	n := 0
	for _, sess := range s.sessions {
		if sess.from == cc.id {
			n++
		}
	}
	if n >= MaxSessionsPerNode {
		s.mu.Unlock()
		return control.OpenSessionResponse{}, &control.Error{Code: control.ErrCodeForbidden, Message: "too many pending sessions"}
	}
	sess := &session{from: cc.id, to: owner.id, relay: relay}
	rand.Read(sess.token[:])
	s.sessions[sess.token] = sess
	s.mu.Unlock()
	time.AfterFunc(SessionPairTimeout, func() {
		s.mu.Lock()
		if s.sessions[sess.token] == sess {
			delete(s.sessions, sess.token)
			s.mu.Unlock()
			sess.close()
			return
		}
		s.mu.Unlock()
	})
	if err := owner.push(control.TypeIncoming, control.Incoming{Token: sess.token[:], Relay: relay, From: cc.id}); err != nil {
		return control.OpenSessionResponse{}, &control.Error{Code: control.ErrCodeRelayUnknown, Message: fmt.Sprintf("relay %q: its node did not take the session: %v", relay, err)}
	}
	s.stats.SessionsOpened.Add(1)
	s.metrics.sessionsOpened.Inc()
	return control.OpenSessionResponse{Token: sess.token[:], Peer: owner.id}, nil
}

func (s *Server) handleData(c net.Conn, release func()) {
	var tok [wire.TokenLen]byte
	if _, err := io.ReadFull(c, tok[:]); err != nil {
		c.Close()
		return
	}
	s.mu.Lock()
	sess := s.sessions[tok]
	if sess == nil {
		s.mu.Unlock()
		s.log.Debug("data connection with unknown token", "remote", c.RemoteAddr().String())
		c.Close()
		return
	}
	sess.mu.Lock()
	if sess.first == nil {
		sess.first = c
		sess.mu.Unlock()
		s.mu.Unlock()
		release()
		c.SetDeadline(time.Now().Add(SessionPairTimeout))
		// Wait for the peer; the session's timer closes c if none comes.
		return
	}
	first := sess.first
	sess.first = nil
	sess.conns = []net.Conn{first, c}
	sess.mu.Unlock()
	delete(s.sessions, tok)
	s.spliced[sess] = true
	s.mu.Unlock()
	release()
	first.SetDeadline(time.Time{})
	c.SetDeadline(time.Time{})
	// The same portal id as the nodes log (first bytes of the one-time
	// token, useless once the session is paired).
	s.log.Debug("portal spliced", "portal", fmt.Sprintf("%x", tok[:6]), "from", sess.from, "to", sess.to, "relay", sess.relay)
	s.stats.ActiveSessions.Add(1)
	splice(first, c)
	s.stats.ActiveSessions.Add(-1)
	s.mu.Lock()
	delete(s.spliced, sess)
	s.mu.Unlock()
}

// splice copies both ways until both directions end, carrying half-close.
// On Linux io.Copy between two *net.TCPConn uses splice(2): the bytes never
// enter user space, and they are ciphertext anyway.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if err != nil {
			// A reset on one side: tear down both so nothing hangs.
			a.Close()
			b.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// Revoke revokes a member and closes its connections and sessions at once.
func (s *Server) Revoke(ctx context.Context, id string) (enroll.Member, error) {
	m, err := s.auth.Revoke(ctx, id)
	if err != nil {
		return m, err
	}
	s.mu.Lock()
	var victims []*controlConn
	for cc := range s.conns[id] {
		victims = append(victims, cc)
	}
	for name, cc := range s.relays {
		if cc.id == id {
			delete(s.relays, name)
		}
	}
	var sessions []*session
	for sess := range s.spliced {
		if sess.from == id || sess.to == id {
			sessions = append(sessions, sess)
		}
	}
	for tok, sess := range s.sessions {
		if sess.from == id || sess.to == id {
			delete(s.sessions, tok)
			sessions = append(sessions, sess)
		}
	}
	s.mu.Unlock()
	for _, cc := range victims {
		cc.push(control.TypeRevoked, control.Empty{})
		cc.conn.Close()
	}
	for _, sess := range sessions {
		sess.close()
	}
	s.log.Info("member revoked", "node", id, "connections_closed", len(victims), "sessions_closed", len(sessions))
	return m, nil
}

// Live reports whether a member has a control connection, which relay it
// registered and whether its customer paused it.
func (s *Server) Live(id string) (connected bool, relay string, paused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for cc := range s.conns[id] {
		connected = true
		paused = paused || cc.paused
		if cc.relay != "" {
			relay = cc.relay
		}
	}
	return connected, relay, paused
}
