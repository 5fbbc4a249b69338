// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package agent is the node runtime. Node.Run wires the state directory
// (identity, enrollment), the config, the control connection to the hub
// (with reconnect and backoff), relay registration, outlets and inlets,
// and the local control socket.
//
// Imports: wire/*, enroll, portal, policy, agent/config, agent/localapi,
// internal/*. Imported by cmd/*-agent. Never imports hub.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeportal/connect/agent/command"
	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/policy"
	"github.com/edgeportal/connect/portal"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
)

// Options configure a Node.
type Options struct {
	StateDir   string         // required
	TicketFile string         // read only when the node has not enrolled yet
	Config     *config.Config // nil means an empty config
	Logger     *slog.Logger   // nil means discard
	// HubAddr overrides the hub address from the enrollment. Optional.
	HubAddr string
	// WaitForTicket makes an unenrolled node idle until a ticket appears
	// in its state directory (packaged installs, before `install --ticket`).
	WaitForTicket bool
	// Metrics, if not nil, receives the node's metrics.
	Metrics *prometheus.Registry
	// KeepAlive overrides DefaultKeepAlive (tests of dead paths).
	KeepAlive time.Duration
}

// Origins of outlets and inlets.
const (
	OriginConfig = "config"
	OriginCLI    = "cli"
	OriginVendor = "vendor"
)

// ErrRevoked is returned by Run when the hub says this node is no longer a
// member.
var ErrRevoked = errors.New("this node's membership was revoked by the hub; it needs a new enrollment ticket")

// Node is a running agent.
type Node struct {
	opts   Options
	log    *slog.Logger
	cfg    *config.Config
	static key.NodePrivate
	self   portal.Self
	dialer net.Dialer

	mu        sync.Mutex
	enr       *Enrollment
	cred      *enroll.Credential
	hub       *hubConn
	hubErr    string
	relayUp   bool
	relayErr  string
	outlets   map[string]*outlet
	inlets    map[string]*inlet
	hubReady  chan struct{} // closed while a hub connection is up
	portalsWG sync.WaitGroup
	runCtx    context.Context

	allow    *command.AllowList // nil: no remote outlets
	audit    *command.Audit
	paused   bool
	cmds     cmdState
	cmdMu    sync.Mutex
	cmdQueue chan queuedCommand
	restart  bool
	stop     context.CancelFunc
	metrics  *nodeMetrics
}

type outlet struct {
	name   string
	to     string
	allow  string
	expr   policy.Expr // nil = use the default for tcp-outlet
	origin string
	// dialControl checks every address a vendor outlet dials against the
	// customer's allow-list; nil for local outlets.
	dialControl func(network, address string, c syscall.RawConn) error
}

type inlet struct {
	from, via, to string
	allow         string
	expr          policy.Expr
	origin        string
	ln            net.Listener
}

// New returns a Node; Run starts it.
func New(opts Options) *Node {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := opts.Config
	if cfg == nil {
		cfg = &config.Config{}
	}
	n := &Node{
		opts:     opts,
		log:      log,
		cfg:      cfg,
		outlets:  map[string]*outlet{},
		inlets:   map[string]*inlet{},
		hubReady: make(chan struct{}),
		cmdQueue: make(chan queuedCommand, 256),
	}
	n.metrics = newNodeMetrics(n, opts.Metrics)
	return n
}

// Run runs the node until ctx is done. It returns an error only for
// problems a person must fix (bad state directory, refused ticket,
// revoked membership); network trouble is retried forever. The error is
// also recorded in the state directory for `install` and `doctor`.
func (n *Node) Run(ctx context.Context) error {
	err := n.run(ctx)
	if err != nil && ctx.Err() == nil && !errors.Is(err, ErrRestart) {
		RecordError(n.opts.StateDir, err)
	}
	return err
}

func (n *Node) run(ctx context.Context) error {
	dir := n.opts.StateDir
	if dir == "" {
		return errors.New("no state directory given")
	}
	if err := CheckStateDir(dir, true); err != nil {
		return err
	}
	static, created, err := loadOrCreateKey(dir)
	if err != nil {
		return err
	}
	n.static = static
	id := string(static.Public().ID())
	n.log = n.log.With("node", id)
	if created {
		n.log.Info("created node identity", "state_dir", dir)
	}
	n.log.Info("starting", "version", buildinfo.Version(), "brand", brand.Name())

	enr, err := LoadEnrollment(dir)
	if err != nil {
		return err
	}
	installedTicket := filepath.Join(dir, InstalledTicketFile)
	if enr == nil {
		fromInstall := false
		if n.opts.TicketFile == "" {
			if _, err := os.Stat(installedTicket); err != nil {
				if !n.opts.WaitForTicket {
					return fmt.Errorf("this node is not enrolled yet: pass --enrollment-ticket FILE")
				}
				if err := n.waitForTicket(ctx, installedTicket); err != nil {
					return err
				}
			}
			n.opts.TicketFile, fromInstall = installedTicket, true
		}
		if enr, err = n.enroll(ctx); err != nil {
			return err
		}
		if fromInstall {
			// Redeemed: the secret is useless now; don't keep it around.
			os.Remove(installedTicket)
		}
	} else if n.opts.TicketFile != "" {
		n.log.Info("already enrolled; the ticket is not needed any more and was not read", "ticket_file", n.opts.TicketFile)
	}
	if _, err := os.Stat(installedTicket); err == nil {
		os.Remove(installedTicket)
	}
	cred, err := enroll.PeekCredential(enr.Credential)
	if err != nil {
		return fmt.Errorf("stored credential: %w", err)
	}
	n.enr, n.cred = enr, cred
	if r := n.cfg.Relay; r != "" && r != cred.Relay {
		allowed := "no relay"
		if cred.Relay != "" {
			allowed = fmt.Sprintf("only %q", cred.Relay)
		}
		return fmt.Errorf("relay name %q refused: this node's credential allows %s", r, allowed)
	}
	n.self = portal.Self{
		Static:     static,
		Authority:  enr.AuthorityKey,
		Credential: n.credential,
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.runCtx = ctx
	n.mu.Lock()
	n.stop = cancel
	n.mu.Unlock()
	if err := n.loadPortals(ctx); err != nil {
		n.closeInlets()
		return err
	}
	defer n.closeInlets()
	if err := n.setupCommands(); err != nil {
		return err
	}
	go n.commandWorker(ctx)
	go n.autoUpdate(ctx)
	stop, err := localapi.Serve(ctx, dir, n)
	if err != nil {
		return err
	}
	defer stop()
	err = n.loop(ctx)
	cancel()
	n.closeInlets()
	n.portalsWG.Wait()
	n.mu.Lock()
	restart := n.restart
	n.mu.Unlock()
	if restart {
		return ErrRestart
	}
	return err
}

func (n *Node) credential() []byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.enr.Credential
}

func (n *Node) relayName() string {
	if n.cfg.Relay != "" {
		return n.cfg.Relay
	}
	return n.cred.Relay
}

func (n *Node) hubAddrs() []string {
	if n.opts.HubAddr != "" {
		return []string{n.opts.HubAddr}
	}
	return n.enr.Hubs
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enroll redeems the ticket. Refusals are final; an unreachable hub is
// retried with backoff until ctx ends.
func (n *Node) enroll(ctx context.Context) (*Enrollment, error) {
	text, err := os.ReadFile(n.opts.TicketFile)
	if err != nil {
		return nil, fmt.Errorf("read ticket: %w", err)
	}
	t, g, err := enroll.ParseTicket(string(text))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.opts.TicketFile, err)
	}
	if err := CheckTicketAgainstBuild(t); err != nil {
		return nil, err
	}
	if time.Now().After(g.Expires()) {
		return nil, fmt.Errorf("ticket %s expired at %s", g.TicketID, g.Expires().UTC().Format(time.RFC3339))
	}
	relay := n.cfg.Relay
	if relay != "" && relay != g.Relay {
		if g.Relay == "" {
			return nil, fmt.Errorf("relay name %q refused: the ticket does not allow registering a relay", relay)
		}
		return nil, fmt.Errorf("relay name %q refused: the ticket allows only %q", relay, g.Relay)
	}
	hubs := t.Hubs
	if n.opts.HubAddr != "" {
		hubs = []string{n.opts.HubAddr}
	}
	backoff := initialBackoff
	for attempt := 0; ; attempt++ {
		addr := hubs[attempt%len(hubs)]
		cred, err := n.redeem(ctx, addr, t, relay)
		if err == nil {
			enr := &Enrollment{
				Vendor:       t.Vendor,
				Project:      t.Project,
				Hubs:         t.Hubs,
				HubKey:       t.HubPublic(),
				AuthorityKey: t.AuthorityPublic(),
				CommandKey:   t.CommandPublic(),
				ReleaseKey:   t.ReleasePublic(),
				TicketID:     g.TicketID,
				EnrolledAt:   time.Now().UTC(),
				Credential:   cred,
			}
			if err := saveJSON(filepath.Join(n.opts.StateDir, EnrollmentFile), enr); err != nil {
				return nil, fmt.Errorf("save enrollment: %w", err)
			}
			c, _ := enroll.PeekCredential(cred)
			n.log.Info("enrolled; the ticket has been redeemed and is no longer needed",
				"ticket", g.TicketID, "attributes", c.Attributes, "relay", c.Relay, "enroller", c.Enroller)
			return enr, nil
		}
		var ce *control.Error
		var km *HubKeyMismatchError
		switch {
		case errors.As(err, &ce):
			return nil, fmt.Errorf("ticket %s refused by the hub: %s", g.TicketID, ce.Message)
		case errors.As(err, &km):
			return nil, err
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		wait := jitter(backoff)
		n.log.Warn("hub not reachable; retrying", "hub", addr, "err", err, "retry_in", wait.Round(time.Millisecond))
		if sleepCtx(ctx, wait) != nil {
			return nil, ctx.Err()
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (n *Node) redeem(ctx context.Context, addr string, t *enroll.Ticket, relay string) ([]byte, error) {
	h, err := dialHub(ctx, addr, n.static, t.HubPublic())
	if err != nil {
		return nil, err
	}
	defer h.close()
	go h.run(func(control.Msg) {})
	var resp control.CredentialResponse
	if err := h.call(ctx, control.TypeRedeem, control.RedeemRequest{Secret: t.Secret, Relay: relay}, &resp); err != nil {
		return nil, err
	}
	if _, err := enroll.VerifyCredential(t.AuthorityPublic(), resp.Credential, n.static.Public(), time.Now()); err != nil {
		return nil, &control.Error{Code: control.ErrCodeInternal, Message: "the hub returned an invalid credential: " + err.Error()}
	}
	return resp.Credential, nil
}

// CheckTicketAgainstBuild refuses a ticket whose keys differ from the keys
// a branded build embeds.
func CheckTicketAgainstBuild(t *enroll.Ticket) error {
	if s := brand.AuthorityKey(); s != "" {
		k, err := key.ParseSigningPublic(s)
		if err != nil {
			return fmt.Errorf("embedded authority key: %w", err)
		}
		if !k.Equal(t.AuthorityPublic()) {
			return fmt.Errorf("ticket names authority key %s, but this %s build trusts only %s", t.AuthorityPublic().Fingerprint(), brand.Vendor(), k.Fingerprint())
		}
	}
	if s := brand.CommandKey(); s != "" {
		k, err := key.ParseSigningPublic(s)
		if err != nil {
			return fmt.Errorf("embedded command key: %w", err)
		}
		if !k.Equal(t.CommandPublic()) {
			return fmt.Errorf("ticket names command key %s, but this %s build trusts only %s", t.CommandPublic().Fingerprint(), brand.Vendor(), k.Fingerprint())
		}
	}
	return nil
}

// loop keeps a control connection to the hub, reconnecting with jittered
// exponential backoff.
func (n *Node) loop(ctx context.Context) error {
	backoff := initialBackoff
	for attempt := 0; ; attempt++ {
		addrs := n.hubAddrs()
		addr := addrs[attempt%len(addrs)]
		start := time.Now()
		err := n.session(ctx, addr)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrRevoked) {
			n.log.Error("membership revoked; stopping", "err", err)
			os.Rename(filepath.Join(n.opts.StateDir, EnrollmentFile), filepath.Join(n.opts.StateDir, EnrollmentFile+".revoked"))
			return err
		}
		if time.Since(start) > time.Minute {
			backoff = initialBackoff
		}
		var cs *ClockSkewError
		if errors.As(err, &cs) {
			// Not a network problem: retrying fast would only spin. Say
			// what to fix and look again in a minute.
			n.mu.Lock()
			n.hubErr = err.Error()
			n.mu.Unlock()
			n.log.Error("cannot work with the hub", "err", err)
			if sleepCtx(ctx, time.Minute) != nil {
				return nil
			}
			continue
		}
		n.mu.Lock()
		n.hubErr = err.Error()
		n.mu.Unlock()
		n.metrics.reconnects.Inc()
		wait := jitter(backoff)
		n.log.Warn("hub connection lost; reconnecting", "hub", addr, "err", err, "retry_in", wait.Round(time.Millisecond))
		if sleepCtx(ctx, wait) != nil {
			return nil
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func isRevoked(err error) bool {
	var ce *control.Error
	return errors.As(err, &ce) && (ce.Code == control.ErrCodeRevoked || ce.Code == control.ErrCodeNotMember)
}

// session runs one control connection until it fails.
func (n *Node) session(ctx context.Context, addr string) error {
	h, err := dialHub(ctx, addr, n.static, n.enr.HubKey)
	if err != nil {
		return err
	}
	defer h.close()
	keepalive := DefaultKeepAlive
	if n.opts.KeepAlive > 0 {
		keepalive = n.opts.KeepAlive
	}
	h.keepalive = keepalive
	if skew := time.Since(time.Unix(h.hello.TimeUnix, 0)); skew > enroll.ClockSkew || -skew > enroll.ClockSkew {
		return &ClockSkewError{Skew: skew}
	}
	revoked := make(chan struct{}, 1)
	go h.run(func(m control.Msg) {
		switch m.Type {
		case control.TypeIncoming:
			var in control.Incoming
			if err := control.DecodeBody(m, &in); err != nil {
				n.log.Warn("bad incoming session push", "err", err)
				return
			}
			n.portalsWG.Add(1)
			go func() {
				defer n.portalsWG.Done()
				n.serveIncoming(ctx, h.addr, in)
			}()
		case control.TypeCommand:
			var p control.CommandPush
			if err := control.DecodeBody(m, &p); err != nil {
				p = control.CommandPush{Data: m.Body}
			}
			n.queueCommand(h, p)
		case control.TypeRevoked:
			select {
			case revoked <- struct{}{}:
			default:
			}
		}
	})
	if err := n.refresh(ctx, h); err != nil {
		return err
	}
	relay := n.relayName()
	if relay != "" {
		err := h.call(ctx, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: relay}, nil)
		n.mu.Lock()
		if err != nil {
			n.relayErr = err.Error()
		} else {
			n.relayUp, n.relayErr = true, ""
		}
		n.mu.Unlock()
		if err != nil {
			n.log.Error("relay registration refused", "relay", relay, "err", err)
		} else {
			n.log.Info("relay connected", "relay", relay)
		}
	}
	n.mu.Lock()
	n.hub, n.hubErr = h, ""
	close(n.hubReady)
	paused := n.paused
	n.mu.Unlock()
	if paused {
		h.call(ctx, control.TypeNodeState, control.NodeState{Paused: true}, nil)
	}
	go n.finishUpdate(ctx, h)
	n.log.Info("connected to hub", "hub", addr)
	os.Remove(filepath.Join(n.opts.StateDir, LastErrorFile))
	defer func() {
		n.mu.Lock()
		n.hub, n.relayUp = nil, false
		n.hubReady = make(chan struct{})
		n.mu.Unlock()
	}()

	ping := time.NewTicker(keepalive)
	defer ping.Stop()
	for {
		refreshIn := time.Until(n.refreshAt())
		refreshT := time.NewTimer(max(refreshIn, time.Second))
		select {
		case <-ctx.Done():
			refreshT.Stop()
			return ctx.Err()
		case <-h.done:
			refreshT.Stop()
			return fmt.Errorf("hub connection lost: %w", h.err)
		case <-revoked:
			refreshT.Stop()
			return ErrRevoked
		case <-ping.C:
			refreshT.Stop()
			pctx, cancel := context.WithTimeout(ctx, keepalive)
			err := h.call(pctx, control.TypePing, control.Ping{TimeUnix: time.Now().Unix()}, nil)
			cancel()
			if err != nil {
				return fmt.Errorf("keepalive: %w", err)
			}
		case <-refreshT.C:
			if err := n.refresh(ctx, h); err != nil {
				return err
			}
		}
	}
}

// refreshAt is when the credential should be refreshed: at half-life.
func (n *Node) refreshAt() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	life := n.cred.Expires().Sub(n.cred.Issued())
	return n.cred.Issued().Add(life / 2)
}

// refresh gets a fresh credential and stores it.
func (n *Node) refresh(ctx context.Context, h *hubConn) error {
	var resp control.CredentialResponse
	if err := h.call(ctx, control.TypeRefresh, control.RefreshRequest{}, &resp); err != nil {
		if isRevoked(err) {
			return fmt.Errorf("%w (%v)", ErrRevoked, err)
		}
		return fmt.Errorf("refresh credential: %w", err)
	}
	c, err := enroll.VerifyCredential(n.enr.AuthorityKey, resp.Credential, n.static.Public(), time.Now())
	if err != nil {
		return fmt.Errorf("refresh credential: %w", err)
	}
	n.mu.Lock()
	enr := *n.enr
	enr.Credential = resp.Credential
	n.enr, n.cred = &enr, c
	n.mu.Unlock()
	if err := saveJSON(filepath.Join(n.opts.StateDir, EnrollmentFile), &enr); err != nil {
		n.log.Error("could not save the refreshed credential; keeping it in memory", "err", err)
	}
	n.log.Debug("credential refreshed", "expires", c.Expires().UTC().Format(time.RFC3339))
	return nil
}

// currentHub waits briefly for a hub connection.
func (n *Node) currentHub(ctx context.Context, wait time.Duration) (*hubConn, error) {
	n.mu.Lock()
	h, ready := n.hub, n.hubReady
	n.mu.Unlock()
	if h != nil {
		return h, nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ready:
	case <-t.C:
		return nil, errors.New("not connected to the hub")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.hub == nil {
		return nil, errors.New("not connected to the hub")
	}
	return n.hub, nil
}

// Status implements localapi.Backend.
func (n *Node) Status(ctx context.Context) localapi.Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := localapi.Status{
		Identifier:        n.cred.ID,
		Attributes:        n.cred.Attributes,
		Enroller:          n.cred.Enroller,
		Project:           n.enr.Project,
		Vendor:            n.enr.Vendor,
		HubConnected:      n.hub != nil,
		HubError:          n.hubErr,
		Relay:             localapi.RelayStatus{Name: n.relayName(), Connected: n.relayUp, Error: n.relayErr},
		CredentialExpires: n.cred.Expires().UTC(),
		Version:           buildinfo.Version(),
		StateDir:          n.opts.StateDir,
		Outlets:           []localapi.Outlet{},
		Inlets:            []localapi.Inlet{},
		Paused:            n.paused,
	}
	if st.Attributes == nil {
		st.Attributes = map[string]string{}
	}
	if n.hub != nil {
		st.Hub = n.hub.addr
	} else if a := n.hubAddrs(); len(a) > 0 {
		st.Hub = a[0]
	}
	for _, o := range n.outlets {
		st.Outlets = append(st.Outlets, localapi.Outlet{Name: o.name, To: o.to, Allow: o.effectiveAllowText(n.cfg), Origin: o.origin})
	}
	for _, in := range n.inlets {
		li := localapi.Inlet{From: in.from, Via: in.via, To: in.to, Allow: in.effectiveAllowText(n.cfg), Origin: in.origin}
		if in.ln != nil {
			li.Listening = in.ln.Addr().String()
		}
		st.Inlets = append(st.Inlets, li)
	}
	sort.Slice(st.Outlets, func(i, j int) bool { return st.Outlets[i].Name < st.Outlets[j].Name })
	sort.Slice(st.Inlets, func(i, j int) bool { return st.Inlets[i].From < st.Inlets[j].From })
	return st
}

// CreateTicket implements localapi.Backend: an enroller node asks the hub.
func (n *Node) CreateTicket(ctx context.Context, r localapi.TicketRequest) (string, error) {
	n.mu.Lock()
	enroller := n.cred.Enroller
	n.mu.Unlock()
	if !enroller {
		return "", errors.New("this node is not an enroller: its ticket did not grant the enroller role")
	}
	o := enroll.TicketOptions{Attributes: r.Attributes, Relay: r.Relay, ExpiresIn: r.ExpiresIn, Uses: r.Uses}
	if err := o.Validate(); err != nil {
		return "", err
	}
	h, err := n.currentHub(ctx, 5*time.Second)
	if err != nil {
		return "", err
	}
	var resp control.CreateTicketResponse
	err = h.call(ctx, control.TypeCreateTicket, control.CreateTicketRequest{
		Attributes: r.Attributes, Relay: r.Relay, ExpiresIn: int64(r.ExpiresIn / time.Second), Uses: r.Uses,
	}, &resp)
	if err != nil {
		return "", err
	}
	return resp.Ticket, nil
}

// waitForTicket idles until a ticket file appears at path.
func (n *Node) waitForTicket(ctx context.Context, path string) error {
	n.log.Info("not enrolled: waiting for an enrollment ticket", "path", path,
		"hint", brand.AgentBinary()+" install --ticket FILE puts it there")
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ClockSkewError means this machine's clock is too far from the hub's for
// credentials to be accepted.
type ClockSkewError struct{ Skew time.Duration }

func (e *ClockSkewError) Error() string {
	dir := "ahead of"
	if e.Skew < 0 {
		dir = "behind"
	}
	return fmt.Sprintf("clock skew: this machine's clock is %s %s the hub's (tolerance %s); fix its time (NTP)",
		e.Skew.Abs().Round(time.Second), dir, enroll.ClockSkew)
}
