// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
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

// Preflight checks, without consuming the ticket, that the relay is
// reachable, that the authority behind it has the key the ticket names,
// and that it would accept the ticket (known, not used up, not expired,
// relay name granted). route is how the hub is reached (nil: directly).
func Preflight(ctx context.Context, route *Route, t *enroll.Ticket, relay string) error {
	ephemeral := key.NewNodePrivate()
	err := askAuthority(ctx, dialer(route), ephemeral, authorityKeys{hubs: t.Hubs, noise: t.AuthorityNoisePublic()}, func(h *hubConn) error {
		return h.Call(ctx, control.TypeRedeem, control.RedeemRequest{Secret: t.Secret, Relay: relay, DryRun: true}, nil)
	})
	var ce *control.Error
	if errors.As(err, &ce) {
		return fmt.Errorf("the authority refuses this ticket: %s", ce.Message)
	}
	return err
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
	os.WriteFile(filepath.Join(stateDir, statedir.LastError), []byte(err.Error()+"\n"), 0o600)
}

// LastError returns the recorded reason the node last stopped, or "".
func LastError(stateDir string) string {
	b, _ := os.ReadFile(filepath.Join(stateDir, statedir.LastError))
	return strings.TrimSpace(string(b))
}

// Leave asks the authority to revoke this node's membership, reaching
// the hub through route (nil: directly).
func Leave(ctx context.Context, route *Route, stateDir string) error {
	var k key.NodePrivate
	if err := key.ReadFile(filepath.Join(stateDir, statedir.NodeKey), &k); err != nil {
		return fmt.Errorf("node identity: %w", err)
	}
	enr, err := LoadEnrollment(stateDir)
	if err != nil || enr == nil {
		return fmt.Errorf("this node is not enrolled (%v)", err)
	}
	return askAuthority(ctx, dialer(route), k, enr.authority(enr.Hubs), func(h *hubConn) error {
		return h.Call(ctx, control.TypeLeave, control.Empty{}, nil)
	})
}
