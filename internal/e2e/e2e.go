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
			cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, name), pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "initech-agent"), filepath.Join(buildDir, "initech-hub")
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

// Hub is a hub directory and (once started) its serve process.
type Hub struct {
	env  *Env
	Dir  string
	Addr string
	Proc *Proc
}

// NewHub runs `hub init` on a random loopback port.
func (e *Env) NewHub() *Hub {
	e.t.Helper()
	h := &Hub{env: e, Dir: filepath.Join(e.Dir, "hub"), Addr: FreePort(e.t)}
	if r := e.Run(e.HubBin, "init", "--dir", h.Dir, "--addr", h.Addr); r.Code != 0 {
		e.t.Fatalf("hub init: %s", r.Stderr)
	}
	return h
}

// Start starts `hub serve` (with extra flags) and waits until it accepts
// connections.
func (h *Hub) Start(extra ...string) *Hub {
	h.env.t.Helper()
	h.Proc = h.env.Start("hub", h.env.HubBin, append([]string{"serve", "--dir", h.Dir, "--log-level", "debug"}, extra...)...)
	Await(h.env.t, 20*time.Second, "hub listening on "+h.Addr, func() bool {
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

// CLI runs a hub admin command with --dir appended after the subcommand words.
func (h *Hub) CLI(words []string, args ...string) Result {
	h.env.t.Helper()
	all := append(append(append([]string{}, words...), "--dir", h.Dir), args...)
	return h.env.Run(h.env.HubBin, all...)
}

// Ticket creates a ticket with the admin CLI, writes it to a file in the
// env and returns the file's path.
func (h *Hub) Ticket(name string, args ...string) string {
	h.env.t.Helper()
	r := h.CLI([]string{"ticket", "create"}, args...)
	if r.Code != 0 {
		h.env.t.Fatalf("ticket create %v: %s", args, r.Stderr)
	}
	path := filepath.Join(h.env.Dir, name)
	if err := os.WriteFile(path, []byte(r.Stdout), 0o600); err != nil {
		h.env.t.Fatal(err)
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
