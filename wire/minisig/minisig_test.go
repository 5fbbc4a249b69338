// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package minisig

import (
	"testing"

	"aead.dev/minisign"

	"github.com/edgeportal/connect/wire/key"
)

// TestInterop checks our files against the minisign implementation that
// minio/selfupdate uses.
func TestInterop(t *testing.T) {
	k := key.NewSigningPrivate()
	msg := []byte("a release binary")
	var pub minisign.PublicKey
	if err := pub.UnmarshalText([]byte(PublicKey(k.Public()))); err != nil {
		t.Fatal(err)
	}
	sig := Sign(k, msg, "initech-agent v1.2.3")
	if !minisign.Verify(pub, msg, []byte(sig)) {
		t.Fatalf("minisign does not verify our signature:\n%s", sig)
	}
	if minisign.Verify(pub, []byte("another binary"), []byte(sig)) {
		t.Fatal("signature verified for other bytes")
	}
	var other minisign.PublicKey
	other.UnmarshalText([]byte(PublicKey(key.NewSigningPrivate().Public())))
	if minisign.Verify(other, msg, []byte(sig)) {
		t.Fatal("signature verified with another key")
	}
}
