// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !windows

package command

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// Where the local log daemons listen. log/syslog looks in the same three
// places for syslog; it is not used because it offers no way to bound a
// write, and a stalled daemon would then stall the audit log.
var (
	journalSocket = "/run/systemd/journal/socket"
	syslogSockets = []string{"/dev/log", "/var/run/syslog", "/var/run/log"}
)

// Syslog priority of audit records: facility authpriv (10), severity
// notice (5). Debian's rsyslog writes authpriv to /var/log/auth.log.
const (
	syslogFacility = 10
	syslogSeverity = 5
)

func newForwarder(kind, tag string) (Forwarder, error) {
	switch kind {
	case ForwardJournal:
		return dialGram(journalSocket, func(rec []byte) []byte { return journalMessage(tag, rec) })
	case ForwardSyslog:
		var errs []error
		for _, p := range syslogSockets {
			f, err := dialGram(p, func(rec []byte) []byte { return syslogMessage(tag, time.Now(), rec) })
			if err == nil {
				return f, nil
			}
			errs = append(errs, err)
		}
		return nil, fmt.Errorf("no syslog socket answers: %w", errors.Join(errs...))
	}
	return nil, errors.New("the Windows Event Log exists only on Windows (use journal or syslog)")
}

// journalMessage is one entry in the journal's native protocol: KEY=VALUE
// lines, with MESSAGE in the binary form (name, newline, 64-bit
// little-endian length, value, newline) so no value can add a field.
func journalMessage(tag string, rec []byte) []byte {
	var b []byte
	b = append(b, "SYSLOG_IDENTIFIER="+tag+"\n"...)
	b = append(b, "SYSLOG_FACILITY="+strconv.Itoa(syslogFacility)+"\n"...)
	b = append(b, "PRIORITY="+strconv.Itoa(syslogSeverity)+"\n"...)
	b = append(b, "MESSAGE\n"...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(rec)))
	b = append(b, rec...)
	return append(b, '\n')
}

// syslogMessage is a local syslog line as log/syslog writes it to a
// local socket: <PRI>TIMESTAMP TAG[PID]: MESSAGE.
func syslogMessage(tag string, now time.Time, rec []byte) []byte {
	return fmt.Appendf(nil, "<%d>%s %s[%d]: %s\n", syslogFacility*8+syslogSeverity, now.Format(time.Stamp), tag, os.Getpid(), rec)
}

// gramForwarder writes one datagram per record to a unixgram socket, each
// write bounded by forwardTimeout, redialling once after an error (the
// daemon restarted).
type gramForwarder struct {
	path   string
	format func([]byte) []byte
	mu     sync.Mutex // guards conn
	conn   *net.UnixConn
}

func dialGram(path string, format func([]byte) []byte) (*gramForwarder, error) {
	f := &gramForwarder{path: path, format: format}
	if err := f.dial(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *gramForwarder) dial() error {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: f.path, Net: "unixgram"})
	if err != nil {
		return err
	}
	f.conn = c
	return nil
}

func (f *gramForwarder) Forward(rec []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	msg := f.format(rec)
	var err error
	for try := 0; try < 2; try++ {
		if f.conn == nil {
			if err = f.dial(); err != nil {
				continue
			}
		}
		f.conn.SetWriteDeadline(time.Now().Add(forwardTimeout))
		if _, err = f.conn.Write(msg); err == nil {
			return nil
		}
		f.conn.Close()
		f.conn = nil
	}
	return fmt.Errorf("%s: %w", f.path, err)
}

func (f *gramForwarder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		return nil
	}
	err := f.conn.Close()
	f.conn = nil
	return err
}

// InstallEventSource registers the Event Log source on Windows; elsewhere
// there is nothing to do.
func InstallEventSource(tag string) error { return nil }

// RemoveEventSource undoes InstallEventSource.
func RemoveEventSource(tag string) error { return nil }
