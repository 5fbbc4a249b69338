// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package signed

import (
	"errors"
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

func FuzzVerify(f *testing.F) {
	k := key.NewSigningPrivate()
	data, _ := Sign(k, ContextCommand, stmt{N: 7, S: "x"})
	f.Add(data)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var got stmt
		if err := Verify(k.Public(), ContextCommand, b, &got); err == nil {
			// Only a correctly signed statement may verify.
			env, _ := Open(b)
			if !k.Public().Verify(message(env.Context, env.Payload), env.Sig) {
				t.Fatal("verified without a valid signature")
			}
		}
	})
}
