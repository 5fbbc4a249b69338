// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package enroll

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Scope is what an enroller may grant in the tickets it makes: which
// attributes (a name, or name=value to pin the value), which relay names
// (exact names or patterns with '*', such as "acme-*"), the longest
// lifetime and the most uses, and whether it may make replicas. An
// enroller never grants the enroller role. CBOR keys 1-5.
type Scope struct {
	Attributes  []string `cbor:"1,keyasint,omitempty" json:"attributes,omitempty"`
	Relays      []string `cbor:"2,keyasint,omitempty" json:"relays,omitempty"`
	MaxLifetime int64    `cbor:"3,keyasint" json:"max_lifetime_seconds"`
	MaxUses     int      `cbor:"4,keyasint" json:"max_uses"`
	// Replicas lets the enroller grant replica tickets for the relays it
	// may grant. Off unless the admin says so: a replica shares a relay
	// name with its other owners, which an admin decides on purpose.
	Replicas bool `cbor:"5,keyasint,omitempty" json:"replicas,omitempty"`
}

// Defaults of an enroller scope that does not say.
const (
	DefaultScopeLifetime = 30 * 24 * time.Hour
	DefaultScopeUses     = 100
)

// ErrOutsideScope is wrapped by every refusal of Scope.Check.
var ErrOutsideScope = errors.New("outside this enroller's scope")

// Validate checks the scope itself (when an admin makes an enroller).
func (s *Scope) Validate() error {
	for _, a := range s.Attributes {
		name, value, _ := strings.Cut(a, "=")
		if err := ValidateAttribute(name, value); err != nil {
			return fmt.Errorf("enroller scope: %w", err)
		}
	}
	for _, r := range s.Relays {
		if _, err := path.Match(r, ""); err != nil || !ValidRelayName(strings.ReplaceAll(r, "*", "x")) {
			return fmt.Errorf("enroller scope: relay pattern %q is invalid: use relay-name characters and '*'", r)
		}
	}
	if s.MaxLifetime <= 0 || time.Duration(s.MaxLifetime)*time.Second > MaxTicketLifetime {
		return fmt.Errorf("enroller scope: longest lifetime must be positive and at most %s", MaxTicketLifetime)
	}
	if s.MaxUses < 1 || s.MaxUses > MaxTicketUses {
		return fmt.Errorf("enroller scope: most uses must be 1-%d", MaxTicketUses)
	}
	return nil
}

// Check refuses ticket options outside the scope, naming the part.
func (s *Scope) Check(o TicketOptions) error {
	if s == nil {
		return fmt.Errorf("%w: this enroller has no scope: it may grant nothing", ErrOutsideScope)
	}
	if o.Enroller {
		return fmt.Errorf("%w: an enroller may not grant the enroller role", ErrOutsideScope)
	}
	for _, name := range SortedAttributes(o.Attributes) {
		if !s.grants(name, o.Attributes[name]) {
			return fmt.Errorf("%w: attribute %q is not one it may grant (it may grant: %s)", ErrOutsideScope, name+valueSuffix(o.Attributes[name]), listOrNone(s.Attributes))
		}
	}
	if o.Relay != "" && !s.allowsRelay(o.Relay) {
		return fmt.Errorf("%w: relay name %q does not match what it may grant (%s)", ErrOutsideScope, o.Relay, listOrNone(s.Relays))
	}
	if o.Replica && !s.Replicas {
		return fmt.Errorf("%w: it may not grant replica tickets (the admin's --enroller-replicas allows it)", ErrOutsideScope)
	}
	if max := time.Duration(s.MaxLifetime) * time.Second; o.ExpiresIn > max {
		return fmt.Errorf("%w: lifetime %s is longer than its longest, %s", ErrOutsideScope, o.ExpiresIn, max)
	}
	if o.Uses > s.MaxUses {
		return fmt.Errorf("%w: %d uses is more than its most, %d", ErrOutsideScope, o.Uses, s.MaxUses)
	}
	return nil
}

func (s *Scope) grants(name, value string) bool {
	for _, a := range s.Attributes {
		n, v, pinned := strings.Cut(a, "=")
		if n == name && (!pinned || v == value) {
			return true
		}
	}
	return false
}

func (s *Scope) allowsRelay(relay string) bool {
	for _, p := range s.Relays {
		if ok, _ := path.Match(p, relay); ok {
			return true
		}
	}
	return false
}

func valueSuffix(v string) string {
	if v == "true" || v == "" {
		return ""
	}
	return "=" + v
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

// String describes the scope in one line.
func (s *Scope) String() string {
	if s == nil {
		return "nothing"
	}
	replicas := ""
	if s.Replicas {
		replicas = " (replicas too)"
	}
	return fmt.Sprintf("attributes %s; relays %s%s; at most %s and %d uses", listOrNone(s.Attributes), listOrNone(s.Relays), replicas,
		time.Duration(s.MaxLifetime)*time.Second, s.MaxUses)
}
