// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !windows

package command

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/agent/config"
)

// listenGram listens on a unixgram socket in a fresh directory, as the
// journal or a syslog daemon would (no running journald needed).
func listenGram(t *testing.T) (string, *net.UnixConn) {
	t.Helper()
	dir, err := os.MkdirTemp("", "fwd") // short: socket paths are limited to ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, c
}

func readGram(t *testing.T, c *net.UnixConn) []byte {
	t.Helper()
	buf := make([]byte, 1<<20)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return buf[:n]
}

// parseJournal decodes the journal's native protocol (text fields and the
// binary form) into fields.
func parseJournal(t *testing.T, b []byte) map[string]string {
	t.Helper()
	fields := map[string]string{}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			t.Fatalf("journal datagram: unterminated field %q", b)
		}
		line := string(b[:i])
		b = b[i+1:]
		if k, v, ok := strings.Cut(line, "="); ok {
			fields[k] = v
			continue
		}
		if len(b) < 8 {
			t.Fatalf("journal datagram: binary field %q without length", line)
		}
		n := binary.LittleEndian.Uint64(b)
		b = b[8:]
		if uint64(len(b)) < n+1 || b[n] != '\n' {
			t.Fatalf("journal datagram: binary field %q: bad length %d", line, n)
		}
		fields[line] = string(b[:n])
		b = b[n+1:]
	}
	return fields
}

// forwardCase opens an audit log forwarding to kind through a socket the
// test listens on, appends a record with a hostile outlet name, and
// returns the datagram and the line the local log holds.
func forwardCase(t *testing.T, kind string) (gram []byte, local string) {
	t.Helper()
	path, srv := listenGram(t)
	switch kind {
	case ForwardJournal:
		old := journalSocket
		journalSocket = path
		t.Cleanup(func() { journalSocket = old })
	case ForwardSyslog:
		old := syslogSockets
		syslogSockets = []string{filepath.Join(filepath.Dir(path), "missing"), path}
		t.Cleanup(func() { syslogSockets = old })
	}
	fwd, err := NewForwarder(kind, "initech-agent")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, err := OpenAuditWith(dir, AuditOptions{Forward: fwd})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Append(denied("Ievil", "x\nPRIORITY=0\nMESSAGE=forged\x1b[2J", "policy denied")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, AuditFile))
	return readGram(t, srv), strings.TrimSuffix(string(b), "\n")
}

func TestForwardJournal(t *testing.T) {
	gram, local := forwardCase(t, ForwardJournal)
	f := parseJournal(t, gram)
	if f["MESSAGE"] != local || f["SYSLOG_IDENTIFIER"] != "initech-agent" || f["PRIORITY"] != "5" || f["SYSLOG_FACILITY"] != "10" || len(f) != 4 {
		t.Fatalf("journal fields = %q\nwant MESSAGE = %q", f, local)
	}
	var e Entry
	if err := json.Unmarshal([]byte(f["MESSAGE"]), &e); err != nil || e.N != 1 || e.Hash == "" || e.Outlet != "x\nPRIORITY=0\nMESSAGE=forged\x1b[2J" {
		t.Fatalf("forwarded record %+v, %v", e, err)
	}
}

func TestForwardSyslog(t *testing.T) {
	gram, local := forwardCase(t, ForwardSyslog)
	re := regexp.MustCompile(`^<85>[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d initech-agent\[` + strconv.Itoa(os.Getpid()) + `\]: (.*)\n$`)
	m := re.FindSubmatch(gram)
	if m == nil || string(m[1]) != local || bytes.Count(gram, []byte("\n")) != 1 {
		t.Fatalf("syslog datagram %q\nwant the record %q", gram, local)
	}
}

// TestForwardDown: when the daemon goes away, records still reach the
// local log, the failure is logged once, and forwarding pauses instead of
// costing every record a timeout.
func TestForwardDown(t *testing.T) {
	path, srv := listenGram(t)
	old := journalSocket
	journalSocket = path
	t.Cleanup(func() { journalSocket = old })
	fwd, err := NewForwarder(ForwardJournal, "initech-agent")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	dir := t.TempDir()
	a, err := OpenAuditWith(dir, AuditOptions{Forward: fwd, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srv.Close()
	os.Remove(path)
	for i := 0; i < 20; i++ {
		if err := a.Append(Entry{Kind: "portal", Peer: "I1", Outlet: "github", Decision: "allowed"}); err != nil {
			t.Fatal(err)
		}
	}
	a.Flush()
	if n, err := VerifyAudit(dir); err != nil || n != 20 {
		t.Fatalf("local log: %d %v", n, err)
	}
	if got := strings.Count(logs.String(), "audit forward failed"); got != 1 {
		t.Errorf("%d failure reports, want 1 (then paused):\n%s", got, logs.String())
	}
	if a.fwdSkipped != 20 {
		t.Errorf("%d records counted as not forwarded, want 20", a.fwdSkipped)
	}
}

func TestNewForwarder(t *testing.T) {
	for _, k := range []string{"", ForwardNone, config.ForwardNone} {
		if f, err := NewForwarder(k, "t"); f != nil || err != nil {
			t.Errorf("NewForwarder(%q) = %v, %v", k, f, err)
		}
	}
	if _, err := NewForwarder(ForwardEventLog, "t"); err == nil || !strings.Contains(err.Error(), "only on Windows") {
		t.Errorf("eventlog on Unix: %v", err)
	}
	if _, err := NewForwarder("splunk\n", "t"); err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("unknown kind: %v", err)
	}
	old := journalSocket
	journalSocket = filepath.Join(t.TempDir(), "none")
	defer func() { journalSocket = old }()
	if _, err := NewForwarder(ForwardJournal, "t"); err == nil || !strings.Contains(err.Error(), "audit forward journal") {
		t.Errorf("no journal: %v", err)
	}
	// The config accepts exactly the words this package knows.
	for _, k := range [][2]string{{config.ForwardJournal, ForwardJournal}, {config.ForwardSyslog, ForwardSyslog}, {config.ForwardEventLog, ForwardEventLog}} {
		if k[0] != k[1] {
			t.Errorf("config says %q, command says %q", k[0], k[1])
		}
	}
}

// TestForwardStalled: a daemon that stops reading (its queue full) costs
// one bounded write, then forwarding pauses; the audit log never blocks
// on it.
func TestForwardStalled(t *testing.T) {
	path, _ := listenGram(t) // listens, never reads
	old := journalSocket
	journalSocket = path
	t.Cleanup(func() { journalSocket = old })
	fwd, err := NewForwarder(ForwardJournal, "initech-agent")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	dir := t.TempDir()
	a, err := OpenAuditWith(dir, AuditOptions{Forward: fwd, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	const n = 100 // far more than a unix datagram queue holds
	for i := 0; i < n; i++ {
		if err := a.Append(Entry{Kind: "portal", Peer: "I1", Outlet: "github", Decision: "allowed", Reason: strings.Repeat("r", 400)}); err != nil {
			t.Fatal(err)
		}
	}
	a.Flush()
	if got, err := VerifyAudit(dir); err != nil || got != n {
		t.Fatalf("local log: %d %v", got, err)
	}
	if strings.Count(logs.String(), "audit forward failed") != 1 || a.fwdSkipped == 0 {
		t.Errorf("skipped %d; logs:\n%s", a.fwdSkipped, logs.String())
	}
}
