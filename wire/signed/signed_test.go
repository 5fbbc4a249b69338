// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package signed

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/key"
)

type stmt struct {
	N int    `cbor:"1,keyasint"`
	S string `cbor:"2,keyasint"`
}

func TestSignVerify(t *testing.T) {
	k := key.NewSigningPrivate()
	data, err := Sign(k, ContextCommand, stmt{N: 7, S: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var got stmt
	if err := Verify(k.Public(), ContextCommand, data, &got); err != nil || got.N != 7 || got.S != "x" {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
	if err := Verify(key.NewSigningPrivate().Public(), ContextCommand, data, &got); !errors.Is(err, ErrBadSignature) {
		t.Errorf("other key: %v", err)
	}
	if err := Verify(k.Public(), ContextCredential, data, &got); err == nil || !strings.Contains(err.Error(), "want") {
		t.Errorf("other context: %v", err)
	}
	// Flip every byte of the envelope in turn: nothing verifies.
	for i := range data {
		bad := append([]byte(nil), data...)
		bad[i] ^= 0x40
		if err := Verify(k.Public(), ContextCommand, bad, &got); err == nil {
			t.Fatalf("tampered byte %d verified", i)
		}
	}
}

// A payload whose signature is valid under one context can't be replayed
// under another even when re-wrapped.
func TestDomainSeparation(t *testing.T) {
	k := key.NewSigningPrivate()
	data, _ := Sign(k, ContextGrant, stmt{N: 1})
	env, err := Open(data)
	if err != nil {
		t.Fatal(err)
	}
	env.Context = ContextCredential
	re, _ := wire.Marshal(env)
	var got stmt
	if err := Verify(k.Public(), ContextCredential, re, &got); !errors.Is(err, ErrBadSignature) {
		t.Errorf("re-wrapped under another context: %v", err)
	}
}

// FuzzVerify: only genuinely signed bytes verify. Every statement this
// test signed is known; anything Verify accepts must carry one of them,
// under the context it was signed for, with a signature that checks over
// context || 0x00 || payload, and must decode to exactly the value that
// was signed. Open returns nothing on error and never an envelope without
// a 64-byte signature.
//
// The envelope's own CBOR is not required to be canonical (a re-encoding
// with its keys reordered still verifies); what verifies is always the
// signed context and payload, so the re-encoding decodes to the same
// statement. Canonical bytes that verify are the signed envelope itself.
func FuzzVerify(f *testing.F) {
	k := fixedKey(f)
	contexts := []string{ContextCredential, ContextGrant, ContextCommand, ContextManifest, ContextAuthority, ContextRevocation}
	known := map[string]stmt{}       // context + "\x00" + payload → what was signed
	envelopes := map[string][]byte{} // context → its signed envelope
	for i, c := range contexts {
		v := stmt{N: i + 1, S: c}
		data, err := Sign(k, c, v)
		if err != nil {
			f.Fatal(err)
		}
		env, err := Open(data)
		if err != nil {
			f.Fatal(err)
		}
		known[c+"\x00"+string(env.Payload)] = v
		envelopes[c] = data
		f.Add(data, uint8(i))
		f.Add(data, uint8(i+1)) // the right bytes under the wrong context
		// The same envelope with its keys in another order (3, 2, 1).
		reordered := append([]byte{0xa3, 0x03, 0x58, 0x40}, env.Sig...)
		reordered = append(append(reordered, 0x02), cborBytesHead(len(env.Payload))...)
		reordered = append(append(reordered, env.Payload...), 0x01)
		reordered = append(append(reordered, cborTextHead(len(c))...), c...)
		f.Add(reordered, uint8(i))
	}
	f.Add([]byte{0xa0}, uint8(0))
	f.Add([]byte{0xa3, 0x01, 0x60, 0x02, 0x40, 0x03, 0x40}, uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, ci uint8) {
		ctx := contexts[int(ci)%len(contexts)]
		env, oerr := Open(b)
		if oerr != nil && !reflect.DeepEqual(env, Envelope{}) {
			t.Fatalf("Open returned %+v with error %v", env, oerr)
		}
		if oerr == nil && len(env.Sig) != 64 {
			t.Fatalf("Open accepted a %d-byte signature", len(env.Sig))
		}
		var got stmt
		err := Verify(k.Public(), ctx, b, &got)
		if err != nil {
			if errors.Is(err, ErrBadSignature) && ed25519.Verify(k.Public().Ed25519(), message(ctx, env.Payload), env.Sig) {
				t.Fatalf("a good signature was refused: %v", err)
			}
			return
		}
		want, ok := known[ctx+"\x00"+string(env.Payload)]
		if !ok {
			t.Fatalf("verified a payload never signed under %q: %x", ctx, env.Payload)
		}
		if oerr != nil || env.Context != ctx || !ed25519.Verify(k.Public().Ed25519(), message(ctx, env.Payload), env.Sig) {
			t.Fatalf("verified %x without a signature over its context and payload", b)
		}
		if got != want {
			t.Fatalf("verified statement decoded to %+v, signed %+v", got, want)
		}
		if canon, err := wire.Marshal(env); err == nil && bytes.Equal(canon, b) && !bytes.Equal(b, envelopes[ctx]) {
			t.Fatalf("canonical bytes %x verify but differ from the signed envelope %x", b, envelopes[ctx])
		}
	})
}
