// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
)

// Files an installed node keeps beside its identity (see package installer,
// which writes them; the names are shared by convention).
const (
	InstalledTicketFile    = "enrollment.ticket"
	InstalledConfigFile    = "agent.yaml"
	InstalledVariablesFile = "variables.json"
	LastErrorFile          = "last-error"
)

// CheckTicket decodes a ticket offline and refuses an expired one, one
// whose keys differ from the build's, and a relay name it does not grant.
func CheckTicket(text string, cfg *config.Config) (*enroll.Ticket, enroll.Grant, error) {
	t, g, err := enroll.ParseTicket(text)
	if err != nil {
		return nil, g, err
	}
	if err := CheckTicketAgainstBuild(t); err != nil {
		return nil, g, err
	}
	if time.Now().After(g.Expires()) {
		return nil, g, fmt.Errorf("ticket %s expired at %s", g.TicketID, g.Expires().UTC().Format(time.RFC3339))
	}
	if cfg != nil && cfg.Relay != "" && cfg.Relay != g.Relay {
		if g.Relay == "" {
			return nil, g, fmt.Errorf("relay name %q refused: the ticket does not allow registering a relay", cfg.Relay)
		}
		return nil, g, fmt.Errorf("relay name %q refused: the ticket allows only %q", cfg.Relay, g.Relay)
	}
	return t, g, nil
}

// Preflight checks, without consuming the ticket, that its hub is
// reachable, has the key the ticket names, and would accept the ticket
// (known, not used up, not expired, relay name granted).
func Preflight(ctx context.Context, t *enroll.Ticket, relay string) error {
	ephemeral := key.NewNodePrivate()
	var last error
	for _, addr := range t.Hubs {
		h, err := dialHub(ctx, addr, ephemeral, t.HubPublic())
		if err != nil {
			var km *HubKeyMismatchError
			if errors.As(err, &km) {
				return err
			}
			last = err
			continue
		}
		go h.run(func(control.Msg) {})
		err = h.call(ctx, control.TypeRedeem, control.RedeemRequest{Secret: t.Secret, Relay: relay, DryRun: true}, nil)
		h.close()
		var ce *control.Error
		if errors.As(err, &ce) {
			return fmt.Errorf("the hub refuses this ticket: %s", ce.Message)
		}
		return err
	}
	return last
}

// LoadInstalledConfig loads the config an installer placed in the state
// directory, with its saved variables (vars given on the command line
// win). It returns nil when there is none.
func LoadInstalledConfig(stateDir string, vars map[string]string) (*config.Config, error) {
	path := filepath.Join(stateDir, InstalledConfigFile)
	if _, err := os.Stat(path); err != nil {
		return nil, nil
	}
	saved := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(stateDir, InstalledVariablesFile)); err == nil {
		if err := json.Unmarshal(b, &saved); err != nil {
			return nil, fmt.Errorf("%s: %w", InstalledVariablesFile, err)
		}
	}
	for k, v := range vars {
		saved[k] = v
	}
	return config.LoadFile(path, saved)
}

// RecordError writes the reason a node stopped to the state directory, so
// `install` and `doctor` can show it.
func RecordError(stateDir string, err error) {
	if stateDir == "" || err == nil {
		return
	}
	if _, serr := os.Stat(stateDir); serr != nil {
		return
	}
	os.WriteFile(filepath.Join(stateDir, LastErrorFile), []byte(err.Error()+"\n"), 0o600)
}

// LastError returns the recorded reason the node last stopped, or "".
func LastError(stateDir string) string {
	b, _ := os.ReadFile(filepath.Join(stateDir, LastErrorFile))
	return strings.TrimSpace(string(b))
}

// Leave asks the hub to revoke this node's membership.
func Leave(ctx context.Context, stateDir string) error {
	var k key.NodePrivate
	if err := key.ReadFile(filepath.Join(stateDir, NodeKeyFile), &k); err != nil {
		return fmt.Errorf("node identity: %w", err)
	}
	enr, err := LoadEnrollment(stateDir)
	if err != nil || enr == nil {
		return fmt.Errorf("this node is not enrolled (%v)", err)
	}
	var last error
	for _, addr := range enr.Hubs {
		h, err := dialHub(ctx, addr, k, enr.HubKey)
		if err != nil {
			last = err
			continue
		}
		go h.run(func(control.Msg) {})
		err = h.call(ctx, control.TypeLeave, control.Empty{}, nil)
		h.close()
		return err
	}
	return last
}

// Check is one line of `doctor`.
type Check struct {
	OK     bool
	What   string
	Detail string // what is wrong and what to do, or what was found
}

// Doctor diagnoses a node's state directory, hub, relay and outlets.
// serviceState, when not nil, reports whether the OS service is installed
// and running.
func Doctor(ctx context.Context, stateDir string, serviceState func() (string, error)) []Check {
	var out []Check
	add := func(ok bool, what, format string, args ...any) {
		out = append(out, Check{OK: ok, What: what, Detail: fmt.Sprintf(format, args...)})
	}
	if err := CheckStateDir(stateDir, false); err != nil {
		add(false, "state directory", "%v", err)
		return out
	}
	add(true, "state directory", "%s is private to this user", stateDir)
	var static key.NodePrivate
	if err := key.ReadFile(filepath.Join(stateDir, NodeKeyFile), &static); err != nil {
		add(false, "identity", "no node identity (%v): run the agent once with a ticket", err)
		return out
	}
	if err := checkPrivateFile(filepath.Join(stateDir, NodeKeyFile)); err != nil {
		add(false, "identity", "%v", err)
	} else {
		add(true, "identity", "%s", static.Public().ID())
	}
	enr, err := LoadEnrollment(stateDir)
	if err != nil || enr == nil {
		why := "not enrolled yet"
		if err != nil {
			why = err.Error()
		}
		if le := LastError(stateDir); le != "" {
			why += "; last error: " + le
		}
		add(false, "enrollment", "%s: install or run with --ticket FILE", why)
		return out
	}
	if c, err := enroll.VerifyCredential(enr.AuthorityKey, enr.Credential, static.Public(), time.Now()); err != nil {
		add(false, "credential", "%v: the node refreshes it when it reaches the hub", err)
	} else {
		add(true, "credential", "valid until %s (attributes %s, relay %q)", c.Expires().UTC().Format(time.RFC3339), attrList(c.Attributes), c.Relay)
	}
	for _, addr := range enr.Hubs {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			add(false, "hub "+addr, "bad address: %v", err)
			continue
		}
		if _, err := net.DefaultResolver.LookupHost(ctx, host); err != nil {
			add(false, "hub "+addr, "DNS: %v: check the resolver or the hub address", err)
			continue
		}
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		h, err := dialHub(tctx, addr, static, enr.HubKey)
		cancel()
		if err != nil {
			add(false, "hub "+addr, "%v: check that outbound TCP to the hub is allowed", err)
			continue
		}
		skew := time.Since(time.Unix(h.hello.TimeUnix, 0))
		h.close()
		add(true, "hub "+addr, "reachable, key %s matches", enr.HubKey.Fingerprint())
		if skew > enroll.ClockSkew || -skew > enroll.ClockSkew {
			add(false, "clock", "this clock is %s off the hub's: credentials will be refused; fix NTP", skew.Round(time.Second))
		} else {
			add(true, "clock", "within %s of the hub", skew.Abs().Round(time.Second))
		}
	}
	c, err := localapi.Dial(stateDir)
	if err != nil {
		msg := "no node is running with this state directory"
		if le := LastError(stateDir); le != "" {
			msg += "; it last stopped with: " + le
		}
		add(false, "node", "%s", msg)
	} else {
		st, err := c.Status(ctx)
		switch {
		case err != nil:
			add(false, "node", "status: %v", err)
		case st.Relay.Name != "" && !st.Relay.Connected:
			add(false, "relay "+st.Relay.Name, "not registered: %s", orElse(st.Relay.Error, st.HubError))
		case st.Relay.Name != "":
			add(true, "relay "+st.Relay.Name, "registered at the hub")
		default:
			add(true, "node", "running, no relay configured")
		}
		if err == nil {
			var d net.Dialer
			for _, o := range st.Outlets {
				tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				conn, err := d.DialContext(tctx, "tcp", o.To)
				cancel()
				if err != nil {
					add(false, "outlet "+o.Name, "target %s unreachable: %v", o.To, err)
					continue
				}
				conn.Close()
				add(true, "outlet "+o.Name, "target %s reachable", o.To)
			}
		}
	}
	if serviceState != nil {
		st, err := serviceState()
		switch {
		case err != nil:
			add(false, "service", "%v", err)
		case st == "running":
			add(true, "service", "installed and running")
		case st == "not installed":
			add(true, "service", "not installed (the node runs in the foreground)")
		default:
			add(false, "service", "%s: start it with the start command", st)
		}
	}
	return out
}

func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func attrList(m map[string]string) string {
	var parts []string
	for _, k := range enroll.SortedAttributes(m) {
		parts = append(parts, k+"="+m[k])
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// PrintChecks writes doctor lines and reports whether all passed.
func PrintChecks(w io.Writer, checks []Check) bool {
	ok := true
	for _, c := range checks {
		mark := "ok  "
		if !c.OK {
			mark, ok = "FAIL", false
		}
		fmt.Fprintf(w, "%s %-18s %s\n", mark, c.What, c.Detail)
	}
	return ok
}
