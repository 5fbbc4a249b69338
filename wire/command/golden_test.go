// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package command

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/signed"
)

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

const promise = "signed formats are a compatibility promise: nodes of other versions verify and decode these exact bytes. " +
	"Add a field under a new key (omitempty) or a new context instead of changing one"

// TestGoldenCommand pins a vendor command's deterministic CBOR and its
// signed envelope (Ed25519 signatures are deterministic), built from the
// fixed command key (seed 0x02…) and the fixed node (0x06…).
func TestGoldenCommand(t *testing.T) {
	payload := unhex(t, `
		a8                                  # map(8)
		  01                                #   key 1: Project
		    67 50676f6c64656e               #     text(7) "Pgolden"
		  02                                #   key 2: Target (node identifier)
		    78 21                           #     text(33) "I1928bcc8e65abce849a224c91cbb9ea5"
		      4931393238626363386536356162636538343961323234633931636262396561
		      35
		  03                                #   key 3: Relay
		    6a 61636d652d72656c6179         #     text(10) "acme-relay"
		  04                                #   key 4: Seq
		    07                              #     uint 7
		  05                                #   key 5: IssuedAt
		    1a 6b49d200                     #     uint 1800000000
		  06                                #   key 6: ExpiresAt
		    1a 6b530c80                     #     uint 1800604800 (7 days later)
		  07                                #   key 7: Op
		    6a 6f75746c65742e616464         #     text(10) "outlet.add"
		  08                                #   key 8: Outlet
		    a3                              #     map(3)
		      01                            #       key 1: Name
		        64 6a697261                 #         text(4) "jira"
		      02                            #       key 2: To
		        76                          #         text(22) "jira.acme.internal:443"
		          6a6972612e61636d652e696e7465726e616c3a343433
		      03                            #       key 3: Allow
		        6f                          #         text(15) "inlet-from-saas"
		          696e6c65742d66726f6d2d73616173
	`)
	envelope := bytes.Join([][]byte{unhex(t, `
		a3                                  # map(3)
		  01                                #   key 1: Context
		    75                              #     text(21) "edgeportal command v1"
		      65646765706f7274616c20636f6d6d616e64207631
		  02                                #   key 2: Payload
		    58 85                           #     bytes(133): the payload above
	`), payload, unhex(t, `
		  03                                #   key 3: Sig
		    58 40                           #     bytes(64): Ed25519 of context || 0x00 || payload
		      1372433b987d0d77bde07af113e2427bd6df5b81aa6d14847b151a06d0a5321a
		      b7552e1646d423ca18bd5d54adaa37419418917525fc00b03e88b85e45c8ac0d
	`)}, nil)

	c := goldenCommand(t)
	if got, err := wire.Marshal(c); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("command encoding changed (%v); %s.\n got %x\nwant %x", err, promise, got, payload)
	}
	k := fixedSigning(t, 0x02)
	got, err := Sign(k, c)
	if err != nil || !bytes.Equal(got, envelope) {
		t.Fatalf("signed command changed (%v); %s.\n got %x\nwant %x", err, promise, got, envelope)
	}
	// It verifies with its key, for its node, and decodes to what was signed.
	v, err := Verify(k.Public(), c.Project, c.Target, envelope, 6, time.Unix(goldenT0, 0))
	if err != nil || !reflect.DeepEqual(*v, c) {
		t.Fatalf("Verify = %+v, %v", v, err)
	}
	// The signature covers the context: not the payload alone, not the
	// payload under another context, and the same bytes re-wrapped under
	// another context do not verify.
	sig := envelope[len(envelope)-64:]
	pub := k.Public().Ed25519()
	if !ed25519.Verify(pub, append([]byte(signed.ContextCommand+"\x00"), payload...), sig) || ed25519.Verify(pub, payload, sig) {
		t.Fatal("the signature is not over context || 0x00 || payload")
	}
	for _, other := range []string{signed.ContextCredential, signed.ContextGrant, signed.ContextManifest, signed.ContextAuthority, signed.ContextRevocation} {
		if ed25519.Verify(pub, append([]byte(other+"\x00"), payload...), sig) {
			t.Errorf("the command's signature also verifies as a %q", other)
		}
		rewrapped, _ := wire.Marshal(signed.Envelope{Context: other, Payload: payload, Sig: sig})
		if err := signed.Verify(k.Public(), other, rewrapped, new(Command)); err == nil {
			t.Errorf("re-wrapped as a %q, it verifies", other)
		}
	}
	// Every byte counts.
	for i := range envelope {
		bad := bytes.Clone(envelope)
		bad[i] ^= 0x01
		if _, err := Verify(k.Public(), c.Project, c.Target, bad, 0, time.Unix(goldenT0, 0)); err == nil {
			t.Fatalf("flipping a bit of byte %d still verifies", i)
		}
	}
}
