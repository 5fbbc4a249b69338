// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package enroll

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/wire/key"
)

// TestTicketFieldsSigned: every field of a ticket is covered by the
// authority's signature; a ticket with one edited fails with a message
// naming the field.
func TestTicketFieldsSigned(t *testing.T) {
	a, _ := newAuthority(t)
	a.ReleaseKey = key.NewSigningPrivate().Public()
	text, _, err := a.CreateTicket(context.Background(), TicketOptions{Relay: "acme-relay", ExpiresIn: time.Hour, Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	other := key.NewNodePrivate().Public().Raw32()
	otherSig := key.NewSigningPrivate().Public().Raw32()
	tests := []struct {
		field string
		edit  func(*Ticket)
	}{
		{"hub addresses", func(tk *Ticket) { tk.Hubs = []string{"evil.example:7400"} }},
		{"relay key", func(tk *Ticket) { tk.HubKey = other }},
		{"authority Noise key", func(tk *Ticket) { tk.AuthorityNoiseKey = other }},
		{"command key", func(tk *Ticket) { tk.CommandKey = otherSig }},
		{"release key", func(tk *Ticket) { tk.ReleaseKey = otherSig }},
		{"vendor", func(tk *Ticket) { tk.Vendor = "Evil" }},
		{"project", func(tk *Ticket) { tk.Project = "Pother" }},
		{"grant", func(tk *Ticket) { tk.AuthorityKey = otherSig }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			tk, _, err := ParseTicket(text)
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(tk)
			edited, err := tk.Encode()
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = ParseTicket(edited)
			var te *TicketError
			if !errors.As(err, &te) || te.Part != tt.field {
				t.Fatalf("edited %s: err = %v, want a TicketError naming %q", tt.field, err, tt.field)
			}
			if !strings.HasPrefix(err.Error(), "ticket "+tt.field+":") {
				t.Errorf("message %q does not start with the field", err)
			}
		})
	}
}

func TestEnrollerScope(t *testing.T) {
	a, _ := newAuthority(t)
	ctx := context.Background()
	scope := &Scope{Attributes: []string{"inlet-to-saas", "tier=silver"}, Relays: []string{"acme-*"}, MaxLifetime: int64((48 * time.Hour).Seconds()), MaxUses: 5}
	if _, _, err := a.CreateTicket(ctx, TicketOptions{Enroller: true, ExpiresIn: time.Hour, Uses: 1}); err == nil {
		t.Fatal("an enroller ticket without a scope was created")
	}
	text, _, err := a.CreateTicket(ctx, TicketOptions{Enroller: true, Scope: scope, ExpiresIn: time.Hour, Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	tk, g, _ := ParseTicket(text)
	if g.Scope == nil || g.Scope.MaxUses != 5 {
		t.Fatalf("grant scope = %+v", g.Scope)
	}
	node := key.NewNodePrivate()
	if _, _, err := a.Redeem(ctx, RedeemOptions{Node: node.Public(), Secret: tk.Secret}); err != nil {
		t.Fatal(err)
	}
	ok := TicketOptions{Attributes: map[string]string{"inlet-to-saas": "true", "tier": "silver"}, Relay: "acme-relay", ExpiresIn: 24 * time.Hour, Uses: 5}
	if _, _, err := a.CreateTicketAs(ctx, node.Public(), ok); err != nil {
		t.Fatalf("inside the scope: %v", err)
	}
	tests := []struct {
		name, want string
		o          TicketOptions
	}{
		{"attribute", `attribute "outlet-to-saas" is not one it may grant`, TicketOptions{Attributes: map[string]string{"outlet-to-saas": "true"}, ExpiresIn: time.Hour, Uses: 1}},
		{"pinned value", `attribute "tier=gold"`, TicketOptions{Attributes: map[string]string{"tier": "gold"}, ExpiresIn: time.Hour, Uses: 1}},
		{"relay", `relay name "other-relay" does not match`, TicketOptions{Relay: "other-relay", ExpiresIn: time.Hour, Uses: 1}},
		{"lifetime", "lifetime 72h0m0s is longer than its longest, 48h0m0s", TicketOptions{ExpiresIn: 72 * time.Hour, Uses: 1}},
		{"uses", "6 uses is more than its most, 5", TicketOptions{ExpiresIn: time.Hour, Uses: 6}},
		{"enroller", "may not grant the enroller role", TicketOptions{Enroller: true, Scope: scope, ExpiresIn: time.Hour, Uses: 1}},
	}
	before, _ := a.Store.ListTickets(ctx)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := a.CreateTicketAs(ctx, node.Public(), tt.o)
			if !errors.Is(err, ErrOutsideScope) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if after, _ := a.Store.ListTickets(ctx); len(after) != len(before) {
		t.Errorf("refused grants stored tickets: %d → %d", len(before), len(after))
	}
	// A member without the role may not create tickets at all.
	plain := key.NewNodePrivate()
	text2, _, _ := a.CreateTicket(ctx, TicketOptions{ExpiresIn: time.Hour, Uses: 1})
	tk2, _, _ := ParseTicket(text2)
	a.Redeem(ctx, RedeemOptions{Node: plain.Public(), Secret: tk2.Secret})
	if _, _, err := a.CreateTicketAs(ctx, plain.Public(), ok); !errors.Is(err, ErrNotEnroller) {
		t.Errorf("non-enroller: %v", err)
	}
}

// TestRevocationSticky: a revoked identity can never redeem again, not
// even with a fresh multi-use ticket.
func TestRevocationSticky(t *testing.T) {
	a, _ := newAuthority(t)
	ctx := context.Background()
	text, _, _ := a.CreateTicket(ctx, TicketOptions{ExpiresIn: time.Hour, Uses: 10})
	tk, _, _ := ParseTicket(text)
	node := key.NewNodePrivate()
	m, _, err := a.Redeem(ctx, RedeemOptions{Node: node.Public(), Secret: tk.Secret})
	if err != nil {
		t.Fatal(err)
	}
	_, notice, err := a.Revoke(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	r, err := VerifyRevocation(a.Signer.Public(), a.Project, notice)
	if err != nil || r.ID != m.ID {
		t.Fatalf("notice: %+v, %v", r, err)
	}
	if _, err := VerifyRevocation(key.NewSigningPrivate().Public(), a.Project, notice); err == nil {
		t.Error("a notice verified with another authority's key")
	}
	before, _ := a.Store.GetTicket(ctx, SecretHash(tk.Secret))
	_, _, err = a.Redeem(ctx, RedeemOptions{Node: node.Public(), Secret: tk.Secret})
	var re *RevokedError
	if !errors.As(err, &re) || !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), "needs a new identity and ticket") {
		t.Fatalf("redeem after revocation: %v", err)
	}
	after, _ := a.Store.GetTicket(ctx, SecretHash(tk.Secret))
	if after.UsesLeft != before.UsesLeft {
		t.Error("the refused redemption used the ticket")
	}
	if mm, _ := a.Store.GetMember(ctx, m.ID); !mm.Revoked {
		t.Error("member no longer revoked")
	}
	ns, _ := a.Revocations(ctx)
	if len(ns) != 1 {
		t.Errorf("%d revocation notices, want 1", len(ns))
	}
}

func TestStatement(t *testing.T) {
	a, c := newAuthority(t)
	st, err := a.Statement()
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyStatement(a.Signer.Public(), a.Project, st, a.NoiseKey, c.now()); err != nil {
		t.Fatal(err)
	}
	if err := VerifyStatement(a.Signer.Public(), a.Project, st, key.NewNodePrivate().Public(), c.now()); err == nil {
		t.Error("statement accepted for another Noise key")
	}
	if err := VerifyStatement(a.Signer.Public(), a.Project, st, a.NoiseKey, c.now().Add(2*StatementTTL)); err == nil {
		t.Error("expired statement accepted")
	}
	// A credential is not a statement.
	cred, _ := a.Issue(Member{ID: string(a.NoiseKey.ID()), NodeKey: a.NoiseKey.Raw32()})
	if err := VerifyStatement(a.Signer.Public(), a.Project, cred, a.NoiseKey, c.now()); err == nil {
		t.Error("a credential verified as an authority statement")
	}
}

func TestRevokeTicket(t *testing.T) {
	a, _ := newAuthority(t)
	ctx := context.Background()
	text, g, _ := a.CreateTicket(ctx, TicketOptions{ExpiresIn: time.Hour, Uses: 3})
	if _, err := a.RevokeTicket(ctx, g.TicketID); err != nil {
		t.Fatal(err)
	}
	tk, _, _ := ParseTicket(text)
	if _, _, err := a.Redeem(ctx, RedeemOptions{Node: key.NewNodePrivate().Public(), Secret: tk.Secret}); !errors.Is(err, ErrTicketUsedUp) || !strings.Contains(err.Error(), "withdrew") {
		t.Fatalf("redeem a withdrawn ticket: %v", err)
	}
	if _, err := a.RevokeTicket(ctx, "Tnope"); err == nil {
		t.Error("revoked an unknown ticket")
	}
}
