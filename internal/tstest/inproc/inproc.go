// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package inproc runs a hub and nodes inside one test process (no
// binaries), so the race detector and the goroutine-leak check cover the
// hub, the agent, portals and commands together. The end-to-end harness
// (internal/tstest/e2e) runs the same scenarios with the real binaries.
//
// Only _test.go files import it.
package inproc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeportal/connect/agent"
	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/hub/authority"
	"github.com/edgeportal/connect/hub/store/boltstore"
	"github.com/edgeportal/connect/hub/vendor"
	"github.com/edgeportal/connect/wire/key"
)

// World is one test's hub and nodes, all stopped at test end.
type World struct {
	t   testing.TB
	Dir string
	Hub *Hub
}

// NewWorld returns an empty world rooted in a test temp dir.
func NewWorld(t testing.TB) *World {
	t.Helper()
	return &World{t: t, Dir: t.TempDir()}
}

// Hub is an in-process relay and authority (two servers, two
// directories, as in production), with the vendor's keys beside them.
type Hub struct {
	Srv       *hub.Server
	Dir       *hub.Dir
	Addr      string
	Store     *boltstore.Store
	Authority *authority.Server
	AuthDir   *authority.Dir
	AuthStore *boltstore.Store
	// CommandKey and ReleaseKey are the vendor's (they live on neither
	// server).
	CommandKey, ReleaseKey key.SigningPrivate
	Logs                   *LogBuffer

	w      *World
	ln     net.Listener
	cancel context.CancelFunc
	done   chan struct{}
}

// StartHub initializes a relay, an authority and vendor keys, and serves
// the relay on 127.0.0.1:0 with the authority connected to it.
func (w *World) StartHub() *Hub {
	w.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		w.t.Fatal(err)
	}
	vdir := filepath.Join(w.Dir, "vendor")
	if _, _, err := vendor.Create(vdir); err != nil {
		w.t.Fatal(err)
	}
	d, err := hub.Init(filepath.Join(w.Dir, "hub"), ln.Addr().String(), nil)
	if err != nil {
		w.t.Fatal(err)
	}
	ad, err := authority.Init(filepath.Join(w.Dir, "auth"), authority.InitOptions{HubDir: d.Path, VendorDir: vdir})
	if err != nil {
		w.t.Fatal(err)
	}
	if d, err = hub.LoadDir(d.Path); err != nil {
		w.t.Fatal(err)
	}
	h := &Hub{Dir: d, AuthDir: ad, Addr: ln.Addr().String(), Logs: &LogBuffer{}, w: w, ln: ln}
	if h.CommandKey, err = vendor.LoadPrivate(filepath.Join(vdir, vendor.CommandKeyFile)); err != nil {
		w.t.Fatal(err)
	}
	if h.ReleaseKey, err = vendor.LoadPrivate(filepath.Join(vdir, vendor.ReleaseKeyFile)); err != nil {
		w.t.Fatal(err)
	}
	if h.Store, err = boltstore.Open(filepath.Join(d.Path, hub.DBFile)); err != nil {
		w.t.Fatal(err)
	}
	if h.AuthStore, err = boltstore.Open(filepath.Join(ad.Path, authority.DBFile)); err != nil {
		w.t.Fatal(err)
	}
	h.start()
	w.t.Cleanup(func() {
		h.Stop()
		h.Store.Close()
		h.AuthStore.Close()
		if w.t.Failed() {
			w.t.Logf("---- hub log ----\n%s", h.Logs)
		}
	})
	w.Hub = h
	return h
}

func (h *Hub) start() {
	t := h.w.t
	t.Helper()
	srv, err := hub.New(hub.Options{Dir: h.Dir, Store: h.Store, Logger: h.Logs.Logger("relay")})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := authority.New(authority.Options{Dir: h.AuthDir, Store: h.AuthStore, Logger: h.Logs.Logger("authority")})
	if err != nil {
		t.Fatal(err)
	}
	h.Srv, h.Authority = srv, auth
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	ln := h.ln
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); srv.Serve(ctx, ln) }()
	go func() { defer wg.Done(); auth.Run(ctx) }()
	go func() { wg.Wait(); close(h.done) }()
	Await(t, 10*time.Second, "the authority connected to the relay", func() bool {
		return h.Logs.Contains("msg=\"authority connected\"")
	})
}

// Stop stops the relay and the authority and waits for them.
func (h *Hub) Stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	<-h.done
	h.cancel = nil
}

// Ticket creates a ticket with the authority and writes it to a file in
// the world's dir.
func (w *World) Ticket(name string, o enroll.TicketOptions) string {
	w.t.Helper()
	if o.ExpiresIn == 0 {
		o.ExpiresIn = time.Hour
	}
	if o.Uses == 0 {
		o.Uses = 1
	}
	text, err := w.Hub.Authority.CreateTicket(context.Background(), o)
	if err != nil {
		w.t.Fatal(err)
	}
	path := filepath.Join(w.Dir, name+".ticket")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// Push signs a vendor command with the vendor's command key and submits it
// through the relay.
func (h *Hub) Push(ctx context.Context, req hub.PushRequest) (hub.PushResult, error) {
	return hub.Push(ctx, h.Srv, hub.KeySigner{Key: h.CommandKey}, req, time.Now())
}

// Attrs makes an attribute map of names set to "true".
func Attrs(names ...string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m[n] = "true"
	}
	return m
}

// Node is an agent.Node running in this process.
type Node struct {
	Name     string
	StateDir string
	N        *agent.Node
	Logs     *LogBuffer

	t      testing.TB
	opts   agent.Options
	cancel context.CancelFunc
	done   chan error
}

// StartNode runs a node with a ticket (or "" when already enrolled) and a
// YAML config (may be "").
func (w *World) StartNode(name, ticket, yaml string, vars map[string]string) *Node {
	w.t.Helper()
	var cfg *config.Config
	if yaml != "" {
		var err error
		if cfg, err = config.Load([]byte(yaml), vars); err != nil {
			w.t.Fatal(err)
		}
	}
	n := &Node{Name: name, StateDir: filepath.Join(w.Dir, name), Logs: &LogBuffer{}, t: w.t}
	n.opts = agent.Options{StateDir: n.StateDir, TicketFile: ticket, Config: cfg, Logger: n.Logs.Logger(name)}
	n.start()
	w.t.Cleanup(func() {
		n.Stop()
		if w.t.Failed() {
			w.t.Logf("---- %s log ----\n%s", name, n.Logs)
		}
	})
	return n
}

func (n *Node) start() {
	ctx, cancel := context.WithCancel(context.Background())
	n.N = agent.New(n.opts)
	n.cancel, n.done = cancel, make(chan error, 1)
	node := n.N
	go func() { n.done <- node.Run(ctx) }()
}

// Stop stops the node and returns what Run returned.
func (n *Node) Stop() error {
	if n.cancel == nil {
		return nil
	}
	n.cancel()
	err := <-n.done
	n.cancel = nil
	return err
}

// Restart stops the node and starts it again from its state directory.
func (n *Node) Restart() {
	n.Stop()
	n.opts.TicketFile = ""
	n.start()
}

// Exited reports whether Run returned, and its error.
func (n *Node) Exited() (bool, error) {
	select {
	case err := <-n.done:
		n.done <- err
		return true, err
	default:
		return false, nil
	}
}

// Status asks the node through its local API, as the CLI does.
func (n *Node) Status() (localapi.Status, error) {
	c, err := localapi.Dial(n.StateDir)
	if err != nil {
		return localapi.Status{}, err
	}
	return c.Status(context.Background())
}

// AwaitRelayUp waits until the node's relay is registered.
func (n *Node) AwaitRelayUp() localapi.Status {
	n.t.Helper()
	return n.await("relay registered", func(st localapi.Status) bool { return st.Relay.Connected })
}

// AwaitHub waits until the node is connected to the hub.
func (n *Node) AwaitHub() localapi.Status {
	n.t.Helper()
	return n.await("connected to the hub", func(st localapi.Status) bool { return st.HubConnected })
}

func (n *Node) await(what string, cond func(localapi.Status) bool) localapi.Status {
	n.t.Helper()
	var st localapi.Status
	Await(n.t, 20*time.Second, n.Name+" "+what, func() bool {
		if done, err := n.Exited(); done {
			n.t.Fatalf("%s stopped: %v", n.Name, err)
		}
		var err error
		st, err = n.Status()
		return err == nil && cond(st)
	})
	return st
}

// Await polls cond every 20 ms until it holds or timeout passes.
func Await(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// LogBuffer collects a component's log lines for failure reports and
// assertions.
type LogBuffer struct {
	mu sync.Mutex // guards b
	b  strings.Builder
}

// Logger returns a debug-level text logger writing into the buffer.
func (l *LogBuffer) Logger(name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})).With("c", name)
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Contains reports whether any logged line contains s.
func (l *LogBuffer) Contains(s string) bool { return strings.Contains(l.String(), s) }

// Echo serves a TCP echo on a loopback port, closed at test end.
func Echo(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards conns
		conns = map[net.Conn]struct{}{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(c, c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// RoundTrip connects to addr, writes msg, half-closes and reads the answer.
func RoundTrip(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, io.EOF) {
		return string(b), err
	}
	return string(b), nil
}
