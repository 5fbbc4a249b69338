// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/edgeportal/connect/agent/localapi"
)

// Drain, for a maintenance restart: the node tells the relay it is
// draining (the relay then sends new portals to the relay's other
// replicas) and refuses new portals and channels itself with the
// draining code (an inlet node moves its next portals elsewhere), while
// the portals open through its outlets finish. When none is left, or at
// the deadline, it closes the channels peers opened to it. A drain is
// not kept anywhere: the restart it is for serves again.
//
// Drain concerns this node's outlets only; its own inlets keep working.

// Drain limits.
const (
	// DefaultDrainDeadline is how long open portals get when the drain
	// names no deadline.
	DefaultDrainDeadline = 5 * time.Minute
	// MaxDrainDeadline bounds a drain's deadline.
	MaxDrainDeadline = 24 * time.Hour
	// drainCheck is how often a drain looks for portals still open.
	drainCheck = 200 * time.Millisecond
)

// drainingMessage is the reason a draining node gives for a refusal.
const drainingMessage = "the node is draining for maintenance: open portals finish, new ones go elsewhere"

// drainState is a drain in progress or done. Guarded by Node.mu.
type drainState struct {
	since, deadline time.Time
	done            bool
	deadlineReached bool
	cut             []localapi.DrainPortal
}

// Drain implements localapi.Backend: it starts draining (a node already
// draining keeps its first deadline) and returns where the drain is.
func (n *Node) Drain(ctx context.Context, r localapi.DrainRequest) (localapi.DrainStatus, error) {
	d := r.Deadline
	if d == 0 {
		d = DefaultDrainDeadline
	}
	if d < 0 || d > MaxDrainDeadline {
		return localapi.DrainStatus{}, fmt.Errorf("drain deadline %s: must be positive and at most %s", d, MaxDrainDeadline)
	}
	now := time.Now()
	n.mu.Lock()
	started := n.drain == nil
	if started {
		n.drain = &drainState{since: now, deadline: now.Add(d)}
	}
	n.mu.Unlock()
	if started {
		n.log.Warn("draining: the relay sends new portals elsewhere; open portals finish", "deadline", d)
		n.reportState(ctx, nil)
		n.goTracked(func() { n.runDrain(n.runCtx) })
	}
	st := n.DrainStatus(ctx)
	st.Started = started
	return st, nil
}

// DrainStatus implements localapi.Backend.
func (n *Node) DrainStatus(ctx context.Context) localapi.DrainStatus {
	n.mu.Lock()
	ds := n.drain
	var st localapi.DrainStatus
	if ds != nil {
		st = localapi.DrainStatus{Draining: true, Since: ds.since.UTC(), Deadline: ds.deadline.UTC(), Done: ds.done,
			DeadlineReached: ds.deadlineReached, Cut: ds.cut}
	}
	n.mu.Unlock()
	st.Open = n.channels.openPortals()
	return st
}

// runDrain waits for the portals through the outlets to finish (or the
// deadline), then closes the channels peers opened to this node.
func (n *Node) runDrain(ctx context.Context) {
	t := time.NewTicker(drainCheck)
	defer t.Stop()
	for {
		open := n.channels.openPortals()
		n.mu.Lock()
		deadline := n.drain.deadline
		n.mu.Unlock()
		late := !time.Now().Before(deadline)
		if len(open) == 0 || late {
			n.mu.Lock()
			n.drain.done = true
			if len(open) > 0 {
				n.drain.deadlineReached, n.drain.cut = true, open
			}
			n.mu.Unlock()
			closed := n.channels.closeAccepted()
			if len(open) > 0 {
				n.log.Warn("drain deadline reached: closed the portals still open", "portals", len(open), "channels_closed", closed)
			} else {
				n.log.Info("drained: no portal open; channels from peers closed", "channels_closed", closed)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
