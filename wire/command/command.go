// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package command defines the vendor's signed commands: their CBOR form,
// signing with the project's command key (wire/signed, ContextCommand), and
// the checks every receiver makes (signature, target, expiry, strictly
// increasing sequence). The hub signs and queues them; the node verifies
// them here, then judges them against the customer's allow-list in
// agent/command.
//
// Imported by hub and agent.
package command

import (
	"errors"
	"fmt"
	"time"

	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/signed"
)

// Operations.
const (
	OpOutletAdd    = "outlet.add"
	OpOutletRemove = "outlet.remove"
	OpUpdateCheck  = "update.check"
)

// DefaultLifetime is how long a command stays valid after it is issued.
const DefaultLifetime = 7 * 24 * time.Hour

// Command is a vendor instruction to one node. CBOR keys 1-9.
type Command struct {
	Project   string      `cbor:"1,keyasint"`
	Target    string      `cbor:"2,keyasint"` // node identifier
	Relay     string      `cbor:"3,keyasint,omitempty"`
	Seq       uint64      `cbor:"4,keyasint"`
	IssuedAt  int64       `cbor:"5,keyasint"`
	ExpiresAt int64       `cbor:"6,keyasint"`
	Op        string      `cbor:"7,keyasint"`
	Outlet    *OutletArgs `cbor:"8,keyasint,omitempty"`
}

// OutletArgs are the arguments of the outlet operations.
type OutletArgs struct {
	Name  string `cbor:"1,keyasint"`
	To    string `cbor:"2,keyasint,omitempty"`
	Allow string `cbor:"3,keyasint,omitempty"`
}

// Summary is a one-line description for lists and logs.
func (c *Command) Summary() string {
	if c.Outlet == nil && c.Op != OpUpdateCheck {
		// An authentic command Validate refuses is still summarized for
		// the audit log: never dereference what it lacks.
		return c.Op + " (no outlet arguments)"
	}
	switch c.Op {
	case OpOutletAdd:
		s := fmt.Sprintf("outlet add %s → %s", c.Outlet.Name, c.Outlet.To)
		if c.Outlet.Allow != "" {
			s += " allow " + c.Outlet.Allow
		}
		return s
	case OpOutletRemove:
		return "outlet remove " + c.Outlet.Name
	case OpUpdateCheck:
		return "update check"
	}
	return c.Op
}

// Validate checks the command's shape (not its signature, not its allow
// expression: the node parses that with the policy package).
func (c *Command) Validate() error {
	switch c.Op {
	case OpOutletAdd, OpOutletRemove:
		if c.Outlet == nil || c.Outlet.Name == "" {
			return errors.New("outlet command without an outlet name")
		}
		if c.Op == OpOutletAdd && c.Outlet.To == "" {
			return errors.New("outlet add without a destination")
		}
		return nil
	case OpUpdateCheck:
		return nil
	}
	return fmt.Errorf("unknown operation %q", c.Op)
}

// Sign signs c with the command key.
func Sign(k key.SigningPrivate, c Command) ([]byte, error) {
	return signed.Sign(k, signed.ContextCommand, c)
}

// Refusal reasons are stable words at the start of a refusal message.
var (
	ErrBadSignature = errors.New("bad signature: not signed by this project's command key")
	ErrWrongTarget  = errors.New("command is for another node")
	ErrExpired      = errors.New("command expired")
	ErrReplay       = errors.New("replayed or out-of-order command")
)

// Verify checks a received command: signed by the command key, for this
// project and this node, not expired, and newer than lastSeq.
func Verify(commandKey key.SigningPublic, project, self string, data []byte, lastSeq uint64, now time.Time) (*Command, error) {
	var c Command
	if err := signed.Verify(commandKey, signed.ContextCommand, data, &c); err != nil {
		if errors.Is(err, signed.ErrBadSignature) {
			return nil, ErrBadSignature
		}
		return nil, fmt.Errorf("malformed command: %w", err)
	}
	if c.Project != project || c.Target != self {
		return &c, fmt.Errorf("%w (target %s)", ErrWrongTarget, c.Target)
	}
	if now.Unix() > c.ExpiresAt {
		return &c, fmt.Errorf("%w at %s", ErrExpired, time.Unix(c.ExpiresAt, 0).UTC().Format(time.RFC3339))
	}
	if c.Seq <= lastSeq {
		return &c, fmt.Errorf("%w: sequence %d, already at %d", ErrReplay, c.Seq, lastSeq)
	}
	if err := c.Validate(); err != nil {
		return &c, err
	}
	return &c, nil
}
