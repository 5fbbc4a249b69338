// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package enroll

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/signed"
)

// The golden vectors are built from fixed keys, each from a seed that is
// one byte repeated 32 times (Ed25519 seeds, X25519 scalars; their text
// forms are pinned in wire/key), and from a fixed clock.
type goldenKeys struct {
	authority, command, release key.SigningPrivate // seeds 0x01, 0x02, 0x03
	relay, authNoise, node      key.NodePrivate    // 0x04, 0x05, 0x06
}

func fixedKeys(tb testing.TB) goldenKeys {
	tb.Helper()
	sig := func(b byte) key.SigningPrivate {
		var k key.SigningPrivate
		if err := k.UnmarshalText([]byte("sigpriv:" + strings.Repeat(hex.EncodeToString([]byte{b}), 32))); err != nil {
			tb.Fatal(err)
		}
		return k
	}
	node := func(b byte) key.NodePrivate {
		k, err := key.NodePrivateFromRaw32(bytes.Repeat([]byte{b}, 32))
		if err != nil {
			tb.Fatal(err)
		}
		return k
	}
	return goldenKeys{sig(0x01), sig(0x02), sig(0x03), node(0x04), node(0x05), node(0x06)}
}

// goldenT0 is 2027-01-15T08:00:00Z.
const goldenT0 = 1_800_000_000

var goldenSecret = bytes.Repeat([]byte{0x07}, 32)

func goldenScope() *Scope {
	return &Scope{Attributes: []string{"inlet-to-saas", "tier=silver"}, Relays: []string{"acme-*"}, MaxLifetime: 48 * 3600, MaxUses: 5}
}

// goldenAuthority is the authority of the vectors, its clock at now.
func goldenAuthority(ks goldenKeys, now int64) *Authority {
	return &Authority{Project: "Pgolden", Vendor: "Initech", Hubs: []string{"hub.example:7400"}, HubKey: ks.relay.Public(),
		Signer: ks.authority, NoiseKey: ks.authNoise.Public(), CommandKey: ks.command.Public(), ReleaseKey: ks.release.Public(),
		Store: newMemStore(), Now: func() time.Time { return time.Unix(now, 0) }}
}

// goldenOptions make the golden ticket: an enroller ticket for one node.
func goldenOptions() TicketOptions {
	return TicketOptions{Attributes: map[string]string{"inlet-to-saas": "true", "tier": "gold"}, Relay: "acme-relay",
		Enroller: true, Scope: goldenScope(), ExpiresIn: time.Hour, Uses: 1}
}

func goldenGrant(ks goldenKeys) Grant {
	o := goldenOptions()
	return Grant{TicketID: TicketID(goldenSecret), Attributes: o.Attributes, Relay: o.Relay, Enroller: true,
		IssuedAt: goldenT0, ExpiresAt: goldenT0 + 3600, Uses: 1, Project: "Pgolden", Vendor: "Initech",
		Hubs: []string{"hub.example:7400"}, HubKey: ks.relay.Public().Raw32(), AuthorityNoiseKey: ks.authNoise.Public().Raw32(),
		CommandKey: ks.command.Public().Raw32(), ReleaseKey: ks.release.Public().Raw32(), Scope: goldenScope()}
}

func goldenTicket(ks goldenKeys, grant []byte) Ticket {
	g := goldenGrant(ks)
	return Ticket{Vendor: g.Vendor, Hubs: g.Hubs, HubKey: g.HubKey, AuthorityKey: ks.authority.Public().Raw32(),
		CommandKey: g.CommandKey, Project: g.Project, Secret: goldenSecret, Grant: grant, ReleaseKey: g.ReleaseKey,
		AuthorityNoiseKey: g.AuthorityNoiseKey}
}

// goldenMember is the node the golden ticket admitted, a minute later.
func goldenMember(ks goldenKeys) Member {
	g := goldenGrant(ks)
	return Member{ID: string(ks.node.Public().ID()), NodeKey: ks.node.Public().Raw32(), Attributes: g.Attributes,
		Relay: g.Relay, Enroller: true, Scope: goldenScope(), EnrolledAt: goldenT0 + 60, TicketID: g.TicketID}
}

func goldenCredential(ks goldenKeys) Credential {
	m := goldenMember(ks)
	return Credential{Project: "Pgolden", NodeKey: m.NodeKey, ID: m.ID, Attributes: m.Attributes, Relay: m.Relay,
		Enroller: true, IssuedAt: goldenT0 + 60, ExpiresAt: goldenT0 + 60 + 3600, Scope: goldenScope()}
}

func goldenStatement(ks goldenKeys) Statement {
	return Statement{Project: "Pgolden", NoiseKey: ks.authNoise.Public().Raw32(), IssuedAt: goldenT0, ExpiresAt: goldenT0 + 3600}
}

func goldenRevocation(ks goldenKeys) Revocation {
	return Revocation{Project: "Pgolden", ID: string(ks.node.Public().ID()), NodeKey: ks.node.Public().Raw32(), RevokedAt: goldenT0 + 86400}
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

const promise = "signed formats are a compatibility promise: nodes, relays and authorities of other versions verify and decode these exact bytes. " +
	"Add a field under a new key (omitempty) or a new context instead of changing one"

// Golden payloads: the deterministic CBOR of each statement.
const (
	grantHex = `
		af                                  # map(15)
		  01                                #   key 1: TicketID
		    6d                              #     text(13) "T9ef6a3619b7f" (a hash of the secret)
		      54396566366133363139623766
		  02                                #   key 2: Attributes
		    a2                              #     map(2), keys in length-first order
		      64 74696572                   #       text(4) "tier"
		        64 676f6c64                 #         text(4) "gold"
		      6d 696e6c65742d746f2d73616173 #       text(13) "inlet-to-saas"
		        64 74727565                 #         text(4) "true"
		  03                                #   key 3: Relay
		    6a 61636d652d72656c6179         #     text(10) "acme-relay"
		  04                                #   key 4: Enroller
		    f5                              #     true
		  05                                #   key 5: IssuedAt
		    1a 6b49d200                     #     uint 1800000000
		  06                                #   key 6: ExpiresAt
		    1a 6b49e010                     #     uint 1800003600
		  07                                #   key 7: Uses
		    01                              #     uint 1
		  08                                #   key 8: Project
		    67 50676f6c64656e               #     text(7) "Pgolden"
		  09                                #   key 9: Vendor
		    67 496e6974656368               #     text(7) "Initech"
		  0a                                #   key 10: Hubs
		    81                              #     array(1)
		      70                            #       text(16) "hub.example:7400"
		        6875622e6578616d706c653a37343030
		  0b                                #   key 11: HubKey (the relay's Noise key, 0x04…)
		    58 20                           #     bytes(32)
		      ac01b2209e86354fb853237b5de0f4fab13c7fcbf433a61c019369617fecf10b
		  0c                                #   key 12: AuthorityNoiseKey (0x05…)
		    58 20                           #     bytes(32)
		      50a61409b1ddd0325e9b16b700e719e9772c07000b1bd7786e907c653d20495d
		  0d                                #   key 13: CommandKey (0x02…)
		    58 20                           #     bytes(32)
		      8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394
		  0e                                #   key 14: ReleaseKey (0x03…)
		    58 20                           #     bytes(32)
		      ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1
		  0f                                #   key 15: Scope
	` + scopeHex

	scopeHex = `
		    a4                              #     map(4)
		      01                            #       key 1: Attributes
		        82                          #         array(2)
		          6d                        #           text(13) "inlet-to-saas"
		            696e6c65742d746f2d73616173
		          6b 746965723d73696c766572 #           text(11) "tier=silver"
		      02                            #       key 2: Relays
		        81                          #         array(1)
		          66 61636d652d2a           #           text(6) "acme-*"
		      03                            #       key 3: MaxLifetime
		        1a 0002a300                 #         uint 172800 (48 h)
		      04                            #       key 4: MaxUses
		        05                          #         uint 5
	`

	credentialHex = `
		a9                                  # map(9)
		  01                                #   key 1: Project
		    67 50676f6c64656e               #     text(7) "Pgolden"
		  02                                #   key 2: NodeKey (0x06…)
		    58 20                           #     bytes(32)
		      f5b2d6e60f9477e310c2982daaa6c9136c108a1777c5947e448fa37d68174557
		  03                                #   key 3: ID
		    78 21                           #     text(33) "I1928bcc8e65abce849a224c91cbb9ea5"
		      4931393238626363386536356162636538343961323234633931636262396561
		      35
		  04                                #   key 4: Attributes
		    a2                              #     map(2)
		      64 74696572                   #       text(4) "tier"
		        64 676f6c64                 #         text(4) "gold"
		      6d 696e6c65742d746f2d73616173 #       text(13) "inlet-to-saas"
		        64 74727565                 #         text(4) "true"
		  05                                #   key 5: Relay
		    6a 61636d652d72656c6179         #     text(10) "acme-relay"
		  06                                #   key 6: Enroller
		    f5                              #     true
		  07                                #   key 7: IssuedAt
		    1a 6b49d23c                     #     uint 1800000060
		  08                                #   key 8: ExpiresAt
		    1a 6b49e04c                     #     uint 1800003660
		  09                                #   key 9: Scope
	` + scopeHex

	statementHex = `
		a4                                  # map(4)
		  01                                #   key 1: Project
		    67 50676f6c64656e               #     text(7) "Pgolden"
		  02                                #   key 2: NoiseKey (the authority's, 0x05…)
		    58 20                           #     bytes(32)
		      50a61409b1ddd0325e9b16b700e719e9772c07000b1bd7786e907c653d20495d
		  03                                #   key 3: IssuedAt
		    1a 6b49d200                     #     uint 1800000000
		  04                                #   key 4: ExpiresAt
		    1a 6b49e010                     #     uint 1800003600
	`

	revocationHex = `
		a4                                  # map(4)
		  01                                #   key 1: Project
		    67 50676f6c64656e               #     text(7) "Pgolden"
		  02                                #   key 2: ID
		    78 21                           #     text(33) "I1928bcc8e65abce849a224c91cbb9ea5"
		      4931393238626363386536356162636538343961323234633931636262396561
		      35
		  03                                #   key 3: NodeKey (0x06…)
		    58 20                           #     bytes(32)
		      f5b2d6e60f9477e310c2982daaa6c9136c108a1777c5947e448fa37d68174557
		  04                                #   key 4: RevokedAt
		    1a 6b4b2380                     #     uint 1800086400 (a day later)
	`
)

// envelope builds the expected signed envelope around a golden payload:
// map(3) {1: context, 2: payload, 3: signature}. The heads are written
// out in each vector below.
func envelope(tb testing.TB, head string, payload []byte, sig string) []byte {
	return bytes.Join([][]byte{unhex(tb, head), payload, unhex(tb, `
		  03                                #   key 3: Sig
		    58 40                           #     bytes(64): Ed25519 of context || 0x00 || payload
	`+sig)}, nil)
}

// signedVector is one golden signed statement.
type signedVector struct {
	name     string
	context  string
	value    any                       // what is signed
	sign     func() ([]byte, error)    // the production path that signs it
	payload  []byte                    // its deterministic CBOR
	envelope []byte                    // the signed envelope
	verify   func([]byte) (any, error) // the production verifier, with the right key and peer
}

func goldenVectors(t *testing.T) []signedVector {
	ks := fixedKeys(t)
	pub := ks.authority.Public()
	grant, cred, stmt, rev := unhex(t, grantHex), unhex(t, credentialHex), unhex(t, statementHex), unhex(t, revocationHex)
	return []signedVector{
		{
			name: "ticket grant", context: signed.ContextGrant, value: goldenGrant(ks),
			sign:    func() ([]byte, error) { return signed.Sign(ks.authority, signed.ContextGrant, goldenGrant(ks)) },
			payload: grant,
			envelope: envelope(t, `
				a3                                  # map(3)
				  01                                #   key 1: Context
				    78 1a                           #     text(26) "edgeportal ticket grant v1"
				      65646765706f7274616c207469636b6574206772616e74207631
				  02                                #   key 2: Payload
				    59 012b                         #     bytes(299): grantHex
			`, grant, `
				d9d20a73ad0aa8d96a9a348ed1ca4e2cdf129d72452c3b3c5375cda46624802f
				c695ec4fae57db90cc4f316571ca456ede38f0b4f8e6aa998e591f52418d1f0e
			`),
			verify: func(b []byte) (any, error) {
				var g Grant
				err := signed.Verify(pub, signed.ContextGrant, b, &g)
				return g, err
			},
		},
		{
			name: "credential", context: signed.ContextCredential, value: goldenCredential(ks),
			sign:    func() ([]byte, error) { return goldenAuthority(ks, goldenT0+60).Issue(goldenMember(ks)) },
			payload: cred,
			envelope: envelope(t, `
				a3                                  # map(3)
				  01                                #   key 1: Context
				    78 18                           #     text(24) "edgeportal credential v1"
				      65646765706f7274616c2063726564656e7469616c207631
				  02                                #   key 2: Payload
				    58 b9                           #     bytes(185): credentialHex
			`, cred, `
				250ede221792ab9df6b7961a3f69fb67c42b81857b3b9c129f8afdf3a09c8ee3
				e6548c65dda032a82f6352de7f57a75bf84c2ca138f7172891c7dca98481ae03
			`),
			verify: func(b []byte) (any, error) {
				c, err := VerifyCredential(pub, b, ks.node.Public(), time.Unix(goldenT0+120, 0))
				if err != nil {
					return nil, err
				}
				return *c, nil
			},
		},
		{
			name: "authority statement", context: signed.ContextAuthority, value: goldenStatement(ks),
			sign:    func() ([]byte, error) { return goldenAuthority(ks, goldenT0).Statement() },
			payload: stmt,
			envelope: envelope(t, `
				a3                                  # map(3)
				  01                                #   key 1: Context
				    78 21                           #     text(33) "edgeportal authority statement v1"
				      65646765706f7274616c20617574686f726974792073746174656d656e742076
				      31
				  02                                #   key 2: Payload
				    58 39                           #     bytes(57): statementHex
			`, stmt, `
				00c9e316c62e348bea26cc6e5b938c6d06c47020cdd163e1a16c04416f20b376
				e84391390466dd2fd53a970fb724a42a99dd2c8db45cd80e74ce47542d5e280c
			`),
			verify: func(b []byte) (any, error) {
				if err := VerifyStatement(pub, "Pgolden", b, ks.authNoise.Public(), time.Unix(goldenT0+10, 0)); err != nil {
					return nil, err
				}
				var st Statement
				err := signed.Verify(pub, signed.ContextAuthority, b, &st)
				return st, err
			},
		},
		{
			name: "revocation notice", context: signed.ContextRevocation, value: goldenRevocation(ks),
			sign: func() ([]byte, error) {
				m := goldenMember(ks)
				m.Revoked, m.RevokedAt = true, goldenT0+86400
				return goldenAuthority(ks, goldenT0+86400).revocation(m)
			},
			payload: rev,
			envelope: envelope(t, `
				a3                                  # map(3)
				  01                                #   key 1: Context
				    78 18                           #     text(24) "edgeportal revocation v1"
				      65646765706f7274616c207265766f636174696f6e207631
				  02                                #   key 2: Payload
				    58 57                           #     bytes(87): revocationHex
			`, rev, `
				69bff1832bae15129ef2a7b97fe3b9dfa7f334ba0a261e298e6f218eb4142546
				ababc3f3f330c86b3e3bf97aff2f9c8afb6247dc8fd1f7b87d21474b45f22c03
			`),
			verify: func(b []byte) (any, error) {
				r, err := VerifyRevocation(pub, "Pgolden", b)
				return r, err
			},
		},
	}
}

var allContexts = []string{signed.ContextCredential, signed.ContextGrant, signed.ContextCommand,
	signed.ContextManifest, signed.ContextAuthority, signed.ContextRevocation}

// TestGoldenSignedFormats pins the bytes of every statement the authority
// signs, checks the production path makes exactly them, that each
// verifies with the authority key and decodes to what was signed, and
// that its signature covers the domain-separation context.
func TestGoldenSignedFormats(t *testing.T) {
	pub := fixedKeys(t).authority.Public()
	for _, v := range goldenVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			if got, err := wire.Marshal(v.value); err != nil || !bytes.Equal(got, v.payload) {
				t.Fatalf("the %s's encoding changed (%v); %s.\n got %x\nwant %x", v.name, err, promise, got, v.payload)
			}
			got, err := v.sign()
			if err != nil || !bytes.Equal(got, v.envelope) {
				t.Fatalf("the signed %s changed (%v); %s.\n got %x\nwant %x", v.name, err, promise, got, v.envelope)
			}
			dec, err := v.verify(v.envelope)
			if err != nil || !reflect.DeepEqual(dec, v.value) {
				t.Fatalf("verified %s = %+v, %v; want %+v", v.name, dec, err, v.value)
			}
			sig := v.envelope[len(v.envelope)-64:]
			if !ed25519.Verify(pub.Ed25519(), append([]byte(v.context+"\x00"), v.payload...), sig) {
				t.Fatal("the signature is not over context || 0x00 || payload")
			}
			if ed25519.Verify(pub.Ed25519(), v.payload, sig) {
				t.Fatal("the signature verifies over the payload alone: it does not cover the context")
			}
			for _, other := range allContexts {
				if other == v.context {
					continue
				}
				if ed25519.Verify(pub.Ed25519(), append([]byte(other+"\x00"), v.payload...), sig) {
					t.Errorf("the %s's signature also verifies as a %q", v.name, other)
				}
				rewrapped, _ := wire.Marshal(signed.Envelope{Context: other, Payload: v.payload, Sig: sig})
				if _, err := v.verify(rewrapped); err == nil {
					t.Errorf("re-wrapped as a %q, the %s verifies", other, v.name)
				}
			}
			for i := range v.envelope {
				bad := bytes.Clone(v.envelope)
				bad[i] ^= 0x01
				if _, err := v.verify(bad); err == nil {
					t.Fatalf("flipping a bit of byte %d still verifies", i)
				}
			}
			if _, err := v.verify(v.envelope[:len(v.envelope)-1]); err == nil {
				t.Fatal("a truncated envelope verifies")
			}
		})
	}
}

// TestGoldenTicket pins a ticket's body (every field but the secret is
// also in the grant above) and its printable text, and checks that
// CreateTicket makes the same ticket and grant but for the random secret.
func TestGoldenTicket(t *testing.T) {
	ks := fixedKeys(t)
	grantEnv := goldenVectors(t)[0].envelope
	body := bytes.Join([][]byte{unhex(t, `
		aa                                  # map(10)
		  01                                #   key 1: Vendor
		    67 496e6974656368               #     text(7) "Initech"
		  02                                #   key 2: Hubs
		    81                              #     array(1)
		      70                            #       text(16) "hub.example:7400"
		        6875622e6578616d706c653a37343030
		  03                                #   key 3: HubKey (the relay's Noise key, 0x04…)
		    58 20                           #     bytes(32)
		      ac01b2209e86354fb853237b5de0f4fab13c7fcbf433a61c019369617fecf10b
		  04                                #   key 4: AuthorityKey (the authority's signing key, 0x01…)
		    58 20                           #     bytes(32)
		      8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c
		  05                                #   key 5: CommandKey (0x02…)
		    58 20                           #     bytes(32)
		      8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394
		  06                                #   key 6: Project
		    67 50676f6c64656e               #     text(7) "Pgolden"
		  07                                #   key 7: Secret (the one unsigned field)
		    58 20                           #     bytes(32)
		      0707070707070707070707070707070707070707070707070707070707070707
		  08                                #   key 8: Grant
		    59 0190                         #     bytes(400): the signed grant envelope
	`), grantEnv, unhex(t, `
		  09                                #   key 9: ReleaseKey (0x03…)
		    58 20                           #     bytes(32)
		      ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1
		  0a                                #   key 10: AuthorityNoiseKey (0x05…)
		    58 20                           #     bytes(32)
		      50a61409b1ddd0325e9b16b700e719e9772c07000b1bd7786e907c653d20495d
	`)}, nil)
	// TicketPrefix + base64url(body) + ":" + hex(SHA-256(body)[:4])
	const text = "ticket-v1:" +
		"qgFnSW5pdGVjaAKBcGh1Yi5leGFtcGxlOjc0MDADWCCsAbIgnoY1T7hTI3td4PT6sTx_y_QzphwBk2lhf-zxCwRYIIqI4910CfGV_VLbLTy6XXLKZwm_" +
		"HZQSG_N0iAG0D29cBVgggTl3Dqh9F19Wo1Rmw0x-zMuNipG07jeiXfYPW4_Js5QGZ1Bnb2xkZW4HWCAHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH" +
		"BwcHBwhZAZCjAXgaZWRnZXBvcnRhbCB0aWNrZXQgZ3JhbnQgdjECWQErrwFtVDllZjZhMzYxOWI3ZgKiZHRpZXJkZ29sZG1pbmxldC10by1zYWFzZHRy" +
		"dWUDamFjbWUtcmVsYXkE9QUaa0nSAAYaa0ngEAcBCGdQZ29sZGVuCWdJbml0ZWNoCoFwaHViLmV4YW1wbGU6NzQwMAtYIKwBsiCehjVPuFMje13g9Pqx" +
		"PH_L9DOmHAGTaWF_7PELDFggUKYUCbHd0DJemxa3AOcZ6XcsBwALG9d4bpB8ZT0gSV0NWCCBOXcOqH0XX1ajVGbDTH7My42KkbTuN6Jd9g9bj8mzlA5Y" +
		"IO1JKMYo0cLG6ukDOJBZlWEpWSc6XGP5NjbBRhSshzfRD6QBgm1pbmxldC10by1zYWFza3RpZXI9c2lsdmVyAoFmYWNtZS0qAxoAAqMABAUDWEDZ0gpz" +
		"rQqo2WqaNI7Ryk4s3xKdckUsOzxTdc2kZiSAL8aV7E-uV9uQzE8xZXHKRW7eOPC0-OaqmY5ZH1JBjR8OCVgg7UkoxijRwsbq6QM4kFmVYSlZJzpcY_k2" +
		"NsFGFKyHN9EKWCBQphQJsd3QMl6bFrcA5xnpdywHAAsb13hukHxlPSBJXQ" +
		":e3d87872"

	tk := goldenTicket(ks, grantEnv)
	if got, err := wire.Marshal(tk); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("the ticket's encoding changed (%v); tickets already handed out must keep parsing.\n got %x\nwant %x", err, got, body)
	}
	if got, err := tk.Encode(); err != nil || got != text {
		t.Fatalf("the ticket's text changed (%v); tickets already handed out must keep parsing.\n got %s\nwant %s", err, got, text)
	}
	ptk, g, err := ParseTicket(text)
	if err != nil || !reflect.DeepEqual(*ptk, tk) || !reflect.DeepEqual(g, goldenGrant(ks)) {
		t.Fatalf("ParseTicket(golden) = %+v, %+v, %v", ptk, g, err)
	}

	// CreateTicket makes this ticket, but for its random secret.
	a := goldenAuthority(ks, goldenT0)
	made, mg, err := a.CreateTicket(context.Background(), goldenOptions())
	if err != nil {
		t.Fatal(err)
	}
	mtk, mg2, err := ParseTicket(made)
	if err != nil {
		t.Fatal(err)
	}
	want := goldenGrant(ks)
	want.TicketID = TicketID(mtk.Secret)
	if !reflect.DeepEqual(mg, want) || !reflect.DeepEqual(mg2, want) {
		t.Errorf("CreateTicket's grant = %+v\nwant %+v", mg2, want)
	}
	wantTk := goldenTicket(ks, mtk.Grant)
	wantTk.Secret = mtk.Secret
	if !reflect.DeepEqual(*mtk, wantTk) {
		t.Errorf("CreateTicket's ticket = %+v\nwant %+v", *mtk, wantTk)
	}
}
