// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package signed

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/key"
)

// fixedKey is the golden vectors' signing key: Ed25519 from the seed
// 0x01 repeated 32 times (the authority key of enroll's vectors).
func fixedKey(tb testing.TB) key.SigningPrivate {
	tb.Helper()
	var k key.SigningPrivate
	if err := k.UnmarshalText([]byte("sigpriv:" + strings.Repeat("01", 32))); err != nil {
		tb.Fatal(err)
	}
	return k
}

// unhex decodes annotated hex: everything after a '#' on a line is a
// comment, white space is ignored.
func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	var digits strings.Builder
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		tb.Fatalf("bad golden hex: %v", err)
	}
	return b
}

func cborHead(major byte, n int) []byte {
	switch {
	case n < 24:
		return []byte{major<<5 | byte(n)}
	case n < 1<<8:
		return []byte{major<<5 | 24, byte(n)}
	default:
		return []byte{major<<5 | 25, byte(n >> 8), byte(n)}
	}
}

func cborBytesHead(n int) []byte { return cborHead(2, n) }
func cborTextHead(n int) []byte  { return cborHead(3, n) }

// TestGoldenEnvelope pins the envelope's layout with a small statement;
// enroll, wire/command and wire/release pin each real statement type the
// same way.
func TestGoldenEnvelope(t *testing.T) {
	k := fixedKey(t)
	payload := unhex(t, `
		a2          # map(2)
		  01        #   key 1: N
		  07        #     uint 7
		  02        #   key 2: S
		  61 78     #     text(1) "x"
	`)
	want := bytes.Join([][]byte{unhex(t, `
		a3          # map(3)
		  01        #   key 1: Context
		  75        #     text(21) "edgeportal command v1"
		    65646765706f7274616c20636f6d6d616e64207631
		  02        #   key 2: Payload
		  46        #     bytes(6): the payload above
	`), payload, unhex(t, `
		  03        #   key 3: Sig
		  58 40     #     bytes(64): Ed25519 of "edgeportal command v1" || 0x00 || payload
		    12fb6634c0c632512c98ff878dd7dc582cf385e5195c11bf692993dc8e4943e4
		    7989df2e8407b6e43a07e83a9d5849f94a1c868284ce415250c0096ba2763208
	`)}, nil)
	got, err := Sign(k, ContextCommand, stmt{N: 7, S: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the signed envelope changed; signed formats are a compatibility promise (every node and relay in the field reads these bytes):\n got %x\nwant %x", got, want)
	}
	if p, _ := wire.Marshal(stmt{N: 7, S: "x"}); !bytes.Equal(p, payload) {
		t.Fatalf("payload encoding changed: %x", p)
	}
	env, err := Open(got)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().Ed25519()
	if !ed25519.Verify(pub, append([]byte(ContextCommand+"\x00"), payload...), env.Sig) {
		t.Error("the signature is not over context || 0x00 || payload")
	}
	if ed25519.Verify(pub, payload, env.Sig) {
		t.Error("the signature verifies over the payload alone: it does not cover the context")
	}
}
