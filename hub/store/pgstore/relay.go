// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"

	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/key"
)

var (
	_ hub.Store        = (*Store)(nil)
	_ hub.ClusterStore = (*Store)(nil)
)

// notify sends ev in tx: it is delivered when tx commits, never before.
func notify(ctx context.Context, tx pgx.Tx, ev hub.Event) error {
	p, err := hub.EncodeEvent(ev)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `select pg_notify($1, $2)`, eventChannel, p)
	return err
}

// ClaimRelay implements hub.RelayStore: the first owner's binding stays.
func (s *Store) ClaimRelay(ctx context.Context, name, owner string, replicas bool, at int64) (hub.RelayBinding, error) {
	var b hub.RelayBinding
	err := s.op(ctx, func(ctx context.Context) error {
		// One statement that always yields the binding that holds: the new
		// row, or the existing one (a no-op update locks and returns it).
		// "on conflict do nothing" plus a select would miss a row a
		// concurrent claim committed after this statement's snapshot.
		return s.pool.QueryRow(ctx, `insert into relays (name, owner, since, replicas) values ($1, $2, $3, $4)
			on conflict (name) do update set since = relays.since
			returning `+bindingCols, name, owner, at, replicas).Scan(&b.Name, &b.Owner, &b.Since, &b.Replicas)
	})
	return b, err
}

const bindingCols = `name, owner, since, replicas`

// ReleaseRelay implements hub.RelayStore.
func (s *Store) ReleaseRelay(ctx context.Context, name string) (hub.RelayBinding, error) {
	var b hub.RelayBinding
	err := s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `delete from relays where name = $1 returning `+bindingCols, name).Scan(&b.Name, &b.Owner, &b.Since, &b.Replicas)
		if errors.Is(err, pgx.ErrNoRows) {
			return hub.ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `delete from presence where relay = $1`, name); err != nil {
			return err
		}
		return notify(ctx, tx, hub.Event{Kind: hub.EventReleased, Relay: name})
	})
	return b, err
}

// ReleaseRelaysOf implements hub.RelayStore.
func (s *Store) ReleaseRelaysOf(ctx context.Context, owner string) ([]hub.RelayBinding, error) {
	var out []hub.RelayBinding
	err := s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		out = nil
		rows, err := tx.Query(ctx, `delete from relays where owner = $1 returning `+bindingCols, owner)
		if err != nil {
			return err
		}
		if out, err = pgx.CollectRows(rows, scanBinding); err != nil {
			return err
		}
		// The owner's presence as a replica of names it does not own.
		if _, err := tx.Exec(ctx, `delete from presence where owner = $1`, owner); err != nil {
			return err
		}
		for _, b := range out {
			if _, err := tx.Exec(ctx, `delete from presence where relay = $1`, b.Name); err != nil {
				return err
			}
			if err := notify(ctx, tx, hub.Event{Kind: hub.EventReleased, Relay: b.Name}); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

func scanBinding(r pgx.CollectableRow) (hub.RelayBinding, error) {
	var b hub.RelayBinding
	err := r.Scan(&b.Name, &b.Owner, &b.Since, &b.Replicas)
	return b, err
}

// GetRelay implements hub.RelayStore.
func (s *Store) GetRelay(ctx context.Context, name string) (hub.RelayBinding, error) {
	var b hub.RelayBinding
	err := s.op(ctx, func(ctx context.Context) error {
		err := s.pool.QueryRow(ctx, `select `+bindingCols+` from relays where name = $1`, name).Scan(&b.Name, &b.Owner, &b.Since, &b.Replicas)
		if errors.Is(err, pgx.ErrNoRows) {
			return hub.ErrNotFound
		}
		return err
	})
	return b, err
}

// ListRelays implements hub.RelayStore, by name.
func (s *Store) ListRelays(ctx context.Context) ([]hub.RelayBinding, error) {
	var out []hub.RelayBinding
	err := s.op(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `select `+bindingCols+` from relays order by name`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanBinding)
		return err
	})
	return out, err
}

// AddRevocation implements hub.RelayStore (idempotent: the first stays).
func (s *Store) AddRevocation(ctx context.Context, r hub.Revoked) error {
	return s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `insert into revocations (id, revoked_at, notice) values ($1, $2, $3) on conflict (id) do nothing`, r.ID, r.RevokedAt, r.Notice)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		return notify(ctx, tx, hub.Event{Kind: hub.EventRevoked, Target: r.ID})
	})
}

// ListRevocations implements hub.RelayStore.
func (s *Store) ListRevocations(ctx context.Context) ([]hub.Revoked, error) {
	var out []hub.Revoked
	err := s.op(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `select id, revoked_at, notice from revocations order by id`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (hub.Revoked, error) {
			var v hub.Revoked
			err := r.Scan(&v.ID, &v.RevokedAt, &v.Notice)
			return v, err
		})
		return err
	})
	return out, err
}

// UpdateNode implements hub.RelayStore.
func (s *Store) UpdateNode(ctx context.Context, id string, fn func(*hub.NodeRecord)) error {
	return s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		n := hub.NodeRecord{ID: id}
		var rec []byte
		err := tx.QueryRow(ctx, `select rec from nodes where id = $1 for update`, id).Scan(&rec)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		default:
			if err := wire.Unmarshal(rec, &n); err != nil {
				return fmt.Errorf("corrupt node record %q: %w", id, err)
			}
		}
		fn(&n)
		n.ID = id
		b, err := wire.Marshal(n)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `insert into nodes (id, rec) values ($1, $2) on conflict (id) do update set rec = excluded.rec`, id, b)
		return err
	})
}

// ListNodes implements hub.RelayStore.
func (s *Store) ListNodes(ctx context.Context) ([]hub.NodeRecord, error) {
	var out []hub.NodeRecord
	err := s.op(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `select id, rec from nodes order by id`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (hub.NodeRecord, error) {
			var id string
			var rec []byte
			var n hub.NodeRecord
			if err := r.Scan(&id, &rec); err != nil {
				return n, err
			}
			if err := wire.Unmarshal(rec, &n); err != nil {
				return n, fmt.Errorf("corrupt node record %q: %w", id, err)
			}
			return n, nil
		})
		return err
	})
	return out, err
}

const commandCols = `target, relay, seq, data, summary, state, reason, created_at, acked_at`

func scanCommand(r pgx.CollectableRow) (hub.CommandRecord, error) {
	var c hub.CommandRecord
	var seq int64
	err := r.Scan(&c.Target, &c.Relay, &seq, &c.Data, &c.Summary, &c.State, &c.Reason, &c.CreatedAt, &c.AckedAt)
	c.Seq = uint64(seq)
	return c, err
}

// AddCommand implements hub.CommandStore: the counter row's update locks
// it, so concurrent adds for one target (from any relay node) take
// numbers one after another; a refused build rolls the number back.
func (s *Store) AddCommand(ctx context.Context, target string, build func(seq uint64) (hub.CommandRecord, error)) (hub.CommandRecord, error) {
	var rec hub.CommandRecord
	err := s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var seq int64
		err := tx.QueryRow(ctx, `insert into command_seq (target, last) values ($1, 1)
			on conflict (target) do update set last = command_seq.last + 1 returning last`, target).Scan(&seq)
		if err != nil {
			return err
		}
		if rec, err = build(uint64(seq)); err != nil {
			return err
		}
		rec.Seq = uint64(seq)
		if _, err := tx.Exec(ctx, `insert into commands (`+commandCols+`) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			target, rec.Relay, seq, rec.Data, rec.Summary, rec.State, rec.Reason, rec.CreatedAt, rec.AckedAt); err != nil {
			return err
		}
		return notify(ctx, tx, hub.Event{Kind: hub.EventCommand, Target: target, Seq: uint64(seq)})
	})
	if err != nil {
		return hub.CommandRecord{}, err
	}
	return rec, nil
}

// NextSeq implements hub.CommandStore.
func (s *Store) NextSeq(ctx context.Context, target string) (uint64, error) {
	var last int64
	err := s.op(ctx, func(ctx context.Context) error {
		err := s.pool.QueryRow(ctx, `select last from command_seq where target = $1`, target).Scan(&last)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	return uint64(last) + 1, err
}

// PendingCommands implements hub.CommandStore.
func (s *Store) PendingCommands(ctx context.Context, target string) ([]hub.CommandRecord, error) {
	var out []hub.CommandRecord
	err := s.op(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `select `+commandCols+` from commands where target = $1 and state = $2 order by seq`, target, hub.CommandQueued)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanCommand)
		return err
	})
	return out, err
}

// AckCommand implements hub.CommandStore: the first answer wins.
func (s *Store) AckCommand(ctx context.Context, target string, seq uint64, state, reason string, at int64) (hub.CommandRecord, error) {
	var rec hub.CommandRecord
	err := s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `update commands set state = $3, reason = $4, acked_at = $5
			where target = $1 and seq = $2 and state = $6 returning `+commandCols, target, int64(seq), state, reason, at, hub.CommandQueued)
		if err != nil {
			return err
		}
		got, err := pgx.CollectRows(rows, scanCommand)
		if err != nil {
			return err
		}
		if len(got) == 1 {
			rec = got[0]
			return notify(ctx, tx, hub.Event{Kind: hub.EventAcked, Target: target, Seq: seq, State: rec.State, Reason: rec.Reason})
		}
		rows, err = tx.Query(ctx, `select `+commandCols+` from commands where target = $1 and seq = $2`, target, int64(seq))
		if err != nil {
			return err
		}
		if got, err = pgx.CollectRows(rows, scanCommand); err != nil {
			return err
		}
		if len(got) == 0 {
			return fmt.Errorf("no command %d for %s", seq, target)
		}
		rec = got[0]
		return nil
	})
	return rec, err
}

// ListCommands implements hub.CommandStore.
func (s *Store) ListCommands(ctx context.Context, relay string) ([]hub.CommandRecord, error) {
	var out []hub.CommandRecord
	err := s.op(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `select `+commandCols+` from commands where $1 = '' or relay = $1 order by created_at, seq`, relay)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanCommand)
		return err
	})
	return out, err
}

// PutRelayNode implements hub.ClusterStore.
func (s *Store) PutRelayNode(ctx context.Context, n hub.RelayNode) error {
	if len(n.Addrs) == 0 || n.ID == "" || n.Key.IsZero() {
		return errors.New("list relay node: an identifier, a key and an address are required")
	}
	return s.op(ctx, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `insert into relay_nodes (id, key, addrs) values ($1, $2, $3)
			on conflict (id) do update set key = excluded.key, addrs = excluded.addrs`, n.ID, n.Key.String(), n.Addrs)
		return err
	})
}

// RelayNodes implements hub.ClusterStore.
func (s *Store) RelayNodes(ctx context.Context) ([]hub.RelayNode, error) {
	var out []hub.RelayNode
	err := s.op(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `select id, key, addrs, authority and coalesce(heartbeat_at > now() - $1::interval, false),
			coalesce(heartbeat_at > now() - $1::interval, false) from relay_nodes order by id`, hub.PresenceLease.String())
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (hub.RelayNode, error) {
			var n hub.RelayNode
			var k string
			if err := r.Scan(&n.ID, &k, &n.Addrs, &n.Authority, &n.Alive); err != nil {
				return n, err
			}
			pk, err := key.ParseNodePublic(k)
			if err != nil {
				return n, fmt.Errorf("relay node %s: %w", n.ID, err)
			}
			n.Key = pk
			return n, nil
		})
		return err
	})
	return out, err
}

// Heartbeat implements hub.ClusterStore.
func (s *Store) Heartbeat(ctx context.Context, node string, authority bool, lease time.Duration) error {
	return s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `update relay_nodes set heartbeat_at = now(), authority = $2 where id = $1`, node, authority)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("relay node %s: %w", node, hub.ErrNotListed)
		}
		_, err = tx.Exec(ctx, `update presence set lease_until = now() + $2::interval where node = $1`, node, lease.String())
		return err
	})
}

// ClaimPresence implements hub.ClusterStore.
func (s *Store) ClaimPresence(ctx context.Context, p hub.Presence, lease time.Duration) (string, error) {
	var prev string
	err := s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		prev = ""
		err := tx.QueryRow(ctx, `select node from presence where relay = $1 and owner = $2 and lease_until > now() for update`, p.Relay, p.Owner).Scan(&prev)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if _, err := tx.Exec(ctx, `insert into presence (relay, owner, node, lease_until, paused, draining, down)
			values ($1, $2, $3, now() + $4::interval, $5, $6, $7)
			on conflict (relay, owner) do update set node = excluded.node, lease_until = excluded.lease_until,
				paused = excluded.paused, draining = excluded.draining, down = excluded.down`,
			p.Relay, p.Owner, p.Node, lease.String(), p.Paused, p.Draining, downOf(p.Health)); err != nil {
			return err
		}
		if prev != "" && prev != p.Node {
			return notify(ctx, tx, hub.Event{Kind: hub.EventMoved, Relay: p.Relay, Node: p.Node, Target: p.Owner})
		}
		return nil
	})
	if prev == p.Node {
		prev = ""
	}
	return prev, err
}

// downOf is h.Down as the column holds it (never null).
func downOf(h hub.Health) []string {
	if h.Down == nil {
		return []string{}
	}
	return h.Down
}

// SetPresenceHealth implements hub.ClusterStore.
func (s *Store) SetPresenceHealth(ctx context.Context, relay, owner, node string, h hub.Health) error {
	return s.op(ctx, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `update presence set paused = $4, draining = $5, down = $6 where relay = $1 and owner = $2 and node = $3`,
			relay, owner, node, h.Paused, h.Draining, downOf(h))
		return err
	})
}

// DropPresence implements hub.ClusterStore.
func (s *Store) DropPresence(ctx context.Context, relay, owner, node string) error {
	return s.op(ctx, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `delete from presence where relay = $1 and owner = $2 and node = $3`, relay, owner, node)
		return err
	})
}

const presenceCols = `relay, owner, node, paused, draining, down`

func scanPresence(r pgx.CollectableRow) (hub.Presence, error) {
	var p hub.Presence
	err := r.Scan(&p.Relay, &p.Owner, &p.Node, &p.Paused, &p.Draining, &p.Down)
	if len(p.Down) == 0 {
		p.Down = nil
	}
	return p, err
}

// LookupPresence implements hub.ClusterStore, by owner.
func (s *Store) LookupPresence(ctx context.Context, relay string) ([]hub.Presence, error) {
	var out []hub.Presence
	err := s.op(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `select `+presenceCols+` from presence where relay = $1 and lease_until > now() order by owner`, relay)
		if err != nil {
			return err
		}
		if out, err = pgx.CollectRows(rows, scanPresence); err != nil {
			return err
		}
		if len(out) == 0 {
			return hub.ErrNotFound
		}
		return nil
	})
	return out, err
}

// ListPresence implements hub.ClusterStore, by relay and owner.
func (s *Store) ListPresence(ctx context.Context) ([]hub.Presence, error) {
	var out []hub.Presence
	err := s.op(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `select `+presenceCols+` from presence where lease_until > now() order by relay, owner`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanPresence)
		return err
	})
	return out, err
}

// backlog is the listener's handler: resync after each (re)connection.
type backlog struct {
	handle func(hub.Event)
	resync func()
	log    func(error)
}

func (b backlog) HandleNotification(ctx context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	ev, err := hub.DecodeEvent(n.Payload)
	if err != nil {
		return err
	}
	b.handle(ev)
	return nil
}

func (b backlog) HandleBacklog(ctx context.Context, _ string, _ *pgx.Conn) error {
	b.resync()
	return nil
}

// Listen implements hub.ClusterStore on a connection of its own, which it
// opens again (after a second) whenever it is lost.
func (s *Store) Listen(ctx context.Context, handle func(hub.Event), resync func()) error {
	l := &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			c, err := s.pool.Acquire(ctx)
			if err != nil {
				return nil, err
			}
			return c.Hijack(), nil
		},
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				s.log.Warn("cluster events: listener interrupted; reconnecting", "err", err)
			}
		},
		ReconnectDelay: time.Second,
	}
	l.Handle(eventChannel, backlog{handle: handle, resync: resync})
	err := l.Listen(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
