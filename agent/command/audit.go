// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package command

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/edgeportal/connect/internal/atomicfile"
)

// Audit log files in the state directory.
const (
	AuditFile     = "audit.log"  // JSON lines, append-only
	AuditHeadFile = "audit.head" // count and hash of the last line
)

// Entry is one audit record: a command received or a portal served.
type Entry struct {
	N          uint64 `json:"n"`
	Time       string `json:"time"`
	Kind       string `json:"kind"` // "command" | "portal"
	Seq        uint64 `json:"seq,omitempty"`
	Op         string `json:"op,omitempty"`
	Peer       string `json:"peer,omitempty"`
	Outlet     string `json:"outlet,omitempty"`
	Decision   string `json:"decision"` // applied | refused | allowed | denied
	Reason     string `json:"reason,omitempty"`
	BytesIn    int64  `json:"bytes_in,omitempty"`
	BytesOut   int64  `json:"bytes_out,omitempty"`
	DurationMS int64  `json:"duration_ms,omitempty"`
	Prev       string `json:"prev"`
	Hash       string `json:"hash"`
}

func (e Entry) digest() string {
	e.Hash = ""
	b, _ := json.Marshal(e)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

type head struct {
	N    uint64 `json:"n"`
	Hash string `json:"hash"`
}

// Audit is the append-only, hash-chained audit log of a node. Each line's
// hash covers the previous line's hash, so an edited or removed line
// breaks the chain; the head file catches a cut-off tail.
type Audit struct {
	dir string
	mu  sync.Mutex
	h   head
}

// OpenAudit opens (or starts) the audit log in dir.
func OpenAudit(dir string) (*Audit, error) {
	a := &Audit{dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, AuditHeadFile))
	if err == nil {
		if err := json.Unmarshal(b, &a.h); err != nil {
			return nil, fmt.Errorf("%s: %w", AuditHeadFile, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return a, nil
}

// Append writes e (N, Time, Prev and Hash are filled in) and syncs it.
func (a *Audit) Append(e Entry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	e.N = a.h.N + 1
	if e.Time == "" {
		e.Time = time.Now().UTC().Format(time.RFC3339Nano)
	}
	e.Prev = a.h.Hash
	e.Hash = e.digest()
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(a.dir, AuditFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	f.Close()
	nh := head{N: e.N, Hash: e.Hash}
	hb, _ := json.Marshal(nh)
	if err := atomicfile.WriteFile(filepath.Join(a.dir, AuditHeadFile), hb, 0o600); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	a.h = nh
	return nil
}

// ReadAudit returns the entries in order.
func ReadAudit(dir string) ([]Entry, error) {
	f, err := os.Open(filepath.Join(dir, AuditFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readEntries(f)
}

func readEntries(r io.Reader) ([]Entry, error) {
	var out []Entry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return out, fmt.Errorf("audit log line %d: not a record: %v", line, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// VerifyAudit checks the chain and the head. It returns the number of
// records, or an error naming the first broken line.
func VerifyAudit(dir string) (int, error) {
	entries, err := ReadAudit(dir)
	if err != nil {
		return 0, err
	}
	prev := ""
	for i, e := range entries {
		if e.N != uint64(i+1) {
			return i, fmt.Errorf("audit log line %d: record number %d, want %d (a line was removed or reordered)", i+1, e.N, i+1)
		}
		if e.Prev != prev {
			return i, fmt.Errorf("audit log line %d: does not follow line %d (a line was removed or edited)", i+1, i)
		}
		if e.digest() != e.Hash {
			return i, fmt.Errorf("audit log line %d: content does not match its hash (the line was edited)", i+1)
		}
		prev = e.Hash
	}
	var h head
	if b, err := os.ReadFile(filepath.Join(dir, AuditHeadFile)); err == nil {
		json.Unmarshal(b, &h)
	}
	// The head is written just after each line, so a live node may be one
	// record ahead of it; fewer records than the head means a cut.
	if uint64(len(entries)) < h.N || h.N > 0 && entries[h.N-1].Hash != h.Hash {
		return len(entries), fmt.Errorf("audit log ends at record %d but its head says %d: records were cut off", len(entries), h.N)
	}
	return len(entries), nil
}
