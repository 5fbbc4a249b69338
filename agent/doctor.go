// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/egress"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
)

// Check is one line of `doctor`.
type Check struct {
	OK     bool
	Warn   bool // OK, but something may not work yet (not a failure)
	What   string
	Detail string // what is wrong and what to do, or what was found
}

// Doctor diagnoses a node's state directory, hub route, hub, relay and
// outlets. cfg is the node's config (nil: the defaults), for the hub
// route; serviceState, when not nil, reports whether the OS service is
// installed and running.
func Doctor(ctx context.Context, stateDir string, cfg *config.Config, serviceState func() (string, error)) []Check {
	var out []Check
	add := func(ok bool, what, format string, args ...any) {
		out = append(out, Check{OK: ok, What: what, Detail: fmt.Sprintf(format, args...)})
	}
	if err := statedir.Ensure(stateDir, false); err != nil {
		add(false, "state directory", "%v", err)
		return out
	}
	add(true, "state directory", "%s is private to this user", stateDir)
	var static key.NodePrivate
	if err := key.ReadFile(filepath.Join(stateDir, statedir.NodeKey), &static); err != nil {
		add(false, "identity", "no node identity (%v): run the agent once with a ticket", err)
		return out
	}
	if err := statedir.CheckFile(filepath.Join(stateDir, statedir.NodeKey)); err != nil {
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
	route, err := NewRoute(cfg, nil)
	if err != nil {
		add(false, "hub route", "%v", err)
		route = nil
	}
	for _, addr := range enr.Hubs {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			add(false, "hub "+addr, "bad address: %v", err)
			continue
		}
		if route != nil {
			add(true, "hub route", "%s: %s", addr, route.Describe(addr))
		}
		if route == nil || route.ProxyFor(addr) == "" {
			// Through a proxy the proxy resolves the hub's name.
			if _, err := net.DefaultResolver.LookupHost(ctx, host); err != nil {
				add(false, "hub "+addr, "DNS: %v: check the resolver or the hub address", err)
				continue
			}
		}
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		h, err := dialHub(tctx, dialer(route), addr, static, enr.HubKey, enr.Credential, nil)
		cancel()
		var cs *ClockSkewError
		var hop *egress.HopError
		switch {
		case errors.As(err, &cs):
			// The relay's key was checked before its clock.
			add(true, "hub "+addr, "reachable, relay key %s matches", enr.HubKey.String())
			add(false, "clock", "%v", cs)
			continue
		case errors.As(err, &hop):
			// Names the hop: the proxy, the hub through it, the outer TLS.
			add(false, string(hop.Hop), "%v", hop)
			continue
		case err != nil:
			add(false, "hub "+addr, "%v: check that outbound TCP to the hub is allowed", err)
			continue
		}
		if route != nil {
			if info, ok := route.LastTLS(); ok && info.Addr == addr {
				add(true, "outer TLS", "%s", info.Describe())
			}
		}
		skew := time.Since(time.Unix(h.ServerHello().TimeUnix, 0))
		h.Close()
		add(true, "hub "+addr, "reachable, relay key %s matches, credential accepted", enr.HubKey.String())
		add(true, "clock", "within %s of the hub", skew.Abs().Round(time.Second))
		tctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		err = askAuthority(tctx, dialer(route), static, enr.authority([]string{addr}), func(h *hubConn) error {
			return h.Call(tctx, control.TypePing, control.Ping{}, nil)
		})
		cancel()
		if err != nil {
			add(false, "authority", "%v: credentials cannot be refreshed until it is back (the vendor's side)", err)
		} else {
			add(true, "authority", "reachable end to end through the relay, key %s matches", enr.AuthorityNoiseKey.String())
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
			if ws, err := c.Check(ctx); err == nil {
				for _, w := range ws {
					out = append(out, Check{OK: true, Warn: true, What: w.Kind + " " + w.Name, Detail: w.Message})
				}
			}
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
		switch {
		case !c.OK:
			mark, ok = "FAIL", false
		case c.Warn:
			mark = "warn"
		}
		fmt.Fprintf(w, "%s %-18s %s\n", mark, c.What, c.Detail)
	}
	return ok
}
