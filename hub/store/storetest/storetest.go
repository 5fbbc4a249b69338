// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package storetest is the conformance suite every store passes: the
// relay's (hub.Store), the authority's (enroll.Store) and, for a store
// shared by several relay nodes, the cluster's (hub.ClusterStore). The
// atomicity rows run their operations concurrently: a one-use ticket
// redeemed by many goroutines at once admits one node, concurrent
// commands for one target get distinct, gapless, increasing numbers, and
// concurrent claims of a relay name leave one owner.
//
// Test-only: imported by the stores' _test.go files.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/wire/key"
)

// Concurrency is how many goroutines the atomicity rows run at once.
const Concurrency = 12

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// Relay runs the relay store rows; open returns a new, empty store.
func Relay(t *testing.T, open func(t *testing.T) hub.Store) {
	t.Run("ClaimRelay", func(t *testing.T) {
		s := open(t)
		c := ctx(t)
		b, err := s.ClaimRelay(c, "acme-relay", "Ia", false, 10)
		if err != nil || b != (hub.RelayBinding{Name: "acme-relay", Owner: "Ia", Since: 10}) {
			t.Fatalf("first claim = %+v, %v", b, err)
		}
		b, err = s.ClaimRelay(c, "acme-relay", "Ib", false, 20)
		if err != nil || b.Owner != "Ia" || b.Since != 10 {
			t.Fatalf("second identity's claim = %+v, %v; want the first owner kept", b, err)
		}
		if _, err := s.GetRelay(c, "other"); !errors.Is(err, hub.ErrNotFound) {
			t.Fatalf("GetRelay(unknown) = %v, want ErrNotFound", err)
		}
		if _, err := s.ReleaseRelay(c, "other"); !errors.Is(err, hub.ErrNotFound) {
			t.Fatalf("ReleaseRelay(unknown) = %v, want ErrNotFound", err)
		}
		if b, err := s.ReleaseRelay(c, "acme-relay"); err != nil || b.Owner != "Ia" {
			t.Fatalf("ReleaseRelay = %+v, %v", b, err)
		}
		if b, _ := s.ClaimRelay(c, "acme-relay", "Ib", false, 30); b.Owner != "Ib" {
			t.Fatalf("claim after release = %+v, want Ib", b)
		}
		s.ClaimRelay(c, "b-relay", "Ib", false, 31)
		s.ClaimRelay(c, "c-relay", "Ic", false, 32)
		freed, err := s.ReleaseRelaysOf(c, "Ib")
		if err != nil || len(freed) != 2 {
			t.Fatalf("ReleaseRelaysOf = %+v, %v; want 2", freed, err)
		}
		all, err := s.ListRelays(c)
		if err != nil || len(all) != 1 || all[0].Name != "c-relay" {
			t.Fatalf("ListRelays = %+v, %v", all, err)
		}
	})
	t.Run("ClaimRelayConcurrent", func(t *testing.T) {
		s := open(t)
		c := ctx(t)
		owners := make([]string, Concurrency)
		var wg sync.WaitGroup
		for i := range Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, err := s.ClaimRelay(c, "contested", fmt.Sprintf("I%02d", i), i%2 == 0, int64(i))
				if err != nil {
					t.Errorf("claim %d: %v", i, err)
				}
				owners[i] = b.Owner
			}()
		}
		wg.Wait()
		for _, o := range owners {
			if o != owners[0] {
				t.Fatalf("claims saw different owners: %v", owners)
			}
		}
		b, _ := s.GetRelay(c, "contested")
		if b.Owner != owners[0] {
			t.Fatalf("stored owner %s, claims saw %s", b.Owner, owners[0])
		}
		// The winner's kind is the binding's: even-numbered claimants
		// asked for a replicas' binding.
		var i int
		fmt.Sscanf(b.Owner, "I%02d", &i)
		if b.Replicas != (i%2 == 0) {
			t.Fatalf("binding of %s has Replicas %v; its claim asked for %v", b.Owner, b.Replicas, i%2 == 0)
		}
	})
	t.Run("ReplicaBinding", func(t *testing.T) {
		s := open(t)
		c := ctx(t)
		b, err := s.ClaimRelay(c, "acme-relay", "Ia", true, 10)
		if err != nil || b != (hub.RelayBinding{Name: "acme-relay", Owner: "Ia", Since: 10, Replicas: true}) {
			t.Fatalf("first replica's claim = %+v, %v", b, err)
		}
		// Another replica's claim, or a sole owner's, leaves the binding
		// exactly as it was (the relay decides who may join).
		for _, replicas := range []bool{true, false} {
			b, err = s.ClaimRelay(c, "acme-relay", "Ib", replicas, 20)
			if err != nil || b != (hub.RelayBinding{Name: "acme-relay", Owner: "Ia", Since: 10, Replicas: true}) {
				t.Fatalf("claim by Ib (replicas %v) = %+v, %v; want the first binding unchanged", replicas, b, err)
			}
		}
		if b, err := s.GetRelay(c, "acme-relay"); err != nil || !b.Replicas || b.Owner != "Ia" {
			t.Fatalf("GetRelay = %+v, %v", b, err)
		}
		// A sole owner's binding stays one whoever asks.
		s.ClaimRelay(c, "solo-relay", "Ic", false, 11)
		if b, _ := s.ClaimRelay(c, "solo-relay", "Id", true, 21); b.Replicas || b.Owner != "Ic" {
			t.Fatalf("a replica's claim of a sole owner's name = %+v", b)
		}
		all, err := s.ListRelays(c)
		if err != nil || len(all) != 2 || !all[0].Replicas || all[1].Replicas {
			t.Fatalf("ListRelays = %+v, %v", all, err)
		}
		freed, err := s.ReleaseRelaysOf(c, "Ia")
		if err != nil || len(freed) != 1 || !freed[0].Replicas {
			t.Fatalf("ReleaseRelaysOf(first replica) = %+v, %v", freed, err)
		}
		if b, _ := s.ClaimRelay(c, "acme-relay", "Ib", true, 30); b.Owner != "Ib" || !b.Replicas {
			t.Fatalf("the next replica's claim after the release = %+v", b)
		}
	})
	t.Run("Revocations", func(t *testing.T) {
		s := open(t)
		c := ctx(t)
		for range 2 {
			if err := s.AddRevocation(c, hub.Revoked{ID: "Ia", RevokedAt: 5, Notice: []byte("n")}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.AddRevocation(c, hub.Revoked{ID: "Ib", RevokedAt: 6, Notice: []byte("m")}); err != nil {
			t.Fatal(err)
		}
		rs, err := s.ListRevocations(c)
		if err != nil || len(rs) != 2 {
			t.Fatalf("ListRevocations = %+v, %v; want 2 (idempotent add)", rs, err)
		}
	})
	t.Run("Nodes", func(t *testing.T) {
		s := open(t)
		c := ctx(t)
		if err := s.UpdateNode(c, "Ia", func(n *hub.NodeRecord) { n.Version = "v1"; n.LastSeen = 7 }); err != nil {
			t.Fatal(err)
		}
		if err := s.UpdateNode(c, "Ia", func(n *hub.NodeRecord) { n.LastSeen++ }); err != nil {
			t.Fatal(err)
		}
		ns, err := s.ListNodes(c)
		if err != nil || len(ns) != 1 || ns[0] != (hub.NodeRecord{ID: "Ia", Version: "v1", LastSeen: 8}) {
			t.Fatalf("ListNodes = %+v, %v", ns, err)
		}
	})
	t.Run("Commands", func(t *testing.T) {
		s := open(t)
		c := ctx(t)
		if seq, err := s.NextSeq(c, "Ia"); err != nil || seq != 1 {
			t.Fatalf("NextSeq(new) = %d, %v; want 1", seq, err)
		}
		add := func(target, relay string, at int64) hub.CommandRecord {
			t.Helper()
			rec, err := s.AddCommand(c, target, func(seq uint64) (hub.CommandRecord, error) {
				return hub.CommandRecord{Target: target, Relay: relay, Seq: seq, Data: []byte{byte(seq)}, Summary: "op", State: hub.CommandQueued, CreatedAt: at}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return rec
		}
		if r := add("Ia", "a-relay", 1); r.Seq != 1 {
			t.Fatalf("first seq %d", r.Seq)
		}
		refusal := errors.New("refused by build")
		if _, err := s.AddCommand(c, "Ia", func(uint64) (hub.CommandRecord, error) { return hub.CommandRecord{}, refusal }); !errors.Is(err, refusal) {
			t.Fatalf("refused build: %v", err)
		}
		if r := add("Ia", "a-relay", 2); r.Seq != 2 {
			t.Fatalf("seq after a refused build = %d, want 2 (nothing consumed)", r.Seq)
		}
		add("Ib", "b-relay", 3)
		if seq, _ := s.NextSeq(c, "Ia"); seq != 3 {
			t.Fatalf("NextSeq = %d, want 3", seq)
		}
		rec, err := s.AckCommand(c, "Ia", 1, hub.CommandApplied, "", 9)
		if err != nil || rec.State != hub.CommandApplied || rec.AckedAt != 9 {
			t.Fatalf("ack = %+v, %v", rec, err)
		}
		rec, err = s.AckCommand(c, "Ia", 1, hub.CommandRefused, "late", 10)
		if err != nil || rec.State != hub.CommandApplied || rec.Reason != "" {
			t.Fatalf("second ack = %+v, %v; want the first answer kept", rec, err)
		}
		if _, err := s.AckCommand(c, "Ia", 99, hub.CommandApplied, "", 10); err == nil {
			t.Fatal("ack of an unknown command succeeded")
		}
		pend, err := s.PendingCommands(c, "Ia")
		if err != nil || len(pend) != 1 || pend[0].Seq != 2 || string(pend[0].Data) != "\x02" {
			t.Fatalf("pending = %+v, %v", pend, err)
		}
		list, err := s.ListCommands(c, "b-relay")
		if err != nil || len(list) != 1 || list[0].Target != "Ib" {
			t.Fatalf("ListCommands(b-relay) = %+v, %v", list, err)
		}
		if list, _ := s.ListCommands(c, ""); len(list) != 3 {
			t.Fatalf("ListCommands() = %d, want 3", len(list))
		}
	})
	t.Run("CommandsConcurrent", func(t *testing.T) {
		s := open(t)
		c := ctx(t)
		seqs := make([]uint64, Concurrency)
		var wg sync.WaitGroup
		for i := range Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rec, err := s.AddCommand(c, "Ia", func(seq uint64) (hub.CommandRecord, error) {
					return hub.CommandRecord{Target: "Ia", Relay: "a", Seq: seq, Data: []byte("x"), State: hub.CommandQueued, CreatedAt: 1}, nil
				})
				if err != nil {
					t.Errorf("add %d: %v", i, err)
				}
				seqs[i] = rec.Seq
			}()
		}
		wg.Wait()
		slices.Sort(seqs)
		for i, s := range seqs {
			if s != uint64(i+1) {
				t.Fatalf("concurrent sequence numbers %v: want 1..%d, each once", seqs, Concurrency)
			}
		}
		pend, _ := s.PendingCommands(c, "Ia")
		for i, r := range pend {
			if r.Seq != uint64(i+1) {
				t.Fatalf("pending out of order: %v", pend)
			}
		}
	})
}

func ticket(uses int, expires int64) (enroll.TicketRecord, []byte) {
	secret := make([]byte, 32)
	copy(secret, fmt.Sprintf("secret-%d-%d", uses, expires))
	return enroll.TicketRecord{ID: enroll.TicketID(secret), Hash: enroll.SecretHash(secret), Attributes: map[string]string{"a": ""},
		Relay: "r", CreatedAt: expires - 100, ExpiresAt: expires, UsesLeft: uses}, secret
}

// Authority runs the authority store rows; open returns a new, empty store.
func Authority(t *testing.T, open func(t *testing.T) enroll.Store) {
	t.Run("Tickets", func(t *testing.T) {
		s := open(t)
		c := ctx(t)
		tr, _ := ticket(2, 1000)
		if err := s.PutTicket(c, tr); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetTicket(c, tr.Hash)
		if err != nil || got.ID != tr.ID || got.UsesLeft != 2 || got.Attributes["a"] != "" {
			t.Fatalf("GetTicket = %+v, %v", got, err)
		}
		if _, err := s.GetTicket(c, [32]byte{1}); !errors.Is(err, enroll.ErrTicketUnknown) {
			t.Fatalf("GetTicket(unknown) = %v", err)
		}
		stop := errors.New("stop")
		if _, err := s.UpdateTicket(c, tr.Hash, func(t *enroll.TicketRecord) error { t.UsesLeft = 0; return stop }); !errors.Is(err, stop) {
			t.Fatalf("UpdateTicket refusal = %v", err)
		}
		if got, _ := s.GetTicket(c, tr.Hash); got.UsesLeft != 2 {
			t.Fatalf("a refused update changed the ticket: %+v", got)
		}
		if got, err := s.UpdateTicket(c, tr.Hash, func(t *enroll.TicketRecord) error { t.Revoked = true; return nil }); err != nil || !got.Revoked {
			t.Fatalf("UpdateTicket = %+v, %v", got, err)
		}
		if _, err := s.UpdateTicket(c, [32]byte{2}, func(*enroll.TicketRecord) error { return nil }); !errors.Is(err, enroll.ErrTicketUnknown) {
			t.Fatalf("UpdateTicket(unknown) = %v", err)
		}
		older, _ := ticket(1, 500)
		s.PutTicket(c, older)
		ts, err := s.ListTickets(c)
		if err != nil || len(ts) != 2 || ts[0].ID != older.ID {
			t.Fatalf("ListTickets = %+v, %v; want oldest first", ts, err)
		}
	})
	t.Run("Redeem", func(t *testing.T) {
		s := open(t)
		c := ctx(t)
		tr, _ := ticket(1, 1000)
		s.PutTicket(c, tr)
		if _, err := s.RedeemTicket(c, [32]byte{3}, nil); !errors.Is(err, enroll.ErrTicketUnknown) {
			t.Fatalf("redeem unknown = %v", err)
		}
		no := errors.New("refused by admit")
		if _, err := s.RedeemTicket(c, tr.Hash, func(enroll.TicketRecord) (enroll.Member, error) { return enroll.Member{}, no }); !errors.Is(err, no) {
			t.Fatalf("refused admit = %v", err)
		}
		if got, _ := s.GetTicket(c, tr.Hash); got.UsesLeft != 1 {
			t.Fatalf("a refused redemption used the ticket: %+v", got)
		}
		if ms, _ := s.ListMembers(c); len(ms) != 0 {
			t.Fatalf("a refused redemption left members: %+v", ms)
		}
		m, err := s.RedeemTicket(c, tr.Hash, func(t enroll.TicketRecord) (enroll.Member, error) {
			return enroll.Member{ID: "Ia", EnrolledAt: 5, Relay: t.Relay, TicketID: t.ID}, nil
		})
		if err != nil || m.ID != "Ia" {
			t.Fatalf("redeem = %+v, %v", m, err)
		}
		if got, _ := s.GetTicket(c, tr.Hash); got.UsesLeft != 0 {
			t.Fatalf("uses left %d after a redemption", got.UsesLeft)
		}
		if got, err := s.GetMember(c, "Ia"); err != nil || got.Relay != "r" || got.TicketID != tr.ID {
			t.Fatalf("GetMember = %+v, %v", got, err)
		}
	})
	t.Run("RedeemConcurrentOneUse", func(t *testing.T) {
		s := open(t)
		c := ctx(t)
		tr, _ := ticket(1, 1000)
		s.PutTicket(c, tr)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var won []string
		for i := range Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("I%02d", i)
				_, err := s.RedeemTicket(c, tr.Hash, func(t enroll.TicketRecord) (enroll.Member, error) {
					if t.UsesLeft <= 0 {
						return enroll.Member{}, enroll.ErrTicketUsedUp
					}
					return enroll.Member{ID: id, EnrolledAt: int64(i)}, nil
				})
				switch {
				case err == nil:
					mu.Lock()
					won = append(won, id)
					mu.Unlock()
				case !errors.Is(err, enroll.ErrTicketUsedUp):
					t.Errorf("redeem %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		ms, _ := s.ListMembers(c)
		if len(won) != 1 || len(ms) != 1 || ms[0].ID != won[0] {
			t.Fatalf("a one-use ticket redeemed by %d goroutines enrolled %v (members %d); want exactly one", Concurrency, won, len(ms))
		}
	})
	t.Run("Members", func(t *testing.T) {
		s := open(t)
		c := ctx(t)
		if _, err := s.GetMember(c, "Ia"); !errors.Is(err, enroll.ErrNotFound) {
			t.Fatalf("GetMember(unknown) = %v", err)
		}
		if _, err := s.UpdateMember(c, "Ia", func(*enroll.Member) error { return nil }); !errors.Is(err, enroll.ErrNotFound) {
			t.Fatalf("UpdateMember(unknown) = %v", err)
		}
		for i, id := range []string{"Ib", "Ia"} {
			tr, _ := ticket(1, int64(2000+i))
			s.PutTicket(c, tr)
			s.RedeemTicket(c, tr.Hash, func(enroll.TicketRecord) (enroll.Member, error) {
				return enroll.Member{ID: id, EnrolledAt: int64(i)}, nil
			})
		}
		m, err := s.UpdateMember(c, "Ia", func(m *enroll.Member) error { m.Revoked, m.RevokedAt = true, 9; return nil })
		if err != nil || !m.Revoked {
			t.Fatalf("UpdateMember = %+v, %v", m, err)
		}
		ms, err := s.ListMembers(c)
		if err != nil || len(ms) != 2 || ms[0].ID != "Ib" || !ms[1].Revoked {
			t.Fatalf("ListMembers = %+v, %v; want by enrollment time", ms, err)
		}
	})
}

// Cluster runs the rows of a store shared by relay nodes; open returns a
// new, empty store (twice for one database: two relay nodes).
func Cluster(t *testing.T, open func(t *testing.T) (a, b interface {
	hub.Store
	hub.ClusterStore
})) {
	t.Run("ListingAndPresence", func(t *testing.T) {
		a, b := open(t)
		c := ctx(t)
		ka, kb := key.NewNodePrivate().Public(), key.NewNodePrivate().Public()
		if err := a.PutRelayNode(c, hub.RelayNode{ID: "Ra", Key: ka, Addrs: []string{"127.0.0.1:1"}}); err != nil {
			t.Fatal(err)
		}
		if err := b.PutRelayNode(c, hub.RelayNode{ID: "Rb", Key: kb, Addrs: []string{"127.0.0.1:2"}}); err != nil {
			t.Fatal(err)
		}
		if err := a.Heartbeat(c, "Rx", false, time.Minute); !errors.Is(err, hub.ErrNotListed) {
			t.Fatalf("heartbeat of an unlisted node = %v, want ErrNotListed", err)
		}
		if err := a.Heartbeat(c, "Ra", true, time.Minute); err != nil {
			t.Fatal(err)
		}
		ns, err := b.RelayNodes(c)
		if err != nil || len(ns) != 2 || !ns[0].Key.Equal(ka) || !ns[0].Alive || !ns[0].Authority || ns[1].Alive {
			t.Fatalf("RelayNodes = %+v, %v", ns, err)
		}
		claim := func(st hub.ClusterStore, p hub.Presence, lease time.Duration) string {
			t.Helper()
			prev, err := st.ClaimPresence(c, p, lease)
			if err != nil {
				t.Fatalf("claim %+v: %v", p, err)
			}
			return prev
		}
		if prev := claim(a, hub.Presence{Relay: "acme", Owner: "Io", Node: "Ra"}, time.Minute); prev != "" {
			t.Fatalf("claim = %q", prev)
		}
		if ps, err := b.LookupPresence(c, "acme"); err != nil || len(ps) != 1 || !reflect.DeepEqual(ps[0], hub.Presence{Relay: "acme", Owner: "Io", Node: "Ra"}) {
			t.Fatalf("lookup = %+v, %v", ps, err)
		}
		if prev := claim(b, hub.Presence{Relay: "acme", Owner: "Io", Node: "Rb"}, time.Minute); prev != "Ra" {
			t.Fatalf("move = %q; want it taken from Ra", prev)
		}
		if err := a.DropPresence(c, "acme", "Io", "Ra"); err != nil {
			t.Fatal(err)
		}
		if ps, err := a.LookupPresence(c, "acme"); err != nil || len(ps) != 1 || ps[0].Node != "Rb" {
			t.Fatalf("a stale node's drop removed the new holder's presence: %+v, %v", ps, err)
		}
		// A lease that ran out is no presence, and nothing needs to clean it.
		claim(a, hub.Presence{Relay: "short", Owner: "Ip", Node: "Ra"}, 50*time.Millisecond)
		time.Sleep(200 * time.Millisecond)
		if _, err := a.LookupPresence(c, "short"); !errors.Is(err, hub.ErrNotFound) {
			t.Fatalf("expired lease still present: %v", err)
		}
		if ps, _ := a.ListPresence(c); len(ps) != 1 || ps[0].Relay != "acme" {
			t.Fatalf("ListPresence = %+v", ps)
		}
		if _, err := a.ReleaseRelaysOf(c, "Io"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.LookupPresence(c, "acme"); !errors.Is(err, hub.ErrNotFound) {
			t.Fatalf("the released owner's presence stayed: %v", err)
		}
	})
	t.Run("ReplicaPresence", func(t *testing.T) {
		a, b := open(t)
		c := ctx(t)
		for _, n := range []hub.RelayNode{{ID: "Ra", Key: key.NewNodePrivate().Public(), Addrs: []string{"127.0.0.1:1"}},
			{ID: "Rb", Key: key.NewNodePrivate().Public(), Addrs: []string{"127.0.0.1:2"}}} {
			if err := a.PutRelayNode(c, n); err != nil {
				t.Fatal(err)
			}
		}
		// Two replicas of one relay on two relay nodes: a row each, with
		// the health each reported.
		down := hub.Health{Down: []string{"web"}}
		if _, err := a.ClaimPresence(c, hub.Presence{Relay: "acme", Owner: "I1", Node: "Ra", Health: down}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := b.ClaimPresence(c, hub.Presence{Relay: "acme", Owner: "I2", Node: "Rb"}, time.Minute); err != nil {
			t.Fatal(err)
		}
		ps, err := a.LookupPresence(c, "acme")
		want := []hub.Presence{{Relay: "acme", Owner: "I1", Node: "Ra", Health: down}, {Relay: "acme", Owner: "I2", Node: "Rb"}}
		if err != nil || !reflect.DeepEqual(ps, want) {
			t.Fatalf("lookup = %+v, %v; want %+v", ps, err, want)
		}
		// Health changes land in the holder's row only.
		if err := b.SetPresenceHealth(c, "acme", "I2", "Rb", hub.Health{Draining: true}); err != nil {
			t.Fatal(err)
		}
		if err := a.SetPresenceHealth(c, "acme", "I1", "Rb", hub.Health{Paused: true}); err != nil {
			t.Fatal(err) // not the holder: nothing changes, no error
		}
		if err := a.SetPresenceHealth(c, "acme", "I1", "Ra", hub.Health{}); err != nil {
			t.Fatal(err)
		}
		ps, _ = b.LookupPresence(c, "acme")
		want = []hub.Presence{{Relay: "acme", Owner: "I1", Node: "Ra"}, {Relay: "acme", Owner: "I2", Node: "Rb", Health: hub.Health{Draining: true}}}
		if !reflect.DeepEqual(ps, want) {
			t.Fatalf("after health reports: %+v; want %+v", ps, want)
		}
		// One replica moving to another relay node takes its own row only.
		if prev, err := b.ClaimPresence(c, hub.Presence{Relay: "acme", Owner: "I1", Node: "Rb"}, time.Minute); err != nil || prev != "Ra" {
			t.Fatalf("I1 moving = %q, %v", prev, err)
		}
		if err := a.DropPresence(c, "acme", "I1", "Ra"); err != nil {
			t.Fatal(err)
		}
		if ps, _ = a.LookupPresence(c, "acme"); len(ps) != 2 || ps[0].Node != "Rb" || ps[1].Node != "Rb" {
			t.Fatalf("after a move: %+v", ps)
		}
		if err := b.DropPresence(c, "acme", "I2", "Rb"); err != nil {
			t.Fatal(err)
		}
		if ps, _ = a.LookupPresence(c, "acme"); len(ps) != 1 || ps[0].Owner != "I1" {
			t.Fatalf("one replica's drop: %+v", ps)
		}
		// Revoking a replica (ReleaseRelaysOf) ends its presence too,
		// even where it does not own the binding.
		a.ClaimRelay(c, "acme", "I0", true, 1)
		if _, err := a.ReleaseRelaysOf(c, "I1"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.LookupPresence(c, "acme"); !errors.Is(err, hub.ErrNotFound) {
			t.Fatalf("the revoked replica's presence stayed: %v", err)
		}
		if bd, err := a.GetRelay(c, "acme"); err != nil || bd.Owner != "I0" {
			t.Fatalf("another owner's binding changed: %+v, %v", bd, err)
		}
	})
	t.Run("Events", func(t *testing.T) {
		a, b := open(t)
		c := ctx(t)
		lctx, cancel := context.WithCancel(c)
		evs := make(chan hub.Event, 16)
		synced := make(chan struct{}, 4)
		done := make(chan error, 1)
		go func() {
			done <- b.Listen(lctx, func(ev hub.Event) { evs <- ev }, func() { synced <- struct{}{} })
		}()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Listen: %v", err)
			}
		}()
		select {
		case <-synced:
		case <-time.After(10 * time.Second):
			t.Fatal("the listener never synced")
		}
		start := time.Now()
		a.AddCommand(c, "Ia", func(seq uint64) (hub.CommandRecord, error) {
			return hub.CommandRecord{Target: "Ia", Relay: "a", Seq: seq, Data: []byte("x"), State: hub.CommandQueued}, nil
		})
		a.AddCommand(c, "Ia", func(uint64) (hub.CommandRecord, error) { return hub.CommandRecord{}, errors.New("refused") })
		a.AckCommand(c, "Ia", 1, hub.CommandApplied, "ok", 1)
		a.AddRevocation(c, hub.Revoked{ID: "Iz", RevokedAt: 1, Notice: []byte("n")})
		a.ClaimRelay(c, "acme", "Io", false, 1)
		a.ReleaseRelay(c, "acme")
		want := []hub.Event{
			{Kind: hub.EventCommand, Target: "Ia", Seq: 1},
			{Kind: hub.EventAcked, Target: "Ia", Seq: 1, State: hub.CommandApplied, Reason: "ok"},
			{Kind: hub.EventRevoked, Target: "Iz"},
			{Kind: hub.EventReleased, Relay: "acme"},
		}
		for i, w := range want {
			select {
			case ev := <-evs:
				if ev != w {
					t.Fatalf("event %d = %+v, want %+v (a refused change must announce nothing)", i, ev, w)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("event %d (%s) did not arrive", i, w.Kind)
			}
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("events took %s, want within 1 s", d)
		}
	})
}
