// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package e2e is the end-to-end test harness: it builds the real agent and
// hub binaries once per test process, starts a hub and nodes as separate
// processes on 127.0.0.1 with random ports, and offers Await helpers that
// read like the user's walk-through.
//
// Only _test.go files import it.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeportal/connect/agent/localapi"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binaries builds (once) and returns the paths of the agent and hub.
func Binaries(t testing.TB) (agentBin, hubBin string) {
	t.Helper()
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		buildDir, buildErr = os.MkdirTemp("", "e2e-bin-")
		if buildErr != nil {
			return
		}
		for name, pkg := range map[string]string{"initech-agent": "./cmd/agent", "initech-hub": "./cmd/hub"} {
			if buildErr = goBuild(root, filepath.Join(buildDir, name), pkg); buildErr != nil {
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "initech-agent"), filepath.Join(buildDir, "initech-hub")
}

// raceBuilds says whether the binaries are built with the race detector:
// when these tests are (race.go), or when E2E_RACE=1 (CI).
func raceBuilds() bool { return raceEnabled || os.Getenv("E2E_RACE") == "1" }

func goBuild(root, out, pkg string, flags ...string) error {
	return goBuildRace(root, out, pkg, raceBuilds(), flags...)
}

// goBuildRace is goBuild with the race detector on or off as asked.
func goBuildRace(root, out, pkg string, race bool, flags ...string) error {
	args := append([]string{"build", "-o", out}, flags...)
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

var (
	plainOnce sync.Once
	plainBin  string
	plainErr  error
)

// PlainHubBinary is the hub built without the race detector, whatever
// raceBuilds says: for tests that measure the relay's memory, which the
// race detector's shadow memory makes several times larger.
func PlainHubBinary(t testing.TB) string {
	t.Helper()
	_, hub := Binaries(t)
	if !raceBuilds() {
		return hub
	}
	plainOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			plainErr = err
			return
		}
		plainBin = filepath.Join(buildDir, "plain-hub")
		plainErr = goBuildRace(root, plainBin, "./cmd/hub", false)
	})
	if plainErr != nil {
		t.Fatal(plainErr)
	}
	return plainBin
}

var (
	hostileOnce sync.Once
	hostileBin  string
	hostileErr  error
)

// HostileHubBinary builds (once) a hub with the hostilerelay test hook: a
// relay that answers portals itself instead of splicing them, as a
// compromised hub would. Never shipped.
func HostileHubBinary(t testing.TB) string {
	t.Helper()
	Binaries(t)
	hostileOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			hostileErr = err
			return
		}
		hostileBin = filepath.Join(buildDir, "hostile-hub")
		hostileErr = goBuild(root, hostileBin, "./cmd/hub", "-tags", "hostilerelay")
	})
	if hostileErr != nil {
		t.Fatal(hostileErr)
	}
	return hostileBin
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the module")
	}
	return filepath.Dir(mod), nil
}

// Env is one test's world: a temp dir, the binaries, the processes.
type Env struct {
	t        testing.TB
	Dir      string
	AgentBin string
	HubBin   string
}

// NewEnv returns an Env whose processes are stopped at the end of the test.
func NewEnv(t testing.TB) *Env {
	t.Helper()
	a, h := Binaries(t)
	return &Env{t: t, Dir: t.TempDir(), AgentBin: a, HubBin: h}
}

// FreePort returns a loopback address with a port that was free a moment ago.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Result is a finished command.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs a binary to completion (bounded by 60 s).
func (e *Env) Run(bin string, args ...string) Result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("run %s %v: %v", filepath.Base(bin), args, err)
		}
		code = ee.ExitCode()
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// Agent runs the agent CLI.
func (e *Env) Agent(args ...string) Result { e.t.Helper(); return e.Run(e.AgentBin, args...) }

// Proc is a long-running process.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start starts a long-running process; it is killed at test end and its
// output is printed if the test failed.
func (e *Env) Start(name, bin string, args ...string) *Proc {
	e.t.Helper()
	p := &Proc{Name: name, logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		e.t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		p.Stop()
		if e.t.Failed() {
			e.t.Logf("---- %s output ----\n%s", name, p.Logs())
		}
	})
	return p
}

// Logs returns everything the process printed so far.
func (p *Proc) Logs() string { return p.logs.String() }

// Stop interrupts the process and waits (then kills it after 10 s).
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Kill kills the process at once (as a crash would).
func (p *Proc) Kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// Wait waits for the process to exit by itself and returns its exit code.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s; output:\n%s", p.Name, timeout, p.Logs())
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Hub is the vendor's side, as in production: a relay directory and
// process, an authority directory and process (dialing out to the relay),
// and the vendor's key directory (used only by the admin commands).
type Hub struct {
	env       *Env
	Dir       string // the relay's (HUB)
	AuthDir   string // the authority's (AUTH)
	VendorDir string // the vendor's keys (VENDOR)
	Addr      string
	Proc      *Proc // the relay
	AuthProc  *Proc // the authority
}

// NewHub creates the vendor keys, a relay on a random loopback port and
// an authority that the relay trusts.
func (e *Env) NewHub() *Hub {
	e.t.Helper()
	h := &Hub{env: e, Dir: filepath.Join(e.Dir, "hub"), AuthDir: filepath.Join(e.Dir, "auth"), VendorDir: filepath.Join(e.Dir, "vendor"), Addr: FreePort(e.t)}
	for _, args := range [][]string{
		{"keys", "create", "--dir", h.VendorDir},
		{"init", "--dir", h.Dir, "--addr", h.Addr},
		{"authority", "init", "--dir", h.AuthDir, "--hub-dir", h.Dir, "--vendor-dir", h.VendorDir},
	} {
		if r := e.Run(e.HubBin, args...); r.Code != 0 {
			e.t.Fatalf("hub %v: %s", args, r.Stderr)
		}
	}
	return h
}

// Start starts the relay (with extra flags) and, unless it is already
// running, the authority, and waits until the relay accepts connections
// and the authority is connected to it.
func (h *Hub) Start(extra ...string) *Hub {
	h.env.t.Helper()
	h.StartRelay(extra...)
	if h.AuthProc == nil || h.AuthProc.Exited() {
		h.StartAuthority()
	}
	Await(h.env.t, 30*time.Second, "the authority connected to the relay", func() bool {
		return strings.Contains(h.Proc.Logs(), `msg="authority connected"`)
	})
	return h
}

// StartRelay starts only the relay.
func (h *Hub) StartRelay(extra ...string) *Hub {
	h.env.t.Helper()
	h.Proc = h.env.Start("relay", h.env.HubBin, append([]string{"serve", "--dir", h.Dir, "--log-level", "debug"}, extra...)...)
	Await(h.env.t, 20*time.Second, "relay listening on "+h.Addr, func() bool {
		c, err := net.DialTimeout("tcp", h.Addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		_, err = os.Stat(filepath.Join(h.Dir, "admin.sock"))
		return err == nil
	})
	return h
}

// StartAuthority starts the authority (with extra flags).
func (h *Hub) StartAuthority(extra ...string) *Hub {
	h.env.t.Helper()
	h.AuthProc = h.env.Start("authority", h.env.HubBin, append([]string{"authority", "serve", "--dir", h.AuthDir, "--log-level", "debug"}, extra...)...)
	return h
}

// Stop stops the relay and the authority.
func (h *Hub) Stop() {
	if h.AuthProc != nil {
		h.AuthProc.Stop()
	}
	if h.Proc != nil {
		h.Proc.Stop()
	}
}

// CLI runs a hub admin command with the right --dir appended after the
// subcommand words (the authority's for ticket and members, the relay's
// otherwise) and the vendor's key for commands that sign.
func (h *Hub) CLI(words []string, args ...string) Result {
	h.env.t.Helper()
	dir := h.Dir
	switch words[0] {
	case "ticket", "members":
		dir = h.AuthDir
	}
	all := append(append([]string{}, words...), "--dir", dir)
	switch strings.Join(words, " ") {
	case "outlet push", "outlet remove", "update push":
		all = append(all, "--command-key", filepath.Join(h.VendorDir, "command.key"))
	case "release publish":
		all = append(all, "--release-key", filepath.Join(h.VendorDir, "release.key"))
	}
	return h.env.Run(h.env.HubBin, append(all, args...)...)
}

// Ticket creates a ticket with the admin CLI, written by --out to a file
// in the env, and returns the file's path.
func (h *Hub) Ticket(name string, args ...string) string {
	h.env.t.Helper()
	path := filepath.Join(h.env.Dir, name)
	os.Remove(path)
	r := h.CLI([]string{"ticket", "create"}, append([]string{"--out", path}, args...)...)
	if r.Code != 0 {
		h.env.t.Fatalf("ticket create %v: %s", args, r.Stderr)
	}
	return path
}

// Node is an agent process and its state directory.
type Node struct {
	env      *Env
	StateDir string
	Proc     *Proc
	Args     []string
}

// StartNode starts `agent run --state-dir <new dir> args...`.
func (e *Env) StartNode(name string, args ...string) *Node {
	e.t.Helper()
	n := &Node{env: e, StateDir: filepath.Join(e.Dir, name)}
	n.Args = append([]string{"run", "--state-dir", n.StateDir, "--log-level", "debug"}, args...)
	n.Proc = e.Start(name, e.AgentBin, n.Args...)
	return n
}

// Restart stops the node and starts it again with the same arguments.
func (n *Node) Restart() {
	n.env.t.Helper()
	n.Proc.Stop()
	n.Proc = n.env.Start(n.Proc.Name, n.env.AgentBin, n.Args...)
}

// Status asks the running node for its status.
func (n *Node) Status() (localapi.Status, error) {
	r := n.env.Agent("status", "--state-dir", n.StateDir, "--json")
	var st localapi.Status
	if r.Code != 0 {
		return st, fmt.Errorf("status exit %d: %s", r.Code, r.Stderr)
	}
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		return st, fmt.Errorf("status: %v: %q", err, r.Stdout)
	}
	return st, nil
}

// AwaitRelayUp waits until the node reports its relay connected.
func (n *Node) AwaitRelayUp() localapi.Status {
	n.env.t.Helper()
	var st localapi.Status
	Await(n.env.t, 30*time.Second, n.Proc.Name+" relay connected", func() bool {
		if n.Proc.Exited() {
			n.env.t.Fatalf("%s exited:\n%s", n.Proc.Name, n.Proc.Logs())
		}
		var err error
		st, err = n.Status()
		return err == nil && st.Relay.Connected
	})
	return st
}

// AwaitHub waits until the node reports a hub connection.
func (n *Node) AwaitHub() localapi.Status {
	n.env.t.Helper()
	var st localapi.Status
	Await(n.env.t, 30*time.Second, n.Proc.Name+" connected to hub", func() bool {
		if n.Proc.Exited() {
			n.env.t.Fatalf("%s exited:\n%s", n.Proc.Name, n.Proc.Logs())
		}
		var err error
		st, err = n.Status()
		return err == nil && st.HubConnected
	})
	return st
}

// CLI runs an agent command against this node's state directory.
func (n *Node) CLI(words []string, args ...string) Result {
	n.env.t.Helper()
	all := append(append(append([]string{}, words...), "--state-dir", n.StateDir), args...)
	return n.env.Agent(all...)
}

// Await polls cond every 50 ms until it is true or timeout passes.
func Await(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// HTTPServer serves body on a random loopback port and returns its address.
func HTTPServer(t testing.TB, body string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// Get fetches http://addr/ with a timeout.
func Get(addr string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
