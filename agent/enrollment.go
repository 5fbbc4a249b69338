// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/internal/atomicfile"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
)

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
	for {
		cred, err := n.redeem(ctx, hubs, t, relay)
		if err == nil {
			enr := &Enrollment{
				Vendor:            t.Vendor,
				Project:           t.Project,
				Hubs:              t.Hubs,
				HubKey:            t.HubPublic(),
				AuthorityKey:      t.AuthorityPublic(),
				AuthorityNoiseKey: t.AuthorityNoisePublic(),
				CommandKey:        t.CommandPublic(),
				ReleaseKey:        t.ReleasePublic(),
				TicketID:          g.TicketID,
				EnrolledAt:        time.Now().UTC(),
				Credential:        cred,
			}
			if err := atomicfile.WriteJSON(filepath.Join(n.opts.StateDir, statedir.Enrollment), enr); err != nil {
				return nil, fmt.Errorf("save enrollment: %w", err)
			}
			if g.Uses == 1 {
				// A redeemed one-time ticket is worth nothing, but it is a
				// secret file: don't leave it lying around.
				if err := os.Remove(n.opts.TicketFile); err == nil {
					n.log.Info("deleted the redeemed one-time ticket", "ticket_file", n.opts.TicketFile)
				}
			}
			c, _ := enroll.PeekCredential(cred)
			n.log.Info("enrolled; the ticket has been redeemed and is no longer needed",
				"ticket", g.TicketID, "attributes", attrsValue(c.Attributes), "relay", c.Relay, "enroller", c.Enroller)
			return enr, nil
		}
		var ce *control.Error
		var km *HubKeyMismatchError
		wait := jitter(backoff)
		switch d, slow := slowDown(err); {
		case slow:
			wait = max(wait, d) // the authority is busy: not a refusal
		case errors.As(err, &ce):
			return nil, fmt.Errorf("ticket %s refused by the authority: %s", g.TicketID, ce.Message)
		case errors.As(err, &km):
			return nil, err
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		n.log.Warn("authority not reachable; retrying", "hubs", hubs, "err", err, "retry_in", wait.Round(time.Millisecond))
		if sleepCtx(ctx, wait) != nil {
			return nil, ctx.Err()
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// redeem hands the ticket's secret to the authority, end to end through
// the relay (which never sees it), and checks the credential it returns.
func (n *Node) redeem(ctx context.Context, hubs []string, t *enroll.Ticket, relay string) ([]byte, error) {
	var resp control.CredentialResponse
	err := askAuthority(ctx, n.dial(), n.static, authorityKeys{hubs: hubs, noise: t.AuthorityNoisePublic()}, func(h *hubConn) error {
		return h.Call(ctx, control.TypeRedeem, control.RedeemRequest{Secret: t.Secret, Relay: relay}, &resp)
	})
	if err != nil {
		return nil, err
	}
	if _, err := enroll.VerifyCredential(t.AuthorityPublic(), resp.Credential, n.static.Public(), time.Now()); err != nil {
		return nil, &control.Error{Code: control.ErrCodeInternal, Message: "the authority returned an invalid credential: " + err.Error()}
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
			return fmt.Errorf("ticket names authority key %s, but this %s build trusts only %s", t.AuthorityPublic().String(), brand.Vendor(), k.String())
		}
	}
	if s := brand.CommandKey(); s != "" {
		k, err := key.ParseSigningPublic(s)
		if err != nil {
			return fmt.Errorf("embedded command key: %w", err)
		}
		if !k.Equal(t.CommandPublic()) {
			return fmt.Errorf("ticket names command key %s, but this %s build trusts only %s", t.CommandPublic().String(), brand.Vendor(), k.String())
		}
	}
	if s := brand.ReleaseKey(); s != "" {
		k, err := key.ParseSigningPublic(s)
		if err != nil {
			return fmt.Errorf("embedded release key: %w", err)
		}
		if rk := t.ReleasePublic(); !rk.IsZero() && !k.Equal(rk) {
			return fmt.Errorf("ticket names release key %s, but this %s build trusts only %s", rk.String(), brand.Vendor(), k.String())
		}
	}
	return nil
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
