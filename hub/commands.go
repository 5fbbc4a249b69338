// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/edgeportal/connect/internal/escape"
	"github.com/edgeportal/connect/policy"
	"github.com/edgeportal/connect/wire/command"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/signed"
)

// The vendor command queue. Commands are signed on the vendor's admin
// side with the command key, which the relay never holds: an admin asks
// the relay for the next command's slot (the target node, its next
// sequence number), signs, and submits the signed bytes, which the relay
// queues durably and delivers in order. A sequence number taken by
// another admin in between is refused and the admin signs again.

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

// CommandSlot is where the next command to a relay's node goes.
type CommandSlot struct {
	Project string `json:"project"`
	Target  string `json:"target"`
	Relay   string `json:"relay"`
	Seq     uint64 `json:"seq"`
}

// SubmitRequest hands the relay a signed command. Raw skips every check
// of the bytes: a diagnostic that delivers tampered, replayed or garbage
// commands to test a node's refusals.
type SubmitRequest struct {
	Relay string        `json:"relay"`
	Data  []byte        `json:"data"`
	Wait  time.Duration `json:"wait"`
	Raw   bool          `json:"raw,omitempty"`
}

// ErrSeqTaken means another command took the sequence number the
// submitted one was signed with.
var ErrSeqTaken = errors.New("the command's sequence number was taken by another command meanwhile")

// Signer signs vendor commands; a file key today, a hardware key or a
// KMS tomorrow.
type Signer interface {
	Sign(c command.Command) ([]byte, error)
}

// KeySigner signs with a command key held in memory.
type KeySigner struct{ Key key.SigningPrivate }

// Sign implements Signer.
func (k KeySigner) Sign(c command.Command) ([]byte, error) { return command.Sign(k.Key, c) }

// CommandAdmin is the part of the relay admin API commands use.
type CommandAdmin interface {
	PrepareCommand(ctx context.Context, relay string) (CommandSlot, error)
	SubmitCommand(ctx context.Context, req SubmitRequest) (PushResult, error)
}

// Push validates req, signs it with signer and submits it through a
// (running or offline) relay admin, signing again if another command took
// its sequence number meanwhile.
func Push(ctx context.Context, a CommandAdmin, signer Signer, req PushRequest, now time.Time) (PushResult, error) {
	if err := validatePush(req); err != nil {
		return PushResult{}, err
	}
	for attempt := 0; ; attempt++ {
		slot, err := a.PrepareCommand(ctx, req.Relay)
		if err != nil {
			return PushResult{}, err
		}
		c := command.Command{
			Project:   slot.Project,
			Target:    slot.Target,
			Relay:     req.Relay,
			Seq:       slot.Seq,
			IssuedAt:  now.Unix(),
			ExpiresAt: now.Add(command.DefaultLifetime).Unix(),
			Op:        req.Op,
		}
		if req.Op != command.OpUpdateCheck {
			args := req.Outlet
			c.Outlet = &args
		}
		data, err := signer.Sign(c)
		if err != nil {
			return PushResult{}, fmt.Errorf("sign command: %w", err)
		}
		res, err := a.SubmitCommand(ctx, SubmitRequest{Relay: req.Relay, Data: data, Wait: req.Wait})
		if err != nil && strings.Contains(err.Error(), ErrSeqTaken.Error()) && attempt < 5 {
			continue
		}
		return res, err
	}
}

func validatePush(req PushRequest) error {
	switch req.Op {
	case command.OpOutletAdd:
		if req.Outlet.Name == "" || req.Outlet.To == "" {
			return errors.New("outlet push needs --from NAME and --to HOST:PORT")
		}
		if _, _, err := net.SplitHostPort(req.Outlet.To); err != nil {
			return fmt.Errorf("--to %q: want host:port", req.Outlet.To)
		}
		if req.Outlet.Allow != "" {
			if _, err := policy.Parse(req.Outlet.Allow); err != nil {
				return fmt.Errorf("--allow: %w", err)
			}
		}
	case command.OpOutletRemove:
		if req.Outlet.Name == "" {
			return errors.New("outlet remove needs --from NAME")
		}
	case command.OpUpdateCheck:
	default:
		return fmt.Errorf("unknown operation %q", req.Op)
	}
	return nil
}

// commandQueue is the queue logic both a running relay and an offline
// admin use.
type commandQueue struct {
	dir   *Dir
	store Store
	now   func() time.Time
}

func (q commandQueue) prepare(ctx context.Context, relay string) (CommandSlot, error) {
	b, err := q.store.GetRelay(ctx, relay)
	if errors.Is(err, ErrNotFound) {
		return CommandSlot{}, fmt.Errorf("no node owns relay %q yet (a node owns its relay once it registers it)", relay)
	}
	if err != nil {
		return CommandSlot{}, err
	}
	seq, err := q.store.NextSeq(ctx, b.Owner)
	if err != nil {
		return CommandSlot{}, err
	}
	return CommandSlot{Project: q.dir.Project(), Target: b.Owner, Relay: relay, Seq: seq}, nil
}

// add checks a signed command against its slot and queues it.
func (q commandQueue) add(ctx context.Context, req SubmitRequest) (CommandRecord, error) {
	slot, err := q.prepare(ctx, req.Relay)
	if err != nil {
		return CommandRecord{}, err
	}
	var c command.Command
	summary := "raw bytes"
	if !req.Raw {
		if err := signed.Peek(req.Data, &c); err != nil {
			return CommandRecord{}, fmt.Errorf("not a signed command: %w", err)
		}
		if k := q.dir.Config.CommandKey; !k.IsZero() {
			if err := signed.Verify(k, signed.ContextCommand, req.Data, &command.Command{}); err != nil {
				return CommandRecord{}, fmt.Errorf("command refused: not signed by this project's command key (%s)", k.String())
			}
		}
		switch {
		case c.Project != slot.Project:
			return CommandRecord{}, fmt.Errorf("command is for project %s, not %s", c.Project, slot.Project)
		case c.Target != slot.Target || c.Relay != req.Relay:
			return CommandRecord{}, fmt.Errorf("command is for node %s (relay %q), but relay %q belongs to %s", c.Target, c.Relay, req.Relay, slot.Target)
		}
		summary = c.Summary()
	}
	return q.store.AddCommand(ctx, slot.Target, func(seq uint64) (CommandRecord, error) {
		if !req.Raw && c.Seq != seq {
			return CommandRecord{}, fmt.Errorf("%w (signed with %d, next is %d)", ErrSeqTaken, c.Seq, seq)
		}
		return CommandRecord{Target: slot.Target, Relay: req.Relay, Seq: seq, Data: req.Data, Summary: summary,
			State: CommandQueued, CreatedAt: q.now().Unix()}, nil
	})
}

// PrepareCommand implements CommandAdmin.
func (s *Server) PrepareCommand(ctx context.Context, relay string) (CommandSlot, error) {
	return s.queue().prepare(ctx, relay)
}

// SubmitCommand implements CommandAdmin: queue durably, deliver now if the
// node is connected, and optionally wait for its answer.
func (s *Server) SubmitCommand(ctx context.Context, req SubmitRequest) (PushResult, error) {
	rec, err := s.queue().add(ctx, req)
	if err != nil {
		return PushResult{}, err
	}
	s.log.Info("command queued", "node", rec.Target, "relay", rec.Relay, "seq", rec.Seq, "op", rec.Summary)
	return s.deliverAndWait(ctx, rec, req.Wait)
}

func (s *Server) queue() commandQueue { return commandQueue{dir: s.dir, store: s.store, now: s.now} }

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
	state := CommandRefused
	if ack.Applied {
		state = CommandApplied
	}
	// The reason is the node's own words: kept bounded, shown escaped.
	rec, err := s.store.AckCommand(ctx, cc.id, ack.Seq, state, escape.Clip(ack.Reason, MaxReason), s.now().Unix())
	if err != nil {
		return nil, err
	}
	cc.log.Info("command answered", "seq", ack.Seq, "state", rec.State, "reason", escape.String(rec.Reason))
	s.metrics.commands.WithLabelValues(rec.State).Inc()
	s.waiters.answer(rec)
	return nil, nil
}
