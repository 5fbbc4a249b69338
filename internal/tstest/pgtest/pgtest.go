// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package pgtest starts a real, throwaway PostgreSQL server for tests and
// benchmarks: Debian's postgresql-15 binaries (initdb, pg_ctl), a fresh
// cluster in a temporary directory, trust authentication for the role
// "hub", listening only on 127.0.0.1 on a random free port.
//
// PostgreSQL refuses to run as root, so when the test runs as root (CI and
// the development VMs do) the cluster belongs to the "postgres" account and
// initdb and pg_ctl run through runuser. The directory is made under the
// system temp dir, because a test's own t.TempDir is 0700 and the postgres
// account could not traverse it.
//
// Start is for tests (it skips with a reason when the server cannot run and
// stops the server in t.Cleanup); New is for programs and benchmarks that
// run outside `go test` (internal/cmd/pgserver). A Server can be stopped and
// started again on the same data directory and port, as the cluster tests do
// when they kill the database.
//
// Test-only harness: imported by _test.go files and internal/cmd programs,
// never by product code. Imports only the standard library.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BinDir is where Debian's postgresql-15 package puts the server binaries.
var BinDir = "/usr/lib/postgresql/15/bin"

// Role is the superuser role of every cluster made here (trust auth).
const Role = "hub"

// startTimeout bounds one pg_ctl start or stop.
const startTimeout = 60 * time.Second

// ErrUnavailable is wrapped by New's error when the server cannot run
// on this machine (binaries missing, not root and not postgres, …).
var ErrUnavailable = errors.New("postgresql unavailable")

// Server is one throwaway cluster.
type Server struct {
	Dir  string // the cluster's directory (data/ and the socket live here)
	Port int    // its TCP port on 127.0.0.1

	owner *user.User // the account that runs the server; nil = this process's

	mu      sync.Mutex // guards running
	running bool
}

// Start starts a server for the test and stops and removes it at the end.
// It skips the test, saying why, when PostgreSQL cannot run here.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := New(context.Background())
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("no real PostgreSQL for this test: %v", err)
	}
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return s
}

// Available reports nil when a server can be started here, or why not
// (wrapping ErrUnavailable).
func Available() error {
	for _, b := range []string{"initdb", "pg_ctl"} {
		if _, err := os.Stat(filepath.Join(BinDir, b)); err != nil {
			return fmt.Errorf("%w: %s/%s is missing (apt-get install postgresql-15)", ErrUnavailable, BinDir, b)
		}
	}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			return fmt.Errorf("%w: running as root needs the postgres account to run the server (%v)", ErrUnavailable, err)
		}
		if _, err := exec.LookPath("runuser"); err != nil {
			return fmt.Errorf("%w: running as root needs runuser (util-linux)", ErrUnavailable)
		}
	}
	return nil
}

// New initialises a cluster in a new temporary directory and starts it.
// The caller must Close it.
func New(ctx context.Context) (*Server, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir}
	if os.Geteuid() == 0 {
		if s.owner, err = user.Lookup("postgres"); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		uid, _ := strconv.Atoi(s.owner.Uid)
		gid, _ := strconv.Atoi(s.owner.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if _, err := s.pg(ctx, "initdb", "-D", s.dataDir(), "-A", "trust", "-U", Role, "-E", "UTF8", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if s.Port, err = freePort(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.Restart(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func (s *Server) dataDir() string { return filepath.Join(s.Dir, "data") }

// DSN is the connection string for database db ("" = postgres).
func (s *Server) DSN(db string) string {
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", Role, s.Port, db)
}

// Restart starts the server on its data directory and port (after Stop or
// Kill); it is what New does the first time.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200", s.Port, s.Dir)
	if out, err := s.pg(ctx, "pg_ctl", "-D", s.dataDir(), "-o", opts, "-l", filepath.Join(s.Dir, "server.log"), "-w", "-t", strconv.Itoa(int(startTimeout/time.Second)), "start"); err != nil {
		return fmt.Errorf("%w\n%s", err, s.logTail(out))
	}
	s.running = true
	return nil
}

// Stop shuts the server down (fast mode: sessions are cut) and keeps the
// data directory for Restart.
func (s *Server) Stop(ctx context.Context) error { return s.stop(ctx, "fast") }

// Kill stops the server as a crash would (immediate mode: no checkpoint;
// the next start runs crash recovery).
func (s *Server) Kill(ctx context.Context) error { return s.stop(ctx, "immediate") }

func (s *Server) stop(ctx context.Context, mode string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil
	}
	if _, err := s.pg(ctx, "pg_ctl", "-D", s.dataDir(), "-m", mode, "-w", "-t", strconv.Itoa(int(startTimeout/time.Second)), "stop"); err != nil {
		return err
	}
	s.running = false
	return nil
}

// Close stops the server and removes its directory.
func (s *Server) Close() error {
	err := s.Stop(context.Background())
	if rerr := os.RemoveAll(s.Dir); err == nil {
		err = rerr
	}
	return err
}

// Log returns the server's log so far (for a failing test's output).
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
	return string(b)
}

func (s *Server) logTail(out string) string {
	l := s.Log()
	if len(l) > 2000 {
		l = l[len(l)-2000:]
	}
	return strings.TrimSpace(out + "\n" + l)
}

// pg runs a server binary as the cluster's owner, bounded in time.
func (s *Server) pg(ctx context.Context, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout+10*time.Second)
	defer cancel()
	path := filepath.Join(BinDir, bin)
	var cmd *exec.Cmd
	if s.owner != nil {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", s.owner.Username, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = s.Dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", bin, args[len(args)-1], err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
