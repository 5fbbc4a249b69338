// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package release

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"

	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/minisig"
	"github.com/edgeportal/connect/wire/signed"
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

// goldenBinary is the release binary of the golden manifest.
var goldenBinary = []byte("golden binary\n")

// goldenMinisig is minisig.Sign(release key, goldenBinary,
// "Initech v1.2.3 linux/amd64"), pinned on its own in wire/minisig.
const goldenMinisig = `untrusted comment: signature from release key FE3AF3A27F862EB6
RWS2LoZ/ovM6/mQ4Yh1usFxXnspmFgy4DRkF7LlaT8IAQ4Xi/gODFBNBjrCeF+uiULwD/g8aOrjLrAoaxfw3/aqokaIo1UXFcgE=
trusted comment: Initech v1.2.3 linux/amd64
MkA9d1WLQWOLrj3zdKC6ZNqho07QAIDL3j3AkZZViTPr9Jm0E0B+2ls5lBSMTabEHDfuY6LdOpiuUrTPAGBeCg==
`

func goldenManifest(tb testing.TB) Manifest {
	return Manifest{Project: "Pgolden", Version: "v1.2.3", Channel: "stable", Created: 1_800_000_000,
		Files: map[string]File{"linux/amd64": {Size: int64(len(goldenBinary)), SHA256: sha256.Sum256(goldenBinary), Minisig: goldenMinisig}}}
}

const promise = "signed formats are a compatibility promise: nodes of other versions verify and decode these exact bytes. " +
	"Add a field under a new key (omitempty) or a new context instead of changing one"

// TestGoldenManifest pins a release manifest's deterministic CBOR and its
// signed envelope (Ed25519 signatures are deterministic), made with the
// fixed release key (seed 0x03…).
func TestGoldenManifest(t *testing.T) {
	payload := append(unhex(t, `
		a5                                  # map(5)
		  01                                #   key 1: Project
		    67 50676f6c64656e               #     text(7) "Pgolden"
		  02                                #   key 2: Version
		    66 76312e322e33                 #     text(6) "v1.2.3"
		  03                                #   key 3: Channel
		    66 737461626c65                 #     text(6) "stable"
		  04                                #   key 4: Created
		    1a 6b49d200                     #     uint 1800000000
		  05                                #   key 5: Files
		    a1                              #     map(1)
		      6b 6c696e75782f616d643634     #       text(11) "linux/amd64"
		        a3                          #       map(3)
		          01                        #         key 1: Size
		            0e                      #           uint 14
		          02                        #         key 2: SHA256
		            58 20                   #           bytes(32)
		              2761b2cd1e7ee555b11a026f2bb735f8dcf0da3eba923c9d6453989ab9194356
		          03                        #         key 3: Minisig
		            79 0129                 #           text(297): goldenMinisig
	`), goldenMinisig...)
	envelope := bytes.Join([][]byte{unhex(t, `
		a3                                  # map(3)
		  01                                #   key 1: Context
		    78 1e                           #     text(30) "edgeportal release manifest v1"
		      65646765706f7274616c2072656c65617365206d616e6966657374207631
		  02                                #   key 2: Payload
		    59 0181                         #     bytes(385): the payload above
	`), payload, unhex(t, `
		  03                                #   key 3: Sig
		    58 40                           #     bytes(64): Ed25519 of context || 0x00 || payload
		      bcb193b12110f1c21df4760263d45b11865ebed25a8ba14a1083f4e767af3f68
		      06048943e1adba0b64fa2e7a20e87a53a976f5cd48c50fa97e324df9d76a8f03
	`)}, nil)

	k := fixedSigning(t, 0x03)
	m := goldenManifest(t)
	if sig := minisig.Sign(k, goldenBinary, "Initech v1.2.3 linux/amd64"); sig != goldenMinisig {
		t.Fatalf("minisign signature changed:\n%s", sig)
	}
	if got, err := wire.Marshal(m); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("manifest encoding changed (%v); %s.\n got %x\nwant %x", err, promise, got, payload)
	}
	got, err := Sign(k, m)
	if err != nil || !bytes.Equal(got, envelope) {
		t.Fatalf("signed manifest changed (%v); %s.\n got %x\nwant %x", err, promise, got, envelope)
	}
	v, err := Verify(k.Public(), envelope)
	if err != nil || !reflect.DeepEqual(*v, m) {
		t.Fatalf("Verify = %+v, %v", v, err)
	}
	sig := envelope[len(envelope)-64:]
	pub := k.Public().Ed25519()
	if !ed25519.Verify(pub, append([]byte(signed.ContextManifest+"\x00"), payload...), sig) || ed25519.Verify(pub, payload, sig) {
		t.Fatal("the signature is not over context || 0x00 || payload")
	}
	for _, other := range []string{signed.ContextCredential, signed.ContextGrant, signed.ContextCommand, signed.ContextAuthority, signed.ContextRevocation} {
		if ed25519.Verify(pub, append([]byte(other+"\x00"), payload...), sig) {
			t.Errorf("the manifest's signature also verifies as a %q", other)
		}
		rewrapped, _ := wire.Marshal(signed.Envelope{Context: other, Payload: payload, Sig: sig})
		if err := signed.Verify(k.Public(), other, rewrapped, new(Manifest)); err == nil {
			t.Errorf("re-wrapped as a %q, it verifies", other)
		}
	}
	for i := range envelope {
		bad := bytes.Clone(envelope)
		bad[i] ^= 0x01
		if _, err := Verify(k.Public(), bad); err == nil {
			t.Fatalf("flipping a bit of byte %d still verifies", i)
		}
	}
}
