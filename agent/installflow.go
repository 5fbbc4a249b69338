// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

// The install workflow: `install` checks everything it can before it
// changes anything, and everything local before the ticket could be
// redeemed, so a ticket is never burned by a local problem. In order:
//
//  1. the config and its variables (offline, line-numbered errors);
//  2. the state directory (not a file, ours to change; an enrolled one
//     means "already installed" and nothing changes);
//  3. the ticket, offline (its checksum and signature, expiry, the build's
//     keys, the relay name the config asks for);
//  4. the binary's place (the hardened unit cannot run one under /home,
//     /root or /tmp), the rights the service manager needs, the inlet
//     ports (bound and released);
//  5. the preflight against the authority, which consumes nothing (also
//     for a dry run; not for an install into an alternate root, which
//     contacts nobody);
//  6. only then the files, the service, its start, and the wait for the
//     node to enroll and bring its relay up.
//
// Errors name the input that is wrong as an InstallError field, never a
// command-line flag: cmd maps fields to its flags.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/installer"
	"github.com/edgeportal/connect/internal/buildinfo"
)

// Install limits.
const (
	// DefaultInstallWait is how long Install waits for the node to come
	// up when InstallOptions.Wait is zero.
	DefaultInstallWait = 60 * time.Second
	// PreflightTimeout bounds the preflight against the authority.
	PreflightTimeout = 20 * time.Second
)

// The inputs an InstallError can name.
const (
	FieldTicket     = "ticket"
	FieldConfig     = "config"
	FieldVariables  = "variables"
	FieldStateDir   = "state directory"
	FieldExecutable = "executable"
	FieldService    = "service"
	FieldHub        = "preflight" // the authority, through the relay, refused or could not be asked
	FieldRoute      = "hub route" // the proxy settings, their auth file, the TLS CA bundle
)

// InstallError is a refusal of Install: which input is wrong (Field, one
// of the Field constants), the file or directory concerned when there is
// one, and why. Nothing was changed.
type InstallError struct {
	Field string
	Path  string
	Err   error
}

func (e *InstallError) Error() string {
	if e.Path != "" {
		return e.Field + " " + e.Path + ": " + e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}

func (e *InstallError) Unwrap() error { return e.Err }

// Errors wrapped by InstallError.
var (
	// ErrNoTicket: a first install needs a ticket.
	ErrNoTicket = errors.New("a first install needs an enrollment ticket")
	// ErrVariablesWithoutConfig: variables were given without a config
	// file to interpolate them into.
	ErrVariablesWithoutConfig = errors.New("variables need a config file")
	// ErrNotInstalled: a reconfiguration found no installed node.
	ErrNotInstalled = errors.New("no installed node to reconfigure")
	// ErrAlreadyRunning: another node runs on the state directory.
	ErrAlreadyRunning = errors.New("another node is already running with this state directory")
)

// InstallOptions say what to install.
type InstallOptions struct {
	// Spec is the service, from installer.NewSpec (required).
	Spec installer.Spec
	// TicketFile is the enrollment ticket; required unless Reconfigure.
	TicketFile string
	// ConfigFile, when not "", is the node config, copied into the state
	// directory with Variables (stored there, never on a command line).
	ConfigFile string
	Variables  map[string]string
	// Proxy, ProxyAuthFile and NoProxy set the hub route (config.Hub's
	// keys of the same names) over the config's, and are stored in the
	// state directory; the auth file is copied there. "" keeps the
	// config's (or, without one, HTTPS_PROXY and NO_PROXY).
	Proxy, ProxyAuthFile, NoProxy string
	// Reconfigure replaces an installed node's config and restarts it.
	Reconfigure bool
	// DryRun runs every check (the preflight included) and describes the
	// plan on Progress, changing nothing.
	DryRun bool
	// Wait is how long to wait for the node to come up (0:
	// DefaultInstallWait).
	Wait time.Duration
	// Progress receives one line per step ("checked      hub …"), and the
	// plan of a dry run; nil discards them.
	Progress io.Writer
}

// InstallResult says what Install did.
type InstallResult struct {
	StateDir string // where the state is (inside the alternate root, if any)
	// AlreadyInstalled: an enrolled node was there and nothing changed;
	// Project and ServiceState describe it.
	AlreadyInstalled bool
	Project          string
	ServiceState     string
	DryRun           bool // the plan was described, nothing changed
	Reconfigured     bool
	// Status is the node as it came up (nil for a dry run, an alternate
	// root or an already installed node).
	Status *localapi.Status
}

// Install installs the node as a service: see the top of this file for
// what it checks, in which order. Every refusal is an *InstallError and
// leaves everything as it was.
func Install(ctx context.Context, o InstallOptions) (*InstallResult, error) {
	out := o.Progress
	if out == nil {
		out = io.Discard
	}
	s := o.Spec
	dir := s.Rooted(s.StateDir)
	res := &InstallResult{StateDir: dir}
	if o.TicketFile == "" && !o.Reconfigure {
		return nil, &InstallError{Field: FieldTicket, Err: ErrNoTicket}
	}

	// 1. The config, as the service will load it (the file and the
	// variables; the service's environment is its own).
	var cfg *config.Config
	var cfgBytes []byte
	if o.ConfigFile != "" {
		var err error
		if cfgBytes, err = os.ReadFile(o.ConfigFile); err != nil {
			return nil, &InstallError{Field: FieldConfig, Path: o.ConfigFile, Err: pathErr(err)}
		}
		if cfg, err = config.Load(cfgBytes, o.Variables); err != nil {
			return nil, &InstallError{Field: FieldConfig, Path: o.ConfigFile, Err: err}
		}
	} else if len(o.Variables) > 0 {
		return nil, &InstallError{Field: FieldVariables, Err: ErrVariablesWithoutConfig}
	}
	// The hub route, as the service will dial: the config's, under what
	// this install sets. Its files are read now (and the auth file
	// copied), so a missing or readable-by-others one stops here.
	route, settings, authData, err := installRoute(cfg, o)
	if err != nil {
		return nil, err
	}

	// 2. The state directory.
	if err := installer.CheckStateDir(s); err != nil {
		return nil, &InstallError{Field: FieldStateDir, Path: dir, Err: err}
	}
	enr, err := LoadEnrollment(dir)
	if err != nil {
		return nil, &InstallError{Field: FieldStateDir, Path: dir, Err: err}
	}
	if enr != nil && !o.Reconfigure {
		res.AlreadyInstalled, res.Project = true, enr.Project
		if st, err := installer.Status(s); err == nil {
			res.ServiceState = st
		}
		return res, nil
	}
	if enr == nil && o.TicketFile == "" {
		return nil, &InstallError{Field: FieldStateDir, Path: dir, Err: ErrNotInstalled}
	}

	// 3. The ticket, offline.
	var ticketText []byte
	var ticket *enroll.Ticket
	var grant enroll.Grant
	if enr == nil {
		if ticketText, err = os.ReadFile(o.TicketFile); err != nil {
			return nil, &InstallError{Field: FieldTicket, Path: o.TicketFile, Err: pathErr(err)}
		}
		if ticket, grant, err = CheckTicket(string(ticketText), cfg); err != nil {
			return nil, &InstallError{Field: FieldTicket, Path: o.TicketFile, Err: err}
		}
	}

	// 4. Everything else local.
	if err := installer.CheckExecutable(s); err != nil {
		return nil, &InstallError{Field: FieldExecutable, Path: s.Executable, Err: err}
	}
	if err := installer.CheckManager(s); err != nil {
		return nil, &InstallError{Field: FieldService, Err: err}
	}
	if s.Root == "" && enr == nil {
		// (A reconfigured node holds its inlet ports itself.)
		if err := CheckInlets(cfg); err != nil {
			return nil, &InstallError{Field: FieldConfig, Path: o.ConfigFile, Err: err}
		}
	}

	// 5. The authority would accept the ticket: asked without consuming it.
	if ticket != nil && s.Root == "" {
		relay := grant.Relay
		if cfg != nil && cfg.Relay != "" {
			relay = cfg.Relay
		}
		pctx, cancel := context.WithTimeout(ctx, PreflightTimeout)
		err := Preflight(pctx, route, ticket, relay)
		cancel()
		if err != nil {
			return nil, &InstallError{Field: FieldHub, Err: err}
		}
		via := ""
		if len(ticket.Hubs) > 0 && route.ProxyFor(ticket.Hubs[0]) != "" {
			via = " through proxy " + route.ProxyFor(ticket.Hubs[0])
		}
		fmt.Fprintf(out, "checked      hub %s accepts ticket %s%s\n", strings.Join(ticket.Hubs, ", "), grant.TicketID, via)
	}

	// 6. The files, the service, its start.
	plan, err := installer.NewPlan(s, append(installFiles(s, ticketText, cfgBytes, o.Variables), routeFiles(s, settings, authData)...))
	if err != nil {
		return nil, err
	}
	if o.DryRun {
		plan.Describe(out)
		res.DryRun = true
		return res, nil
	}
	if o.Reconfigure && enr != nil {
		if err := plan.WriteState(); err != nil {
			return nil, err
		}
		if err := installer.Control(s, "restart"); err != nil {
			return nil, fmt.Errorf("restart service: %w", err)
		}
		res.Reconfigured = true
		fmt.Fprintf(out, "reconfigured and restarted %s\n", s.Name)
	} else if err := plan.Apply(ctx, out); err != nil {
		return nil, err
	}
	if s.Root != "" {
		return res, nil
	}
	wait := o.Wait
	if wait <= 0 {
		wait = DefaultInstallWait
	}
	st, err := AwaitNode(ctx, dir, wait, out)
	if err != nil {
		return nil, err
	}
	res.Status = st
	return res, nil
}

// pathErr is err without the path an *fs.PathError repeats (the
// InstallError names it).
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// installFiles are the files an install places in the state directory:
// the ticket (until the node redeems it), the config with its variables,
// and the install marker.
func installFiles(s installer.Spec, ticket, cfg []byte, vars map[string]string) []installer.File {
	var files []installer.File
	if ticket != nil {
		files = append(files, installer.File{Path: filepath.Join(s.StateDir, statedir.Ticket), Mode: 0o600, Data: ticket, Secret: true})
	}
	if cfg != nil {
		if vars == nil {
			vars = map[string]string{}
		}
		vb, _ := json.Marshal(vars)
		files = append(files,
			installer.File{Path: filepath.Join(s.StateDir, statedir.Config), Mode: 0o600, Data: cfg},
			installer.File{Path: filepath.Join(s.StateDir, statedir.Variables), Mode: 0o600, Data: vb, Secret: true})
	}
	m := statedir.Marker{Service: s.Name, User: s.User, Packaged: s.Packaged, Installed: time.Now().UTC().Format(time.RFC3339), Version: buildinfo.Version()}
	return append(files, installer.File{Path: filepath.Join(s.StateDir, statedir.Installed), Mode: 0o600, Data: m.Encode()})
}

// installRoute builds the hub route an install sets up: cfg's hub
// section (or the defaults) with the install's own settings over it. It
// returns the settings to store and the auth file's bytes to copy.
func installRoute(cfg *config.Config, o InstallOptions) (*Route, RouteSettings, []byte, error) {
	eff := &config.Config{}
	if cfg != nil {
		c := *cfg
		eff = &c
	}
	set := RouteSettings{Proxy: strings.TrimSpace(o.Proxy), NoProxy: o.NoProxy}
	if set.Proxy != "" {
		if err := config.CheckProxy(set.Proxy); err != nil {
			return nil, set, nil, &InstallError{Field: FieldRoute, Err: fmt.Errorf("proxy: %w", err)}
		}
		eff.Hub.Proxy = set.Proxy
	}
	if set.NoProxy != "" {
		eff.Hub.NoProxy = set.NoProxy
	}
	var auth []byte
	if o.ProxyAuthFile != "" {
		if eff.Hub.Proxy == config.ProxyDirect {
			return nil, set, nil, &InstallError{Field: FieldRoute, Err: errors.New("a proxy auth file is given but the proxy is direct")}
		}
		eff.Hub.ProxyAuthFile = o.ProxyAuthFile
		set.ProxyAuth = true
	}
	r, err := NewRoute(eff, nil)
	if err != nil {
		return nil, set, nil, &InstallError{Field: FieldRoute, Err: errors.New(strings.TrimPrefix(err.Error(), "hub route: "))}
	}
	if o.ProxyAuthFile != "" {
		// Read after NewRoute, which checked its mode and content.
		if auth, err = os.ReadFile(o.ProxyAuthFile); err != nil {
			return nil, set, nil, &InstallError{Field: FieldRoute, Path: o.ProxyAuthFile, Err: pathErr(err)}
		}
	}
	return r, set, auth, nil
}

// routeFiles are the state files of the hub route an install set (none
// when it set nothing).
func routeFiles(s installer.Spec, set RouteSettings, auth []byte) []installer.File {
	if set == (RouteSettings{}) {
		return nil
	}
	b, _ := json.MarshalIndent(set, "", "  ")
	files := []installer.File{{Path: filepath.Join(s.StateDir, statedir.Route), Mode: 0o600, Data: append(b, '\n')}}
	if auth != nil {
		files = append(files, installer.File{Path: filepath.Join(s.StateDir, statedir.ProxyAuth), Mode: 0o600, Data: auth, Secret: true})
	}
	return files
}

// CheckInlets binds and releases every inlet's listen address of cfg
// (nil: none), so a port another process holds is found before a ticket
// is redeemed. Port 0 (any free port) needs no check.
func CheckInlets(cfg *config.Config) error {
	if cfg == nil {
		return nil
	}
	for _, in := range cfg.Inlets {
		if _, port, err := net.SplitHostPort(in.From); err == nil && port == "0" {
			continue
		}
		ln, err := net.Listen("tcp", in.From)
		if err != nil {
			return fmt.Errorf("tcp-inlet %s cannot listen: %w", in.From, listenErr(err))
		}
		ln.Close()
	}
	return nil
}

// listenErr is a listen error without the "listen tcp ADDR:" the message
// already says.
func listenErr(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// CheckStart checks, before a node starts on stateDir, what would make it
// fail after it changed something: another node already running there
// (ErrAlreadyRunning: the running node's files stay untouched), a revoked
// identity (*RevokedError), and, for
// a first start, what the ticket is redeemed with: the ticket file (or
// the one an install placed in the state directory), the relay name cfg
// asks for, and the inlet ports. The ticket is not read for a node that
// is enrolled already. Refusals are *InstallError.
func CheckStart(stateDir, ticketFile string, cfg *config.Config) error {
	if _, err := localapi.Dial(stateDir); err == nil {
		return &InstallError{Field: FieldStateDir, Path: stateDir, Err: ErrAlreadyRunning}
	}
	if enr, err := LoadEnrollment(stateDir); err != nil || enr != nil {
		if err == nil && enr.RevokedAt != nil {
			return &RevokedError{At: *enr.RevokedAt} // sticky: say so before anything starts
		}
		return nil // enrolled, or a state directory the node reports on itself
	}
	if ticketFile == "" {
		ticketFile = filepath.Join(stateDir, statedir.Ticket)
		if _, err := os.Stat(ticketFile); err != nil {
			return nil // nothing to redeem: the node says so itself
		}
	}
	text, err := os.ReadFile(ticketFile)
	if err != nil {
		return &InstallError{Field: FieldTicket, Path: ticketFile, Err: pathErr(err)}
	}
	if _, _, err := CheckTicket(string(text), cfg); err != nil {
		return &InstallError{Field: FieldTicket, Path: ticketFile, Err: err}
	}
	if err := CheckInlets(cfg); err != nil {
		return &InstallError{Field: FieldConfig, Err: err}
	}
	return nil
}

// AwaitNode shows progress on out until the node in stateDir is enrolled,
// its hub connected, its relay (if any) registered, and returns its
// status; or it explains, with a diagnosis, why not within wait.
func AwaitNode(ctx context.Context, stateDir string, wait time.Duration, out io.Writer) (*localapi.Status, error) {
	deadline := time.Now().Add(wait)
	said := map[string]bool{}
	say := func(k, format string, args ...any) {
		if !said[k] {
			said[k] = true
			fmt.Fprintf(out, format+"\n", args...)
		}
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if c, err := localapi.Dial(stateDir); err == nil {
			if st, err := c.Status(ctx); err == nil {
				say("enrolled", "enrolled     as %s", st.Identifier)
				if st.HubConnected {
					say("hub", "connected    to hub %s", st.Hub)
				}
				done := st.HubConnected
				if st.Relay.Name != "" {
					if st.Relay.Connected {
						say("relay", "relay        %s connected", st.Relay.Name)
					} else {
						done = false
					}
				}
				if done {
					for _, o := range st.Outlets {
						say("outlet "+o.Name, "outlet       %s → %s ready", o.Name, o.To)
					}
					return &st, nil
				}
			}
		} else if le := LastError(stateDir); le != "" {
			return nil, fmt.Errorf("the node stopped: %s", le)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	var b strings.Builder
	cfg, _ := LoadConfig(stateDir, "", nil, config.LoadOptions{Environ: os.Environ()})
	PrintChecks(&b, Doctor(ctx, stateDir, cfg, nil))
	return nil, fmt.Errorf("the node did not come up within %s; diagnosis:\n%s", wait, strings.TrimRight(b.String(), "\n"))
}

// LoadConfig loads a node's config from its sources (package config):
// the file (path, else the one an install placed in stateDir with its
// saved variables, else none), then the environment and flags of opts.
// vars given here win over saved ones. Without any file it still returns
// a config: the one the environment and flags make.
func LoadConfig(stateDir, path string, vars map[string]string, opts config.LoadOptions) (*config.Config, error) {
	// The hub route an install stored goes over the file and the
	// environment; this call's own flags still win.
	route, err := routeOverrides(stateDir)
	if err != nil {
		return nil, err
	}
	opts.Flags = append(route, opts.Flags...)
	if path != "" {
		return config.LoadFileWith(path, vars, opts)
	}
	installed := filepath.Join(stateDir, statedir.Config)
	if _, err := os.Stat(installed); err != nil {
		if len(vars) > 0 {
			return nil, &InstallError{Field: FieldVariables, Err: ErrVariablesWithoutConfig}
		}
		return config.LoadWith(nil, nil, opts)
	}
	saved := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(stateDir, statedir.Variables)); err == nil {
		if err := json.Unmarshal(b, &saved); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(stateDir, statedir.Variables), err)
		}
	}
	for k, v := range vars {
		saved[k] = v
	}
	return config.LoadFileWith(installed, saved, opts)
}
