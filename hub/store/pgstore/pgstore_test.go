// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/hub/store/boltstore"
	"github.com/edgeportal/connect/hub/store/pgstore"
	"github.com/edgeportal/connect/hub/store/storetest"
	"github.com/edgeportal/connect/internal/tstest/pgtest"
)

// One server for the package's tests; each test gets a database of its own.
var (
	server  *pgtest.Server
	skipWhy error
	dbSeq   atomic.Int64
)

func TestMain(m *testing.M) {
	s, err := pgtest.New(context.Background())
	if err != nil {
		if !errors.Is(err, pgtest.ErrUnavailable) {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
			os.Exit(1)
		}
		skipWhy = err
	}
	server = s
	code := m.Run()
	if s != nil {
		s.Close()
	}
	os.Exit(code)
}

// newDB creates an empty database and returns its URL.
func newDB(t *testing.T) string {
	t.Helper()
	if server == nil {
		t.Skipf("no real PostgreSQL for this test: %v", skipWhy)
	}
	name := fmt.Sprintf("t%d", dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, server.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "create database "+name); err != nil {
		t.Fatal(err)
	}
	return server.DSN(name)
}

func open(t *testing.T, url string, k pgstore.Kind) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), pgstore.Options{URL: url, Kind: k})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRelayConformance(t *testing.T) {
	storetest.Relay(t, func(t *testing.T) hub.Store { return open(t, newDB(t), pgstore.Relay) })
}

func TestAuthorityConformance(t *testing.T) {
	storetest.Authority(t, func(t *testing.T) enroll.Store { return open(t, newDB(t), pgstore.Authority) })
}

type clusterStore interface {
	hub.Store
	hub.ClusterStore
}

func TestClusterConformance(t *testing.T) {
	storetest.Cluster(t, func(t *testing.T) (a, b interface {
		hub.Store
		hub.ClusterStore
	}) {
		url := newDB(t)
		return open(t, url, pgstore.Relay), open(t, url, pgstore.Relay)
	})
}

// TestSchema: a second open migrates nothing; a database of the other
// kind, or at a newer version, is refused with one line naming both.
func TestSchema(t *testing.T) {
	ctx := context.Background()
	url := newDB(t)
	open(t, url, pgstore.Relay)
	open(t, url, pgstore.Relay)
	_, err := pgstore.Open(ctx, pgstore.Options{URL: url, Kind: pgstore.Authority})
	if !errors.Is(err, pgstore.ErrWrongKind) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "relay state") {
		t.Fatalf("authority on a relay database: %v", err)
	}
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "update edgeportal_schema set version = 99"); err != nil {
		t.Fatal(err)
	}
	_, err = pgstore.Open(ctx, pgstore.Options{URL: url, Kind: pgstore.Relay})
	want := fmt.Sprintf("schema version 99, this hub knows versions up to %d", pgstore.SchemaVersion(pgstore.Relay))
	if !errors.Is(err, pgstore.ErrNewerSchema) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("newer schema: %v; want one line with %q", err, want)
	}
}

// TestMigrateV1: a relay database at schema version 1 (before replicas),
// holding a binding and a presence, opens at version 2 with both kept:
// the binding a sole owner's, the presence one owner's row.
func TestMigrateV1(t *testing.T) {
	ctx := context.Background()
	url := newDB(t)
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, q := range []string{
		`create table edgeportal_schema (kind text not null, version int not null)`,
		`insert into edgeportal_schema (kind, version) values ('relay', 1)`,
		pgstore.Migrations[pgstore.Relay][0],
		`insert into relays (name, owner, since) values ('acme-relay', 'Ia', 7)`,
		`insert into relay_nodes (id, key, addrs) values ('Ra', 'k', '{127.0.0.1:1}')`,
		`insert into presence (relay, owner, node, lease_until) values ('acme-relay', 'Ia', 'Ra', now() + interval '1 minute')`,
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s := open(t, url, pgstore.Relay)
	var v int
	c.QueryRow(ctx, `select version from edgeportal_schema`).Scan(&v)
	if v != 2 || pgstore.SchemaVersion(pgstore.Relay) != 2 {
		t.Fatalf("schema version after open = %d (build knows %d), want 2", v, pgstore.SchemaVersion(pgstore.Relay))
	}
	if b, err := s.GetRelay(ctx, "acme-relay"); err != nil || b != (hub.RelayBinding{Name: "acme-relay", Owner: "Ia", Since: 7}) {
		t.Fatalf("binding after the migration = %+v, %v", b, err)
	}
	ps, err := s.LookupPresence(ctx, "acme-relay")
	if err != nil || len(ps) != 1 || ps[0].Owner != "Ia" || ps[0].Node != "Ra" || !ps[0].Health.OK("web") {
		t.Fatalf("presence after the migration = %+v, %v", ps, err)
	}
	// Now a second owner's row fits beside it.
	if _, err := s.ClaimPresence(ctx, hub.Presence{Relay: "acme-relay", Owner: "Ib", Node: "Ra"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if ps, _ := s.LookupPresence(ctx, "acme-relay"); len(ps) != 2 {
		t.Fatalf("two owners' presence after the migration: %+v", ps)
	}
}

func TestBadURL(t *testing.T) {
	tests := []struct{ url, want string }{
		{"postgres://hub:hunter2@127.0.0.1/db", "carries a password"},
		{"postgres://hub@127.0.0.1/db?password=hunter2", "carries a password"},
		{"mysql://x", "want postgres://"},
	}
	for _, tt := range tests {
		_, err := pgstore.Open(context.Background(), pgstore.Options{URL: tt.url, Kind: pgstore.Relay})
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q) = %v; want %q, no secret", pgstore.Redact(tt.url), err, tt.want)
		}
	}
}

// TestDownAtStart: a database that is not there is tried again for the
// wait, then refused with one line saying for how long.
func TestDownAtStart(t *testing.T) {
	if server == nil {
		t.Skipf("no real PostgreSQL for this test: %v", skipWhy)
	}
	url := fmt.Sprintf("postgres://hub@127.0.0.1:%d/nothing?sslmode=disable", freePort(t))
	start := time.Now()
	_, err := pgstore.Open(context.Background(), pgstore.Options{URL: url, Kind: pgstore.Relay, Wait: 1500 * time.Millisecond})
	if !errors.Is(err, pgstore.ErrUnavailable) || !strings.Contains(err.Error(), "still unreachable after 1.5s") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Open of a database that is down = %v", err)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("gave up after %s without retrying", d)
	}
}

// TestDownWhileServing: a store whose database dies answers with
// ErrUnavailable (nothing half-written) and works again when it is back.
func TestDownWhileServing(t *testing.T) {
	url := newDB(t)
	s := open(t, url, pgstore.Relay)
	ctx := context.Background()
	if _, err := s.ClaimRelay(ctx, "r1", "Ia", false, 1); err != nil {
		t.Fatal(err)
	}
	if err := server.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := s.AddCommand(ctx, "Ia", func(seq uint64) (hub.CommandRecord, error) {
		return hub.CommandRecord{Target: "Ia", Relay: "r1", Seq: seq, Data: []byte("x"), State: hub.CommandQueued}, nil
	})
	if !errors.Is(err, pgstore.ErrUnavailable) {
		t.Errorf("AddCommand with the database down = %v, want ErrUnavailable", err)
	}
	if err := server.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	var b hub.RelayBinding
	for i := 0; i < 50; i++ {
		if b, err = s.GetRelay(ctx, "r1"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || b.Owner != "Ia" {
		t.Fatalf("after the restart: %+v, %v", b, err)
	}
	if pend, _ := s.PendingCommands(ctx, "Ia"); len(pend) != 0 {
		t.Fatalf("a command was half-written while the database was down: %+v", pend)
	}
	if seq, _ := s.NextSeq(ctx, "Ia"); seq != 1 {
		t.Fatalf("next seq %d after a failed add, want 1", seq)
	}
}

// TestImport moves a single-file store's state into PostgreSQL.
func TestImport(t *testing.T) {
	ctx := context.Background()
	b, err := boltstore.Open(t.TempDir() + "/x.db")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.ClaimRelay(ctx, "acme", "Ia", false, 1)
	b.ClaimRelay(ctx, "shared", "Ib", true, 1)
	b.AddRevocation(ctx, hub.Revoked{ID: "Iz", RevokedAt: 2, Notice: []byte("n")})
	b.UpdateNode(ctx, "Ia", func(n *hub.NodeRecord) { n.Version = "v1" })
	for range 3 {
		b.AddCommand(ctx, "Ia", func(seq uint64) (hub.CommandRecord, error) {
			return hub.CommandRecord{Target: "Ia", Relay: "acme", Seq: seq, Data: []byte("x"), State: hub.CommandQueued, CreatedAt: int64(seq)}, nil
		})
	}
	p := open(t, newDB(t), pgstore.Relay)
	n, err := p.ImportRelay(ctx, b)
	if err != nil || n != 7 {
		t.Fatalf("import = %d, %v", n, err)
	}
	if seq, _ := p.NextSeq(ctx, "Ia"); seq != 4 {
		t.Fatalf("next seq after import %d, want 4", seq)
	}
	if rb, err := p.GetRelay(ctx, "shared"); err != nil || !rb.Replicas || rb.Owner != "Ib" {
		t.Fatalf("a replicas' binding after import: %+v, %v", rb, err)
	}
	if _, err := p.ImportRelay(ctx, b); err == nil {
		t.Fatal("a second import into a non-empty database succeeded")
	}
	if empty, _ := p.Empty(ctx); empty {
		t.Fatal("Empty after import")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	return 1 + int(dbSeq.Add(1)%2) // ports 1-2 on loopback: nothing listens, connect is refused
}
