// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/wire"
)

var _ enroll.Store = (*Store)(nil)

func decodeTicket(rec []byte) (enroll.TicketRecord, error) {
	var t enroll.TicketRecord
	if err := wire.Unmarshal(rec, &t); err != nil {
		return t, fmt.Errorf("corrupt ticket record: %w", err)
	}
	return t, nil
}

func decodeMember(rec []byte) (enroll.Member, error) {
	var m enroll.Member
	if err := wire.Unmarshal(rec, &m); err != nil {
		return m, fmt.Errorf("corrupt member record: %w", err)
	}
	return m, nil
}

// PutTicket implements enroll.Store.
func (s *Store) PutTicket(ctx context.Context, t enroll.TicketRecord) error {
	b, err := wire.Marshal(t)
	if err != nil {
		return err
	}
	return s.op(ctx, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `insert into tickets (hash, id, created_at, rec) values ($1, $2, $3, $4)
			on conflict (hash) do update set id = excluded.id, created_at = excluded.created_at, rec = excluded.rec`, t.Hash[:], t.ID, t.CreatedAt, b)
		return err
	})
}

// GetTicket implements enroll.Store.
func (s *Store) GetTicket(ctx context.Context, hash [32]byte) (enroll.TicketRecord, error) {
	var t enroll.TicketRecord
	err := s.op(ctx, func(ctx context.Context) error {
		var rec []byte
		err := s.pool.QueryRow(ctx, `select rec from tickets where hash = $1`, hash[:]).Scan(&rec)
		if errors.Is(err, pgx.ErrNoRows) {
			return enroll.ErrTicketUnknown
		}
		if err != nil {
			return err
		}
		t, err = decodeTicket(rec)
		return err
	})
	return t, err
}

// UpdateTicket implements enroll.Store.
func (s *Store) UpdateTicket(ctx context.Context, hash [32]byte, fn func(*enroll.TicketRecord) error) (enroll.TicketRecord, error) {
	return updateRec(ctx, s, `select rec from tickets where hash = $1 for update`, `update tickets set rec = $2 where hash = $1`,
		hash[:], enroll.ErrTicketUnknown, decodeTicket, fn)
}

// ListTickets implements enroll.Store, oldest first.
func (s *Store) ListTickets(ctx context.Context) ([]enroll.TicketRecord, error) {
	return listRecs(ctx, s, `select rec from tickets order by created_at, id`, decodeTicket)
}

// updateRec is the read-modify-write of one record row: read under the
// row's lock (query, by key), decode, fn, write back (update, $1 the key,
// $2 the record). No row is missing.
func updateRec[T any](ctx context.Context, s *Store, query, update string, key any, missing error,
	decode func([]byte) (T, error), fn func(*T) error) (T, error) {
	var v T
	err := s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var rec []byte
		err := tx.QueryRow(ctx, query, key).Scan(&rec)
		if errors.Is(err, pgx.ErrNoRows) {
			return missing
		}
		if err != nil {
			return err
		}
		if v, err = decode(rec); err != nil {
			return err
		}
		if err := fn(&v); err != nil {
			return err
		}
		b, err := wire.Marshal(v)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, update, key, b)
		return err
	})
	if err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// listRecs decodes the records query selects, in its order.
func listRecs[T any](ctx context.Context, s *Store, query string, decode func([]byte) (T, error)) ([]T, error) {
	var out []T
	err := s.op(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, query)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) {
			var rec []byte
			if err := r.Scan(&rec); err != nil {
				var zero T
				return zero, err
			}
			return decode(rec)
		})
		return err
	})
	return out, err
}

// RedeemTicket implements enroll.Store: the ticket's row stays locked from
// the check to the member's insert, so concurrent redemptions (from any
// number of processes) of a one-use ticket admit one node.
func (s *Store) RedeemTicket(ctx context.Context, hash [32]byte, admit func(enroll.TicketRecord) (enroll.Member, error)) (enroll.Member, error) {
	var m enroll.Member
	err := s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var rec []byte
		err := tx.QueryRow(ctx, `select rec from tickets where hash = $1 for update`, hash[:]).Scan(&rec)
		if errors.Is(err, pgx.ErrNoRows) {
			return enroll.ErrTicketUnknown
		}
		if err != nil {
			return err
		}
		t, err := decodeTicket(rec)
		if err != nil {
			return err
		}
		if m, err = admit(t); err != nil {
			return err
		}
		t.UsesLeft--
		tb, err := wire.Marshal(t)
		if err != nil {
			return err
		}
		mb, err := wire.Marshal(m)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `update tickets set rec = $2 where hash = $1`, hash[:], tb); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `insert into members (id, enrolled_at, rec) values ($1, $2, $3)
			on conflict (id) do update set enrolled_at = excluded.enrolled_at, rec = excluded.rec`, m.ID, m.EnrolledAt, mb)
		return err
	})
	if err != nil {
		return enroll.Member{}, err
	}
	return m, nil
}

// GetMember implements enroll.Store.
func (s *Store) GetMember(ctx context.Context, id string) (enroll.Member, error) {
	var m enroll.Member
	err := s.op(ctx, func(ctx context.Context) error {
		var rec []byte
		err := s.pool.QueryRow(ctx, `select rec from members where id = $1`, id).Scan(&rec)
		if errors.Is(err, pgx.ErrNoRows) {
			return enroll.ErrNotFound
		}
		if err != nil {
			return err
		}
		m, err = decodeMember(rec)
		return err
	})
	return m, err
}

// UpdateMember implements enroll.Store.
func (s *Store) UpdateMember(ctx context.Context, id string, fn func(*enroll.Member) error) (enroll.Member, error) {
	return updateRec(ctx, s, `select rec from members where id = $1 for update`, `update members set rec = $2 where id = $1`,
		id, enroll.ErrNotFound, decodeMember, fn)
}

// ListMembers implements enroll.Store, by enrollment time.
func (s *Store) ListMembers(ctx context.Context) ([]enroll.Member, error) {
	return listRecs(ctx, s, `select rec from members order by enrolled_at, id`, decodeMember)
}

// Empty reports whether the database holds no state yet (a migration's
// target must be).
func (s *Store) Empty(ctx context.Context) (bool, error) {
	tables := []string{"relays", "revocations", "nodes", "commands"}
	if s.kind == Authority {
		tables = []string{"tickets", "members"}
	}
	for _, t := range tables {
		var n int64
		if err := s.op(ctx, func(ctx context.Context) error {
			return s.pool.QueryRow(ctx, `select count(*) from `+pgx.Identifier{t}.Sanitize()).Scan(&n)
		}); err != nil {
			return false, err
		}
		if n > 0 {
			return false, nil
		}
	}
	return true, nil
}

// ImportRelay copies a relay's whole state from another store into this
// (empty) one, in one transaction: all of it or nothing.
func (s *Store) ImportRelay(ctx context.Context, from hub.Store) (n int, err error) {
	relays, err := from.ListRelays(ctx)
	if err != nil {
		return 0, err
	}
	revs, err := from.ListRevocations(ctx)
	if err != nil {
		return 0, err
	}
	nodes, err := from.ListNodes(ctx)
	if err != nil {
		return 0, err
	}
	cmds, err := from.ListCommands(ctx, "")
	if err != nil {
		return 0, err
	}
	err = s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		for _, b := range relays {
			if _, err := tx.Exec(ctx, `insert into relays (name, owner, since, replicas) values ($1, $2, $3, $4)`, b.Name, b.Owner, b.Since, b.Replicas); err != nil {
				return err
			}
		}
		for _, r := range revs {
			if _, err := tx.Exec(ctx, `insert into revocations (id, revoked_at, notice) values ($1, $2, $3)`, r.ID, r.RevokedAt, r.Notice); err != nil {
				return err
			}
		}
		for _, nr := range nodes {
			b, err := wire.Marshal(nr)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `insert into nodes (id, rec) values ($1, $2)`, nr.ID, b); err != nil {
				return err
			}
		}
		for _, c := range cmds {
			if _, err := tx.Exec(ctx, `insert into commands (`+commandCols+`) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
				c.Target, c.Relay, int64(c.Seq), c.Data, c.Summary, c.State, c.Reason, c.CreatedAt, c.AckedAt); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `insert into command_seq (target, last) values ($1, $2)
				on conflict (target) do update set last = greatest(command_seq.last, excluded.last)`, c.Target, int64(c.Seq)); err != nil {
				return err
			}
		}
		return nil
	})
	return len(relays) + len(revs) + len(nodes) + len(cmds), err
}

// ImportAuthority copies an authority's tickets and members from another
// store into this (empty) one, in one transaction.
func (s *Store) ImportAuthority(ctx context.Context, from enroll.Store) (int, error) {
	ts, err := from.ListTickets(ctx)
	if err != nil {
		return 0, err
	}
	ms, err := from.ListMembers(ctx)
	if err != nil {
		return 0, err
	}
	err = s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		for _, t := range ts {
			b, err := wire.Marshal(t)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `insert into tickets (hash, id, created_at, rec) values ($1, $2, $3, $4)`, t.Hash[:], t.ID, t.CreatedAt, b); err != nil {
				return err
			}
		}
		for _, m := range ms {
			b, err := wire.Marshal(m)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `insert into members (id, enrolled_at, rec) values ($1, $2, $3)`, m.ID, m.EnrolledAt, b); err != nil {
				return err
			}
		}
		return nil
	})
	return len(ts) + len(ms), err
}
