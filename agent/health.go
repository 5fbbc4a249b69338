// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"maps"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/edgeportal/connect/wire/control"
)

// Health: a node with a relay checks that each outlet's target answers
// (a TCP dial, through the vendor outlets' allow-list check like a
// portal's), every HealthInterval, a few at a time. What it finds, with
// the customer's pause and a drain, is the node's state: it tells the
// relay when the state changes and on every connection, and the relay
// steers new portals among a relay's replicas by it.

// Health check limits.
const (
	// HealthInterval is how often every outlet's target is checked.
	HealthInterval = 5 * time.Second
	// HealthDialTimeout bounds one check's dial.
	HealthDialTimeout = 2 * time.Second
	// MaxHealthDials bounds the checks in flight at once.
	MaxHealthDials = 8
)

// stateReports serializes the node's state reports to the relay, so
// they arrive in the order the state changed.
type stateReports struct {
	mu     sync.Mutex // held across the report's call; guards sent and sentOn
	sent   control.NodeState
	sentOn *hubConn // the connection sent was reported on
}

// runHealth checks the outlets' targets until ctx ends, reporting the
// node's state whenever a check changes it.
func (n *Node) runHealth(ctx context.Context) {
	if n.relayName() == "" {
		return // no relay: nobody reaches the outlets, nobody steers
	}
	t := time.NewTicker(HealthInterval)
	defer t.Stop()
	for {
		if n.checkHealth(ctx) {
			n.reportState(ctx, nil)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// healthTarget is an outlet as a check dials it.
type healthTarget struct {
	name, to string
	control  func(network, address string, c syscall.RawConn) error
}

// checkHealth dials every outlet's target once (MaxHealthDials at a
// time) and records which cannot be reached; it reports whether that
// changed.
func (n *Node) checkHealth(ctx context.Context) bool {
	n.mu.Lock()
	targets := make([]healthTarget, 0, len(n.outlets))
	for _, o := range n.outlets {
		targets = append(targets, healthTarget{o.name, o.to, o.dialControl})
	}
	n.mu.Unlock()
	down := map[string]string{}
	var mu sync.Mutex // guards down
	var wg sync.WaitGroup
	sem := make(chan struct{}, MaxHealthDials)
	for _, tg := range targets {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := n.probe(ctx, tg); err != nil {
				mu.Lock()
				down[tg.name] = err.Error()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	// An outlet removed while it was checked is not down.
	for name := range down {
		if n.outlets[name] == nil {
			delete(down, name)
		}
	}
	changed := !slices.Equal(slices.Sorted(maps.Keys(down)), slices.Sorted(maps.Keys(n.down)))
	for name, why := range down {
		if _, was := n.down[name]; !was {
			n.log.Warn("outlet target unreachable; the relay sends new portals to replicas that can reach it", "outlet", name, "err", why)
		}
	}
	for name := range n.down {
		if _, still := down[name]; !still && n.outlets[name] != nil {
			n.log.Info("outlet target reachable again", "outlet", name)
		}
	}
	n.down = down
	return changed
}

// probe dials tg's target once.
func (n *Node) probe(ctx context.Context, tg healthTarget) error {
	d := n.dialer
	d.Timeout = HealthDialTimeout
	d.Control = tg.control
	ctx, cancel := context.WithTimeout(ctx, HealthDialTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", tg.to)
	if err != nil {
		return err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0) // no TIME_WAIT left behind every few seconds
	}
	return c.Close()
}

// nodeState is what the node reports of itself now.
func (n *Node) nodeState() control.NodeState {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := control.NodeState{Paused: n.paused, Draining: n.drain != nil}
	if len(n.down) > 0 {
		st.Down = slices.Sorted(maps.Keys(n.down))
	}
	return st
}

// reportState tells the relay (over h, or the current connection when
// nil) the node's state, unless that connection already has it. A new
// connection starts from the zero state, so one with nothing to say
// sends nothing.
func (n *Node) reportState(ctx context.Context, h *hubConn) {
	n.reports.mu.Lock()
	defer n.reports.mu.Unlock()
	if h == nil {
		n.mu.Lock()
		h = n.hub
		n.mu.Unlock()
		if h == nil {
			return // sent on the next connection
		}
	}
	if h != n.reports.sentOn {
		n.reports.sent, n.reports.sentOn = control.NodeState{}, h
	}
	st := n.nodeState()
	if sameState(st, n.reports.sent) {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := h.Call(cctx, control.TypeNodeState, st, nil); err != nil {
		n.log.Warn("could not report the node's state to the relay; it is sent again on the next change or connection", "err", err)
		n.reports.sentOn = nil
		return
	}
	n.reports.sent = st
}

func sameState(a, b control.NodeState) bool {
	return a.Paused == b.Paused && a.Draining == b.Draining && slices.Equal(a.Down, b.Down)
}
