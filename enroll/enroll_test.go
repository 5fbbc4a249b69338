// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package enroll

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeportal/connect/wire/key"
)

// memStore is a minimal in-memory Store for these tests.
type memStore struct {
	mu      sync.Mutex
	tickets map[[32]byte]TicketRecord
	members map[string]Member
}

func newMemStore() *memStore {
	return &memStore{tickets: map[[32]byte]TicketRecord{}, members: map[string]Member{}}
}

func (s *memStore) PutTicket(ctx context.Context, t TicketRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tickets[t.Hash] = t
	return nil
}

func (s *memStore) GetTicket(ctx context.Context, h [32]byte) (TicketRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tickets[h]
	if !ok {
		return t, ErrTicketUnknown
	}
	return t, nil
}

func (s *memStore) RedeemTicket(ctx context.Context, h [32]byte, admit func(TicketRecord) (Member, error)) (Member, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tickets[h]
	if !ok {
		return Member{}, ErrTicketUnknown
	}
	m, err := admit(t)
	if err != nil {
		return Member{}, err
	}
	t.UsesLeft--
	s.tickets[h] = t
	s.members[m.ID] = m
	return m, nil
}

func (s *memStore) GetMember(ctx context.Context, id string) (Member, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.members[id]
	if !ok {
		return m, ErrNotFound
	}
	return m, nil
}

func (s *memStore) UpdateMember(ctx context.Context, id string, fn func(*Member) error) (Member, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.members[id]
	if !ok {
		return m, ErrNotFound
	}
	if err := fn(&m); err != nil {
		return m, err
	}
	s.members[id] = m
	return m, nil
}

func (s *memStore) UpdateTicket(ctx context.Context, h [32]byte, fn func(*TicketRecord) error) (TicketRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tickets[h]
	if !ok {
		return t, ErrTicketUnknown
	}
	if err := fn(&t); err != nil {
		return t, err
	}
	s.tickets[h] = t
	return t, nil
}

func (s *memStore) ListTickets(ctx context.Context) ([]TicketRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []TicketRecord
	for _, t := range s.tickets {
		out = append(out, t)
	}
	return out, nil
}

func (s *memStore) ListMembers(ctx context.Context) ([]Member, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Member
	for _, m := range s.members {
		out = append(out, m)
	}
	return out, nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newAuthority(t *testing.T) (*Authority, *clock) {
	t.Helper()
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	hub := key.NewNodePrivate()
	return &Authority{
		Project:    "Ptest",
		Vendor:     "Test",
		Hubs:       []string{"127.0.0.1:1"},
		HubKey:     hub.Public(),
		Signer:     key.NewSigningPrivate(),
		NoiseKey:   key.NewNodePrivate().Public(),
		CommandKey: key.NewSigningPrivate().Public(),
		Store:      newMemStore(),
		Now:        c.now,
	}, c
}

func TestTicketRoundTrip(t *testing.T) {
	a, _ := newAuthority(t)
	text, g, err := a.CreateTicket(context.Background(), TicketOptions{
		Attributes: map[string]string{"inlet-to-saas": "true", "tier": "gold"}, Relay: "acme-relay", ExpiresIn: time.Hour, Uses: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(text, TicketPrefix) {
		t.Fatalf("ticket text %q", text)
	}
	tk, g2, err := ParseTicket("\n  " + text[:40] + "\n" + text[40:] + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if g2.TicketID != g.TicketID || g2.Relay != "acme-relay" || g2.Uses != 2 || g2.Attributes["tier"] != "gold" {
		t.Errorf("grant = %+v", g2)
	}
	if !tk.HubPublic().Equal(a.HubKey) || !tk.AuthorityPublic().Equal(a.Signer.Public()) {
		t.Error("keys differ after round trip")
	}
	if strings.Contains(g.TicketID, string(tk.Secret)) {
		t.Error("ticket id reveals the secret")
	}
}

func TestParseTicketErrors(t *testing.T) {
	a, _ := newAuthority(t)
	text, _, _ := a.CreateTicket(context.Background(), TicketOptions{ExpiresIn: time.Hour, Uses: 1})
	other, _ := newAuthority(t)
	otherText, _, _ := other.CreateTicket(context.Background(), TicketOptions{ExpiresIn: time.Hour, Uses: 1})
	// Swap the grant for one signed by another authority.
	tk, _, _ := ParseTicket(text)
	otk, _, _ := ParseTicket(otherText)
	tk.Grant = otk.Grant
	forged, _ := tk.Encode()

	tests := []struct{ name, in, part string }{
		{"empty", "", "prefix"},
		{"not a ticket", "hello world", "prefix"},
		{"truncated", text[:len(text)-20], "checksum"},
		{"garbled", text[:30] + "AAAA" + text[34:], "checksum"},
		{"bad base64", TicketPrefix + "!!!!:00000000", "encoding"},
		{"forged grant", forged, "grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseTicket(tt.in)
			var te *TicketError
			if !errors.As(err, &te) || te.Part != tt.part {
				t.Fatalf("err = %v, want a %q error", err, tt.part)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestTicketOptionsValidate(t *testing.T) {
	ok := TicketOptions{ExpiresIn: time.Hour, Uses: 1}
	tests := []struct {
		name    string
		mod     func(*TicketOptions)
		wantErr string
	}{
		{"zero uses", func(o *TicketOptions) { o.Uses = 0 }, "usage count must be at least 1"},
		{"negative expiry", func(o *TicketOptions) { o.ExpiresIn = -time.Hour }, "expiry must be positive"},
		{"space in attribute", func(o *TicketOptions) { o.Attributes = map[string]string{"a b": "true"} }, "invalid"},
		{"equals only", func(o *TicketOptions) { o.Attributes = map[string]string{"": "x"} }, "invalid"},
		{"reserved", func(o *TicketOptions) { o.Attributes = map[string]string{"identifier": "x"} }, "reserved"},
		{"bad relay", func(o *TicketOptions) { o.Relay = "acme relay" }, "relay name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.mod(&o)
			err := o.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid options refused: %v", err)
	}
}

func TestRedeem(t *testing.T) {
	ctx := context.Background()
	a, clk := newAuthority(t)
	text, _, _ := a.CreateTicket(ctx, TicketOptions{Attributes: map[string]string{"x": "true"}, Relay: "r1", ExpiresIn: time.Hour, Uses: 1})
	tk, _, _ := ParseTicket(text)
	node := key.NewNodePrivate().Public()

	// Refusals change nothing.
	if _, _, err := a.Redeem(ctx, RedeemOptions{Node: node, Secret: tk.Secret, Relay: "other"}); !errors.Is(err, ErrRelayRefused) {
		t.Fatalf("wrong relay: %v", err)
	}
	if _, _, err := a.Redeem(ctx, RedeemOptions{Node: node, Secret: make([]byte, 32)}); !errors.Is(err, ErrTicketUnknown) {
		t.Fatalf("unknown secret: %v", err)
	}
	if _, _, err := a.Redeem(ctx, RedeemOptions{Node: node, Secret: tk.Secret, DryRun: true}); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if ms, _ := a.Store.ListMembers(ctx); len(ms) != 0 {
		t.Fatalf("refusals or dry run left members: %+v", ms)
	}

	m, cred, err := a.Redeem(ctx, RedeemOptions{Node: node, Secret: tk.Secret, Relay: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := VerifyCredential(a.Signer.Public(), cred, node, clk.t)
	if err != nil || c.ID != m.ID || c.Relay != "r1" || c.Attributes["x"] != "true" {
		t.Fatalf("credential %+v, %v", c, err)
	}
	// The same node retrying (lost answer) gets a credential, uses nothing.
	if _, _, err := a.Redeem(ctx, RedeemOptions{Node: node, Secret: tk.Secret}); err != nil {
		t.Fatalf("idempotent retry: %v", err)
	}
	// Another node: used up.
	if _, _, err := a.Redeem(ctx, RedeemOptions{Node: key.NewNodePrivate().Public(), Secret: tk.Secret}); !errors.Is(err, ErrTicketUsedUp) {
		t.Fatalf("second node: %v", err)
	}
	// Credential checks.
	if _, err := VerifyCredential(a.Signer.Public(), cred, key.NewNodePrivate().Public(), clk.t); !errors.Is(err, ErrCredentialWrongKey) {
		t.Errorf("other node key: %v", err)
	}
	if _, err := VerifyCredential(a.Signer.Public(), cred, node, clk.t.Add(DefaultCredentialTTL+ClockSkew+time.Second)); !errors.Is(err, ErrCredentialExpired) {
		t.Errorf("expired: %v", err)
	}
	if _, err := VerifyCredential(a.Signer.Public(), cred, node, clk.t.Add(-ClockSkew-time.Minute)); !errors.Is(err, ErrCredentialNotYet) {
		t.Errorf("not yet: %v", err)
	}
	// Revocation stops refresh.
	if _, err := a.Refresh(ctx, node); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Revoke(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Refresh(ctx, node); !errors.Is(err, ErrRevoked) {
		t.Errorf("refresh after revoke: %v", err)
	}
}

func TestRedeemExpired(t *testing.T) {
	ctx := context.Background()
	a, clk := newAuthority(t)
	text, _, _ := a.CreateTicket(ctx, TicketOptions{ExpiresIn: time.Minute, Uses: 1})
	tk, _, _ := ParseTicket(text)
	clk.t = clk.t.Add(2 * time.Minute)
	if _, _, err := a.Redeem(ctx, RedeemOptions{Node: key.NewNodePrivate().Public(), Secret: tk.Secret}); !errors.Is(err, ErrTicketExpired) {
		t.Fatalf("expired ticket: %v", err)
	}
	if tr, _ := a.Store.GetTicket(ctx, SecretHash(tk.Secret)); tr.UsesLeft != 1 {
		t.Errorf("expired redemption used the ticket: %d left", tr.UsesLeft)
	}
}

func TestConcurrentRedeem(t *testing.T) {
	ctx := context.Background()
	a, _ := newAuthority(t)
	text, _, _ := a.CreateTicket(ctx, TicketOptions{ExpiresIn: time.Hour, Uses: 1})
	tk, _, _ := ParseTicket(text)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := a.Redeem(ctx, RedeemOptions{Node: key.NewNodePrivate().Public(), Secret: tk.Secret}); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d nodes redeemed a one-time ticket", wins)
	}
}
