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

// Statement is the authority's statement of its own Noise key, which it
// presents to the relay in its control hello: the relay, holding only the
// authority's public signing key, can tell the authority from a member.
// CBOR keys 1-4.
type Statement struct {
	Project   string   `cbor:"1,keyasint"`
	NoiseKey  [32]byte `cbor:"2,keyasint"`
	IssuedAt  int64    `cbor:"3,keyasint"`
	ExpiresAt int64    `cbor:"4,keyasint"`
}

// StatementTTL is how long an authority statement is valid; the authority
// makes a fresh one for every connection.
const StatementTTL = time.Hour

// VerifyStatement checks an authority statement against the authority's
// key, the Noise key proven in the handshake, the project and the time.
func VerifyStatement(authority key.SigningPublic, project string, data []byte, peer key.NodePublic, now time.Time) error {
	var st Statement
	if err := signed.Verify(authority, signed.ContextAuthority, data, &st); err != nil {
		return fmt.Errorf("authority statement: %w", err)
	}
	if st.Project != project {
		return errors.New("authority statement is for another project")
	}
	if st.NoiseKey != peer.Raw32() {
		return errors.New("authority statement names another Noise key")
	}
	if now.After(time.Unix(st.ExpiresAt, 0).Add(ClockSkew)) || now.Add(ClockSkew).Before(time.Unix(st.IssuedAt, 0)) {
		return errors.New("authority statement is not valid now (clock skew?)")
	}
	return nil
}

// Revocation is the authority's notice that a member was revoked. The
// relay acts on it only when it verifies with the authority's key, and
// keeps it: a revoked credential stays refused until it expires, even
// across relay restarts. CBOR keys 1-4.
type Revocation struct {
	Project   string   `cbor:"1,keyasint"`
	ID        string   `cbor:"2,keyasint"`
	NodeKey   [32]byte `cbor:"3,keyasint"`
	RevokedAt int64    `cbor:"4,keyasint"`
}

// VerifyRevocation checks a revocation notice.
func VerifyRevocation(authority key.SigningPublic, project string, data []byte) (Revocation, error) {
	var r Revocation
	if err := signed.Verify(authority, signed.ContextRevocation, data, &r); err != nil {
		return Revocation{}, fmt.Errorf("revocation notice: %w", err)
	}
	if r.Project != project {
		return Revocation{}, errors.New("revocation notice is for another project")
	}
	k, _ := key.NodePublicFromRaw32(r.NodeKey[:])
	if string(k.ID()) != r.ID {
		return Revocation{}, errors.New("revocation notice: identifier does not match the node key")
	}
	return r, nil
}
