// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeClock is a settable clock for the coalescing windows.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openTestAudit(t *testing.T, dir string, clk *fakeClock) *Audit {
	t.Helper()
	a, err := OpenAuditWith(dir, AuditOptions{CoalesceWindow: time.Minute, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func denied(peer, outlet, reason string) Entry {
	return Entry{Kind: "portal", Peer: peer, Outlet: outlet, Decision: "denied", Reason: reason}
}

// TestAuditFlood replays issue 14's flood: a hostile member asks 10,000
// times for an outlet it may not use. Before, each attempt was a synced
// record; now the first is written at once and the rest become one record
// with a count when the window closes.
func TestAuditFlood(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	a := openTestAudit(t, dir, clk)
	for i := 0; i < 10_000; i++ {
		if err := a.Append(denied("Ievil", "github", "policy denied")); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Millisecond) // 10 s in all: within one window
	}
	if a.records != 1 || a.syncs > 2 {
		t.Fatalf("10,000 denials in one window: %d records, %d syncs; want 1 record", a.records, a.syncs)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if a.records != 2 || a.syncs > 4 {
		t.Fatalf("after close: %d records, %d syncs; want 2 records", a.records, a.syncs)
	}
	entries, err := ReadAudit(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Count != 0 || entries[1].Count != 9_999 || entries[1].Outlet != "github" ||
		entries[1].First == "" || entries[1].First >= entries[1].Time {
		t.Fatalf("records = %+v", entries)
	}
	if n, err := VerifyAudit(dir); err != nil || n != 2 {
		t.Fatalf("verify: %d %v", n, err)
	}
}

// TestAuditFloodVaried: varying the outlet name (16 KB names with
// newlines and escape codes) or the peer does not buy a record per
// attempt either, and what is stored is clipped.
func TestAuditFloodVaried(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	a := openTestAudit(t, dir, clk)
	long := strings.Repeat("A", 16<<10)
	for i := 0; i < 10_000; i++ {
		name := strconv.Itoa(i) + "\n\x1b[2J" + long
		if err := a.Append(denied("Ievil", name, "no outlet named "+name)); err != nil {
			t.Fatal(err)
		}
	}
	if a.records > maxKeysPerPeer+1 {
		t.Fatalf("10,000 denials with varying outlets: %d records", a.records)
	}
	for i := 0; i < 10_000; i++ {
		if err := a.Append(denied(fmt.Sprintf("I%05d", i), "github", "policy denied")); err != nil {
			t.Fatal(err)
		}
	}
	if a.records > maxOpenKeys+2 {
		t.Fatalf("10,000 peers: %d records", a.records)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if a.records > 2*(maxOpenKeys+2) || a.syncs > 2*a.records {
		t.Fatalf("after close: %d records, %d syncs", a.records, a.syncs)
	}
	entries, err := ReadAudit(dir)
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, e := range entries {
		if len(e.Outlet) > maxField+32 || len(e.Reason) > maxField+32 {
			t.Fatalf("record %d keeps %d bytes of outlet name", e.N, len(e.Outlet))
		}
		total += max(e.Count, 1)
	}
	if total != 20_000 {
		t.Errorf("records account for %d attempts, want 20000", total)
	}
	if _, err := VerifyAudit(dir); err != nil {
		t.Fatal(err)
	}
	// Rendered as text, every record is one line with no raw control
	// character.
	var b bytes.Buffer
	if err := WriteTable(&b, entries); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != len(entries)+1 {
		t.Fatalf("table has %d lines for %d records", len(lines), len(entries))
	}
	if strings.ContainsAny(b.String(), "\x1b\r\x00") || !strings.Contains(lines[1], `0\n\x1b[2JAAAA`) || len(lines[1]) > 1000 {
		t.Errorf("table line: %.300q", lines[1])
	}
}

// TestAuditWindows: a flood that lasts writes two records per window,
// never one per attempt; allowed portals and commands are never folded.
func TestAuditWindows(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	a := openTestAudit(t, dir, clk)
	for i := 0; i < 10_000; i++ {
		a.Append(denied("Ievil", "github", "policy denied"))
		clk.Advance(60 * time.Millisecond) // 600 s: ten windows
	}
	if a.records < 10 || a.records > 21 {
		t.Fatalf("a 10-minute flood: %d records, want about 2 per minute", a.records)
	}
	a.Flush()
	before := a.records
	for i := 0; i < 5; i++ {
		a.Append(Entry{Kind: "portal", Peer: "I1", Outlet: "github", Decision: "allowed"})
		a.Append(Entry{Kind: "command", Seq: 7, Op: "outlet add x", Decision: "refused", Reason: "replayed"})
	}
	if a.records != before+10 {
		t.Fatalf("allowed portals and refused commands were folded: %d records, want %d", a.records, before+10)
	}
	a.Close()
	if _, err := VerifyAudit(dir); err != nil {
		t.Fatal(err)
	}
	if err := a.Append(denied("I1", "x", "y")); err == nil {
		t.Error("append after close")
	}
}

// TestAuditRun: Run writes a closed window's count without waiting for
// another record, and the rest when it stops.
func TestAuditRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		a, err := OpenAuditWith(dir, AuditOptions{CoalesceWindow: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- a.Run(ctx) }()
		for i := 0; i < 100; i++ {
			a.Append(denied("Ievil", "github", "policy denied"))
		}
		a.Append(denied("Ievil", "jira", "policy denied"))
		time.Sleep(30 * time.Second)
		a.Append(denied("Ievil", "jira", "policy denied"))
		time.Sleep(45 * time.Second) // both windows (opened at 0) closed at 60 s
		synctest.Wait()
		entries, _ := ReadAudit(dir)
		if len(entries) != 4 || entries[2].Count*entries[3].Count != 99 || entries[2].Count+entries[3].Count != 100 {
			t.Fatalf("after the window: %+v", entries)
		}
		a.Append(denied("Ievil", "github", "policy denied")) // a new window
		a.Append(denied("Ievil", "github", "policy denied"))
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		entries, _ = ReadAudit(dir)
		if len(entries) != 6 || entries[5].Count != 1 {
			t.Fatalf("after Run stopped: %+v", entries)
		}
		a.Close()
	})
}

// TestAuditHead: a missing audit.head next to a non-empty audit.log is
// tampering (an attacker cuts the log's tail and deletes the head so the
// cut does not show), not a fresh start; so is a head with no log, or a
// log that does not end where its head says. A crash between writing a
// line and its head is recovered.
func TestAuditHead(t *testing.T) {
	fill := func(t *testing.T, n int) string {
		dir := t.TempDir()
		a, err := OpenAudit(dir)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if err := a.Append(Entry{Kind: "portal", Peer: "I1", Outlet: "github", Decision: "allowed"}); err != nil {
				t.Fatal(err)
			}
		}
		a.Close()
		return dir
	}
	logPath := func(dir string) string { return filepath.Join(dir, AuditFile) }
	headPath := func(dir string) string { return filepath.Join(dir, AuditHeadFile) }
	cutLast := func(t *testing.T, dir string) {
		b, _ := os.ReadFile(logPath(dir))
		lines := strings.SplitAfter(string(b), "\n")
		os.WriteFile(logPath(dir), []byte(strings.Join(lines[:len(lines)-2], "")), 0o600)
	}
	tests := []struct {
		name    string
		tamper  func(t *testing.T, dir string)
		openErr string // "" = opens
		verErr  string // "" = verifies
	}{
		{"intact", func(t *testing.T, dir string) {}, "", ""},
		{"head removed", func(t *testing.T, dir string) { os.Remove(headPath(dir)) }, "audit.head is missing but audit.log holds records", "audit.head is missing"},
		{"cut and head removed", func(t *testing.T, dir string) { cutLast(t, dir); os.Remove(headPath(dir)) }, "audit.head is missing", "audit.head is missing"},
		{"log removed", func(t *testing.T, dir string) { os.Remove(logPath(dir)) }, "missing or empty", "cut off"},
		{"log emptied", func(t *testing.T, dir string) { os.WriteFile(logPath(dir), nil, 0o600) }, "missing or empty", "cut off"},
		{"tail cut", cutLast, "ends at record 4 but audit.head says 5", "cut off"},
		{"head garbage", func(t *testing.T, dir string) { os.WriteFile(headPath(dir), []byte("{"), 0o600) }, "not a head record", "not a head record"},
		{"torn last line", func(t *testing.T, dir string) {
			f, _ := os.OpenFile(logPath(dir), os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString(`{"n":6,"ti`)
			f.Close()
		}, "incomplete", "not a record"},
		{"crash before head", func(t *testing.T, dir string) {
			// The head as it was before the last line was written.
			entries, _ := ReadAudit(dir)
			os.WriteFile(headPath(dir), fmt.Appendf(nil, `{"n":4,"hash":%q}`, entries[3].Hash), 0o600)
		}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fill(t, 5)
			tt.tamper(t, dir)
			_, verr := VerifyAudit(dir)
			a, err := OpenAudit(dir)
			if tt.openErr == "" {
				if err != nil {
					t.Fatalf("OpenAudit: %v", err)
				}
				if err := a.Append(Entry{Kind: "portal", Decision: "allowed"}); err != nil {
					t.Fatal(err)
				}
				a.Flush()
				if n, err := VerifyAudit(dir); err != nil || n != 6 {
					t.Fatalf("the chain does not continue: %d %v", n, err)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tt.openErr) || !errors.Is(err, ErrAuditTampered) {
					t.Fatalf("OpenAudit = %v, want ErrAuditTampered with %q", err, tt.openErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("multi-line error %q", err)
				}
			}
			if tt.verErr == "" {
				if verr != nil {
					t.Errorf("VerifyAudit before: %v", verr)
				}
			} else if verr == nil || !strings.Contains(verr.Error(), tt.verErr) {
				t.Errorf("VerifyAudit = %v, want %q", verr, tt.verErr)
			}
		})
	}
	// A new state directory, or an empty log without a head, starts fresh.
	for _, prep := range []func(dir string){func(string) {}, func(dir string) { os.WriteFile(logPath(dir), nil, 0o600) }} {
		dir := t.TempDir()
		prep(dir)
		a, err := OpenAudit(dir)
		if err != nil {
			t.Fatal(err)
		}
		a.Append(Entry{Kind: "portal", Decision: "allowed"})
		a.Flush()
		if n, err := VerifyAudit(dir); err != nil || n != 1 {
			t.Fatalf("fresh log: %d %v", n, err)
		}
	}
}

// TestOldRecordsVerify: records written before Count and First existed
// hash the same (both fields are omitted when zero).
func TestOldRecordsVerify(t *testing.T) {
	e := Entry{N: 1, Time: "2026-01-01T00:00:00Z", Kind: "portal", Peer: "I1", Outlet: "github", Decision: "allowed"}
	old := `{"n":1,"time":"2026-01-01T00:00:00Z","kind":"portal","peer":"I1","outlet":"github","decision":"allowed","prev":"","hash":""}`
	b, _ := json.Marshal(e)
	if string(b) != old {
		t.Fatalf("encoding changed:\n%s\n%s", b, old)
	}
}

// TestAuditGroupCommit: allowed portals are written in groups (one write
// and two syncs per group, by Run), any other record writes the group
// before it at once, and the chain on disk is whole after each.
func TestAuditGroupCommit(t *testing.T) {
	dir := t.TempDir()
	a, err := OpenAudit(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		a.Append(Entry{Kind: "portal", Peer: "I1", Outlet: "github", Decision: "allowed"})
	}
	if a.syncs != 0 {
		t.Fatalf("%d syncs for 100 allowed portals before the group is due", a.syncs)
	}
	a.Append(Entry{Kind: "command", Seq: 1, Op: "outlet add", Decision: "applied"})
	if n, err := VerifyAudit(dir); err != nil || n != 101 || a.syncs != 2 {
		t.Fatalf("a command writes the group before it: %d records on disk, %d syncs, %v", n, a.syncs, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for i := 0; i < 3*maxBatch; i++ {
		a.Append(Entry{Kind: "portal", Peer: "I1", Outlet: "github", Decision: "allowed"})
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := VerifyAudit(dir)
		if err != nil {
			t.Fatal(err)
		}
		if n == 101+3*maxBatch {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run did not write the waiting records: %d on disk", n)
		}
		time.Sleep(BatchEvery / 4)
	}
	cancel()
	<-done
	if a.syncs > 2+2*4 {
		t.Errorf("%d syncs for %d records in groups of at most %d", a.syncs, 3*maxBatch, maxBatch)
	}
	a.Close()
}
