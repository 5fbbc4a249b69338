// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/edgeportal/connect/agent"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/internal/cliutil"
)

// drainPoll is how often drain asks the node where it is.
const drainPoll = 500 * time.Millisecond

// drainShown bounds the portals one progress line names.
const drainShown = 5

// cmdDrain drains the running node: the relay sends new portals to the
// relay's other replicas, the node refuses new ones, open ones finish;
// when none is left (exit 0) or at the deadline (the portals still open
// are closed and named, exit 1) the node closes its channels. The node
// serves again once restarted.
func cmdDrain(ctx context.Context, c *cliutil.Call) error {
	d := stateDirFlag(c)
	deadlineText := c.Flags().String("deadline", agent.DefaultDrainDeadline.String(), "how long open portals may take to finish (30s, 5m, 1h) before they are closed")
	var deadline time.Duration
	cl, err := d.parseDial(c, func() error {
		var err error
		if deadline, err = cliutil.Duration("deadline", *deadlineText); err != nil {
			return err
		}
		if deadline <= 0 || deadline > agent.MaxDrainDeadline {
			return cliutil.Usagef("--deadline %s: must be positive and at most %s", *deadlineText, agent.MaxDrainDeadline)
		}
		return nil
	})
	if err != nil {
		return err
	}
	st, err := cl.Drain(ctx, deadline)
	if err != nil {
		return err
	}
	if !st.Started {
		fmt.Fprintf(c.Stdout, "already draining since %s (deadline %s)\n", st.Since.Format(time.RFC3339), st.Deadline.Format(time.RFC3339))
	} else {
		fmt.Fprintf(c.Stdout, "draining: the relay sends new portals to the relay's other replicas; this node refuses new ones (deadline %s)\n", st.Deadline.Format(time.RFC3339))
	}
	// The node ends the drain by the deadline; this waits a little longer
	// for its answer.
	wait := time.NewTimer(time.Until(st.Deadline) + 30*time.Second)
	defer wait.Stop()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	last := -1
	for {
		if st.Done {
			return drained(c.Stdout, st)
		}
		if len(st.Open) != last {
			last = len(st.Open)
			fmt.Fprintf(c.Stdout, "waiting for %d open %s: %s\n", last, plural(last, "portal", "portals"), portalList(st.Open, time.Now()))
		}
		select {
		case <-ctx.Done():
			return errors.New("interrupted: the node goes on draining; `status` shows it")
		case <-wait.C:
			return fmt.Errorf("the node did not finish its drain by the deadline; %d %s still open", len(st.Open), plural(len(st.Open), "portal", "portals"))
		case <-tick.C:
		}
		if st, err = cl.DrainStatus(ctx); err != nil {
			return err
		}
	}
}

// drained prints a finished drain; it is an error when the deadline cut
// portals off.
func drained(w io.Writer, st localapi.DrainStatus) error {
	if st.DeadlineReached {
		n := len(st.Cut)
		return fmt.Errorf("deadline reached: closed %d %s still open: %s", n, plural(n, "portal", "portals"), portalList(st.Cut, st.Deadline))
	}
	fmt.Fprintln(w, "drained: no portal open; the channels from peers are closed. Restart the node for the maintenance: it serves again then")
	return nil
}

// portalList names portals for one line: outlet, peer, how long open.
func portalList(ps []localapi.DrainPortal, now time.Time) string {
	if len(ps) == 0 {
		return "none"
	}
	var parts []string
	for i, p := range ps {
		if i == drainShown {
			parts = append(parts, fmt.Sprintf("and %d more", len(ps)-drainShown))
			break
		}
		parts = append(parts, fmt.Sprintf("%s from %s (open %s)", p.Outlet, p.Peer, now.Sub(p.Since).Round(time.Second)))
	}
	return strings.Join(parts, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
