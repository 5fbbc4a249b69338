// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package minisig writes minisign-compatible public keys and signatures
// from the project's Ed25519 release key, so release binaries can be
// checked with minisign(1) and with minio/selfupdate's Verifier.
//
// Format (https://jedisct1.github.io/minisign/): a public key is
// base64("Ed" || key id (8, little-endian) || public key (32)); a signature
// file is an untrusted comment line, base64("Ed" || key id || Ed25519
// signature of the file), a trusted comment line, and base64(Ed25519
// signature of (file signature || trusted comment)).
//
// Imported by hub (publishing) and agent/update.
package minisig

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"

	"github.com/edgeportal/connect/wire/key"
)

// KeyID is the minisign key id of a release key: the first 8 bytes of the
// SHA-256 of the public key.
func KeyID(pub key.SigningPublic) uint64 {
	raw := pub.Raw32()
	h := sha256.Sum256(raw[:])
	return binary.LittleEndian.Uint64(h[:8])
}

// PublicKey returns the minisign public key line.
func PublicKey(pub key.SigningPublic) string {
	b := make([]byte, 0, 42)
	b = append(b, 'E', 'd')
	b = binary.LittleEndian.AppendUint64(b, KeyID(pub))
	raw := pub.Raw32()
	b = append(b, raw[:]...)
	return base64.StdEncoding.EncodeToString(b)
}

// Sign returns a minisign signature file for message.
func Sign(priv key.SigningPrivate, message []byte, trustedComment string) string {
	pub := priv.Public()
	sig := priv.Sign(message)
	b := make([]byte, 0, 74)
	b = append(b, 'E', 'd')
	b = binary.LittleEndian.AppendUint64(b, KeyID(pub))
	b = append(b, sig...)
	global := priv.Sign(append(append([]byte(nil), sig...), trustedComment...))
	return fmt.Sprintf("untrusted comment: signature from release key %X\n%s\ntrusted comment: %s\n%s\n",
		KeyID(pub), base64.StdEncoding.EncodeToString(b), trustedComment, base64.StdEncoding.EncodeToString(global))
}
