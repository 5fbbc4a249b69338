// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package key holds the typed keys of the system: node keys (X25519, the
// Noise static identity of a node or hub), signing keys (Ed25519, for the
// authority, command and release keys) and node identifiers.
//
// Keys are never passed around as []byte. Each kind has a text form with a
// kind prefix ("nodekey:", "privkey:", "sigkey:", "sigpriv:") so a key pasted
// in the wrong place fails with a message that names what it is. Private keys
// never print their value: String returns a redacted form.
//
// This package is a leaf: it imports only the standard library and may be
// imported by any package in the module.
package key

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/edgeportal/connect/internal/atomicfile"
	"strings"
)

// incomparable makes a struct incomparable with ==, so keys are compared
// with Equal (constant time) rather than by accident.
type incomparable [0]func()

const (
	nodePublicPrefix     = "nodekey:"
	nodePrivatePrefix    = "privkey:"
	signingPublicPrefix  = "sigkey:"
	signingPrivatePrefix = "sigpriv:"
)

// NodePrivate is an X25519 private key: the static Noise identity of a node
// or of the hub.
type NodePrivate struct {
	_ incomparable
	k [32]byte
}

// NodePublic is the public half of a NodePrivate.
type NodePublic struct {
	_ incomparable
	k [32]byte
}

// NewNodePrivate generates a fresh node key.
func NewNodePrivate() NodePrivate {
	var p NodePrivate
	if _, err := rand.Read(p.k[:]); err != nil {
		panic("key: crypto/rand failed: " + err.Error())
	}
	return p
}

// NodePrivateFromRaw32 wraps 32 raw bytes (as produced by a Noise DH).
func NodePrivateFromRaw32(b []byte) (NodePrivate, error) {
	var p NodePrivate
	if len(b) != 32 {
		return p, fmt.Errorf("node private key must be 32 bytes, got %d", len(b))
	}
	copy(p.k[:], b)
	return p, nil
}

// IsZero reports whether p is the zero value.
func (p NodePrivate) IsZero() bool { return p.k == [32]byte{} }

// Raw32 returns the raw key bytes, for the Noise library only.
func (p NodePrivate) Raw32() [32]byte { return p.k }

// Public returns the public key of p.
func (p NodePrivate) Public() NodePublic {
	priv, err := ecdh.X25519().NewPrivateKey(p.k[:])
	if err != nil {
		panic("key: invalid X25519 private key: " + err.Error())
	}
	var pub NodePublic
	copy(pub.k[:], priv.PublicKey().Bytes())
	return pub
}

// Equal reports whether p and o are the same key, in constant time.
func (p NodePrivate) Equal(o NodePrivate) bool {
	return subtle.ConstantTimeCompare(p.k[:], o.k[:]) == 1
}

// String never reveals the key.
func (p NodePrivate) String() string { return nodePrivatePrefix + "<redacted>" }

// MarshalText returns the key's text form. Use it only to write key files.
func (p NodePrivate) MarshalText() ([]byte, error) {
	return []byte(nodePrivatePrefix + hex.EncodeToString(p.k[:])), nil
}

// UnmarshalText parses the text form written by MarshalText.
func (p *NodePrivate) UnmarshalText(b []byte) error {
	return parseHex32("node private key", nodePrivatePrefix, string(b), p.k[:])
}

// NodePublicFromRaw32 wraps 32 raw bytes.
func NodePublicFromRaw32(b []byte) (NodePublic, error) {
	var p NodePublic
	if len(b) != 32 {
		return p, fmt.Errorf("node public key must be 32 bytes, got %d", len(b))
	}
	copy(p.k[:], b)
	return p, nil
}

// IsZero reports whether p is the zero value.
func (p NodePublic) IsZero() bool { return p.k == [32]byte{} }

// Raw32 returns the raw key bytes.
func (p NodePublic) Raw32() [32]byte { return p.k }

// Equal reports whether p and o are the same key, in constant time.
func (p NodePublic) Equal(o NodePublic) bool {
	return subtle.ConstantTimeCompare(p.k[:], o.k[:]) == 1
}

// String returns the text form.
func (p NodePublic) String() string { return nodePublicPrefix + hex.EncodeToString(p.k[:]) }

// Fingerprint returns a short printable fingerprint (first 8 bytes of its
// SHA-256, hex) for people comparing keys.
func (p NodePublic) Fingerprint() string {
	h := sha256.Sum256(p.k[:])
	return hex.EncodeToString(h[:8])
}

// MarshalText implements encoding.TextMarshaler.
func (p NodePublic) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *NodePublic) UnmarshalText(b []byte) error {
	return parseHex32("node public key", nodePublicPrefix, string(b), p.k[:])
}

// ID returns the node identifier derived from the public key.
func (p NodePublic) ID() NodeID {
	h := sha256.Sum256(append([]byte("edgeportal node id v1\x00"), p.k[:]...))
	return NodeID("I" + hex.EncodeToString(h[:16]))
}

// NodeID is a node's printable identifier: "I" followed by 32 lowercase hex
// digits, derived from its static public key.
type NodeID string

// ParseNodeID checks that s is a well-formed identifier.
func ParseNodeID(s string) (NodeID, error) {
	if len(s) != 33 || s[0] != 'I' {
		return "", fmt.Errorf("identifier %q: want \"I\" followed by 32 hex digits", s)
	}
	for _, c := range s[1:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", fmt.Errorf("identifier %q: want \"I\" followed by 32 lowercase hex digits", s)
		}
	}
	return NodeID(s), nil
}

// SigningPrivate is an Ed25519 private key (authority, command or release key).
type SigningPrivate struct {
	_ incomparable
	k ed25519.PrivateKey
}

// SigningPublic is an Ed25519 public key.
type SigningPublic struct {
	_ incomparable
	k [32]byte
}

// NewSigningPrivate generates a fresh signing key.
func NewSigningPrivate() SigningPrivate {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic("key: crypto/rand failed: " + err.Error())
	}
	return SigningPrivate{k: priv}
}

// IsZero reports whether p is the zero value.
func (p SigningPrivate) IsZero() bool { return len(p.k) == 0 }

// Public returns the public half.
func (p SigningPrivate) Public() SigningPublic {
	var pub SigningPublic
	copy(pub.k[:], p.k.Public().(ed25519.PublicKey))
	return pub
}

// Sign signs msg. It panics on a zero key.
func (p SigningPrivate) Sign(msg []byte) []byte {
	if p.IsZero() {
		panic("key: Sign with a zero signing key")
	}
	return ed25519.Sign(p.k, msg)
}

// Ed25519 returns the underlying key, for minisign-compatible signing only.
func (p SigningPrivate) Ed25519() ed25519.PrivateKey { return p.k }

// String never reveals the key.
func (p SigningPrivate) String() string { return signingPrivatePrefix + "<redacted>" }

// MarshalText returns the key's text form (its 32-byte seed). Use it only to
// write key files.
func (p SigningPrivate) MarshalText() ([]byte, error) {
	if p.IsZero() {
		return nil, errors.New("signing key is empty")
	}
	return []byte(signingPrivatePrefix + hex.EncodeToString(p.k.Seed())), nil
}

// UnmarshalText parses the text form written by MarshalText.
func (p *SigningPrivate) UnmarshalText(b []byte) error {
	var seed [32]byte
	if err := parseHex32("signing private key", signingPrivatePrefix, string(b), seed[:]); err != nil {
		return err
	}
	p.k = ed25519.NewKeyFromSeed(seed[:])
	return nil
}

// SigningPublicFromRaw32 wraps 32 raw bytes.
func SigningPublicFromRaw32(b []byte) (SigningPublic, error) {
	var p SigningPublic
	if len(b) != 32 {
		return p, fmt.Errorf("signing public key must be 32 bytes, got %d", len(b))
	}
	copy(p.k[:], b)
	return p, nil
}

// IsZero reports whether p is the zero value.
func (p SigningPublic) IsZero() bool { return p.k == [32]byte{} }

// Raw32 returns the raw key bytes.
func (p SigningPublic) Raw32() [32]byte { return p.k }

// Equal reports whether p and o are the same key, in constant time.
func (p SigningPublic) Equal(o SigningPublic) bool {
	return subtle.ConstantTimeCompare(p.k[:], o.k[:]) == 1
}

// Verify reports whether sig is a valid signature of msg by p.
func (p SigningPublic) Verify(msg, sig []byte) bool {
	if p.IsZero() {
		return false
	}
	return ed25519.Verify(p.k[:], msg, sig)
}

// Ed25519 returns the underlying public key.
func (p SigningPublic) Ed25519() ed25519.PublicKey { return append(ed25519.PublicKey(nil), p.k[:]...) }

// String returns the text form.
func (p SigningPublic) String() string { return signingPublicPrefix + hex.EncodeToString(p.k[:]) }

// Fingerprint returns a short printable fingerprint.
func (p SigningPublic) Fingerprint() string {
	h := sha256.Sum256(p.k[:])
	return hex.EncodeToString(h[:8])
}

// MarshalText implements encoding.TextMarshaler.
func (p SigningPublic) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *SigningPublic) UnmarshalText(b []byte) error {
	return parseHex32("signing public key", signingPublicPrefix, string(b), p.k[:])
}

// ParseNodePublic parses a node public key's text form ("nodekey:…").
func ParseNodePublic(s string) (NodePublic, error) {
	var k NodePublic
	err := k.UnmarshalText([]byte(s))
	return k, err
}

// ParseSigningPublic parses the text form of a signing public key.
func ParseSigningPublic(s string) (SigningPublic, error) {
	var p SigningPublic
	err := p.UnmarshalText([]byte(s))
	return p, err
}

func parseHex32(what, prefix, s string, dst []byte) error {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, prefix) {
		got := s
		if i := strings.IndexByte(s, ':'); i >= 0 && i < 16 { // a short prefix, not a secret that happens to precede a colon
			got = s[:i+1]
		} else if len(got) > 8 {
			got = got[:8] + "…"
		}
		return fmt.Errorf("%s: want prefix %q, got %q", what, prefix, got)
	}
	b, err := hex.DecodeString(s[len(prefix):])
	if err != nil || len(b) != 32 {
		return fmt.Errorf("%s: want 64 hex digits after %q", what, prefix)
	}
	copy(dst, b)
	return nil
}

// WriteFile atomically writes a key's text form to path with mode 0600.
func WriteFile(path string, k interface{ MarshalText() ([]byte, error) }) error {
	b, err := k.MarshalText()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o600)
}

// ReadFile reads a key's text form from path into k.
func ReadFile(path string, k interface{ UnmarshalText([]byte) error }) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := k.UnmarshalText(b); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
