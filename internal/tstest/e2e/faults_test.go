// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// freezer forwards TCP to a target; Freeze makes every existing connection
// go silent without closing (a blackholed path), new ones still work.
type freezer struct {
	addr   string
	mu     sync.Mutex
	frozen map[net.Conn]bool
	conns  []net.Conn
}

func startFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{addr: ln.Addr().String(), frozen: map[net.Conn]bool{}}
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, u)
			f.mu.Unlock()
			pump := func(dst, src net.Conn) {
				buf := make([]byte, 64<<10)
				for {
					n, err := src.Read(buf)
					f.mu.Lock()
					frozen := f.frozen[c]
					f.mu.Unlock()
					if frozen {
						select {} // swallow everything from now on, never close
					}
					if n > 0 {
						dst.Write(buf[:n])
					}
					if err != nil {
						dst.Close()
						return
					}
				}
			}
			go pump(u, c)
			go pump(c, u)
		}
	}()
	return f
}

func (f *freezer) Freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 0; i < len(f.conns); i += 2 {
		f.frozen[f.conns[i]] = true
	}
}

// TestBlackholedPath: a path to the hub that stalls without closing is
// detected by keepalives within a bounded time and replaced.
func TestBlackholedPath(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub().Start()
	fz := startFreezer(t, h.Addr)
	n := env.StartNode("node", "--enrollment-ticket", h.Ticket("t.ticket", "--relay", "r1"), "--hub", fz.addr, "--keepalive", "500ms")
	n.AwaitRelayUp()
	fz.Freeze()
	start := time.Now()
	Await(t, 10*time.Second, "the node to notice the dead path", func() bool {
		return strings.Contains(n.Proc.Logs(), "keepalive")
	})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a silent path took %s to detect with a 500ms keepalive", d)
	}
	Await(t, 10*time.Second, "a new path", func() bool {
		st, err := n.Status()
		return err == nil && st.Relay.Connected && st.HubConnected
	})
}

func TestClockSkew(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub().Start()
	n := env.StartNode("node", "--enrollment-ticket", h.Ticket("t.ticket", "--relay", "r1"))
	n.AwaitRelayUp()
	// The hub's clocks (relay and authority) are 2h ahead of the node's.
	h.Stop()
	h.StartAuthority("--insecure-clock-offset", "2h")
	h.Start("--insecure-clock-offset", "2h")
	Await(t, 20*time.Second, "a clock skew diagnosis", func() bool {
		st, err := n.Status()
		return err == nil && strings.Contains(st.HubError, "clock skew") && strings.Contains(st.HubError, "behind the hub's")
	})
	time.Sleep(3 * time.Second)
	if c := strings.Count(n.Proc.Logs(), "cannot work with the hub"); c != 1 {
		t.Errorf("the skew was reported %d times in a few seconds; want one clear error, not a loop", c)
	}
	// A fresh node with a ticket gets a clear refusal, not a retry loop.
	tk := h.Ticket("t2.ticket")
	r := env.Agent("run", "--state-dir", filepath.Join(env.Dir, "fresh"), "--enrollment-ticket", tk)
	oneLine(t, "enroll under skew", r, "not valid yet")
}

// TestHubKilledUnderTraffic: in-flight portals fail cleanly, nodes come
// back by themselves, state is intact.
func TestHubKilledUnderTraffic(t *testing.T) {
	echo := echoServer(t)
	p := startPair(t, outletYAML(outletItem("echo", echo, "inlet-from-saas")), nil)
	in := p.inlet(t, "echo")
	before := p.hub.CLI([]string{"members", "list"}).Stdout
	c, err := net.Dial("tcp", in)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	io.CopyN(io.Discard, c, 1<<20) // traffic is flowing
	p.hub.Proc.Kill()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err = io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("an in-flight portal hung after the hub died")
	}
	p.hub.Start()
	p.vendor.AwaitRelayUp()
	p.customer.AwaitRelayUp()
	Await(t, 20*time.Second, "a new portal", func() bool {
		c, err := net.Dial("tcp", in)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		c.Write([]byte("x"))
		b := make([]byte, 1)
		_, err = io.ReadFull(c, b)
		return err == nil
	})
	after := p.hub.CLI([]string{"members", "list"}).Stdout
	if strings.Count(before, "\nI") != 2 || strings.Count(after, "\nI") != 2 {
		t.Errorf("members changed across the crash:\n%s\n%s", before, after)
	}
}

// TestReadOnlyStateDir: the node keeps serving what it has, refuses
// changes with a clear error, and loses nothing.
func TestReadOnlyStateDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a read-only bind mount")
	}
	echo := echoServer(t)
	p := startPair(t, outletYAML(outletItem("echo", echo, "inlet-from-saas")), nil)
	in := p.inlet(t, "echo")
	dir := p.customer.StateDir
	if out, err := exec.Command("mount", "--bind", "-o", "ro", dir, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	r := p.customer.CLI([]string{"tcp-outlet", "create"}, "--from", "new", "--to", echo)
	if r.Code == 0 || !strings.Contains(r.Stderr, "read-only file system") {
		t.Errorf("change on a read-only state dir: %q %q", r.Stdout, r.Stderr)
	}
	c, err := net.Dial("tcp", in)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("still serving"))
	c.(*net.TCPConn).CloseWrite()
	if got, _ := io.ReadAll(c); string(got) != "still serving" {
		t.Errorf("portal on a read-only node: %q", got)
	}
	exec.Command("umount", dir).Run()
	st, _ := p.customer.Status()
	if len(st.Outlets) != 1 {
		t.Errorf("outlets after the refused change: %+v", st.Outlets)
	}
	p.customer.Restart()
	p.customer.AwaitRelayUp()
}

// TestSoak opens and closes portals with checksummed payloads while the
// hub restarts, then checks nothing was corrupted and nothing leaked.
// SOAK_SECONDS sets the length (default 10 s, the short form CI runs).
func TestSoak(t *testing.T) {
	secs := 10
	if s := os.Getenv("SOAK_SECONDS"); s != "" {
		secs, _ = strconv.Atoi(s)
	}
	echo := echoServer(t)
	p := startPair(t, outletYAML(outletItem("echo", echo, "inlet-from-saas")), nil)
	in := p.inlet(t, "echo")
	fds := func(n *Node) int {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", n.Proc.cmd.Process.Pid))
		return len(ents)
	}
	// Warm up, then take the baseline.
	for i := 0; i < 20; i++ {
		Get(in)
	}
	time.Sleep(500 * time.Millisecond)
	baseV, baseC := fds(p.vendor), fds(p.customer)

	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	var ok, corrupt, failed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 100; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for time.Now().Before(deadline) {
				size := 1 + r.IntN(256<<10)
				msg := make([]byte, size)
				for i := range msg {
					msg[i] = byte(r.Uint32())
				}
				c, err := net.Dial("tcp", in)
				if err != nil {
					failed.Add(1)
					continue
				}
				c.SetDeadline(time.Now().Add(20 * time.Second))
				go func() {
					c.Write(msg)
					c.(*net.TCPConn).CloseWrite()
				}()
				got, err := io.ReadAll(c)
				c.Close()
				switch {
				case err == nil && len(got) == len(msg) && sha256.Sum256(got) == sha256.Sum256(msg):
					ok.Add(1)
				case len(got) > 0 && !bytes.Equal(got, msg[:min(len(got), len(msg))]):
					corrupt.Add(1) // wrong bytes: never acceptable
				default:
					failed.Add(1) // cut off by a hub restart: acceptable
				}
			}
		}()
	}
	// Restart the hub in the middle.
	time.Sleep(time.Duration(secs) * time.Second / 2)
	p.hub.Proc.Kill()
	p.hub.Start()
	wg.Wait()
	t.Logf("soak %ds: %d portals ok, %d cut by the hub restart, %d corrupted", secs, ok.Load(), failed.Load(), corrupt.Load())
	if corrupt.Load() != 0 {
		t.Fatalf("%d portals delivered corrupted bytes", corrupt.Load())
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d portals completed", ok.Load())
	}
	p.vendor.AwaitRelayUp()
	time.Sleep(2 * time.Second)
	if v, c := fds(p.vendor), fds(p.customer); v > baseV+10 || c > baseC+10 {
		t.Errorf("file descriptors grew: vendor %d→%d, customer %d→%d", baseV, v, baseC, c)
	}
}
