// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package enroll

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/signed"
)

// signedSet remembers everything a fuzz target signed, so the target can
// check that whatever verifies is one of them: only genuinely signed bytes
// verify. pub is the authority key the verifiers under test are given.
type signedSet struct {
	pub    key.SigningPublic
	values map[string]any // signing key || context || 0x00 || payload → the value signed
}

func newSignedSet(ks goldenKeys) *signedSet {
	return &signedSet{pub: ks.authority.Public(), values: map[string]any{}}
}

func (s *signedSet) sign(tb testing.TB, k key.SigningPrivate, context string, v any) []byte {
	tb.Helper()
	b, err := signed.Sign(k, context, v)
	if err != nil {
		tb.Fatal(err)
	}
	env, _ := signed.Open(b)
	raw := k.Public().Raw32()
	s.values[string(raw[:])+context+"\x00"+string(env.Payload)] = v
	return b
}

// lookup returns what pub signed in data under context, checking the
// signature with ed25519 itself; ok is false for bytes pub never signed.
func (s *signedSet) lookup(pub key.SigningPublic, context string, data []byte) (any, bool) {
	env, err := signed.Open(data)
	if err != nil || env.Context != context {
		return nil, false
	}
	m := append([]byte(context+"\x00"), env.Payload...)
	if !ed25519.Verify(pub.Ed25519(), m, env.Sig) {
		return nil, false
	}
	raw := pub.Raw32()
	v, ok := s.values[string(raw[:])+string(m)]
	return v, ok
}

func oneLine(t *testing.T, err error) {
	t.Helper()
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Fatalf("error is not one line: %q", err)
	}
}

// ticketText wraps a body the way Encode does, with a good checksum.
func ticketText(body []byte) string {
	sum := sha256.Sum256(body)
	return TicketPrefix + base64.RawURLEncoding.EncodeToString(body) + ":" + hex.EncodeToString(sum[:4])
}

// ticketSeeds signs the grants the ticket fuzz targets start from and
// returns their tickets.
func ticketSeeds(tb testing.TB, ks goldenKeys, set *signedSet) []Ticket {
	g := goldenGrant(ks)
	plain := g
	plain.TicketID, plain.Enroller, plain.Scope, plain.Attributes, plain.ReleaseKey = "Tplain", false, nil, nil, [32]byte{}
	plain.Hubs = []string{"a.example:1", "[::1]:7400"}
	tks := []Ticket{goldenTicket(ks, set.sign(tb, ks.authority, signed.ContextGrant, g))}
	p := goldenTicket(ks, set.sign(tb, ks.authority, signed.ContextGrant, plain))
	p.Hubs, p.ReleaseKey = plain.Hubs, [32]byte{}
	tks = append(tks, p)
	// Edited after signing, and signed by another key: both refused.
	edited := tks[0]
	edited.Hubs = []string{"evil.example:7400"}
	other := goldenTicket(ks, set.sign(tb, ks.command, signed.ContextGrant, g))
	other.AuthorityKey = ks.command.Public().Raw32()
	wrongCtx := goldenTicket(ks, set.sign(tb, ks.authority, signed.ContextCredential, g))
	return append(tks, edited, other, wrongCtx)
}

// checkTicket: ParseTicket returns a whole ticket or nothing and a
// TicketError naming the part; an accepted ticket is within the limits,
// carries a grant the authority key it names really signed, matches that
// grant field for field, and encodes back to text that parses to the
// same ticket (Encode is a fixed point).
func checkTicket(t *testing.T, set *signedSet, text string) {
	tk, g, err := ParseTicket(text)
	if err != nil {
		if tk != nil || !reflect.DeepEqual(g, Grant{}) {
			t.Fatalf("ParseTicket returned %+v, %+v with error %v", tk, g, err)
		}
		var te *TicketError
		if !errors.As(err, &te) || te.Part == "" {
			t.Fatalf("error %v is not a TicketError naming a part", err)
		}
		oneLine(t, err)
		return
	}
	if len(text) > MaxTicketLen {
		t.Fatalf("accepted a ticket of %d bytes (limit %d)", len(text), MaxTicketLen)
	}
	if len(tk.Secret) != 32 || len(tk.Hubs) == 0 || tk.HubKey == [32]byte{} || tk.AuthorityKey == [32]byte{} || tk.AuthorityNoiseKey == [32]byte{} {
		t.Fatalf("accepted an incomplete ticket %+v", tk)
	}
	// ParseTicket trusts the authority key the ticket names (the node
	// compares it with its build's embedded key later): the grant must be
	// one that key signed.
	want, ok := set.lookup(tk.AuthorityPublic(), signed.ContextGrant, tk.Grant)
	if !ok {
		t.Fatalf("accepted a grant its authority key %x never signed: %+v", tk.AuthorityKey, g)
	}
	if !reflect.DeepEqual(g, want) {
		t.Fatalf("grant decoded as %+v, signed %+v", g, want)
	}
	if tk.Project != g.Project || tk.Vendor != g.Vendor || !reflect.DeepEqual(tk.Hubs, g.Hubs) || tk.HubKey != g.HubKey ||
		tk.AuthorityNoiseKey != g.AuthorityNoiseKey || tk.CommandKey != g.CommandKey || tk.ReleaseKey != g.ReleaseKey {
		t.Fatalf("accepted ticket %+v differs from its signed grant %+v", tk, g)
	}
	again, err := tk.Encode()
	if err != nil {
		t.Fatal(err)
	}
	tk2, g2, err := ParseTicket(again)
	if err != nil || !reflect.DeepEqual(tk2, tk) || !reflect.DeepEqual(g2, g) {
		t.Fatalf("re-encoded ticket parses to %+v, %+v, %v", tk2, g2, err)
	}
	if third, _ := tk2.Encode(); third != again {
		t.Fatalf("ticket encoding is not a fixed point: %s then %s", again, third)
	}
}

// FuzzParseTicket fuzzes the ticket's text: prefix, wrapping, base64,
// checksum and body. See checkTicket for the properties.
func FuzzParseTicket(f *testing.F) {
	ks := fixedKeys(f)
	set := newSignedSet(ks)
	for _, tk := range ticketSeeds(f, ks, set) {
		text, err := tk.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(text)
		f.Add("\n  " + text[:40] + "\n" + text[40:] + "\n")
		f.Add(text[:len(text)-8] + strings.ToUpper(text[len(text)-8:]))
	}
	f.Add("")
	f.Add(TicketPrefix)
	f.Add(TicketPrefix + "oA:00000000")
	f.Add(TicketPrefix + "!!!!:00000000")
	f.Add(strings.Repeat(" ", MaxTicketLen+1))
	f.Fuzz(func(t *testing.T, text string) { checkTicket(t, set, text) })
}

// FuzzParseTicketBody fuzzes the CBOR body under a good checksum, so the
// fuzzer reaches the decoder and the grant checks. See checkTicket.
func FuzzParseTicketBody(f *testing.F) {
	ks := fixedKeys(f)
	set := newSignedSet(ks)
	for _, tk := range ticketSeeds(f, ks, set) {
		body, err := wire.Marshal(tk)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	f.Add([]byte{0xa0})
	f.Add([]byte{0xa1, 0x07, 0x58, 0x20}) // truncated
	f.Fuzz(func(t *testing.T, body []byte) { checkTicket(t, set, ticketText(body)) })
}

// FuzzVerifyCredential: a credential verifies only if the authority
// signed it, for the peer whose key the handshake proved (identifier
// included), within its validity and ClockSkew; it then decodes exactly
// as signed, and PeekCredential shows the same. A refusal returns no
// credential.
func FuzzVerifyCredential(f *testing.F) {
	ks := fixedKeys(f)
	set := newSignedSet(ks)
	peers := []key.NodePublic{ks.node.Public(), ks.authNoise.Public(), ks.relay.Public()}
	c := goldenCredential(ks)
	other := c
	other.NodeKey, other.ID = ks.relay.Public().Raw32(), string(ks.relay.Public().ID())
	badID := c
	badID.ID = string(ks.relay.Public().ID()) // signed, but the identifier is not the key's
	plain := c
	plain.Attributes, plain.Relay, plain.Enroller, plain.Scope = nil, "", false, nil
	for _, cr := range []Credential{c, other, badID, plain} {
		b := set.sign(f, ks.authority, signed.ContextCredential, cr)
		for _, off := range []int64{120, -int64(ClockSkew / time.Second), 3600 + 60 + int64(ClockSkew/time.Second) + 1} {
			f.Add(b, uint8(0), off)
		}
		f.Add(b, uint8(2), int64(120))
	}
	f.Add(set.sign(f, ks.command, signed.ContextCredential, c), uint8(0), int64(120))
	f.Add(set.sign(f, ks.authority, signed.ContextAuthority, c), uint8(0), int64(120))
	f.Add([]byte{0xa0}, uint8(0), int64(0))
	f.Fuzz(func(t *testing.T, data []byte, peerSel uint8, nowOffset int64) {
		peer := peers[int(peerSel)%len(peers)]
		now := time.Unix(goldenT0+nowOffset%(1<<40), 0)
		got, err := VerifyCredential(set.pub, data, peer, now)
		peeked, perr := PeekCredential(data)
		if perr != nil && peeked != nil {
			t.Fatalf("PeekCredential returned %+v with error %v", peeked, perr)
		}
		if err != nil {
			if got != nil {
				t.Fatalf("VerifyCredential returned %+v with error %v", got, err)
			}
			oneLine(t, err)
			return
		}
		want, ok := set.lookup(set.pub, signed.ContextCredential, data)
		if !ok {
			t.Fatalf("verified a credential the authority never signed: %+v", got)
		}
		if !reflect.DeepEqual(*got, want) {
			t.Fatalf("decoded %+v, signed %+v", *got, want)
		}
		if !got.Node().Equal(peer) || got.ID != string(peer.ID()) {
			t.Fatalf("accepted a credential for %s from peer %s", got.ID, peer.ID())
		}
		if now.After(got.Expires().Add(ClockSkew)) || now.Add(ClockSkew).Before(got.Issued()) {
			t.Fatalf("accepted a credential valid %d..%d at %d", got.IssuedAt, got.ExpiresAt, now.Unix())
		}
		if perr != nil || !reflect.DeepEqual(peeked, got) {
			t.Fatalf("PeekCredential = %+v, %v; VerifyCredential = %+v", peeked, perr, got)
		}
	})
}

// FuzzVerifyStatement: an authority statement verifies only if the
// authority signed it for this project and the Noise key the handshake
// proved, and it is valid now (with ClockSkew).
func FuzzVerifyStatement(f *testing.F) {
	ks := fixedKeys(f)
	set := newSignedSet(ks)
	peers := []key.NodePublic{ks.authNoise.Public(), ks.node.Public()}
	st := goldenStatement(ks)
	other := st
	other.Project = "Pother"
	for _, s := range []Statement{st, other} {
		b := set.sign(f, ks.authority, signed.ContextAuthority, s)
		f.Add(b, uint8(0), int64(10))
		f.Add(b, uint8(1), int64(10))
		f.Add(b, uint8(0), int64(2*StatementTTL/time.Second))
	}
	f.Add(set.sign(f, ks.authority, signed.ContextCredential, goldenCredential(ks)), uint8(0), int64(10))
	f.Add([]byte{0xa0}, uint8(0), int64(0))
	f.Fuzz(func(t *testing.T, data []byte, peerSel uint8, nowOffset int64) {
		peer := peers[int(peerSel)%len(peers)]
		now := time.Unix(goldenT0+nowOffset%(1<<40), 0)
		if err := VerifyStatement(set.pub, "Pgolden", data, peer, now); err != nil {
			oneLine(t, err)
			return
		}
		v, ok := set.lookup(set.pub, signed.ContextAuthority, data)
		if !ok {
			t.Fatalf("verified a statement the authority never signed: %x", data)
		}
		s := v.(Statement)
		if s.Project != "Pgolden" || s.NoiseKey != peer.Raw32() ||
			now.After(time.Unix(s.ExpiresAt, 0).Add(ClockSkew)) || now.Add(ClockSkew).Before(time.Unix(s.IssuedAt, 0)) {
			t.Fatalf("accepted statement %+v from %s at %d", s, peer, now.Unix())
		}
	})
}

// FuzzVerifyRevocation: a revocation notice verifies only if the
// authority signed it for this project with an identifier that is its
// node key's; it then decodes exactly as signed. A refusal returns the
// zero Revocation.
func FuzzVerifyRevocation(f *testing.F) {
	ks := fixedKeys(f)
	set := newSignedSet(ks)
	r := goldenRevocation(ks)
	f.Add(set.sign(f, ks.authority, signed.ContextRevocation, r))
	f.Add(set.sign(f, ks.command, signed.ContextRevocation, r))
	f.Add(set.sign(f, ks.authority, signed.ContextCredential, r))
	// Authentic notices for another project or with a mismatched
	// identifier are left to TestVerifyRevocationNoPartialResult, which
	// fails until VerifyRevocation returns the zero value for them.
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := VerifyRevocation(set.pub, "Pgolden", data)
		if err != nil {
			if got != (Revocation{}) {
				t.Fatalf("VerifyRevocation returned %+v with error %v", got, err)
			}
			oneLine(t, err)
			return
		}
		want, ok := set.lookup(set.pub, signed.ContextRevocation, data)
		if !ok {
			t.Fatalf("verified a notice the authority never signed: %+v", got)
		}
		k, _ := key.NodePublicFromRaw32(got.NodeKey[:])
		if got != want || got.Project != "Pgolden" || got.ID != string(k.ID()) {
			t.Fatalf("accepted notice %+v, signed %+v", got, want)
		}
	})
}

// TestVerifyRevocationNoPartialResult: a refused notice returns nothing,
// even when its signature is good (another project's, or one whose
// identifier is not its key's), so no caller can act on it by mistake.
//
// This test fails today: VerifyRevocation returns the decoded notice with
// these errors. See the fuzz report for the fix.
func TestVerifyRevocationNoPartialResult(t *testing.T) {
	ks := fixedKeys(t)
	otherProject := goldenRevocation(ks)
	otherProject.Project = "Pother"
	badID := goldenRevocation(ks)
	badID.ID = string(ks.relay.Public().ID())
	for name, r := range map[string]Revocation{"another project": otherProject, "mismatched identifier": badID} {
		b, err := signed.Sign(ks.authority, signed.ContextRevocation, r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := VerifyRevocation(ks.authority.Public(), "Pgolden", b)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if got != (Revocation{}) {
			t.Errorf("%s: refused (%v) but returned %+v", name, err, got)
		}
	}
}
