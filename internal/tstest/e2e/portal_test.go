// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair is a vendor node and a customer node on one hub.
type pair struct {
	env              *Env
	hub              *Hub
	vendor, customer *Node
}

// startPair starts a hub, a vendor node (attributes inlet-from-saas) and a
// customer node with customerYAML (relay acme-relay). route, when not
// nil, gets the hub's address and returns the one both nodes dial instead
// (a proxy in front of the hub).
func startPair(t *testing.T, customerYAML string, route func(hubAddr string) string) *pair {
	t.Helper()
	return startPairIn(t, NewEnv(t), customerYAML, route)
}

// startPairIn is startPair in a given Env (one with other binaries).
func startPairIn(t *testing.T, env *Env, customerYAML string, route func(hubAddr string) string) *pair {
	t.Helper()
	p := &pair{env: env}
	p.hub = p.env.NewHub().Start()
	vt := p.hub.Ticket("vendor.ticket", "--attribute", "inlet-from-saas", "--relay", "saas-relay")
	ct := p.hub.Ticket("customer.ticket", "--attribute", "outlet-from-saas", "--relay", "acme-relay")
	cfg := filepath.Join(p.env.Dir, "customer.yaml")
	os.WriteFile(cfg, []byte(customerYAML), 0o600)
	vcfg := filepath.Join(p.env.Dir, "vendor.yaml")
	os.WriteFile(vcfg, []byte("policy:\n  resource-type: tcp-inlet\n  allow: outlet-from-saas\n"), 0o600)
	vargs := []string{"--enrollment-ticket", vt, "--config", vcfg}
	cargs := []string{"--enrollment-ticket", ct, "--config", cfg}
	if route != nil {
		addr := route(p.hub.Addr)
		vargs = append(vargs, "--hub", addr)
		cargs = append(cargs, "--hub", addr)
	}
	p.vendor = p.env.StartNode("vendor", vargs...)
	p.customer = p.env.StartNode("customer", cargs...)
	p.vendor.AwaitRelayUp()
	p.customer.AwaitRelayUp()
	return p
}

// inlet creates an inlet on the vendor node to the customer's outlet.
// refusedClient connects to an inlet and checks the connection is reset
// or closed promptly without a byte (at connect or at the first read).
func refusedClient(addr string) error {
	c, err := net.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
		return fmt.Errorf("client not closed: read %d bytes, %v", n, err)
	}
	return nil
}

func (p *pair) inlet(t *testing.T, outlet string) string {
	t.Helper()
	addr := FreePort(t)
	if r := p.vendor.CLI([]string{"tcp-inlet", "create"}, "--from", addr, "--via", "acme-relay", "--to", outlet); r.Code != 0 {
		t.Fatalf("tcp-inlet create: %s", r.Stderr)
	}
	return addr
}

func outletYAML(outlets ...string) string {
	var b strings.Builder
	b.WriteString("relay: acme-relay\ntcp-outlet:\n")
	for _, o := range outlets {
		b.WriteString(o)
	}
	return b.String()
}

func outletItem(name, to, allow string) string {
	s := fmt.Sprintf("  - from: %s\n    to: %s\n", name, to)
	if allow != "" {
		s += fmt.Sprintf("    allow: %q\n", allow)
	}
	return s
}

// echoServer echoes every connection until EOF, then closes its write side.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}

// tap is a TCP proxy in front of the hub that records every byte.
type tap struct {
	addr string
	mu   sync.Mutex
	seen bytes.Buffer
}

func (tp *tap) Write(p []byte) (int, error) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.seen.Write(p)
}

func (tp *tap) contains(s string) bool {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return bytes.Contains(tp.seen.Bytes(), []byte(s))
}

func startTap(t *testing.T, target string) *tap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				u, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				go func() {
					io.Copy(io.MultiWriter(u, tp), c)
					u.(*net.TCPConn).CloseWrite()
				}()
				io.Copy(io.MultiWriter(c, tp), u)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return tp
}

// TestHubCannotRead sends a marker through a portal while recording every
// byte the hub receives and sends: the marker reaches the target and never
// appears on the hub's wire.
func TestHubCannotRead(t *testing.T) {
	target := echoServer(t)
	var tp *tap
	p := startPair(t, outletYAML(outletItem("echo", target, "inlet-from-saas")), func(hubAddr string) string {
		tp = startTap(t, hubAddr)
		return tp.addr
	})
	in := p.inlet(t, "echo")

	const marker = "MARKER-5a1d-the-hub-must-never-see-this"
	c, err := net.Dial("tcp", in)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, strings.Repeat(marker, 100))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != strings.Repeat(marker, 100) {
		t.Fatalf("echo through the portal = %d bytes, %v", len(got), err)
	}
	if tp.seen.Len() < 100*len(marker) {
		t.Fatalf("the tap saw only %d bytes: the portal did not go through the hub", tp.seen.Len())
	}
	if tp.contains(marker) || tp.contains("MARKER") {
		t.Fatal("the marker crossed the hub in clear text")
	}
}

func TestPortalDataPath(t *testing.T) {
	echo := echoServer(t)
	closed := FreePort(t) // nothing listens here
	// A target that accepts and then sends a response only after the
	// client's half-close.
	hc, _ := net.Listen("tcp", "127.0.0.1:0")
	defer hc.Close()
	go func() {
		for {
			c, err := hc.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, _ := io.ReadAll(c)
				fmt.Fprintf(c, "got %d bytes", len(req))
			}()
		}
	}()
	p := startPair(t, outletYAML(
		outletItem("echo", echo, "inlet-from-saas"),
		outletItem("closed", closed, "inlet-from-saas"),
		outletItem("halfclose", hc.Addr().String(), "inlet-from-saas"),
		outletItem("vip", echo, "inlet-from-saas and tier = gold"),
	), nil)
	echoIn := p.inlet(t, "echo")

	t.Run("half-close", func(t *testing.T) {
		c, err := net.Dial("tcp", p.inlet(t, "halfclose"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(bytes.Repeat([]byte("x"), 12345))
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "got 12345 bytes" {
			t.Fatalf("response after half-close = %q, %v", got, err)
		}
	})

	t.Run("large transfer", func(t *testing.T) {
		const size = 256 << 20
		c, err := net.Dial("tcp", echoIn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sent := sha256.New()
		go func() {
			r := rand.New(rand.NewPCG(1, 2))
			buf := make([]byte, 1<<20)
			for left := size; left > 0; left -= len(buf) {
				for i := range buf {
					buf[i] = byte(r.Uint32())
				}
				sent.Write(buf)
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
			c.(*net.TCPConn).CloseWrite()
		}()
		recv := sha256.New()
		c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		n, err := io.Copy(recv, c)
		if err != nil || n != size {
			t.Fatalf("received %d of %d bytes: %v", n, size, err)
		}
		if !bytes.Equal(sent.Sum(nil), recv.Sum(nil)) {
			t.Fatal("checksum mismatch")
		}
	})

	t.Run("target refused", func(t *testing.T) {
		in := p.inlet(t, "closed")
		start := time.Now()
		// Through an open channel the refusal can be back before connect
		// returns: then the dial itself sees the reset.
		if err := refusedClient(in); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("close took %s", d)
		}
		Await(t, 5*time.Second, "the customer to log the refused target", func() bool {
			return strings.Contains(p.customer.Proc.Logs(), "target unreachable")
		})
	})

	t.Run("denied", func(t *testing.T) {
		if err := refusedClient(p.inlet(t, "vip")); err != nil {
			t.Fatalf("denied client: %v", err)
		}
		Await(t, 5*time.Second, "both nodes to log the denial", func() bool {
			return strings.Contains(p.customer.Proc.Logs(), `portal denied`) && strings.Contains(p.customer.Proc.Logs(), `tier`) &&
				strings.Contains(p.vendor.Proc.Logs(), "portal denied")
		})
	})

	t.Run("unknown outlet", func(t *testing.T) {
		if err := refusedClient(p.inlet(t, "nosuch")); err != nil {
			t.Fatalf("unknown outlet: %v", err)
		}
	})

	t.Run("many concurrent portals and a stalled reader", func(t *testing.T) {
		// One client that never reads while a large echo backs up.
		stalled, err := net.Dial("tcp", echoIn)
		if err != nil {
			t.Fatal(err)
		}
		defer stalled.Close()
		go stalled.Write(make([]byte, 32<<20))

		const n = 300
		var wg sync.WaitGroup
		errs := make(chan error, n)
		start := time.Now()
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", echoIn)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(60 * time.Second))
				msg := bytes.Repeat([]byte{byte(i)}, 64<<10)
				go func() {
					c.Write(msg)
					c.(*net.TCPConn).CloseWrite()
				}()
				got, err := io.ReadAll(c)
				if err != nil || !bytes.Equal(got, msg) {
					errs <- fmt.Errorf("portal %d: %d bytes, %v", i, len(got), err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		t.Logf("%d concurrent portals with 64 KiB echoes in %s while one reader stalled", n, time.Since(start))
	})
}

// TestReconnect: a node that loses the hub keeps its inlets listening and
// new portals work once the hub is back.
func TestReconnect(t *testing.T) {
	echo := echoServer(t)
	p := startPair(t, outletYAML(outletItem("echo", echo, "inlet-from-saas")), nil)
	in := p.inlet(t, "echo")
	roundTrip := func() error {
		c, err := net.Dial("tcp", in)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("ping"))
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		if string(got) != "ping" {
			return fmt.Errorf("got %q, %v", got, err)
		}
		return nil
	}
	if err := roundTrip(); err != nil {
		t.Fatal(err)
	}
	p.hub.Proc.Kill()
	// The inlet still accepts while the hub is down (the portal fails).
	c, err := net.Dial("tcp", in)
	if err != nil {
		t.Fatalf("inlet stopped listening: %v", err)
	}
	c.Close()
	time.Sleep(time.Second)
	p.hub.Start()
	Await(t, 30*time.Second, "a portal after the hub restarted", func() bool { return roundTrip() == nil })
	if !strings.Contains(p.customer.Proc.Logs(), "reconnecting") {
		t.Error("customer did not log the reconnect")
	}
}

// roundTrip connects to addr, sends msg, half-closes and reads the answer.
func roundTrip(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}
