// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"errors"
)

// Store is the relay's durable state: who owns which relay name, the
// revocations the authority sent, what the relay knows of each node, and
// the vendor command queue. It holds no ticket, no member list and no key
// (the authority keeps those: enroll.Store). The default implementation
// is hub/store/boltstore (one crash-safe file); a database-backed store
// lets several relay nodes share state.
type Store interface {
	RelayStore
	CommandStore
	Close() error
}

// ErrNotFound is returned for a relay binding or node that does not exist.
var ErrNotFound = errors.New("not found")

// RelayBinding says which identity owns a relay name.
type RelayBinding struct {
	Name  string `cbor:"1,keyasint" json:"name"`
	Owner string `cbor:"2,keyasint" json:"owner"`
	Since int64  `cbor:"3,keyasint" json:"since"`
	// Replicas is set when the first owner registered the name with a
	// replica credential: then other nodes whose credential makes them
	// replicas of the name serve it beside the owner. It never changes
	// while the binding lasts: a sole owner's name takes no replica, and
	// a replicas' name takes no node without a replica credential.
	Replicas bool `cbor:"4,keyasint,omitempty" json:"replicas,omitempty"`
}

// NodeRecord is what the relay remembers of a node between connections.
type NodeRecord struct {
	ID         string `cbor:"1,keyasint" json:"identifier"`
	Version    string `cbor:"2,keyasint,omitempty" json:"version,omitempty"`
	Platform   string `cbor:"3,keyasint,omitempty" json:"platform,omitempty"`
	LastSeen   int64  `cbor:"4,keyasint,omitempty" json:"last_seen,omitempty"`
	LastUpdate string `cbor:"5,keyasint,omitempty" json:"last_update,omitempty"`
}

// Revoked is a revocation the relay keeps: the notice as the authority
// signed it, and when.
type Revoked struct {
	ID        string `cbor:"1,keyasint"`
	RevokedAt int64  `cbor:"2,keyasint"`
	Notice    []byte `cbor:"3,keyasint"`
}

// RelayStore is the relay's own state.
type RelayStore interface {
	// ClaimRelay binds name to owner (as a replicas' name when replicas)
	// unless a binding exists, atomically, and returns the binding that
	// holds after the call: a new one, or the existing one unchanged.
	ClaimRelay(ctx context.Context, name, owner string, replicas bool, at int64) (RelayBinding, error)
	// ReleaseRelay removes the binding of name (ErrNotFound if none).
	ReleaseRelay(ctx context.Context, name string) (RelayBinding, error)
	// ReleaseRelaysOf removes every binding owner holds and returns them
	// (and, in a cluster store, every presence of owner's).
	ReleaseRelaysOf(ctx context.Context, owner string) ([]RelayBinding, error)
	// GetRelay returns the binding of name, or ErrNotFound.
	GetRelay(ctx context.Context, name string) (RelayBinding, error)
	ListRelays(ctx context.Context) ([]RelayBinding, error)

	// AddRevocation keeps a verified revocation notice (idempotent).
	AddRevocation(ctx context.Context, r Revoked) error
	ListRevocations(ctx context.Context) ([]Revoked, error)

	// UpdateNode applies fn to the node's record, creating it.
	UpdateNode(ctx context.Context, id string, fn func(*NodeRecord)) error
	ListNodes(ctx context.Context) ([]NodeRecord, error)
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
	// make the record (or refuse) and stores it, atomically.
	AddCommand(ctx context.Context, target string, build func(seq uint64) (CommandRecord, error)) (CommandRecord, error)
	// NextSeq returns the sequence number the target's next command gets.
	NextSeq(ctx context.Context, target string) (uint64, error)
	// PendingCommands returns the target's queued commands in order.
	PendingCommands(ctx context.Context, target string) ([]CommandRecord, error)
	// AckCommand records the node's answer if the command is still queued
	// (the first answer wins) and returns the record.
	AckCommand(ctx context.Context, target string, seq uint64, state, reason string, at int64) (CommandRecord, error)
	// ListCommands returns all commands, or those for one relay, in order.
	ListCommands(ctx context.Context, relay string) ([]CommandRecord, error)
}
