// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/policy"
	"github.com/edgeportal/connect/wire/command"
	"github.com/edgeportal/connect/wire/control"
)

// PushRequest is a vendor command to the node behind a relay.
type PushRequest struct {
	Relay  string             `json:"relay"`
	Op     string             `json:"op"`
	Outlet command.OutletArgs `json:"outlet"`
	// Wait, when positive, blocks until the node answers or it passes.
	Wait time.Duration `json:"wait"`
}

// PushResult is what became of a pushed command.
type PushResult struct {
	Target string `json:"target"`
	Seq    uint64 `json:"seq"`
	State  string `json:"state"` // queued (not answered yet), applied, refused
	Reason string `json:"reason,omitempty"`
}

// memberForRelay finds the current member allowed to register relay.
func memberForRelay(ctx context.Context, st enroll.Store, relay string) (enroll.Member, error) {
	ms, err := st.ListMembers(ctx)
	if err != nil {
		return enroll.Member{}, err
	}
	var found *enroll.Member
	for i := range ms {
		if ms[i].Relay == relay && !ms[i].Revoked {
			if found == nil || ms[i].EnrolledAt > found.EnrolledAt {
				found = &ms[i]
			}
		}
	}
	if found == nil {
		return enroll.Member{}, fmt.Errorf("no member owns relay %q", relay)
	}
	return *found, nil
}

// queueCommand signs and stores a command.
func queueCommand(ctx context.Context, d *Dir, st Store, req PushRequest, now time.Time) (CommandRecord, error) {
	switch req.Op {
	case command.OpOutletAdd:
		if req.Outlet.Name == "" || req.Outlet.To == "" {
			return CommandRecord{}, errors.New("outlet push needs --from NAME and --to HOST:PORT")
		}
		if _, _, err := net.SplitHostPort(req.Outlet.To); err != nil {
			return CommandRecord{}, fmt.Errorf("--to %q: want host:port", req.Outlet.To)
		}
		if req.Outlet.Allow != "" {
			if _, err := policy.Parse(req.Outlet.Allow); err != nil {
				return CommandRecord{}, fmt.Errorf("--allow: %w", err)
			}
		}
	case command.OpOutletRemove:
		if req.Outlet.Name == "" {
			return CommandRecord{}, errors.New("outlet remove needs --from NAME")
		}
	case command.OpUpdateCheck:
	default:
		return CommandRecord{}, fmt.Errorf("unknown operation %q", req.Op)
	}
	m, err := memberForRelay(ctx, st, req.Relay)
	if err != nil {
		return CommandRecord{}, err
	}
	args := req.Outlet
	return st.AddCommand(ctx, m.ID, func(seq uint64) (CommandRecord, error) {
		c := command.Command{
			Project:   d.Config.Project,
			Target:    m.ID,
			Relay:     req.Relay,
			Seq:       seq,
			IssuedAt:  now.Unix(),
			ExpiresAt: now.Add(command.DefaultLifetime).Unix(),
			Op:        req.Op,
		}
		if req.Op != command.OpUpdateCheck {
			c.Outlet = &args
		}
		data, err := command.Sign(d.CommandKey, c)
		if err != nil {
			return CommandRecord{}, err
		}
		return CommandRecord{Target: m.ID, Relay: req.Relay, Seq: seq, Data: data, Summary: c.Summary(),
			State: CommandQueued, CreatedAt: now.Unix()}, nil
	})
}

// Push implements Admin: queue durably, deliver now if the node is
// connected, and optionally wait for its answer.
func (s *Server) Push(ctx context.Context, req PushRequest) (PushResult, error) {
	rec, err := queueCommand(ctx, s.dir, s.store, req, s.now())
	if err != nil {
		return PushResult{}, err
	}
	s.log.Info("command queued", "node", rec.Target, "relay", rec.Relay, "seq", rec.Seq, "op", rec.Summary)
	return s.deliverAndWait(ctx, rec, req.Wait)
}

func (s *Server) deliverAndWait(ctx context.Context, rec CommandRecord, wait time.Duration) (PushResult, error) {
	ch, forget := s.waiters.add(rec.Target, rec.Seq)
	defer forget()
	for _, cc := range s.members.of(rec.Target) {
		cc.deliver(rec, false)
	}
	res := PushResult{Target: rec.Target, Seq: rec.Seq, State: CommandQueued}
	if wait <= 0 {
		return res, nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case r := <-ch:
		res.State, res.Reason = r.State, r.Reason
	case <-t.C:
	case <-ctx.Done():
	}
	return res, nil
}

// Commands implements Admin.
func (s *Server) Commands(ctx context.Context, relay string) ([]CommandRecord, error) {
	return s.store.ListCommands(ctx, relay)
}

type waitKey struct {
	target string
	seq    uint64
}

// commandWaiters are the admins waiting (push --wait) for a node's answer.
type commandWaiters struct {
	mu sync.Mutex // guards m
	m  map[waitKey]chan CommandRecord
}

func (w *commandWaiters) init() { w.m = map[waitKey]chan CommandRecord{} }

func (w *commandWaiters) add(target string, seq uint64) (<-chan CommandRecord, func()) {
	k := waitKey{target, seq}
	ch := make(chan CommandRecord, 1)
	w.mu.Lock()
	w.m[k] = ch
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(w.m, k)
		w.mu.Unlock()
	}
}

func (w *commandWaiters) answer(rec CommandRecord) {
	w.mu.Lock()
	ch := w.m[waitKey{rec.Target, rec.Seq}]
	w.mu.Unlock()
	if ch != nil {
		select {
		case ch <- rec:
		default:
		}
	}
}

// deliver pushes rec unless this connection already carried it. Own
// goroutines may wait for queue space; others only offer (a command not
// delivered now is delivered when the node reconnects).
func (cc *controlConn) deliver(rec CommandRecord, wait bool) {
	cc.cmdMu.Lock()
	defer cc.cmdMu.Unlock()
	if rec.Seq <= cc.delivered {
		return
	}
	b, err := control.Encode(control.TypeCommand, 0, control.CommandPush{Seq: rec.Seq, Data: rec.Data})
	if err != nil {
		return
	}
	if wait {
		err = cc.send(b)
	} else {
		err = cc.offer(b)
	}
	if err == nil {
		cc.delivered = rec.Seq
	}
}

// deliverPending sends a member's queued commands in order.
func (s *Server) deliverPending(ctx context.Context, cc *controlConn) {
	recs, err := s.store.PendingCommands(ctx, cc.id)
	if err != nil {
		cc.log.Error("reading the command queue", "err", err)
		return
	}
	for _, r := range recs {
		cc.deliver(r, true)
	}
}

func handleCommandAck(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	ack, err := body[control.CommandAck](m)
	if err != nil {
		return nil, err
	}
	if _, err := s.auth.Member(ctx, cc.peer); err != nil {
		return nil, err
	}
	state := CommandRefused
	if ack.Applied {
		state = CommandApplied
	}
	rec, err := s.store.AckCommand(ctx, cc.id, ack.Seq, state, ack.Reason, s.now().Unix())
	if err != nil {
		return nil, err
	}
	cc.log.Info("command answered", "seq", ack.Seq, "state", rec.State, "reason", rec.Reason)
	s.metrics.commands.WithLabelValues(rec.State).Inc()
	s.waiters.answer(rec)
	return nil, nil
}

// OfflinePush queues a command in the store of a hub that is not running;
// it is delivered when the hub next serves and the node connects.
func (o *Offline) Push(ctx context.Context, req PushRequest) (PushResult, error) {
	if o.Dir == nil || o.Store == nil {
		return PushResult{}, errors.New("offline admin has no hub directory")
	}
	rec, err := queueCommand(ctx, o.Dir, o.Store, req, time.Now())
	if err != nil {
		return PushResult{}, err
	}
	return PushResult{Target: rec.Target, Seq: rec.Seq, State: CommandQueued}, nil
}

// Commands implements Admin.
func (o *Offline) Commands(ctx context.Context, relay string) ([]CommandRecord, error) {
	return o.Store.ListCommands(ctx, relay)
}

// RawRequest delivers pre-signed command bytes as they are. It is a
// diagnostic for testing a node's refusals (tampered, replayed, foreign or
// garbage commands); the admin socket that accepts it already holds every
// key of the project.
type RawRequest struct {
	Relay string        `json:"relay"`
	Data  []byte        `json:"data"`
	Wait  time.Duration `json:"wait"`
}

// PushRaw queues raw bytes for the node behind a relay.
func (s *Server) PushRaw(ctx context.Context, req RawRequest) (PushResult, error) {
	m, err := memberForRelay(ctx, s.store, req.Relay)
	if err != nil {
		return PushResult{}, err
	}
	rec, err := s.store.AddCommand(ctx, m.ID, func(seq uint64) (CommandRecord, error) {
		return CommandRecord{Target: m.ID, Relay: req.Relay, Seq: seq, Data: req.Data, Summary: "raw bytes",
			State: CommandQueued, CreatedAt: s.now().Unix()}, nil
	})
	if err != nil {
		return PushResult{}, err
	}
	return s.deliverAndWait(ctx, rec, req.Wait)
}
