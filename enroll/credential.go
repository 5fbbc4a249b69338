// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package enroll

import (
	"errors"
	"fmt"
	"time"

	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/signed"
)

// ClockSkew is how far apart the clocks of two nodes (or a node and the
// hub) may be for a credential to be accepted early or late.
const ClockSkew = 5 * time.Minute

// Credential is the authority's statement that a node's static key has
// these attributes until ExpiresAt. CBOR keys 1-10.
type Credential struct {
	Project    string            `cbor:"1,keyasint"`
	NodeKey    [32]byte          `cbor:"2,keyasint"`
	ID         string            `cbor:"3,keyasint"`
	Attributes map[string]string `cbor:"4,keyasint,omitempty"`
	Relay      string            `cbor:"5,keyasint,omitempty"`
	Enroller   bool              `cbor:"6,keyasint,omitempty"`
	IssuedAt   int64             `cbor:"7,keyasint"`
	ExpiresAt  int64             `cbor:"8,keyasint"`
	Scope      *Scope            `cbor:"9,keyasint,omitempty"` // what an enroller may grant
	// Replica: the node is one of several serving Relay on purpose (its
	// ticket said so). Omitted when false.
	Replica bool `cbor:"10,keyasint,omitempty"`
}

// Expires returns the expiry time.
func (c *Credential) Expires() time.Time { return time.Unix(c.ExpiresAt, 0) }

// Issued returns the issue time.
func (c *Credential) Issued() time.Time { return time.Unix(c.IssuedAt, 0) }

// Node returns the node key the credential is bound to.
func (c *Credential) Node() key.NodePublic {
	k, _ := key.NodePublicFromRaw32(c.NodeKey[:])
	return k
}

// Credential verification errors.
var (
	ErrCredentialExpired  = errors.New("credential expired")
	ErrCredentialNotYet   = errors.New("credential not valid yet (clock skew?)")
	ErrCredentialWrongKey = errors.New("credential is bound to another node key")
)

// VerifyCredential checks a credential's signature with the authority key,
// that it is bound to peer (the static key proven in the Noise handshake),
// that its identifier matches that key, and that it is valid at now (with
// ClockSkew tolerance).
func VerifyCredential(authority key.SigningPublic, data []byte, peer key.NodePublic, now time.Time) (*Credential, error) {
	var c Credential
	if err := signed.Verify(authority, signed.ContextCredential, data, &c); err != nil {
		return nil, fmt.Errorf("verify credential: %w", err)
	}
	if !c.Node().Equal(peer) {
		return nil, ErrCredentialWrongKey
	}
	if string(peer.ID()) != c.ID {
		return nil, errors.New("verify credential: identifier does not match the node key")
	}
	if now.After(c.Expires().Add(ClockSkew)) {
		return nil, fmt.Errorf("%w at %s", ErrCredentialExpired, c.Expires().UTC().Format(time.RFC3339))
	}
	if now.Add(ClockSkew).Before(c.Issued()) {
		return nil, ErrCredentialNotYet
	}
	return &c, nil
}

// PeekCredential decodes a credential without verifying it, for display.
func PeekCredential(data []byte) (*Credential, error) {
	var c Credential
	if err := signed.Peek(data, &c); err != nil {
		return nil, err
	}
	return &c, nil
}
