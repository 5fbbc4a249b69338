// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Kind says whose state a database holds. One database holds one kind:
// the relay nodes must not be able to write the authority's tickets and
// members (a relay that could add a ticket could have the authority sign
// a credential for it).
type Kind string

// Kinds of database.
const (
	Relay     Kind = "relay"
	Authority Kind = "authority"
)

// migrations are the schema versions of each kind, in order: migration i
// takes a database from version i to i+1. Never edit one that shipped;
// add the next.
var migrations = map[Kind][]string{
	Relay: {
		// 1: the relay's state (as the single-file store has it), the
		// cluster's listing of relay nodes, and presence with leases.
		`create table relays (
			name  text primary key,
			owner text not null,
			since bigint not null
		);
		create index relays_owner on relays (owner);
		create table revocations (
			id         text primary key,
			revoked_at bigint not null,
			notice     bytea not null
		);
		create table nodes (
			id  text primary key,
			rec bytea not null
		);
		create table command_seq (
			target text primary key,
			last   bigint not null
		);
		create table commands (
			target     text not null,
			seq        bigint not null,
			relay      text not null,
			data       bytea not null,
			summary    text not null,
			state      text not null,
			reason     text not null default '',
			created_at bigint not null,
			acked_at   bigint not null default 0,
			primary key (target, seq)
		);
		create index commands_relay on commands (relay);
		create table relay_nodes (
			id           text primary key,
			key          text not null,
			addrs        text[] not null,
			listed_at    timestamptz not null default now(),
			heartbeat_at timestamptz,
			authority    boolean not null default false
		);
		create table presence (
			relay       text primary key,
			owner       text not null,
			node        text not null,
			lease_until timestamptz not null
		);
		create index presence_node on presence (node);`,
		// 2: relays served by replicas: a binding says whether its name
		// takes replicas, presence is one row per (relay, owner), and
		// each carries what its owner last reported of its health.
		`alter table relays add column replicas boolean not null default false;
		alter table presence drop constraint presence_pkey;
		alter table presence add primary key (relay, owner);
		alter table presence add column paused boolean not null default false;
		alter table presence add column draining boolean not null default false;
		alter table presence add column down text[] not null default '{}';
		create index presence_owner on presence (owner);`,
	},
	Authority: {
		// 1: tickets (never a secret: the hash) and members.
		`create table tickets (
			hash       bytea primary key,
			id         text not null,
			created_at bigint not null,
			rec        bytea not null
		);
		create table members (
			id          text primary key,
			enrolled_at bigint not null,
			rec         bytea not null
		);`,
	},
}

// SchemaVersion is the newest schema version of each kind this build
// knows.
func SchemaVersion(k Kind) int { return len(migrations[k]) }

// ErrNewerSchema is wrapped by Open's error for a database whose schema is
// newer than this build knows.
var ErrNewerSchema = errors.New("database schema is newer than this hub knows")

// ErrWrongKind is wrapped by Open's error for a database of the other kind.
var ErrWrongKind = errors.New("database holds another process's state")

// migrationLock is the advisory lock every migration holds, so relay
// nodes starting together migrate once.
const migrationLock = 0x65707831 // "epx1"

// migrate brings the database to this build's schema of kind k, or
// refuses one that is newer or of the other kind. It runs in one
// transaction: a failed migration leaves the database as it was.
func migrate(ctx context.Context, conn *pgx.Conn, k Kind) (from, to int, err error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `select pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
		return 0, 0, err
	}
	if _, err := tx.Exec(ctx, `create table if not exists edgeportal_schema (kind text not null, version int not null)`); err != nil {
		return 0, 0, err
	}
	var kind string
	err = tx.QueryRow(ctx, `select kind, version from edgeportal_schema`).Scan(&kind, &from)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, `insert into edgeportal_schema (kind, version) values ($1, 0)`, string(k)); err != nil {
			return 0, 0, err
		}
		kind = string(k)
	case err != nil:
		return 0, 0, err
	}
	if Kind(kind) != k {
		return from, 0, fmt.Errorf("%w: it holds %s state, and a %s needs a database of its own (a relay node that could write the authority's tickets could have it sign credentials)", ErrWrongKind, kind, k)
	}
	to = SchemaVersion(k)
	if from > to {
		return from, to, fmt.Errorf("%w: the database is at schema version %d, this hub knows versions up to %d: upgrade this hub", ErrNewerSchema, from, to)
	}
	for v := from; v < to; v++ {
		if _, err := tx.Exec(ctx, migrations[k][v]); err != nil {
			return from, to, fmt.Errorf("schema migration %d→%d: %w", v, v+1, err)
		}
	}
	if from != to {
		if _, err := tx.Exec(ctx, `update edgeportal_schema set version = $1`, to); err != nil {
			return from, to, err
		}
	}
	return from, to, tx.Commit(ctx)
}
