// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package localapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeportal/connect/agent/statedir"
)

// fakeBackend records what the API asked of it and answers from its
// fields; err, when set, is every fallible method's answer.
type fakeBackend struct {
	mu    sync.Mutex // guards calls
	calls []string
	err   error
}

func (f *fakeBackend) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeBackend) Update(ctx context.Context, r UpdateRequest) (UpdateResult, error) {
	f.record("update " + r.Version)
	return UpdateResult{Current: "v1.0.0", Available: r.Version}, f.err
}
func (f *fakeBackend) Status(ctx context.Context) Status {
	f.record("status")
	return Status{Identifier: "Iabc", Outlets: []Outlet{{Name: "web", To: "127.0.0.1:80"}}}
}
func (f *fakeBackend) Explain(ctx context.Context) []Explanation {
	f.record("explain")
	return []Explanation{{Outlet: "web", Admits: "nobody"}}
}
func (f *fakeBackend) SetPaused(ctx context.Context, paused bool) error {
	if paused {
		f.record("pause")
	} else {
		f.record("resume")
	}
	return f.err
}
func (f *fakeBackend) AddOutlet(ctx context.Context, o Outlet) (Outlet, error) {
	f.record("add outlet " + o.Name)
	o.Warnings = []string{"a warning"}
	return o, f.err
}
func (f *fakeBackend) RemoveOutlet(ctx context.Context, name string) error {
	f.record("remove outlet " + name)
	return f.err
}
func (f *fakeBackend) AddInlet(ctx context.Context, in Inlet) (Inlet, error) {
	f.record("add inlet " + in.From)
	in.Listening = "127.0.0.1:4000"
	return in, f.err
}
func (f *fakeBackend) RemoveInlet(ctx context.Context, from string) error {
	f.record("remove inlet " + from)
	return f.err
}
func (f *fakeBackend) CreateTicket(ctx context.Context, r TicketRequest) (string, error) {
	f.record("ticket " + r.Relay)
	return "ticket-v1:x", f.err
}
func (f *fakeBackend) Check(ctx context.Context) []Warning {
	f.record("check")
	return []Warning{{Kind: "inlet", Name: "127.0.0.1:4000", Message: "m"}}
}
func (f *fakeBackend) FlushAudit(ctx context.Context) error {
	f.record("flush")
	return f.err
}
func (f *fakeBackend) Drain(ctx context.Context, r DrainRequest) (DrainStatus, error) {
	f.record("drain " + r.Deadline.String())
	return DrainStatus{Draining: true, Started: true}, f.err
}
func (f *fakeBackend) DrainStatus(ctx context.Context) DrainStatus {
	f.record("drain status")
	return DrainStatus{Draining: true, Done: true}
}

func serve(t *testing.T, b Backend) (dir string, c *Client) {
	t.Helper()
	dir = t.TempDir()
	stop, err := Serve(context.Background(), dir, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop() })
	c, err = Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, c
}

// TestRoundTrips: every client method reaches its backend method with
// its arguments (names that need escaping included) and brings the
// answer back.
func TestRoundTrips(t *testing.T) {
	b := &fakeBackend{}
	_, c := serve(t, b)
	ctx := context.Background()
	if st, err := c.Status(ctx); err != nil || st.Identifier != "Iabc" || len(st.Outlets) != 1 {
		t.Fatalf("status: %+v, %v", st, err)
	}
	if o, err := c.AddOutlet(ctx, Outlet{Name: "web", To: "x:1"}); err != nil || o.Name != "web" || len(o.Warnings) != 1 {
		t.Fatalf("add outlet: %+v, %v", o, err)
	}
	if err := c.RemoveOutlet(ctx, "a/b c"); err != nil {
		t.Fatal(err)
	}
	if in, err := c.AddInlet(ctx, Inlet{From: "127.0.0.1:0", Via: "r", To: "web"}); err != nil || in.Listening != "127.0.0.1:4000" {
		t.Fatalf("add inlet: %+v, %v", in, err)
	}
	if err := c.RemoveInlet(ctx, "[::1]:80&x=1"); err != nil {
		t.Fatal(err)
	}
	if tk, err := c.CreateTicket(ctx, TicketRequest{Relay: "acme"}); err != nil || tk != "ticket-v1:x" {
		t.Fatalf("ticket: %q, %v", tk, err)
	}
	if e, err := c.Explain(ctx); err != nil || len(e) != 1 || e[0].Admits != "nobody" {
		t.Fatalf("explain: %+v, %v", e, err)
	}
	if w, err := c.Check(ctx); err != nil || len(w) != 1 || w[0].Kind != "inlet" {
		t.Fatalf("check: %+v, %v", w, err)
	}
	for _, p := range []bool{true, false} {
		if err := c.SetPaused(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.FlushAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err := c.Drain(ctx, 90*time.Second); err != nil || !d.Started {
		t.Fatalf("drain: %+v, %v", d, err)
	}
	if d, err := c.DrainStatus(ctx); err != nil || !d.Done {
		t.Fatalf("drain status: %+v, %v", d, err)
	}
	if u, err := c.Update(ctx, UpdateRequest{Version: "v1.2.0"}); err != nil || u.Available != "v1.2.0" {
		t.Fatalf("update: %+v, %v", u, err)
	}
	want := []string{"status", "add outlet web", "remove outlet a/b c", "add inlet 127.0.0.1:0", "remove inlet [::1]:80&x=1",
		"ticket acme", "explain", "check", "pause", "resume", "flush", "drain 1m30s", "drain status", "update v1.2.0"}
	if strings.Join(b.calls, "|") != strings.Join(want, "|") {
		t.Fatalf("backend calls:\n%q\nwant\n%q", b.calls, want)
	}
}

// TestErrors: a backend's error reaches the client as its text; a body
// that is not JSON is refused before the backend sees it.
func TestErrors(t *testing.T) {
	b := &fakeBackend{err: errors.New(`outlet "web" exists`)}
	dir, c := serve(t, b)
	ctx := context.Background()
	for name, err := range map[string]error{
		"add outlet":    func() error { _, err := c.AddOutlet(ctx, Outlet{Name: "web"}); return err }(),
		"remove outlet": c.RemoveOutlet(ctx, "web"),
		"pause":         c.SetPaused(ctx, true),
		"flush":         c.FlushAudit(ctx),
		"drain":         func() error { _, err := c.Drain(ctx, time.Minute); return err }(),
	} {
		if err == nil || !strings.Contains(err.Error(), `outlet "web" exists`) {
			t.Errorf("%s: %v, want the backend's error", name, err)
		}
	}
	n := len(b.calls)
	resp, err := unixPost(dir, "/v1/outlets", "{not json")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest || len(b.calls) != n {
		t.Fatalf("bad JSON: status %d, backend calls %d → %d", resp.StatusCode, n, len(b.calls))
	}
}

// TestSocket: the socket is the owner's only; a second node on the same
// state directory is refused in one line; no node gives ErrNotRunning.
func TestSocket(t *testing.T) {
	dir, _ := serve(t, &fakeBackend{})
	fi, err := os.Stat(filepath.Join(dir, statedir.Socket))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("socket mode %v: others may connect", fi.Mode().Perm())
	}
	if _, err := Serve(context.Background(), dir, &fakeBackend{}); err == nil || !strings.Contains(err.Error(), "another node is already running") {
		t.Fatalf("second Serve: %v", err)
	}
	if _, err := Dial(t.TempDir()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Dial with no node: %v", err)
	}
}

// unixPost posts body to path on the node's socket in dir, by hand.
func unixPost(dir, path, body string) (*http.Response, error) {
	hc := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(dir, statedir.Socket))
	}}}
	resp, err := hc.Post("http://node"+path, "application/json", strings.NewReader(body))
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}
