// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package command

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/internal/atomicfile"
)

// Audit log files in the state directory (named by agent/statedir).
const (
	AuditFile     = statedir.AuditLog  // JSON lines, append-only
	AuditHeadFile = statedir.AuditHead // count and hash of the last line
)

// Entry is one audit record: a command received or a portal served. A
// record with Count > 1 stands for that many identical denials (same
// kind, peer, outlet and reason) from First to Time.
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
	Count      uint64 `json:"count,omitempty"` // repeated denials this record stands for; 0 means 1
	First      string `json:"first,omitempty"` // time of the first of them, when Count > 1
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

// ErrAuditTampered means the audit log and its head disagree in a way no
// crash explains: the head was removed next to a non-empty log, the log
// was removed or cut below the head, or its last record is not the one
// the head names. The node does not start a new chain over it; the
// customer keeps the files as evidence, moves them aside, and restarts.
var ErrAuditTampered = errors.New("audit log tampered with")

// Coalescing of repeated denials.
const (
	// DefaultCoalesceWindow is how long identical denials (same kind,
	// peer, outlet, reason) fold into one record after the first.
	DefaultCoalesceWindow = time.Minute
	// maxKeysPerPeer bounds the distinct denials one peer has open in a
	// window; further ones fold into one "other outlets or reasons"
	// record for that peer, so varying the outlet name does not buy a
	// record (and an fsync) per attempt.
	maxKeysPerPeer = 16
	// maxOpenKeys bounds the open windows of all peers together; past it
	// every new denial folds into one record for all peers.
	maxOpenKeys = 256
	// otherReason is the reason of a record that folds denials with
	// varying outlets or reasons.
	otherReason = "more denials with other outlets or reasons"
)

// AuditOptions adjust OpenAuditWith. The zero value is what OpenAudit uses.
type AuditOptions struct {
	// CoalesceWindow: see DefaultCoalesceWindow (used when zero).
	CoalesceWindow time.Duration
	// Forward, when non-nil, also receives every record as one JSON line
	// (config audit.forward; see NewForwarder). Audit closes it.
	Forward Forwarder
	// Logger reports forwarding failures; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. For tests only.
	Now func() time.Time
}

// coalesceKey identifies identical denials.
type coalesceKey struct{ kind, peer, outlet, reason string }

// window is an open coalescing window: its first denial is written; the
// repeats are counted here until the window closes.
type window struct {
	opened      time.Time
	entry       Entry // the first denial, as a template for the summary
	count       uint64
	first, last time.Time
}

// Audit is the append-only, hash-chained audit log of a node. Each line's
// hash covers the previous line's hash, so an edited or removed line
// breaks the chain; the head file catches a cut-off tail. Repeated
// denials are coalesced (see DefaultCoalesceWindow); Run writes the
// summaries of closed windows on time, Close writes what is left.
//
// Every record is synced to disk with its head before Append returns,
// except the records of allowed portals, the bulk of a busy node's log:
// those are chained at once and written in groups, by Run every
// BatchEvery (or sooner, by the next record of another kind, or when
// maxBatch are waiting). A crash loses at most that much of the portal
// accounting, never a command or a denial, and never breaks the chain:
// a group is written whole, then its head.
type Audit struct {
	dir    string
	window time.Duration
	now    func() time.Time
	log    *slog.Logger

	mu sync.Mutex // guards the fields below: the chain head, the open windows and the counters
	h  head
	// open holds the coalescing windows; perPeer counts them per peer;
	// nextExpiry is the earliest time one of them closes.
	open       map[coalesceKey]*window
	perPeer    map[string]int
	nextExpiry time.Time
	records    int // records written since open (tests)
	syncs      int // fsyncs issued since open (tests)
	closed     bool
	// pending are chained records (allowed portals) not written yet; h
	// is the head after them.
	pending [][]byte

	fwdMu      sync.Mutex // guards fwd and the forwarding backoff below; taken without mu
	fwd        Forwarder
	fwdPause   time.Time // after a failure, records are not forwarded until then
	fwdSkipped int       // records not forwarded during the pause
}

// OpenAudit opens (or starts) the audit log in dir.
func OpenAudit(dir string) (*Audit, error) { return OpenAuditWith(dir, AuditOptions{}) }

// OpenAuditWith opens (or starts) the audit log in dir. It refuses, with
// ErrAuditTampered, a log whose head is missing or does not match its
// last record, instead of starting a new chain over it; a last record
// just past the head (a crash between the two writes) is adopted.
func OpenAuditWith(dir string, o AuditOptions) (*Audit, error) {
	a := &Audit{dir: dir, window: o.CoalesceWindow, now: o.Now, log: o.Logger, fwd: o.Forward,
		open: map[coalesceKey]*window{}, perPeer: map[string]int{}}
	if a.window <= 0 {
		a.window = DefaultCoalesceWindow
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	h, haveHead, err := readHead(dir)
	if err != nil {
		return nil, err
	}
	last, size, err := lastRecord(filepath.Join(dir, AuditFile))
	if err != nil {
		return nil, err
	}
	switch {
	case !haveHead && size > 0:
		return nil, fmt.Errorf("%w: %s is missing but %s holds records (a removed head hides a cut-off log); keep both files as evidence and move %s aside to start a new log",
			ErrAuditTampered, AuditHeadFile, AuditFile, AuditFile)
	case haveHead && h.N > 0 && last == nil:
		return nil, fmt.Errorf("%w: %s says %d records but %s is missing or empty", ErrAuditTampered, AuditHeadFile, h.N, AuditFile)
	case last == nil:
	case last.N == h.N && last.Hash == h.Hash:
	case last.N == h.N+1 && last.Prev == h.Hash && last.digest() == last.Hash:
		// The node stopped between writing the line and its head.
		h = head{N: last.N, Hash: last.Hash}
		hb, _ := json.Marshal(h)
		if err := atomicfile.WriteFile(filepath.Join(dir, AuditHeadFile), hb, 0o600); err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
	default:
		return nil, fmt.Errorf("%w: %s ends at record %d but %s says %d", ErrAuditTampered, AuditFile, last.N, AuditHeadFile, h.N)
	}
	a.h = h
	return a, nil
}

// readHead reads audit.head; ok is false when it does not exist.
func readHead(dir string) (h head, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, AuditHeadFile))
	if errors.Is(err, os.ErrNotExist) {
		return h, false, nil
	}
	if err != nil {
		return h, false, fmt.Errorf("audit log: %w", err)
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, false, fmt.Errorf("%w: %s is not a head record: %v", ErrAuditTampered, AuditHeadFile, err)
	}
	return h, true, nil
}

// maxRecordLen bounds one line of the log when it is read back (as
// ReadAudit does). Records written now are a few KiB at most (every peer-
// or vendor-chosen field is clipped to maxField bytes, which JSON may
// escape up to 6x); older versions stored peer-chosen names unclipped.
const maxRecordLen = 1 << 20

// lastRecord returns the last record of the log (nil when it is missing
// or empty) and the file's size, reading only its tail.
func lastRecord(path string) (*Entry, int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("audit log: %w", err)
	}
	size := fi.Size()
	if size == 0 {
		return nil, 0, nil
	}
	off := max(size-maxRecordLen, 0)
	buf := make([]byte, size-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, size, fmt.Errorf("audit log: %w", err)
	}
	if buf[len(buf)-1] != '\n' {
		return nil, size, fmt.Errorf("%w: the last line of %s is incomplete (a crash while writing it, or an edit)", ErrAuditTampered, AuditFile)
	}
	buf = bytes.TrimRight(buf, "\n")
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		buf = buf[i+1:]
	} else if off > 0 {
		return nil, size, fmt.Errorf("%w: the last line of %s is longer than %d bytes", ErrAuditTampered, AuditFile, maxRecordLen)
	}
	var e Entry
	if err := json.Unmarshal(buf, &e); err != nil {
		return nil, size, fmt.Errorf("%w: the last line of %s is not a record: %v", ErrAuditTampered, AuditFile, err)
	}
	return &e, size, nil
}

// Append records e (N, Time, Prev and Hash are filled in): it is written
// and synced, and forwarded when forwarding is on. A denial (Decision
// "denied") that repeats one seen within the coalescing window is only
// counted; the count is written as one record when the window closes.
func (a *Audit) Append(e Entry) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return errors.New("audit log: closed")
	}
	now := a.now()
	if e.Time == "" {
		e.Time = now.UTC().Format(time.RFC3339Nano)
	}
	e.Peer, e.Outlet, e.Op, e.Reason = clip(e.Peer), clip(e.Outlet), clip(e.Op), clip(e.Reason)
	lines, err := a.flushLocked(now, false)
	switch {
	case err != nil:
	case e.Kind == "portal" && e.Decision == "allowed":
		var line []byte
		if line, err = a.chainLocked(e); err == nil {
			lines = append(lines, line)
			if len(a.pending) >= maxBatch {
				err = a.syncLocked()
			}
		}
	case !a.coalesceLocked(e, now):
		var line []byte
		line, err = a.writeLocked(e)
		if line != nil {
			lines = append(lines, line)
		}
	}
	a.mu.Unlock()
	a.forward(lines)
	return err
}

// coalesceLocked counts e into an open window and reports whether it did
// (then nothing is written now). Otherwise, for a denial, it opens a
// window whose first record the caller writes.
func (a *Audit) coalesceLocked(e Entry, now time.Time) bool {
	if e.Decision != "denied" {
		return false
	}
	k := coalesceKey{e.Kind, e.Peer, e.Outlet, e.Reason}
	if w := a.open[k]; w != nil {
		w.add(now)
		return true
	}
	switch {
	case len(a.open) >= maxOpenKeys:
		k = coalesceKey{kind: e.Kind, reason: otherReason}
	case a.perPeer[e.Peer] >= maxKeysPerPeer:
		k = coalesceKey{kind: e.Kind, peer: e.Peer, reason: otherReason}
	}
	if w := a.open[k]; w != nil {
		w.add(now)
		return true
	}
	tmpl := e
	tmpl.Peer, tmpl.Outlet, tmpl.Reason = k.peer, k.outlet, k.reason
	a.open[k] = &window{opened: now, entry: tmpl}
	a.perPeer[k.peer]++
	if a.nextExpiry.IsZero() || now.Add(a.window).Before(a.nextExpiry) {
		a.nextExpiry = now.Add(a.window)
	}
	return false
}

func (w *window) add(now time.Time) {
	if w.count == 0 {
		w.first = now
	}
	w.count++
	w.last = now
}

// flushLocked closes the windows that are due (all of them with all) and
// writes a summary record for each that counted repeats. It returns the
// lines written, for forwarding.
func (a *Audit) flushLocked(now time.Time, all bool) ([][]byte, error) {
	if !all && (a.nextExpiry.IsZero() || now.Before(a.nextExpiry)) {
		return nil, nil
	}
	var lines [][]byte
	next := time.Time{}
	for k, w := range a.open {
		due := w.opened.Add(a.window)
		if !all && now.Before(due) {
			if next.IsZero() || due.Before(next) {
				next = due
			}
			continue
		}
		delete(a.open, k)
		if a.perPeer[k.peer]--; a.perPeer[k.peer] <= 0 {
			delete(a.perPeer, k.peer)
		}
		if w.count == 0 {
			continue
		}
		s := w.entry
		s.Count, s.First, s.Time = w.count, w.first.UTC().Format(time.RFC3339Nano), w.last.UTC().Format(time.RFC3339Nano)
		line, err := a.writeLocked(s)
		if err != nil {
			return lines, err
		}
		lines = append(lines, line)
	}
	a.nextExpiry = next
	return lines, nil
}

// Group commit of allowed portals' records.
const (
	// BatchEvery is how long an allowed portal's record may wait to be
	// written.
	BatchEvery = 200 * time.Millisecond
	// maxBatch bounds the records waiting.
	maxBatch = 256
)

// writeLocked appends one record to the chain and syncs it (with the
// records waiting before it).
func (a *Audit) writeLocked(e Entry) ([]byte, error) {
	line, err := a.chainLocked(e)
	if err != nil {
		return nil, err
	}
	return line, a.syncLocked()
}

// chainLocked chains e after the head and queues its line.
func (a *Audit) chainLocked(e Entry) ([]byte, error) {
	if a.closed {
		return nil, errors.New("audit log: closed")
	}
	e.N = a.h.N + 1
	e.Prev = a.h.Hash
	e.Hash = e.digest()
	line, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	a.pending = append(a.pending, line)
	a.h = head{N: e.N, Hash: e.Hash}
	a.records++
	return line, nil
}

// syncLocked writes the waiting records in one write, syncs them, then
// writes and syncs the head.
func (a *Audit) syncLocked() error {
	if len(a.pending) == 0 {
		return nil
	}
	var buf []byte
	for _, l := range a.pending {
		buf = append(append(buf, l...), '\n')
	}
	f, err := os.OpenFile(filepath.Join(a.dir, AuditFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if _, err := f.Write(buf); err != nil {
		f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	a.syncs++
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	f.Close()
	a.pending = a.pending[:0]
	hb, _ := json.Marshal(a.h)
	a.syncs++
	if err := atomicfile.WriteFile(filepath.Join(a.dir, AuditHeadFile), hb, 0o600); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

// forwardTimeout bounds one forwarded record; forwardPause is how long
// forwarding stays off after a failure, so a stalled journal or syslog
// daemon costs each record at most one timeout per pause.
const (
	forwardTimeout = time.Second
	forwardPause   = 10 * time.Second
)

// forward sends written lines to the forwarder, if any. A failure is
// logged and pauses forwarding; the local log stays complete, and the
// forwarded copy shows the gap in its record numbers.
func (a *Audit) forward(lines [][]byte) {
	if len(lines) == 0 {
		return
	}
	a.fwdMu.Lock()
	defer a.fwdMu.Unlock()
	if a.fwd == nil {
		return
	}
	for _, line := range lines {
		now := time.Now()
		if now.Before(a.fwdPause) {
			a.fwdSkipped++
			continue
		}
		if err := a.fwd.Forward(line); err != nil {
			a.fwdPause = now.Add(forwardPause)
			a.fwdSkipped++
			a.log.Warn("audit forward failed; records stay in the local log", "err", err, "pause", forwardPause)
			continue
		}
		if a.fwdSkipped > 0 {
			a.log.Warn("audit forward resumed", "not_forwarded", a.fwdSkipped)
			a.fwdSkipped = 0
		}
	}
}

// Run writes the summaries of coalescing windows as they close, until ctx
// is done; then it writes the rest. The node runs it for as long as it
// keeps the log open.
func (a *Audit) Run(ctx context.Context) error {
	t := time.NewTicker(min(max(a.window/4, 10*time.Millisecond), BatchEvery))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return a.Flush()
		case <-t.C:
			a.mu.Lock()
			lines, err := a.flushLocked(a.now(), false)
			if serr := a.syncLocked(); err == nil {
				err = serr
			}
			a.mu.Unlock()
			a.forward(lines)
			if err != nil {
				a.log.Error("audit log", "err", err)
			}
		}
	}
}

// Flush writes a summary record for every open coalescing window, and
// every record waiting, now.
func (a *Audit) Flush() error {
	a.mu.Lock()
	lines, err := a.flushLocked(a.now(), true)
	if serr := a.syncLocked(); err == nil {
		err = serr
	}
	a.mu.Unlock()
	a.forward(lines)
	return err
}

// Close flushes the open windows and closes the forwarder. Appends after
// Close fail.
func (a *Audit) Close() error {
	err := a.Flush()
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.fwdMu.Lock()
	defer a.fwdMu.Unlock()
	if a.fwd != nil {
		err = errors.Join(err, a.fwd.Close())
		a.fwd = nil
	}
	return err
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
	sc.Buffer(make([]byte, 64<<10), maxRecordLen)
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
// records, or an error naming the first broken line. A missing head next
// to a non-empty log is tampering (ErrAuditTampered), not a fresh start.
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
	h, ok, err := readHead(dir)
	if err != nil {
		return len(entries), err
	}
	if !ok && len(entries) > 0 {
		return len(entries), fmt.Errorf("%w: %s is missing but %s holds %d records: the head was removed, so a cut-off tail would not show", ErrAuditTampered, AuditHeadFile, AuditFile, len(entries))
	}
	// The head is written just after each line, so a live node may be one
	// record ahead of it; fewer records than the head means a cut.
	if uint64(len(entries)) < h.N || h.N > 0 && entries[h.N-1].Hash != h.Hash {
		return len(entries), fmt.Errorf("%w: audit log ends at record %d but its head says %d: records were cut off", ErrAuditTampered, len(entries), h.N)
	}
	// More than one record past the head (or a head that names no record
	// but has a hash) is a damaged head: the cut-off check above would
	// not see a cut.
	if uint64(len(entries)) > h.N+1 || h.N == 0 && h.Hash != "" {
		return len(entries), fmt.Errorf("%w: audit log ends at record %d, past its head's %d", ErrAuditTampered, len(entries), h.N)
	}
	return len(entries), nil
}
