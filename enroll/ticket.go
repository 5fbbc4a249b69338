// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package enroll owns enrollment: tickets (their printable form, the
// one-time secret and what they grant), credentials (authority-signed
// attributes bound to a node's static key), enroller scopes, the
// authority's statements about itself and its revocation notices, and the
// Authority that mints tickets, redeems them atomically and refreshes
// credentials.
//
// Only the authority holds the signing key. The relay verifies what the
// authority signed (credentials, its statement, revocations) with the
// authority's public key and can make none of it.
//
// The authority side consumes a Store defined here; hub/store supplies
// implementations. The node side uses ParseTicket and VerifyCredential.
//
// May be imported by hub, agent, portal and cmd; never imports them.
package enroll

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/signed"
)

// TicketPrefix starts every ticket's text.
const TicketPrefix = "ticket-v1:"

// MaxTicketLen bounds a ticket's text (a few hundred bytes in practice).
const MaxTicketLen = 16 << 10

// Ticket is a decoded enrollment ticket: where the relay is, which keys
// the project uses, the one-time secret, and the authority-signed grant.
// Every field but the secret is also in the grant, and ParseTicket refuses
// a ticket whose fields differ from their signed copies, naming the field.
//
// CBOR keys 1-10; the text form is TicketPrefix + base64url(CBOR) + ":" +
// 8 hex digits of SHA-256(CBOR) (a checksum to catch copy-paste damage).
type Ticket struct {
	Vendor       string   `cbor:"1,keyasint"`
	Hubs         []string `cbor:"2,keyasint"`
	HubKey       [32]byte `cbor:"3,keyasint"` // the relay's Noise static key
	AuthorityKey [32]byte `cbor:"4,keyasint"` // the authority's signing key
	CommandKey   [32]byte `cbor:"5,keyasint"`
	Project      string   `cbor:"6,keyasint"`
	Secret       []byte   `cbor:"7,keyasint"`
	Grant        []byte   `cbor:"8,keyasint"` // signed.Envelope of Grant, by the authority key
	ReleaseKey   [32]byte `cbor:"9,keyasint,omitempty"`
	// AuthorityNoiseKey is the authority's Noise static key: a node
	// redeems and refreshes end to end with it, through the relay.
	AuthorityNoiseKey [32]byte `cbor:"10,keyasint"`
}

// Grant is what a ticket admits a node with, and every other field of the
// ticket, signed by the authority so a ticket can be inspected (and its
// keys trusted) without contacting anyone.
type Grant struct {
	TicketID   string            `cbor:"1,keyasint"`
	Attributes map[string]string `cbor:"2,keyasint,omitempty"`
	Relay      string            `cbor:"3,keyasint,omitempty"`
	Enroller   bool              `cbor:"4,keyasint,omitempty"`
	IssuedAt   int64             `cbor:"5,keyasint"`
	ExpiresAt  int64             `cbor:"6,keyasint"`
	Uses       int               `cbor:"7,keyasint"`
	Project    string            `cbor:"8,keyasint"`
	// The ticket's other fields, as the authority wrote them.
	Vendor            string   `cbor:"9,keyasint"`
	Hubs              []string `cbor:"10,keyasint"`
	HubKey            [32]byte `cbor:"11,keyasint"`
	AuthorityNoiseKey [32]byte `cbor:"12,keyasint"`
	CommandKey        [32]byte `cbor:"13,keyasint"`
	ReleaseKey        [32]byte `cbor:"14,keyasint,omitempty"`
	// Scope is what an enroller may grant (nil unless Enroller).
	Scope *Scope `cbor:"15,keyasint,omitempty"`
	// Replica makes the node one of several that serve Relay on purpose:
	// the relay admits it beside the name's other owners when the name
	// was first registered by a replica too (never beside a sole owner).
	// Omitted when false, so tickets without it keep their bytes.
	Replica bool `cbor:"16,keyasint,omitempty"`
}

// Expires returns the grant's expiry.
func (g Grant) Expires() time.Time { return time.Unix(g.ExpiresAt, 0) }

// AuthorityNoisePublic returns the authority's Noise static key.
func (t *Ticket) AuthorityNoisePublic() key.NodePublic {
	k, _ := key.NodePublicFromRaw32(t.AuthorityNoiseKey[:])
	return k
}

// HubPublic returns the relay's Noise static key.
func (t *Ticket) HubPublic() key.NodePublic {
	k, _ := key.NodePublicFromRaw32(t.HubKey[:])
	return k
}

// AuthorityPublic returns the authority's signing key.
func (t *Ticket) AuthorityPublic() key.SigningPublic {
	k, _ := key.SigningPublicFromRaw32(t.AuthorityKey[:])
	return k
}

// ReleasePublic returns the release signing key (zero if the ticket names none).
func (t *Ticket) ReleasePublic() key.SigningPublic {
	k, _ := key.SigningPublicFromRaw32(t.ReleaseKey[:])
	return k
}

// CommandPublic returns the command signing key.
func (t *Ticket) CommandPublic() key.SigningPublic {
	k, _ := key.SigningPublicFromRaw32(t.CommandKey[:])
	return k
}

// Encode returns the ticket's printable form.
func (t *Ticket) Encode() (string, error) {
	body, err := wire.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("encode ticket: %w", err)
	}
	sum := sha256.Sum256(body)
	return TicketPrefix + base64.RawURLEncoding.EncodeToString(body) + ":" + hex.EncodeToString(sum[:4]), nil
}

// TicketError says which part of a ticket's text is wrong.
type TicketError struct {
	Part string // "prefix", "checksum", "encoding", "body", "grant", or a field's name
	Err  error
}

func (e *TicketError) Error() string { return "ticket " + e.Part + ": " + e.Err.Error() }
func (e *TicketError) Unwrap() error { return e.Err }

// ParseTicket decodes a ticket's text (surrounding and embedded whitespace
// is ignored, so a wrapped ticket still parses) and verifies its grant's
// signature against the authority key the ticket names. It does not check
// expiry: use Grant.Expires.
func ParseTicket(text string) (*Ticket, Grant, error) {
	if len(text) > MaxTicketLen {
		return nil, Grant{}, &TicketError{"encoding", fmt.Errorf("too long (%d bytes); a ticket is a few hundred bytes", len(text))}
	}
	text = strings.Join(strings.Fields(text), "")
	if text == "" {
		return nil, Grant{}, &TicketError{"prefix", errors.New("empty: the file holds no ticket")}
	}
	if !strings.HasPrefix(text, TicketPrefix) {
		return nil, Grant{}, &TicketError{"prefix", fmt.Errorf("not an enrollment ticket (it should start with %q)", TicketPrefix)}
	}
	rest := text[len(TicketPrefix):]
	i := strings.LastIndexByte(rest, ':')
	if i < 0 || len(rest)-i-1 != 8 {
		return nil, Grant{}, &TicketError{"checksum", errors.New("missing; the ticket was truncated while copying")}
	}
	b64, sumHex := rest[:i], rest[i+1:]
	body, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil {
		return nil, Grant{}, &TicketError{"encoding", fmt.Errorf("not valid base64url: %v", err)}
	}
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:4]) != strings.ToLower(sumHex) {
		return nil, Grant{}, &TicketError{"checksum", errors.New("does not match; the ticket was damaged or truncated while copying")}
	}
	var t Ticket
	if err := wire.UnmarshalStrict(body, &t); err != nil {
		return nil, Grant{}, &TicketError{"body", err}
	}
	if len(t.Secret) != 32 {
		return nil, Grant{}, &TicketError{"body", errors.New("secret is missing or malformed")}
	}
	if len(t.Hubs) == 0 {
		return nil, Grant{}, &TicketError{"body", errors.New("names no hub address")}
	}
	if t.HubKey == [32]byte{} || t.AuthorityKey == [32]byte{} || t.AuthorityNoiseKey == [32]byte{} {
		return nil, Grant{}, &TicketError{"body", errors.New("a relay or authority key is missing")}
	}
	var g Grant
	if err := signed.Verify(t.AuthorityPublic(), signed.ContextGrant, t.Grant, &g); err != nil {
		return nil, Grant{}, &TicketError{"grant", fmt.Errorf("not signed by the ticket's authority key (the authority key or the grant was changed): %w", err)}
	}
	if err := t.matches(&g); err != nil {
		return nil, Grant{}, err
	}
	return &t, g, nil
}

// matches refuses a ticket whose fields differ from the signed grant's.
func (t *Ticket) matches(g *Grant) error {
	changed := func(field string) error {
		return &TicketError{field, errors.New("differs from the value the authority signed: the ticket was edited")}
	}
	switch {
	case t.Project != g.Project:
		return changed("project")
	case t.Vendor != g.Vendor:
		return changed("vendor")
	case !slices.Equal(t.Hubs, g.Hubs):
		return changed("hub addresses")
	case t.HubKey != g.HubKey:
		return changed("relay key")
	case t.AuthorityNoiseKey != g.AuthorityNoiseKey:
		return changed("authority Noise key")
	case t.CommandKey != g.CommandKey:
		return changed("command key")
	case t.ReleaseKey != g.ReleaseKey:
		return changed("release key")
	}
	return nil
}

// SecretHash is what the hub stores instead of a ticket's secret.
func SecretHash(secret []byte) [32]byte {
	return sha256.Sum256(append([]byte("edgeportal ticket secret v1\x00"), secret...))
}

// TicketID is the public, loggable identifier of a ticket: a short hash of
// its secret. It never reveals the secret.
func TicketID(secret []byte) string {
	h := SecretHash(secret)
	return "T" + hex.EncodeToString(h[:6])
}

func newSecret() []byte {
	s := make([]byte, 32)
	if _, err := rand.Read(s); err != nil {
		panic("enroll: crypto/rand failed: " + err.Error())
	}
	return s
}

// SortedAttributes returns attribute names in order, for display.
func SortedAttributes(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
