// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func connect(t *testing.T, ctx context.Context, s *Server) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, s.DSN(""))
	if err != nil {
		t.Fatalf("connect %s: %v\n%s", s.DSN(""), err, s.Log())
	}
	return c
}

func TestQuery(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := connect(t, ctx, s)
	defer c.Close(ctx)
	var version string
	var user string
	if err := c.QueryRow(ctx, "select current_setting('server_version_num'), current_user").Scan(&version, &user); err != nil {
		t.Fatal(err)
	}
	if version[:2] != "15" || user != Role {
		t.Fatalf("server_version_num %s, user %s; want 15xxxx, %s", version, user, Role)
	}
	var listen string
	if err := c.QueryRow(ctx, "show listen_addresses").Scan(&listen); err != nil || listen != "127.0.0.1" {
		t.Fatalf("listen_addresses = %q (%v), want loopback only", listen, err)
	}
}

// TestKillAndRestart is what the cluster tests do: the database dies (as a
// crash would), clients see errors, and the same data directory comes back
// on the same port with what was committed.
func TestKillAndRestart(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := connect(t, ctx, s)
	if _, err := c.Exec(ctx, "create table kv (k text primary key, v text); insert into kv values ('a', '1')"); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "select 1"); err == nil {
		t.Fatal("a query on a killed server succeeded")
	}
	c.Close(ctx)
	if _, err := pgx.Connect(ctx, s.DSN("")); err == nil {
		t.Fatal("connected to a killed server")
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	c = connect(t, ctx, s)
	var v string
	if err := c.QueryRow(ctx, "select v from kv where k = 'a'").Scan(&v); err != nil || v != "1" {
		t.Fatalf("after crash recovery: %q %v", v, err)
	}
	c.Close(ctx)
	// A clean stop and start keeps it too.
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	c = connect(t, ctx, s)
	defer c.Close(ctx)
	if err := c.QueryRow(ctx, "select v from kv where k = 'a'").Scan(&v); err != nil || v != "1" {
		t.Fatalf("after restart: %q %v", v, err)
	}
}
