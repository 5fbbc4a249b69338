// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package signed is the one signed envelope of the system: a domain
// separation context, the exact deterministic CBOR bytes of a statement, and
// an Ed25519 signature over context || 0x00 || bytes.
//
// Signatures are always checked over the received bytes, never over a
// re-encoding, and the payload is only decoded after the signature checks.
//
// May be imported by enroll, hub, agent and their subpackages.
package signed

import (
	"errors"
	"fmt"

	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/key"
)

// Contexts (domain separation labels). A signature made for one can never
// verify as another.
const (
	ContextCredential = "edgeportal credential v1"
	ContextGrant      = "edgeportal ticket grant v1"
	ContextCommand    = "edgeportal command v1"
	ContextManifest   = "edgeportal release manifest v1"
	ContextAuthority  = "edgeportal authority statement v1"
	ContextRevocation = "edgeportal revocation v1"
)

// Envelope is the signed container. CBOR keys:
//
//	1: context (text)  2: payload (bytes: deterministic CBOR)  3: signature (bytes)
type Envelope struct {
	Context string `cbor:"1,keyasint"`
	Payload []byte `cbor:"2,keyasint"`
	Sig     []byte `cbor:"3,keyasint"`
}

// ErrBadSignature means the signature does not verify with the expected key.
var ErrBadSignature = errors.New("signature does not verify")

func message(context string, payload []byte) []byte {
	m := make([]byte, 0, len(context)+1+len(payload))
	m = append(m, context...)
	m = append(m, 0)
	return append(m, payload...)
}

// Sign encodes v deterministically and signs it.
func Sign(priv key.SigningPrivate, context string, v any) ([]byte, error) {
	payload, err := wire.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("sign: encode: %w", err)
	}
	env := Envelope{Context: context, Payload: payload, Sig: priv.Sign(message(context, payload))}
	return wire.Marshal(env)
}

// Verify checks data's signature with pub under context and decodes the
// payload into v (strictly: unknown fields are refused).
func Verify(pub key.SigningPublic, context string, data []byte, v any) error {
	env, err := Open(data)
	if err != nil {
		return err
	}
	if env.Context != context {
		return fmt.Errorf("signed statement is a %q, want %q", env.Context, context)
	}
	if !pub.Verify(message(context, env.Payload), env.Sig) {
		return ErrBadSignature
	}
	if err := wire.UnmarshalStrict(env.Payload, v); err != nil {
		return fmt.Errorf("signed statement: %w", err)
	}
	return nil
}

// Open decodes the envelope without checking the signature. Use only to
// display a statement (ticket inspect), never to trust it.
func Open(data []byte) (Envelope, error) {
	var env Envelope
	if err := wire.UnmarshalStrict(data, &env); err != nil {
		return Envelope{}, fmt.Errorf("signed envelope: %w", err)
	}
	if len(env.Sig) != 64 {
		return Envelope{}, errors.New("signed envelope: signature missing or malformed")
	}
	return env, nil
}

// Peek decodes the payload without checking the signature (display only).
func Peek(data []byte, v any) error {
	env, err := Open(data)
	if err != nil {
		return err
	}
	return wire.UnmarshalStrict(env.Payload, v)
}
