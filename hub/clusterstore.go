// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
)

// Cluster timing. A relay node renews its own lease and the presence
// leases of the relays it holds every HeartbeatInterval; a node that stops
// (killed, cut off) loses them after PresenceLease without anyone
// cleaning up.
const (
	PresenceLease     = 15 * time.Second
	HeartbeatInterval = 3 * time.Second
)

// RelayNode is one relay process of a cluster, as the shared store lists
// it: its identifier (from its directory), the Noise key it answers with,
// and the addresses nodes and other relay nodes dial.
type RelayNode struct {
	ID    string         `json:"id"`
	Key   key.NodePublic `json:"key"`
	Addrs []string       `json:"addrs"`
	// Authority is true while the project's authority is connected to
	// this relay node (and its lease is live).
	Authority bool `json:"authority,omitempty"`
	// Alive is true while the node's lease is live.
	Alive bool `json:"alive"`
}

// Presence says which relay node holds the live registration of a relay
// name for one of its owners (a relay served by replicas has one per
// replica), until its lease runs out, and what that owner last reported
// of its health.
type Presence struct {
	Relay string `json:"relay"`
	Owner string `json:"owner"`
	Node  string `json:"node"`
	Health
}

// Health is what a relay's owner last reported of itself (NodeState):
// whether the customer paused it, whether it is draining for
// maintenance, and which of its outlets cannot reach their target.
type Health struct {
	Paused   bool     `json:"paused,omitempty"`
	Draining bool     `json:"draining,omitempty"`
	Down     []string `json:"down,omitempty"`
}

// OK reports whether the owner can take a portal to outlet ("" for any
// outlet) now.
func (h Health) OK(outlet string) bool {
	return !h.Paused && !h.Draining && (outlet == "" || !slices.Contains(h.Down, outlet))
}

// Event kinds a shared store carries between relay nodes (see Event).
const (
	EventCommand  = "command"  // a command was queued for Target
	EventAcked    = "acked"    // Target answered command Seq (State, Reason)
	EventRevoked  = "revoked"  // the authority revoked Target
	EventReleased = "released" // Relay's binding was removed
	EventMoved    = "moved"    // Relay's live registration moved to Node
)

// Event is a change another relay node must act on within a second: a
// revocation, a relay that moved or was released, a queued command or its
// answer. It is a trigger, not the state: the receiver reads the state
// from the store (or, for a revocation, re-verifies the stored notice).
type Event struct {
	Kind   string `json:"k"`
	Target string `json:"t,omitempty"`
	Relay  string `json:"r,omitempty"`
	Node   string `json:"n,omitempty"`
	Seq    uint64 `json:"s,omitempty"`
	State  string `json:"st,omitempty"`
	Reason string `json:"re,omitempty"`
}

// MaxEventPayload bounds an encoded event (PostgreSQL's NOTIFY payload
// limit is 8000 bytes; a reason is at most MaxReason).
const MaxEventPayload = 4000

// EncodeEvent returns ev's payload.
func EncodeEvent(ev Event) (string, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return "", err
	}
	if len(b) > MaxEventPayload {
		return "", fmt.Errorf("event %s: payload of %d bytes exceeds %d", ev.Kind, len(b), MaxEventPayload)
	}
	return string(b), nil
}

// DecodeEvent parses an event payload.
func DecodeEvent(s string) (Event, error) {
	var ev Event
	if len(s) > MaxEventPayload {
		return ev, fmt.Errorf("event payload of %d bytes exceeds %d", len(s), MaxEventPayload)
	}
	if err := json.Unmarshal([]byte(s), &ev); err != nil {
		return ev, fmt.Errorf("event: %w", err)
	}
	switch ev.Kind {
	case EventCommand, EventAcked, EventRevoked, EventReleased, EventMoved:
		return ev, nil
	}
	return ev, fmt.Errorf("event: unknown kind %q", ev.Kind)
}

// ErrStoreUnavailable is wrapped by a store's errors when its database
// cannot be reached (down, restarting, cut off). Nodes are asked to come
// back later rather than refused.
var ErrStoreUnavailable = errors.New("the database is unavailable")

// StoreRetryAfter is how long a node asked to come back waits.
const StoreRetryAfter = 5 * time.Second

// Unavailable is the answer a node gets while the store is unreachable:
// a slow-down (the node asks again), saying why but not where the
// database is (the detail stays in the server's log).
func Unavailable(whose string, err error) *control.Error {
	return &control.Error{Code: control.ErrCodeSlowDown, RetryAfterMS: StoreRetryAfter.Milliseconds(),
		Message: fmt.Sprintf("%s database is unavailable; ask again in %s", whose, StoreRetryAfter)}
}

// ErrNotListed means a relay node is not in the cluster's listing.
var ErrNotListed = errors.New("not listed in the cluster's database")

// ClusterStore is what a store shared by several relay nodes adds to
// Store: the listing of relay nodes, presence with leases, and events.
// A Store without it (the single-file store) runs one relay node.
//
// The store publishes events itself, in the same transaction as the
// change they announce (a queued command, an answer, a revocation, a
// released or moved relay), so an event is seen exactly when its change is.
type ClusterStore interface {
	// PutRelayNode lists a relay node (or updates its key and addresses).
	PutRelayNode(ctx context.Context, n RelayNode) error
	// RelayNodes returns every listed relay node.
	RelayNodes(ctx context.Context) ([]RelayNode, error)
	// Heartbeat renews node's lease and the leases of the presence it
	// holds, and records whether the authority is connected to it.
	Heartbeat(ctx context.Context, node string, authority bool, lease time.Duration) error
	// ClaimPresence makes p.Node the holder of p.Relay's live
	// registration for p.Owner (with p's health), taking it from any
	// other node (the owner reconnected there), and returns the node it
	// took it from ("" if none). The caller has checked the owner may
	// hold relay (its binding, or a replica of a replicas' binding).
	ClaimPresence(ctx context.Context, p Presence, lease time.Duration) (prev string, err error)
	// SetPresenceHealth records owner's health in its presence of relay,
	// if node holds it.
	SetPresenceHealth(ctx context.Context, relay, owner, node string, h Health) error
	// DropPresence removes owner's presence of relay if node holds it.
	DropPresence(ctx context.Context, relay, owner, node string) error
	// LookupPresence returns relay's live presences (one per owner), or
	// ErrNotFound when it has none.
	LookupPresence(ctx context.Context, relay string) ([]Presence, error)
	// ListPresence returns every live presence.
	ListPresence(ctx context.Context) ([]Presence, error)
	// Listen calls handle for every event until ctx ends. After each
	// (re)connection to the database it calls resync, for what happened
	// while it was not listening.
	Listen(ctx context.Context, handle func(Event), resync func()) error
}
