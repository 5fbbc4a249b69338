// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package boltstore is the hub's default Store: one bbolt file under the
// hub directory, crash-safe (copy-on-write B+tree, fsync on commit), with a
// single writer so ticket redemption is atomic.
//
// Imports: hub (for the interface), enroll, wire. Imported by cmd/*-hub and
// tests.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/wire"
)

var (
	bucketTickets  = []byte("tickets")
	bucketMembers  = []byte("members")
	bucketCommands = []byte("commands") // target "/" seq(8, big-endian) → CommandRecord
	bucketSeq      = []byte("seq")      // target → last seq (8, big-endian)
)

// Store is a bbolt-backed hub.Store.
type Store struct {
	db *bolt.DB
}

var _ hub.Store = (*Store)(nil)

// ErrLocked means another process holds the database open.
var ErrLocked = errors.New("the hub database is in use by another process (is the hub running?)")

// Open opens (creating if needed) the store at path with mode 0600.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTickets, bucketMembers, bucketCommands, bucketSeq} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func put(b *bolt.Bucket, k []byte, v any) error {
	data, err := wire.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, data)
}

func get(b *bolt.Bucket, k []byte, v any) (bool, error) {
	data := b.Get(k)
	if data == nil {
		return false, nil
	}
	if err := wire.Unmarshal(data, v); err != nil {
		return true, fmt.Errorf("corrupt record %q: %w", k, err)
	}
	return true, nil
}

// PutTicket implements enroll.Store.
func (s *Store) PutTicket(ctx context.Context, t enroll.TicketRecord) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return put(tx.Bucket(bucketTickets), t.Hash[:], t)
	})
}

// GetTicket implements enroll.Store.
func (s *Store) GetTicket(ctx context.Context, hash [32]byte) (enroll.TicketRecord, error) {
	var t enroll.TicketRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		ok, err := get(tx.Bucket(bucketTickets), hash[:], &t)
		if err == nil && !ok {
			err = enroll.ErrTicketUnknown
		}
		return err
	})
	return t, err
}

// RedeemTicket implements enroll.Store: lookup, admit, decrement and member
// write happen in one bbolt write transaction.
func (s *Store) RedeemTicket(ctx context.Context, hash [32]byte, admit func(enroll.TicketRecord) (enroll.Member, error)) (enroll.Member, error) {
	var m enroll.Member
	err := s.db.Update(func(tx *bolt.Tx) error {
		tb := tx.Bucket(bucketTickets)
		var t enroll.TicketRecord
		ok, err := get(tb, hash[:], &t)
		if err != nil {
			return err
		}
		if !ok {
			return enroll.ErrTicketUnknown
		}
		if m, err = admit(t); err != nil {
			return err
		}
		t.UsesLeft--
		if err := put(tb, hash[:], t); err != nil {
			return err
		}
		return put(tx.Bucket(bucketMembers), []byte(m.ID), m)
	})
	if err != nil {
		return enroll.Member{}, err
	}
	return m, nil
}

// GetMember implements enroll.Store.
func (s *Store) GetMember(ctx context.Context, id string) (enroll.Member, error) {
	var m enroll.Member
	err := s.db.View(func(tx *bolt.Tx) error {
		ok, err := get(tx.Bucket(bucketMembers), []byte(id), &m)
		if err == nil && !ok {
			err = enroll.ErrNotFound
		}
		return err
	})
	return m, err
}

// UpdateMember implements enroll.Store.
func (s *Store) UpdateMember(ctx context.Context, id string, fn func(*enroll.Member) error) (enroll.Member, error) {
	var m enroll.Member
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMembers)
		ok, err := get(b, []byte(id), &m)
		if err != nil {
			return err
		}
		if !ok {
			return enroll.ErrNotFound
		}
		if err := fn(&m); err != nil {
			return err
		}
		return put(b, []byte(id), m)
	})
	return m, err
}

// ListMembers implements enroll.Store, ordered by enrollment time.
func (s *Store) ListMembers(ctx context.Context) ([]enroll.Member, error) {
	var out []enroll.Member
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
			var m enroll.Member
			if err := wire.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("corrupt member %q: %w", k, err)
			}
			out = append(out, m)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].EnrolledAt != out[j].EnrolledAt {
			return out[i].EnrolledAt < out[j].EnrolledAt
		}
		return out[i].ID < out[j].ID
	})
	return out, err
}

func commandKey(target string, seq uint64) []byte {
	k := append([]byte(target), '/')
	return binary.BigEndian.AppendUint64(k, seq)
}

// AddCommand implements hub.CommandStore.
func (s *Store) AddCommand(ctx context.Context, target string, build func(seq uint64) (hub.CommandRecord, error)) (hub.CommandRecord, error) {
	var rec hub.CommandRecord
	err := s.db.Update(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketSeq)
		var seq uint64
		if v := sb.Get([]byte(target)); len(v) == 8 {
			seq = binary.BigEndian.Uint64(v)
		}
		seq++
		var err error
		if rec, err = build(seq); err != nil {
			return err
		}
		if err := sb.Put([]byte(target), binary.BigEndian.AppendUint64(nil, seq)); err != nil {
			return err
		}
		return put(tx.Bucket(bucketCommands), commandKey(target, seq), rec)
	})
	return rec, err
}

// PendingCommands implements hub.CommandStore.
func (s *Store) PendingCommands(ctx context.Context, target string) ([]hub.CommandRecord, error) {
	var out []hub.CommandRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketCommands).Cursor()
		prefix := append([]byte(target), '/')
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var r hub.CommandRecord
			if err := wire.Unmarshal(v, &r); err != nil {
				return err
			}
			if r.State == hub.CommandQueued {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

// AckCommand implements hub.CommandStore.
func (s *Store) AckCommand(ctx context.Context, target string, seq uint64, state, reason string, at int64) (hub.CommandRecord, error) {
	var r hub.CommandRecord
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCommands)
		ok, err := get(b, commandKey(target, seq), &r)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no command %d for %s", seq, target)
		}
		if r.State != hub.CommandQueued {
			return nil
		}
		r.State, r.Reason, r.AckedAt = state, reason, at
		return put(b, commandKey(target, seq), r)
	})
	return r, err
}

// ListCommands implements hub.CommandStore.
func (s *Store) ListCommands(ctx context.Context, relay string) ([]hub.CommandRecord, error) {
	var out []hub.CommandRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCommands).ForEach(func(k, v []byte) error {
			var r hub.CommandRecord
			if err := wire.Unmarshal(v, &r); err != nil {
				return err
			}
			if relay == "" || r.Relay == relay {
				out = append(out, r)
			}
			return nil
		})
	})
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].CreatedAt != out[j].CreatedAt {
			return out[i].CreatedAt < out[j].CreatedAt
		}
		return out[i].Seq < out[j].Seq
	})
	return out, err
}
