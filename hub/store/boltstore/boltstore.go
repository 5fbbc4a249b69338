// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package boltstore is the default store of the relay (hub.Store) and of
// the authority (enroll.Store): one bbolt file in each process's
// directory, crash-safe (copy-on-write B+tree, fsync on commit), with a
// single writer so ticket redemption and relay claims are atomic. The
// relay's file holds no ticket and no member; the authority's holds no
// relay state. One type implements both so each process opens only its
// own file.
//
// Imported by cmd/hub and tests.
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
	bucketTickets     = []byte("tickets")
	bucketMembers     = []byte("members")
	bucketCommands    = []byte("commands") // target "/" seq(8, big-endian) → CommandRecord
	bucketSeq         = []byte("seq")      // target → last seq (8, big-endian)
	bucketRelays      = []byte("relays")   // relay name → RelayBinding
	bucketRevocations = []byte("revocations")
	bucketNodes       = []byte("nodes")
	allBuckets        = [][]byte{bucketTickets, bucketMembers, bucketCommands, bucketSeq, bucketRelays, bucketRevocations, bucketNodes}
)

// Store is a bbolt-backed hub.Store and enroll.Store.
type Store struct {
	db *bolt.DB
}

var (
	_ hub.Store    = (*Store)(nil)
	_ enroll.Store = (*Store)(nil)
)

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
		for _, b := range allBuckets {
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

// UpdateTicket implements enroll.Store.
func (s *Store) UpdateTicket(ctx context.Context, hash [32]byte, fn func(*enroll.TicketRecord) error) (enroll.TicketRecord, error) {
	var t enroll.TicketRecord
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTickets)
		ok, err := get(b, hash[:], &t)
		if err != nil {
			return err
		}
		if !ok {
			return enroll.ErrTicketUnknown
		}
		if err := fn(&t); err != nil {
			return err
		}
		return put(b, hash[:], t)
	})
	return t, err
}

// ListTickets implements enroll.Store, oldest first.
func (s *Store) ListTickets(ctx context.Context) ([]enroll.TicketRecord, error) {
	out, err := list[enroll.TicketRecord](s, bucketTickets)
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreatedAt != out[j].CreatedAt {
			return out[i].CreatedAt < out[j].CreatedAt
		}
		return out[i].ID < out[j].ID
	})
	return out, err
}

// list decodes every record of a bucket.
func list[T any](s *Store, bucket []byte) ([]T, error) {
	var out []T
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			var r T
			if err := wire.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("corrupt record %q in %s: %w", k, bucket, err)
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
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
	out, err := list[enroll.Member](s, bucketMembers)
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

// NextSeq implements hub.CommandStore.
func (s *Store) NextSeq(ctx context.Context, target string) (uint64, error) {
	var seq uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketSeq).Get([]byte(target)); len(v) == 8 {
			seq = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return seq + 1, err
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

// ClaimRelay implements hub.RelayStore.
func (s *Store) ClaimRelay(ctx context.Context, name, owner string, replicas bool, at int64) (hub.RelayBinding, error) {
	var b hub.RelayBinding
	err := s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketRelays)
		ok, err := get(bk, []byte(name), &b)
		if err != nil || ok {
			return err
		}
		b = hub.RelayBinding{Name: name, Owner: owner, Since: at, Replicas: replicas}
		return put(bk, []byte(name), b)
	})
	return b, err
}

// GetRelay implements hub.RelayStore.
func (s *Store) GetRelay(ctx context.Context, name string) (hub.RelayBinding, error) {
	var b hub.RelayBinding
	err := s.db.View(func(tx *bolt.Tx) error {
		ok, err := get(tx.Bucket(bucketRelays), []byte(name), &b)
		if err == nil && !ok {
			err = hub.ErrNotFound
		}
		return err
	})
	return b, err
}

// ReleaseRelay implements hub.RelayStore.
func (s *Store) ReleaseRelay(ctx context.Context, name string) (hub.RelayBinding, error) {
	var b hub.RelayBinding
	err := s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketRelays)
		ok, err := get(bk, []byte(name), &b)
		if err != nil {
			return err
		}
		if !ok {
			return hub.ErrNotFound
		}
		return bk.Delete([]byte(name))
	})
	return b, err
}

// ReleaseRelaysOf implements hub.RelayStore.
func (s *Store) ReleaseRelaysOf(ctx context.Context, owner string) ([]hub.RelayBinding, error) {
	var out []hub.RelayBinding
	err := s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketRelays)
		var doomed [][]byte
		err := bk.ForEach(func(k, v []byte) error {
			var b hub.RelayBinding
			if err := wire.Unmarshal(v, &b); err != nil {
				return err
			}
			if b.Owner == owner {
				out = append(out, b)
				doomed = append(doomed, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range doomed {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// ListRelays implements hub.RelayStore, by name.
func (s *Store) ListRelays(ctx context.Context) ([]hub.RelayBinding, error) {
	return list[hub.RelayBinding](s, bucketRelays)
}

// AddRevocation implements hub.RelayStore.
func (s *Store) AddRevocation(ctx context.Context, r hub.Revoked) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return put(tx.Bucket(bucketRevocations), []byte(r.ID), r)
	})
}

// ListRevocations implements hub.RelayStore.
func (s *Store) ListRevocations(ctx context.Context) ([]hub.Revoked, error) {
	return list[hub.Revoked](s, bucketRevocations)
}

// UpdateNode implements hub.RelayStore.
func (s *Store) UpdateNode(ctx context.Context, id string, fn func(*hub.NodeRecord)) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNodes)
		n := hub.NodeRecord{ID: id}
		if _, err := get(b, []byte(id), &n); err != nil {
			return err
		}
		fn(&n)
		return put(b, []byte(id), n)
	})
}

// ListNodes implements hub.RelayStore.
func (s *Store) ListNodes(ctx context.Context) ([]hub.NodeRecord, error) {
	return list[hub.NodeRecord](s, bucketNodes)
}
