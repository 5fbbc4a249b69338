// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package enroll

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/signed"
)

// TestReplicaRoundTrip: --replica travels from the ticket's signed grant
// to the member the authority keeps, to the credential it issues on
// redeem and on every refresh; a ticket without it grants none.
func TestReplicaRoundTrip(t *testing.T) {
	a, _ := newAuthority(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		replica bool
	}{
		{"replica", true},
		{"sole owner", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, g, err := a.CreateTicket(ctx, TicketOptions{Relay: "acme-relay", Replica: tt.replica, ExpiresIn: time.Hour, Uses: 1})
			if err != nil {
				t.Fatal(err)
			}
			if g.Replica != tt.replica {
				t.Fatalf("grant Replica = %v, want %v", g.Replica, tt.replica)
			}
			tk, pg, err := ParseTicket(text)
			if err != nil || pg.Replica != tt.replica {
				t.Fatalf("parsed grant Replica = %v (%v), want %v", pg.Replica, err, tt.replica)
			}
			recs, _ := a.Store.ListTickets(ctx)
			for _, r := range recs {
				if r.ID == g.TicketID && r.Replica != tt.replica {
					t.Fatalf("ticket record Replica = %v", r.Replica)
				}
			}
			node := key.NewNodePrivate()
			// The install preflight's dry run says what it would grant.
			dry, _, err := a.Redeem(ctx, RedeemOptions{Node: node.Public(), Secret: tk.Secret, DryRun: true})
			if err != nil || dry.Replica != tt.replica {
				t.Fatalf("dry run member Replica = %v (%v)", dry.Replica, err)
			}
			m, credBytes, err := a.Redeem(ctx, RedeemOptions{Node: node.Public(), Secret: tk.Secret})
			if err != nil {
				t.Fatal(err)
			}
			if m.Replica != tt.replica {
				t.Fatalf("member Replica = %v", m.Replica)
			}
			c, err := VerifyCredential(a.Signer.Public(), credBytes, node.Public(), a.now())
			if err != nil || c.Replica != tt.replica || c.Relay != "acme-relay" {
				t.Fatalf("credential = %+v, %v", c, err)
			}
			refreshed, err := a.Refresh(ctx, node.Public())
			if err != nil {
				t.Fatal(err)
			}
			c, err = VerifyCredential(a.Signer.Public(), refreshed, node.Public(), a.now())
			if err != nil || c.Replica != tt.replica {
				t.Fatalf("refreshed credential Replica = %v, %v", c.Replica, err)
			}
		})
	}
}

// TestReplicaOmitted: a grant or credential without Replica encodes
// without key 16 (or 10), so every existing ticket keeps its bytes (the
// golden vectors pin them); with it, the key is there and decodes back.
func TestReplicaOmitted(t *testing.T) {
	ks := fixedKeys(t)
	g := goldenGrant(ks)
	plain, err := wire.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, grantHex); !bytes.Equal(plain, want) {
		t.Fatalf("a grant without Replica changed its bytes")
	}
	g.Replica = true
	with, _ := wire.Marshal(g)
	if len(with) != len(plain)+2 || !bytes.Contains(with, []byte{0x10, 0xf5}) {
		t.Fatalf("a replica grant should add exactly key 16 = true: %x", with)
	}
	var back Grant
	if err := wire.UnmarshalStrict(with, &back); err != nil || !back.Replica {
		t.Fatalf("decode: %+v, %v", back.Replica, err)
	}
	c := goldenCredential(ks)
	c.Replica = true
	b, err := signed.Sign(ks.authority, signed.ContextCredential, c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyCredential(ks.authority.Public(), b, ks.node.Public(), time.Unix(goldenT0+120, 0))
	if err != nil || !got.Replica {
		t.Fatalf("replica credential: %+v, %v", got, err)
	}
}

// TestReplicaOptions: a replica ticket needs a relay; an enroller grants
// one only when its scope allows replicas.
func TestReplicaOptions(t *testing.T) {
	err := TicketOptions{Replica: true, ExpiresIn: time.Hour, Uses: 1}.Validate()
	if err == nil || !strings.Contains(err.Error(), "a replica ticket needs a relay name") {
		t.Fatalf("replica without relay: %v", err)
	}
	a, _ := newAuthority(t)
	ctx := context.Background()
	enroller := func(replicas bool) key.NodePublic {
		t.Helper()
		scope := &Scope{Relays: []string{"acme-*"}, MaxLifetime: 3600, MaxUses: 5, Replicas: replicas}
		text, _, err := a.CreateTicket(ctx, TicketOptions{Enroller: true, Scope: scope, ExpiresIn: time.Hour, Uses: 1})
		if err != nil {
			t.Fatal(err)
		}
		tk, _, _ := ParseTicket(text)
		n := key.NewNodePrivate()
		if _, _, err := a.Redeem(ctx, RedeemOptions{Node: n.Public(), Secret: tk.Secret}); err != nil {
			t.Fatal(err)
		}
		return n.Public()
	}
	o := TicketOptions{Relay: "acme-relay", Replica: true, ExpiresIn: time.Hour, Uses: 2}
	before, _ := a.Store.ListTickets(ctx)
	_, _, err = a.CreateTicketAs(ctx, enroller(false), o)
	if !errors.Is(err, ErrOutsideScope) || !strings.Contains(err.Error(), "may not grant replica tickets") {
		t.Fatalf("an enroller without replicas in its scope: %v", err)
	}
	after, _ := a.Store.ListTickets(ctx)
	if len(after) != len(before)+1 { // only the second enroller's own ticket
		t.Fatalf("a refused replica grant stored a ticket: %d → %d", len(before), len(after))
	}
	_, g, err := a.CreateTicketAs(ctx, enroller(true), o)
	if err != nil || !g.Replica {
		t.Fatalf("an enroller whose scope allows replicas: %+v, %v", g.Replica, err)
	}
	if s := (&Scope{Relays: []string{"acme-*"}, MaxLifetime: 60, MaxUses: 1, Replicas: true}).String(); !strings.Contains(s, "replicas too") {
		t.Errorf("scope text %q does not say it grants replicas", s)
	}
}
