// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package key

import (
	"crypto/ed25519"
	"encoding/hex"
	"strings"
	"testing"
)

// fixedSigning and fixedNode build the golden vectors' keys from a fixed
// seed: the byte b repeated 32 times (Ed25519 seed, X25519 scalar). The
// vectors in enroll, wire/command, wire/release and wire/minisig use the
// same ones: 0x01 authority, 0x02 command, 0x03 release (signing keys);
// 0x04 relay, 0x05 authority Noise key, 0x06 node (node keys).
func fixedSigning(tb testing.TB, b byte) SigningPrivate {
	tb.Helper()
	var k SigningPrivate
	if err := k.UnmarshalText([]byte(signingPrivatePrefix + strings.Repeat(hex.EncodeToString([]byte{b}), 32))); err != nil {
		tb.Fatal(err)
	}
	return k
}

func fixedNode(tb testing.TB, b byte) NodePrivate {
	tb.Helper()
	k, err := NodePrivateFromRaw32([]byte(strings.Repeat(string([]byte{b}), 32)))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// TestGoldenKeys pins the text forms of the fixed keys and the node
// identifier derivation. Identifiers are inside every credential,
// command and revocation notice, and key texts are in config files and
// tickets' inspect output: they are a compatibility promise.
func TestGoldenKeys(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"authority signing key", fixedSigning(t, 0x01).Public().String(), "sigkey:8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"},
		{"command key", fixedSigning(t, 0x02).Public().String(), "sigkey:8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394"},
		{"release key", fixedSigning(t, 0x03).Public().String(), "sigkey:ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1"},
		{"relay key", fixedNode(t, 0x04).Public().String(), "nodekey:ac01b2209e86354fb853237b5de0f4fab13c7fcbf433a61c019369617fecf10b"},
		{"authority Noise key", fixedNode(t, 0x05).Public().String(), "nodekey:50a61409b1ddd0325e9b16b700e719e9772c07000b1bd7786e907c653d20495d"},
		{"node key", fixedNode(t, 0x06).Public().String(), "nodekey:f5b2d6e60f9477e310c2982daaa6c9136c108a1777c5947e448fa37d68174557"},
		// "I" + hex(SHA-256("edgeportal node id v1" || 0x00 || key)[:16])
		{"node identifier", string(fixedNode(t, 0x06).Public().ID()), "I1928bcc8e65abce849a224c91cbb9ea5"},
		{"signing private text", mustText(t, fixedSigning(t, 0x01)), "sigpriv:" + strings.Repeat("01", 32)},
		{"node private text", mustText(t, fixedNode(t, 0x06)), "privkey:" + strings.Repeat("06", 32)},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %s, want %s (key text forms and identifiers are a compatibility promise)", tt.name, tt.got, tt.want)
		}
	}
	// The signing text form is the RFC 8032 seed.
	seed := []byte(strings.Repeat("\x01", 32))
	if !fixedSigning(t, 0x01).Public().Equal(mustSigningPublic(t, ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))) {
		t.Error("the signing private key's text is not its Ed25519 seed")
	}
}

func mustText(tb testing.TB, k interface{ MarshalText() ([]byte, error) }) string {
	tb.Helper()
	b, err := k.MarshalText()
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func mustSigningPublic(tb testing.TB, b []byte) SigningPublic {
	tb.Helper()
	k, err := SigningPublicFromRaw32(b)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}
