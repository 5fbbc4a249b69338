// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/hub/store/boltstore"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
	"github.com/edgeportal/connect/wire/signed"
)

// testHub is a relay serving on loopback, trusting an authority whose
// signing key the test holds (to make credentials and notices).
type testHub struct {
	srv   *hub.Server
	dir   *hub.Dir
	addr  string
	auth  *enroll.Authority
	noise key.NodePrivate // the authority's Noise key
}

func startHub(t *testing.T, handshake time.Duration) *testHub {
	t.Helper()
	d, err := hub.Init(filepath.Join(t.TempDir(), "hub"), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	signer := key.NewSigningPrivate()
	d.Config.AuthorityKey = signer.Public()
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
	noise := key.NewNodePrivate()
	auth := &enroll.Authority{Project: d.Project(), Signer: signer, NoiseKey: noise.Public(), HubKey: d.RelayKey.Public(), Hubs: []string{ln.Addr().String()}}
	return &testHub{srv: srv, dir: d, addr: ln.Addr().String(), auth: auth, noise: noise}
}

// credential makes a member credential for node, as the authority would.
func (h *testHub) credential(t *testing.T, node key.NodePrivate, relay string) []byte {
	t.Helper()
	pub := node.Public()
	c, err := h.auth.Issue(enroll.Member{ID: string(pub.ID()), NodeKey: pub.Raw32(), Relay: relay})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dial opens a control connection as static presenting cred, and returns
// it with the relay's first message (its welcome, or a refusal).
func (h *testHub) dial(t *testing.T, static key.NodePrivate, cred []byte) (*noiseconn.Conn, control.Msg) {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(wire.Preface(wire.KindControl))
	hello, _ := wire.Marshal(control.ClientHello{Version: wire.ProtocolVersion, Credential: cred})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, err := noiseconn.Initiate(ctx, c, hybrid(static, wire.Prologue("control", wire.OurOffer, nil)), func(peer key.NodePublic, _ []byte) ([]byte, error) {
		if !peer.Equal(h.dir.RelayKey.Public()) {
			return nil, fmt.Errorf("wrong relay key")
		}
		return hello, nil
	})
	if err != nil {
		t.Fatalf("control handshake: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := wire.ReadMessage(nc)
	if err != nil {
		t.Fatalf("welcome: %v", err)
	}
	m, err := control.Decode(b)
	if err != nil || m.Type != control.TypeWelcome {
		t.Fatalf("first message %+v, %v", m, err)
	}
	return nc, m
}

// member opens a welcomed member connection.
func (h *testHub) member(t *testing.T, node key.NodePrivate, relay string) *noiseconn.Conn {
	t.Helper()
	nc, m := h.dial(t, node, h.credential(t, node, relay))
	if m.Err != nil {
		t.Fatalf("member refused: %v", m.Err)
	}
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

// hubAlive checks that the relay still completes a handshake, admits a
// member and answers a ping.
func hubAlive(t *testing.T, h *testHub) {
	t.Helper()
	nc := h.member(t, key.NewNodePrivate(), "")
	if e := call(t, nc, control.TypePing, control.Ping{}, nil); e != nil {
		t.Fatalf("ping: %v", e)
	}
	nc.Close()
}

// TestAdmission: the relay admits only a node whose credential the
// project's authority signed for that node's key, now; it says why not.
func TestAdmission(t *testing.T) {
	h := startHub(t, 0)
	node := key.NewNodePrivate()
	other := &enroll.Authority{Project: h.auth.Project, Signer: key.NewSigningPrivate()}
	foreign, _ := other.Issue(enroll.Member{ID: string(node.Public().ID()), NodeKey: node.Public().Raw32()})
	old := *h.auth
	old.Now = func() time.Time { return time.Now().Add(-3 * time.Hour) }
	expired, _ := old.Issue(enroll.Member{ID: string(node.Public().ID()), NodeKey: node.Public().Raw32()})
	stolen := h.credential(t, key.NewNodePrivate(), "")
	tests := []struct {
		name, code, msg string
		cred            []byte
	}{
		{"no credential", control.ErrCodeNotMember, "admits only members", nil},
		{"another authority", control.ErrCodeBadCredential, "not signed by this project's authority", foreign},
		{"expired", control.ErrCodeCredentialOld, "credential expired", expired},
		{"another node's credential", control.ErrCodeBadCredential, "bound to another node key", stolen},
		{"garbage", control.ErrCodeBadCredential, "", []byte("not a credential")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, m := h.dial(t, node, tt.cred)
			if m.Err == nil || m.Err.Code != tt.code || !strings.Contains(m.Err.Message, tt.msg) {
				t.Fatalf("refusal = %+v, want %s %q", m.Err, tt.code, tt.msg)
			}
		})
	}
	nc := h.member(t, node, "")
	if e := call(t, nc, control.Type(999), control.Empty{}, nil); e == nil || e.Code != control.ErrCodeUnsupported {
		t.Fatalf("unknown type: %v", e)
	}
	// A member may not act as the authority.
	if e := call(t, nc, control.TypeRevocations, control.Revocations{}, nil); e == nil || e.Code != control.ErrCodeUnsupported {
		t.Fatalf("revocations from a member: %v", e)
	}
	hubAlive(t, h)
}

// TestRelayBinding: the first identity to register a relay name owns it;
// another one is refused (naming the owner), also while the owner is
// offline, until the vendor releases it.
func TestRelayBinding(t *testing.T) {
	h := startHub(t, 0)
	owner := key.NewNodePrivate()
	nc := h.member(t, owner, "acme-relay")
	if e := call(t, nc, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: "other-relay"}, nil); e == nil || e.Code != control.ErrCodeRelayRefused {
		t.Fatalf("register a relay the credential does not name: %v", e)
	}
	if e := call(t, nc, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: "acme-relay"}, nil); e != nil {
		t.Fatalf("register: %v", e)
	}
	intruder := key.NewNodePrivate()
	inc := h.member(t, intruder, "acme-relay")
	e := call(t, inc, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: "acme-relay"}, nil)
	if e == nil || e.Code != control.ErrCodeRelayTaken || !strings.Contains(e.Message, string(owner.Public().ID())) {
		t.Fatalf("second identity: %v", e)
	}
	nc.Close()
	hubAlive(t, h) // the owner's disconnect is processed
	if e := call(t, inc, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: "acme-relay"}, nil); e == nil || e.Code != control.ErrCodeRelayTaken {
		t.Fatalf("second identity while the owner is offline: %v", e)
	}
	// The owner comes back and has its relay.
	nc = h.member(t, owner, "acme-relay")
	if e := call(t, nc, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: "acme-relay"}, nil); e != nil {
		t.Fatalf("owner again: %v", e)
	}
	// The vendor frees it: the next identity owns it.
	if _, err := h.srv.ReleaseRelay(context.Background(), "acme-relay"); err != nil {
		t.Fatal(err)
	}
	if e := call(t, inc, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: "acme-relay"}, nil); e != nil {
		t.Fatalf("after release: %v", e)
	}
}

func TestSessions(t *testing.T) {
	h := startHub(t, 0)
	node := key.NewNodePrivate()
	nc := h.member(t, node, "acme-relay")
	if e := call(t, nc, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: "acme-relay"}, nil); e != nil {
		t.Fatal(e)
	}
	other := h.member(t, key.NewNodePrivate(), "")
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

// authorityConn connects as the authority (with its signed statement).
func (h *testHub) authorityConn(t *testing.T) *noiseconn.Conn {
	t.Helper()
	st, err := h.auth.Statement()
	if err != nil {
		t.Fatal(err)
	}
	nc, m := h.dial(t, h.noise, st)
	if m.Err != nil {
		t.Fatalf("authority refused: %v", m.Err)
	}
	return nc
}

// TestRevocation: a notice signed by the authority closes the member's
// connections at once, and the member stays refused; a notice signed by
// anyone else changes nothing.
func TestRevocation(t *testing.T) {
	h := startHub(t, 0)
	node := key.NewNodePrivate()
	nc := h.member(t, node, "r")
	if e := call(t, nc, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: "r"}, nil); e != nil {
		t.Fatal(e)
	}
	ac := h.authorityConn(t)
	id := string(node.Public().ID())
	forged, _ := signed.Sign(key.NewSigningPrivate(), signed.ContextRevocation, enroll.Revocation{Project: h.auth.Project, ID: id, NodeKey: node.Public().Raw32(), RevokedAt: time.Now().Unix()})
	if e := call(t, ac, control.TypeRevocations, control.Revocations{Notices: [][]byte{forged}}, nil); e == nil {
		t.Fatal("a forged notice was accepted")
	}
	if e := call(t, nc, control.TypePing, control.Ping{}, nil); e != nil {
		t.Fatalf("member cut off by a forged notice: %v", e)
	}
	// A genuine one.
	h.auth.Store = memberStore{enroll.Member{ID: id, NodeKey: node.Public().Raw32()}}
	_, notice, err := h.auth.Revoke(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if e := call(t, ac, control.TypeRevocations, control.Revocations{Notices: [][]byte{notice}}, nil); e != nil {
		t.Fatal(e)
	}
	sawPush := false
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		b, err := wire.ReadMessage(nc)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the revoked member's connection stayed open")
			}
			break
		}
		if m, _ := control.Decode(b); m.Type == control.TypeRevoked {
			sawPush = true
		}
	}
	if !sawPush {
		t.Error("the member was not told it was revoked")
	}
	_, m := h.dial(t, node, h.credential(t, node, "r"))
	if m.Err == nil || m.Err.Code != control.ErrCodeRevoked || !strings.Contains(m.Err.Message, "needs a new identity") {
		t.Fatalf("revoked member reconnecting: %+v", m.Err)
	}
	// Its relay name is free again.
	if _, err := h.srv.ReleaseRelay(context.Background(), "r"); err == nil {
		t.Error("the revoked member still owned its relay")
	}
}

// memberStore is just enough of an enroll.Store to revoke one member.
type memberStore struct{ m enroll.Member }

func (s memberStore) UpdateMember(_ context.Context, id string, fn func(*enroll.Member) error) (enroll.Member, error) {
	if id != s.m.ID {
		return enroll.Member{}, enroll.ErrNotFound
	}
	m := s.m
	return m, fn(&m)
}
func (memberStore) PutTicket(context.Context, enroll.TicketRecord) error {
	return errors.ErrUnsupported
}
func (memberStore) RedeemTicket(context.Context, [32]byte, func(enroll.TicketRecord) (enroll.Member, error)) (enroll.Member, error) {
	return enroll.Member{}, errors.ErrUnsupported
}
func (memberStore) GetTicket(context.Context, [32]byte) (enroll.TicketRecord, error) {
	return enroll.TicketRecord{}, errors.ErrUnsupported
}
func (memberStore) UpdateTicket(context.Context, [32]byte, func(*enroll.TicketRecord) error) (enroll.TicketRecord, error) {
	return enroll.TicketRecord{}, errors.ErrUnsupported
}
func (memberStore) ListTickets(context.Context) ([]enroll.TicketRecord, error) { return nil, nil }
func (s memberStore) GetMember(context.Context, string) (enroll.Member, error) { return s.m, nil }
func (s memberStore) ListMembers(context.Context) ([]enroll.Member, error) {
	return []enroll.Member{s.m}, nil
}

// TestAuthoritySession: a node's authority connection is spliced to a
// data connection the authority dials, and nothing else: no authority, no
// splice; past its byte limit it is cut.
func TestAuthoritySession(t *testing.T) {
	h := startHub(t, 0)
	dialA := func() net.Conn {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.Write(wire.Preface(wire.KindAuthority))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	var st [1]byte
	c := dialA()
	if _, err := io.ReadFull(c, st[:]); err != nil || st[0] != 1 {
		t.Fatalf("without an authority: status %v, %v", st, err)
	}
	ac := h.authorityConn(t)
	c = dialA()
	if _, err := io.ReadFull(c, st[:]); err != nil || st[0] != 0 {
		t.Fatalf("with an authority: status %v, %v", st, err)
	}
	ac.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := wire.ReadMessage(ac)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := control.Decode(b)
	var as control.AuthoritySession
	if m.Type != control.TypeAuthoritySession || control.DecodeBody(m, &as) != nil {
		t.Fatalf("push %+v", m)
	}
	if !bytes.Equal(as.Offer, []byte{wire.OurOffer.Min, wire.OurOffer.Max}) {
		t.Errorf("offer %v", as.Offer)
	}
	d := dialData(t, h.addr, as.Token)
	c.Write([]byte("secret stays end to end"))
	buf := make([]byte, 23)
	d.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(d, buf); err != nil || string(buf) != "secret stays end to end" {
		t.Fatalf("spliced %q, %v", buf, err)
	}
	// Past the limit, the relay cuts it.
	go c.Write(make([]byte, hub.AuthoritySessionBytes+1))
	d.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _ := io.Copy(io.Discard, d)
	if n > hub.AuthoritySessionBytes {
		t.Fatalf("%d bytes passed an authority session (limit %d)", n, hub.AuthoritySessionBytes)
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
		nc := h.member(t, key.NewNodePrivate(), "")
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], wire.MaxMessageSize+1)
		nc.Write(hdr[:])
		expectClosed(t, nc, 5*time.Second)
	})
	t.Run("deep CBOR", func(t *testing.T) {
		nc := h.member(t, key.NewNodePrivate(), "")
		deep := append(bytes.Repeat([]byte{0x81}, 10000), 0)
		wire.WriteMessage(nc, deep)
		expectClosed(t, nc, 5*time.Second)
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

// hybrid is the Noise config the relay's control channel requires.
func hybrid(k key.NodePrivate, prologue []byte) *noiseconn.Config {
	st, err := noiseconn.NewStatic(k)
	if err != nil {
		panic(err)
	}
	return &noiseconn.Config{Static: st, Prologue: prologue, Mode: noiseconn.Hybrid}
}

// TestMemberRateLimits replays a member asking without limit: past its
// bucket it is told to slow down (with how long), while another member is
// served as usual.
func TestMemberRateLimits(t *testing.T) {
	h := startHub(t, 0)
	flood := h.member(t, key.NewNodePrivate(), "")
	calm := h.member(t, key.NewNodePrivate(), "")
	var slowed *control.Error
	for i := 0; i < 500 && slowed == nil; i++ {
		if e := call(t, flood, control.TypeNodeState, control.NodeState{}, nil); e != nil {
			slowed = e
		}
	}
	if slowed == nil || slowed.Code != control.ErrCodeSlowDown || slowed.RetryAfter() <= 0 || !strings.Contains(slowed.Message, "node-state") {
		t.Fatalf("500 node-state requests in a row: %+v", slowed)
	}
	if e := call(t, calm, control.TypeNodeState, control.NodeState{}, nil); e != nil {
		t.Fatalf("another member was slowed down: %v", e)
	}
	// The flooder is still connected and served once it waits.
	time.Sleep(slowed.RetryAfter())
	if e := call(t, flood, control.TypeNodeState, control.NodeState{}, nil); e != nil {
		t.Fatalf("after waiting as asked: %v", e)
	}
}
