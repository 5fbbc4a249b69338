// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package minisig

import (
	"encoding/hex"
	"strings"
	"testing"

	"aead.dev/minisign"

	"github.com/edgeportal/connect/wire/key"
)

// fixedSigning builds a golden vector key from a seed: the byte b
// repeated 32 times (0x03 is the release key; see wire/key's golden test).
func fixedSigning(tb testing.TB, b byte) key.SigningPrivate {
	tb.Helper()
	var k key.SigningPrivate
	if err := k.UnmarshalText([]byte("sigpriv:" + strings.Repeat(hex.EncodeToString([]byte{b}), 32))); err != nil {
		tb.Fatal(err)
	}
	return k
}

// TestGolden pins the minisign public key line and signature file made
// from the fixed release key (Ed25519 is deterministic). Nodes in the
// field check release binaries against these forms, and so do
// minisign(1) users: they are a compatibility promise.
func TestGolden(t *testing.T) {
	k := fixedSigning(t, 0x03)
	// base64("Ed" || key id (8, little-endian) || public key (32))
	const wantPub = "RWS2LoZ/ovM6/u1JKMYo0cLG6ukDOJBZlWEpWSc6XGP5NjbBRhSshzfR"
	// Untrusted comment, base64("Ed" || key id || signature of the file),
	// trusted comment, base64(signature of (file signature || trusted comment)).
	const wantSig = `untrusted comment: signature from release key FE3AF3A27F862EB6
RWS2LoZ/ovM6/mQ4Yh1usFxXnspmFgy4DRkF7LlaT8IAQ4Xi/gODFBNBjrCeF+uiULwD/g8aOrjLrAoaxfw3/aqokaIo1UXFcgE=
trusted comment: Initech v1.2.3 linux/amd64
MkA9d1WLQWOLrj3zdKC6ZNqho07QAIDL3j3AkZZViTPr9Jm0E0B+2ls5lBSMTabEHDfuY6LdOpiuUrTPAGBeCg==
`
	if got := KeyID(k.Public()); got != 0xFE3AF3A27F862EB6 {
		t.Errorf("KeyID = %X", got)
	}
	if got := PublicKey(k.Public()); got != wantPub {
		t.Errorf("PublicKey = %s, want %s (a compatibility promise)", got, wantPub)
	}
	msg := []byte("golden binary\n")
	if got := Sign(k, msg, "Initech v1.2.3 linux/amd64"); got != wantSig {
		t.Errorf("Sign =\n%s\nwant\n%s(signature files are a compatibility promise)", got, wantSig)
	}
	var pub minisign.PublicKey
	if err := pub.UnmarshalText([]byte(wantPub)); err != nil {
		t.Fatal(err)
	}
	if !minisign.Verify(pub, msg, []byte(wantSig)) {
		t.Error("minisign does not verify the golden signature")
	}
}

// FuzzSign: for any file and any one-line trusted comment, the signature
// file verifies with minisign and the public key line, carries the
// comment, and verifies no other file.
func FuzzSign(f *testing.F) {
	k := fixedSigning(f, 0x03)
	var pub minisign.PublicKey
	if err := pub.UnmarshalText([]byte(PublicKey(k.Public()))); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("golden binary\n"), "Initech v1.2.3 linux/amd64", []byte("other"))
	f.Add([]byte{}, "", []byte{0})
	f.Add([]byte("x"), "tabs\tand unicode é", []byte("y"))
	f.Fuzz(func(t *testing.T, msg []byte, comment string, other []byte) {
		if strings.ContainsAny(comment, "\r\n") {
			return // a trusted comment is one line (the hub builds it from checked names)
		}
		sig := Sign(k, msg, comment)
		if !minisign.Verify(pub, msg, []byte(sig)) {
			t.Fatalf("minisign does not verify the signature of %q with comment %q:\n%s", msg, comment, sig)
		}
		var s minisign.Signature
		if err := s.UnmarshalText([]byte(sig)); err != nil || s.TrustedComment != comment {
			t.Fatalf("trusted comment %q read back as %q (%v)", comment, s.TrustedComment, err)
		}
		if string(other) != string(msg) && minisign.Verify(pub, other, []byte(sig)) {
			t.Fatalf("the signature of %q verifies %q", msg, other)
		}
	})
}
