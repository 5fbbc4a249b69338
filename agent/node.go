// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package agent is the node runtime. Node.Run wires the state directory
// (identity, enrollment), the config, the control connection to the hub
// (with reconnect and backoff), relay registration, outlets and inlets,
// vendor commands, updates and the local control socket.
//
// # Files, by job
//
//	node.go        Node, Options, Run: the lifecycle and the owner of every goroutine
//	enrollment.go  redeeming the ticket, checking it against the build
//	hubsession.go  the control session: reconnect, refresh, relay registration, keepalive
//	hubconn.go     one control connection: calls and pushes
//	channels.go    one end-to-end channel per peer node, portals as its streams
//	inlets.go      inlets: listening, opening portals
//	outlets.go     outlets: answering portals, checking policy, dialing targets
//	health.go      outlet health checks and the state reported to the relay
//	drain.go       draining for maintenance: no new portals, open ones finish
//	commands.go    vendor commands: verify, judge against the allow-list, apply, audit
//	updates.go     self-update from signed releases
//	backend.go     the local API's backend (status, outlet and inlet management, tickets)
//	install.go     install-time checks and leaving; doctor.go: the diagnosis
//
// Every goroutine the node starts is tracked (Node.goTracked) and Run
// returns only after all of them have. Never imports hub.
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
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeportal/connect/agent/command"
	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/policy"
	"github.com/edgeportal/connect/portal"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
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
	static key.NodePrivate // set by Run before any goroutine starts
	route  *Route          // how hub connections leave; set by Run before anything dials
	self   portal.Self
	dialer net.Dialer

	// runCtx is Run's context, for inlets the local API adds; set once
	// before the local API starts.
	runCtx context.Context
	wg     sync.WaitGroup // every goroutine the node started; Run waits for it

	// mu guards the fields below it. Never held across I/O (network or
	// disk): take a snapshot, unlock, then act.
	mu   sync.Mutex
	enr  *Enrollment
	cred *enroll.Credential
	// refreshNotBefore postpones the next refresh after a failed one.
	refreshNotBefore time.Time
	hub              *hubConn // the live control connection, or nil
	hubErr           string
	relayUp          bool
	relayErr         string
	outlets          map[string]*outlet
	inlets           map[string]*inlet
	hubReady         chan struct{} // closed while a hub connection is up
	paused           bool
	down             map[string]string // outlet → why its target is unreachable (health.go)
	drain            *drainState       // set by drain, until the node restarts (drain.go)
	cmds             cmdState
	restart          bool               // Run returns ErrRestart (an update is in place)
	stop             context.CancelFunc // ends Run

	// warnOnce logs the config's outlet and inlet warnings once, after the
	// first connection to the hub.
	warnOnce sync.Once
	// portalsMu serializes changes to the CLI's outlets and inlets with the
	// write of portals.json, so the file always matches the last change.
	portalsMu sync.Mutex
	// cmdMu serializes the judging of vendor commands (one at a time, in
	// order); it guards nothing else.
	cmdMu    sync.Mutex
	cmdQueue chan queuedCommand

	// reports serializes what the node tells the relay of its state.
	reports stateReports

	allow    *command.AllowList // nil: no remote outlets; set before goroutines start
	audit    *command.Audit     // set before goroutines start
	metrics  *nodeMetrics
	channels *channels // the node's end-to-end channels to peers
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
	// For vendor outlets: the customer's ceiling (from the remote-outlets
	// entries that govern the target) and the effective policy, the
	// vendor's allow AND the ceiling; nil effective admits nobody.
	ceiling   policy.Expr
	effective policy.Expr
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
	n.channels = newChannels(n)
	n.metrics = newNodeMetrics(n, opts.Metrics)
	return n
}

// goTracked runs f in a goroutine that Run waits for.
func (n *Node) goTracked(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// Run runs the node until ctx is done. It returns an error only for
// problems a person must fix (bad state directory, refused ticket,
// revoked membership); network trouble is retried forever. The error is
// also recorded in the state directory for `install` and `doctor`. Run
// returns only after every goroutine it started has ended.
func (n *Node) Run(ctx context.Context) error {
	err := n.run(ctx)
	n.wg.Wait()
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
	if err := statedir.Ensure(dir, true); err != nil {
		return err
	}
	static, created, err := loadOrCreateKey(dir)
	if err != nil {
		return err
	}
	n.static = static
	if n.route, err = NewRoute(n.cfg, n.log); err != nil {
		return err
	}
	id := string(static.Public().ID())
	n.log = n.log.With("node", id)
	if created {
		n.log.Info("created node identity", "state_dir", dir)
	}
	n.log.Info("starting", "version", buildinfo.Version(), "brand", brand.Name())

	enr, err := n.enrollment(ctx)
	if err != nil || enr == nil {
		return err
	}
	if enr.RevokedAt != nil {
		// Sticky: this identity never works again; say so, not "not
		// enrolled yet".
		return &RevokedError{At: *enr.RevokedAt}
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
	ns, err := noiseconn.NewStatic(static)
	if err != nil {
		return fmt.Errorf("node key: %w", err)
	}
	n.self = portal.Self{
		Static:     ns,
		Authority:  enr.AuthorityKey,
		Credential: n.credential,
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.runCtx = ctx
	n.mu.Lock()
	n.stop = cancel
	n.mu.Unlock()
	// Inlets are closed on every return path; their goroutines end then.
	defer n.closeInlets()
	if err := n.loadPortals(ctx); err != nil {
		return err
	}
	if err := n.setupCommands(); err != nil {
		return err
	}
	// The audit log's last records (coalesced denials) are written on
	// every return path.
	defer n.audit.Close()
	n.goTracked(func() { n.audit.Run(ctx) })
	n.goTracked(func() { n.commandWorker(ctx) })
	n.goTracked(func() { n.autoUpdate(ctx) })
	n.goTracked(func() { n.channels.janitor(ctx) })
	n.goTracked(func() { n.runHealth(ctx) })
	// Channels end with the node, and with them every portal in them.
	defer n.channels.closeAll()
	stopAPI, err := localapi.Serve(ctx, dir, n)
	if err != nil {
		return err
	}
	defer stopAPI()
	err = n.loop(ctx)
	n.mu.Lock()
	restart := n.restart
	n.mu.Unlock()
	if restart {
		return ErrRestart
	}
	return err
}

// dial is the node's hub dial function (its route).
func (n *Node) dial() dialFunc { return dialer(n.route) }

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

// enrollment returns the node's enrollment, redeeming its ticket first
// when it has none. It returns (nil, nil) when ctx ends while waiting for
// a ticket.
func (n *Node) enrollment(ctx context.Context) (*Enrollment, error) {
	dir := n.opts.StateDir
	enr, err := LoadEnrollment(dir)
	if err != nil {
		return nil, err
	}
	installedTicket := filepath.Join(dir, statedir.Ticket)
	if enr != nil {
		if n.opts.TicketFile != "" {
			n.log.Info("already enrolled; the ticket is not needed any more and was not read", "ticket_file", n.opts.TicketFile)
		}
		os.Remove(installedTicket)
		return enr, nil
	}
	if n.opts.TicketFile == "" {
		if _, err := os.Stat(installedTicket); err != nil {
			if !n.opts.WaitForTicket {
				return nil, fmt.Errorf("this node is not enrolled yet: pass --enrollment-ticket FILE")
			}
			if err := n.waitForTicket(ctx, installedTicket); err != nil || ctx.Err() != nil {
				return nil, err
			}
		}
		n.opts.TicketFile = installedTicket
	}
	enr, err = n.enroll(ctx)
	if err != nil {
		return nil, err
	}
	// Redeemed: the secret is useless now; don't keep it around.
	os.Remove(installedTicket)
	return enr, nil
}
