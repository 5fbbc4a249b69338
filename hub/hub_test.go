// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/hub/store/boltstore"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

type testHub struct {
	srv  *hub.Server
	dir  *hub.Dir
	addr string
}

func startHub(t *testing.T, handshake time.Duration) *testHub {
	t.Helper()
	d, err := hub.Init(filepath.Join(t.TempDir(), "hub"), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	store, err := boltstore.Open(filepath.Join(d.Path, hub.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := hub.New(hub.Options{Dir: d, Store: store, HandshakeTimeout: handshake})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		srv.Serve(ctx, ln)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		store.Close()
	})
	return &testHub{srv: srv, dir: d, addr: ln.Addr().String()}
}

// control opens a control connection as node static and returns it.
func (h *testHub) control(t *testing.T, static key.NodePrivate) *noiseconn.Conn {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(wire.Preface(wire.KindControl))
	hello, _ := wire.Marshal(control.ClientHello{Version: wire.ProtocolVersion})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, err := noiseconn.Client(ctx, c, static, wire.Prologue("control", nil), func(peer key.NodePublic, _ []byte) ([]byte, error) {
		if !peer.Equal(h.dir.HubKey.Public()) {
			return nil, fmt.Errorf("wrong hub key")
		}
		return hello, nil
	})
	if err != nil {
		t.Fatalf("control handshake: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

var nextID uint64

func call(t *testing.T, nc *noiseconn.Conn, typ control.Type, req, resp any) *control.Error {
	t.Helper()
	nextID++
	b, _ := control.Encode(typ, nextID, req)
	if err := wire.WriteMessage(nc, b); err != nil {
		t.Fatal(err)
	}
	for {
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := wire.ReadMessage(nc)
		if err != nil {
			t.Fatalf("read answer: %v", err)
		}
		m, _ := control.Decode(b)
		if m.Type != control.TypeResponse {
			continue // a push
		}
		if m.Err != nil {
			return m.Err
		}
		if resp != nil {
			if err := control.DecodeBody(m, resp); err != nil {
				t.Fatal(err)
			}
		}
		return nil
	}
}

func (h *testHub) ticket(t *testing.T, o enroll.TicketOptions) *enroll.Ticket {
	t.Helper()
	text, err := h.srv.CreateTicket(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	tk, _, err := enroll.ParseTicket(text)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// hubAlive checks that the hub still completes a control handshake and
// answers a ping.
func hubAlive(t *testing.T, h *testHub) {
	t.Helper()
	nc := h.control(t, key.NewNodePrivate())
	if e := call(t, nc, control.TypePing, control.Ping{}, nil); e != nil {
		t.Fatalf("ping: %v", e)
	}
	nc.Close()
}

func TestEnrollRegisterOpen(t *testing.T) {
	h := startHub(t, 0)
	tk := h.ticket(t, enroll.TicketOptions{Relay: "acme-relay", ExpiresIn: time.Hour, Uses: 1, Attributes: map[string]string{"a": "true"}})
	node := key.NewNodePrivate()
	nc := h.control(t, node)
	// Not a member yet: nothing but redemption works.
	if e := call(t, nc, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: "acme-relay"}, nil); e == nil || e.Code != control.ErrCodeNotMember {
		t.Fatalf("register before redeem: %v", e)
	}
	if e := call(t, nc, control.TypeRedeem, control.RedeemRequest{Secret: tk.Secret, Relay: "other"}, nil); e == nil || e.Code != control.ErrCodeRelayRefused {
		t.Fatalf("redeem with a refused relay: %v", e)
	}
	var cr control.CredentialResponse
	if e := call(t, nc, control.TypeRedeem, control.RedeemRequest{Secret: tk.Secret, Relay: "acme-relay"}, &cr); e != nil {
		t.Fatalf("redeem: %v", e)
	}
	if e := call(t, nc, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: "other-relay"}, nil); e == nil || e.Code != control.ErrCodeRelayRefused {
		t.Fatalf("register other relay: %v", e)
	}
	if e := call(t, nc, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: "acme-relay"}, nil); e != nil {
		t.Fatalf("register: %v", e)
	}
	// A second identity cannot take the live relay name.
	tk2 := h.ticket(t, enroll.TicketOptions{Relay: "acme-relay", ExpiresIn: time.Hour, Uses: 1})
	other := h.control(t, key.NewNodePrivate())
	if e := call(t, other, control.TypeRedeem, control.RedeemRequest{Secret: tk2.Secret}, &cr); e != nil {
		t.Fatal(e)
	}
	if e := call(t, other, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: "acme-relay"}, nil); e == nil || e.Code != control.ErrCodeRelayTaken {
		t.Fatalf("second registration: %v", e)
	}
	// Sessions: the relay's node is told, both get spliced.
	var os control.OpenSessionResponse
	if e := call(t, other, control.TypeOpenSession, control.OpenSessionRequest{Relay: "acme-relay"}, &os); e != nil {
		t.Fatalf("open session: %v", e)
	}
	if os.Peer != string(node.Public().ID()) || len(os.Token) != wire.TokenLen {
		t.Fatalf("session = %+v", os)
	}
	if e := call(t, other, control.TypeOpenSession, control.OpenSessionRequest{Relay: "nobody"}, nil); e == nil || e.Code != control.ErrCodeRelayUnknown {
		t.Fatalf("unknown relay: %v", e)
	}
	a := dialData(t, h.addr, os.Token)
	b := dialData(t, h.addr, os.Token)
	a.Write([]byte("ping"))
	a.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(b)
	if string(got) != "ping" {
		t.Fatalf("spliced bytes = %q", got)
	}
	// A guessed token is dropped.
	bad := make([]byte, wire.TokenLen)
	rand.Read(bad)
	g := dialData(t, h.addr, bad)
	g.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := g.Read(make([]byte, 1)); err == nil {
		t.Fatalf("guessed token got %d bytes", n)
	}
}

func dialData(t *testing.T, addr string, token []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(append(wire.Preface(wire.KindData), token...))
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRevokeClosesConnections(t *testing.T) {
	h := startHub(t, 0)
	tk := h.ticket(t, enroll.TicketOptions{Relay: "r", ExpiresIn: time.Hour, Uses: 1})
	node := key.NewNodePrivate()
	nc := h.control(t, node)
	var cr control.CredentialResponse
	if e := call(t, nc, control.TypeRedeem, control.RedeemRequest{Secret: tk.Secret}, &cr); e != nil {
		t.Fatal(e)
	}
	if _, err := h.srv.Revoke(context.Background(), string(node.Public().ID())); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := wire.ReadMessage(nc); err != nil {
			break // closed by the hub
		}
	}
	nc2 := h.control(t, node)
	if e := call(t, nc2, control.TypeRefresh, control.RefreshRequest{}, nil); e == nil || e.Code != control.ErrCodeRevoked {
		t.Fatalf("refresh after revoke: %v", e)
	}
}

// expectClosed checks that the hub closes c within d.
func expectClosed(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("hub did not close the connection within %s", d)
		}
		return
	}
}

func TestGarbage(t *testing.T) {
	h := startHub(t, 500*time.Millisecond)
	t.Run("random bytes", func(t *testing.T) {
		for i := 0; i < 20; i++ {
			c, _ := net.Dial("tcp", h.addr)
			junk := make([]byte, 1+i*97)
			rand.Read(junk)
			c.Write(junk)
			expectClosed(t, c, 5*time.Second)
			c.Close()
		}
	})
	t.Run("half handshake then silence", func(t *testing.T) {
		c, _ := net.Dial("tcp", h.addr)
		defer c.Close()
		c.Write(wire.Preface(wire.KindControl))
		c.Write([]byte{0, 32}) // a Noise message header, then nothing
		start := time.Now()
		expectClosed(t, c, 5*time.Second)
		if time.Since(start) < 400*time.Millisecond {
			t.Errorf("closed before the handshake deadline")
		}
	})
	t.Run("oversized handshake frame", func(t *testing.T) {
		c, _ := net.Dial("tcp", h.addr)
		defer c.Close()
		c.Write(wire.Preface(wire.KindControl))
		c.Write([]byte{0xff, 0xff})
		c.Write(bytes.Repeat([]byte{1}, 65535))
		expectClosed(t, c, 5*time.Second)
	})
	t.Run("oversized control message", func(t *testing.T) {
		nc := h.control(t, key.NewNodePrivate())
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], wire.MaxMessageSize+1)
		nc.Write(hdr[:])
		expectClosed(t, nc, 5*time.Second)
	})
	t.Run("deep CBOR", func(t *testing.T) {
		nc := h.control(t, key.NewNodePrivate())
		deep := append(bytes.Repeat([]byte{0x81}, 10000), 0)
		wire.WriteMessage(nc, deep)
		expectClosed(t, nc, 5*time.Second)
	})
	t.Run("unknown message type", func(t *testing.T) {
		nc := h.control(t, key.NewNodePrivate())
		if e := call(t, nc, control.Type(999), control.Empty{}, nil); e == nil || e.Code != control.ErrCodeUnsupported {
			t.Fatalf("unknown type: %v", e)
		}
	})
	hubAlive(t, h)
}

// TestPendingLimits: one source cannot hold more than MaxPendingPerSource
// unauthenticated connections, and thousands of idle connections from many
// sources leave the hub serving.
func TestPendingLimits(t *testing.T) {
	h := startHub(t, 3*time.Second)
	_, port, _ := net.SplitHostPort(h.addr)
	dialFrom := func(src string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
		return d.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < hub.MaxPendingPerSource; i++ {
		c, err := dialFrom("127.0.0.2")
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(200 * time.Millisecond) // let the hub account for them
	extra, err := dialFrom("127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	expectClosed(t, extra, 2*time.Second)
	extra.Close()
	// Thousands of idle connections from other sources.
	for src := 3; src < 5; src++ {
		for i := 0; i < hub.MaxPendingPerSource; i++ {
			c, err := dialFrom(fmt.Sprintf("127.0.0.%d", src))
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
	}
	if len(conns) < 3000 {
		t.Fatalf("only %d idle connections", len(conns))
	}
	hubAlive(t, h)
	// The handshake deadline frees them all.
	for _, c := range conns[len(conns)-10:] {
		expectClosed(t, c, 10*time.Second)
	}
}
