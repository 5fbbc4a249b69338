// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package pgstore is the PostgreSQL store (jackc/pgx/v5) of the relay
// (hub.Store and hub.ClusterStore, shared by every relay node of a
// cluster) and of the authority (enroll.Store), selected with
// `--store postgres://…`. The single-file store (boltstore) stays the
// default.
//
// One database holds one kind of state (Kind): relay nodes must never be
// able to write the authority's tickets and members, so Open refuses a
// database that holds the other kind's, naming it.
//
// Schema versions are migrations numbered from 1, applied at Open in one
// transaction under an advisory lock (relay nodes starting together
// migrate once); a database at a version newer than this build knows is
// refused with a line naming both versions.
//
// Atomicity: RedeemTicket locks the ticket's row (select … for update) for
// the whole check-decrement-enroll, so a one-use ticket redeemed at once
// through any number of processes enrolls one identity; AddCommand takes
// the next sequence number with an update of the target's counter row in
// the same transaction as the insert, so numbers per target are strictly
// increasing whichever relay node queues; ClaimRelay is an insert that
// keeps an existing binding (one owner per name, whose kind, sole owner
// or replicas', never changes). Presence is one row per relay and owner
// (schema version 2), so a relay's replicas each hold their own lease,
// with the health their node reported.
//
// Events (hub.Event) travel as NOTIFY on one channel, sent in the
// transaction of the change they announce, so a listener sees one exactly
// when its change is committed. Listen reconnects by itself and calls the
// caller's resync after every (re)connection.
//
// Queries counts every statement sent, for the scale figures.
//
// Imported by cmd/hub, internal/perf and tests.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edgeportal/connect/hub"
)

// Limits.
const (
	// DefaultWait is how long Open keeps trying a database that is down.
	DefaultWait = 30 * time.Second
	// MaxConns bounds each process's connections to the database.
	MaxConns = 10
	// opTimeout bounds one store operation, so a database that stops
	// answering fails a request instead of hanging it.
	opTimeout = 10 * time.Second
	// eventChannel is the NOTIFY channel of hub events.
	eventChannel = "edgeportal_events"
)

// ErrUnavailable is wrapped by errors that mean the database could not be
// reached (down, restarting, network), as opposed to a refusal.
var ErrUnavailable = hub.ErrStoreUnavailable

// Options configure Open.
type Options struct {
	URL  string // postgres://… (no password in it: use PGPASSWORD or ~/.pgpass)
	Kind Kind
	// Wait is how long to keep trying a database that is down at start;
	// 0 means DefaultWait, negative means try once.
	Wait   time.Duration
	Logger *slog.Logger // nil means discard
}

// Store is a PostgreSQL store of one Kind.
type Store struct {
	pool    *pgxpool.Pool
	kind    Kind
	log     *slog.Logger
	url     string // as given, without a password
	queries atomic.Int64
}

// IsURL reports whether s names a PostgreSQL store rather than a file.
func IsURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql")
}

// CheckURL refuses a store URL that is not postgres://… or that carries
// a password (it would sit in argv and config files).
func CheckURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return fmt.Errorf("store %q: want postgres://[USER@]HOST[:PORT]/DATABASE", Redact(s))
	}
	if _, ok := u.User.Password(); ok || u.Query().Get("password") != "" {
		return errors.New("store URL carries a password, which would show in the process list and config files: give it in PGPASSWORD or a ~/.pgpass file instead")
	}
	return nil
}

// Redact returns s with any password replaced, for messages.
func Redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Get("password") != "" {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

type counter struct{ n *atomic.Int64 }

func (c counter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c counter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// Open connects to the database, brings its schema up to date (or
// refuses it), and returns the store. A database that is down is tried
// again with backoff for Options.Wait, each failure logged; then Open
// fails with one line saying so.
func Open(ctx context.Context, o Options) (*Store, error) {
	if err := CheckURL(o.URL); err != nil {
		return nil, err
	}
	if o.Kind != Relay && o.Kind != Authority {
		return nil, fmt.Errorf("pgstore: unknown kind %q", o.Kind)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(o.URL)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", Redact(o.URL), err)
	}
	cfg.MaxConns = MaxConns
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	s := &Store{kind: o.Kind, log: log, url: Redact(o.URL)}
	cfg.ConnConfig.Tracer = counter{&s.queries}
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("store %s: %w", s.url, err)
	}
	wait := o.Wait
	if wait == 0 {
		wait = DefaultWait
	}
	deadline := time.Now().Add(wait)
	backoff := 250 * time.Millisecond
	for {
		from, to, err := s.migrate(ctx)
		if err == nil {
			if from != to {
				log.Info("database schema migrated", "store", s.url, "kind", o.Kind, "from", from, "to", to)
			}
			return s, nil
		}
		if !errors.Is(err, ErrUnavailable) || wait < 0 || time.Now().After(deadline) || ctx.Err() != nil {
			s.pool.Close()
			if errors.Is(err, ErrUnavailable) && wait > 0 {
				return nil, fmt.Errorf("store %s: still unreachable after %s: %w", s.url, wait, err)
			}
			return nil, fmt.Errorf("store %s: %w", s.url, err)
		}
		log.Warn("database unavailable; retrying", "store", s.url, "err", err, "retry_in", backoff, "gives_up_in", time.Until(deadline).Round(time.Second))
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 4*time.Second)
	}
}

func (s *Store) migrate(ctx context.Context) (int, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, 0, s.wrap(err)
	}
	defer c.Release()
	from, to, err := migrate(ctx, c.Conn(), s.kind)
	return from, to, s.wrap(err)
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Kind is the kind of state this store holds.
func (s *Store) Kind() Kind { return s.kind }

// Queries is how many statements this store has sent so far.
func (s *Store) Queries() int64 { return s.queries.Load() }

// wrap marks errors of an unreachable database with ErrUnavailable and
// leaves the server's own answers (SQL errors) and the caller's errors as
// they are.
func (s *Store) wrap(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "08", "57", "53": // connection exception, operator intervention (shutdown), insufficient resources
			return fmt.Errorf("%w: %s", ErrUnavailable, pe.Message)
		}
		return err
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err
}

// op runs f with a bounded context.
func (s *Store) op(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	return s.wrap(f(ctx))
}

// tx runs f in a transaction: committed if f returns nil, rolled back
// (nothing written) otherwise.
func (s *Store) tx(ctx context.Context, f func(ctx context.Context, tx pgx.Tx) error) error {
	return s.op(ctx, func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return f(ctx, tx) })
	})
}
