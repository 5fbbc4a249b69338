// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"

	"github.com/edgeportal/connect/enroll"
)

// Store is the hub's durable state: tickets and members (through
// enroll.Store). The default implementation is hub/store/boltstore (one
// crash-safe file); a database-backed store can implement the same
// interface to let several hub nodes share state.
type Store interface {
	enroll.Store
	CommandStore
	Close() error
}

// Command states.
const (
	CommandQueued  = "queued"
	CommandApplied = "applied"
	CommandRefused = "refused"
)

// CommandRecord is a queued vendor command and what became of it.
type CommandRecord struct {
	Target    string `cbor:"1,keyasint" json:"target"`
	Relay     string `cbor:"2,keyasint" json:"relay"`
	Seq       uint64 `cbor:"3,keyasint" json:"seq"`
	Data      []byte `cbor:"4,keyasint" json:"-"`
	Summary   string `cbor:"5,keyasint" json:"op"`
	State     string `cbor:"6,keyasint" json:"state"`
	Reason    string `cbor:"7,keyasint,omitempty" json:"reason,omitempty"`
	CreatedAt int64  `cbor:"8,keyasint" json:"created_at"`
	AckedAt   int64  `cbor:"9,keyasint,omitempty" json:"acked_at,omitempty"`
}

// CommandStore is the durable per-node command queue.
type CommandStore interface {
	// AddCommand assigns the target's next sequence number, lets build
	// make the record (sign it) and stores it, atomically.
	AddCommand(ctx context.Context, target string, build func(seq uint64) (CommandRecord, error)) (CommandRecord, error)
	// PendingCommands returns the target's queued commands in order.
	PendingCommands(ctx context.Context, target string) ([]CommandRecord, error)
	// AckCommand records the node's answer if the command is still queued
	// (the first answer wins) and returns the record.
	AckCommand(ctx context.Context, target string, seq uint64, state, reason string, at int64) (CommandRecord, error)
	// ListCommands returns all commands, or those for one relay, in order.
	ListCommands(ctx context.Context, relay string) ([]CommandRecord, error)
}
