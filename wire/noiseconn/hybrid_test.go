// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package noiseconn

import (
	"bytes"
	"context"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flynn/noise"

	"github.com/edgeportal/connect/internal/tstest/testnet"
	"github.com/edgeportal/connect/wire/key"
)

// recConn records what one side writes.
type recConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	n      int
}

func (c *recConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, append([]byte(nil), p...))
	c.n += len(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *recConn) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

type result struct {
	cli, srv *Conn
	cerr     error
	serr     error
	payload3 []byte
}

// handshakeModes runs one handshake with the given modes over a and b.
func handshakeModes(t testing.TB, a, b net.Conn, ck, sk *Static, cm, sm Mode) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var r result
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.srv, r.payload3, r.serr = Respond(ctx, b, &Config{Static: sk, Prologue: []byte("test"), Mode: sm}, []byte("hello from server"))
		if r.serr != nil {
			b.Close()
		}
	}()
	r.cli, r.cerr = Initiate(ctx, a, &Config{Static: ck, Prologue: []byte("test"), Mode: cm}, func(peer key.NodePublic, payload []byte) ([]byte, error) {
		if !peer.Equal(sk.Public()) {
			return nil, errors.New("wrong server key")
		}
		if string(payload) != "hello from server" {
			return nil, fmt.Errorf("client got payload %q", payload)
		}
		return []byte("hello from client"), nil
	})
	if r.cerr != nil {
		a.Close()
	}
	<-done
	return r
}

func statics(t testing.TB) (*Static, *Static) {
	t.Helper()
	ck, err := NewStatic(key.NewNodePrivate())
	if err != nil {
		t.Fatal(err)
	}
	sk, err := NewStatic(key.NewNodePrivate())
	if err != nil {
		t.Fatal(err)
	}
	return ck, sk
}

func TestModes(t *testing.T) {
	tests := []struct {
		name       string
		cm, sm     Mode
		wantSuite  string
		wantErrSrv string // substring of the server's error; "" = success
	}{
		{"hybrid", Hybrid, Hybrid, SuiteHybrid, ""},
		{"classical", Classical, Classical, SuiteClassical, ""},
		{"classical client, hybrid server", Classical, Hybrid, "", "peer runs " + SuiteClassical},
		{"hybrid client, classical server", Hybrid, Classical, "", "it runs " + SuiteHybrid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := tcpPair(t)
			ck, sk := statics(t)
			r := handshakeModes(t, a, b, ck, sk, tt.cm, tt.sm)
			if tt.wantErrSrv != "" {
				if r.serr == nil || !strings.Contains(r.serr.Error(), tt.wantErrSrv) {
					t.Fatalf("server error %v, want %q", r.serr, tt.wantErrSrv)
				}
				if r.cerr == nil {
					t.Fatal("client completed a mismatched handshake")
				}
				return
			}
			if r.cerr != nil || r.serr != nil {
				t.Fatalf("client %v, server %v", r.cerr, r.serr)
			}
			if string(r.payload3) != "hello from client" {
				t.Fatalf("payload3 %q", r.payload3)
			}
			if r.cli.Suite() != tt.wantSuite || r.srv.Suite() != tt.wantSuite {
				t.Fatalf("suites %q %q, want %q", r.cli.Suite(), r.srv.Suite(), tt.wantSuite)
			}
			if !r.srv.Peer().Equal(ck.Public()) || !bytes.Equal(r.cli.HandshakeHash(), r.srv.HandshakeHash()) {
				t.Fatal("peer keys or handshake hashes disagree")
			}
			go func() {
				r.cli.Write(bytes.Repeat([]byte("x"), 200_000))
				r.cli.CloseWrite()
			}()
			got, err := io.ReadAll(r.srv)
			if err != nil || len(got) != 200_000 {
				t.Fatalf("read %d, %v", len(got), err)
			}
		})
	}
}

// TestHybridOverhead pins the extra bytes of the hybrid handshake.
func TestHybridOverhead(t *testing.T) {
	bytesOf := func(m Mode) int {
		a, b := tcpPair(t)
		ra, rb := &recConn{Conn: a}, &recConn{Conn: b}
		ck, sk := statics(t)
		if r := handshakeModes(t, ra, rb, ck, sk, m, m); r.cerr != nil || r.serr != nil {
			t.Fatalf("%v: %v %v", m, r.cerr, r.serr)
		}
		return ra.total() + rb.total()
	}
	c, h := bytesOf(Classical), bytesOf(Hybrid)
	if h-c != HybridOverhead {
		t.Fatalf("hybrid sends %d bytes, classical %d: %d more, want %d", h, c, h-c, HybridOverhead)
	}
	t.Logf("handshake bytes: classical %d, hybrid %d (+%d)", c, h, h-c)
}

// mitm relays a handshake between client (c) and server (s), letting
// edit change message i (0, 1, 2) before it is forwarded.
func mitm(c, s net.Conn, edit func(i int, msg []byte) []byte) {
	go func() {
		defer c.Close()
		defer s.Close()
		for i := 0; i < 3; i++ {
			src, dst := c, s
			if i == 1 {
				src, dst = s, c
			}
			msg, err := readMsg(src, 0)
			if err != nil {
				return
			}
			if err := writeMsg(dst, edit(i, msg)); err != nil {
				return
			}
		}
		go io.Copy(c, s)
		io.Copy(s, c)
	}()
}

// fixedDH is a DH whose "generated" key is a given public key: it lets
// the man in the middle rebuild message 1 around the client's ephemeral.
type fixedDH struct{ pub []byte }

func (d fixedDH) GenerateKeypair(io.Reader) (noise.DHKey, error) {
	return noise.DHKey{Private: make([]byte, 32), Public: d.pub}, nil
}
func (fixedDH) DH(_, _ []byte) ([]byte, error) { return nil, errors.New("unused") }
func (fixedDH) DHLen() int                     { return 32 }
func (fixedDH) DHName() string                 { return "25519+MLKEM768" }

func TestHybridMITM(t *testing.T) {
	attacker, err := mlkem.GenerateKey768()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(t *testing.T, i int, msg []byte) []byte
	}{
		{"swap the ML-KEM key", func(t *testing.T, i int, msg []byte) []byte {
			if i != 0 {
				return msg
			}
			// Message 1's payload key is public (protocol name, prologue,
			// ephemeral), so the attacker can re-encrypt its own key.
			hs, err := noise.NewHandshakeState(noise.Config{
				CipherSuite: noise.NewCipherSuite(fixedDH{pub: msg[:32]}, aesGCM{}, noise.HashSHA256),
				Pattern:     noise.HandshakeXX, Initiator: true, Prologue: []byte("test"),
				PresharedKeyPlacement: 3,
			})
			if err != nil {
				t.Error(err)
				return msg
			}
			forged, _, _, err := hs.WriteMessage(nil, attacker.EncapsulationKey().Bytes())
			if err != nil || len(forged) != len(msg) || bytes.Equal(forged, msg) {
				t.Errorf("forging message 1: %v", err)
			}
			return forged
		}},
		{"swap the ML-KEM ciphertext", func(t *testing.T, i int, msg []byte) []byte {
			if i != 1 {
				return msg
			}
			_, ct := attacker.EncapsulationKey().Encapsulate()
			out := append([]byte(nil), msg...)
			copy(out[32+48:], ct) // e, encrypted s, then the encrypted payload
			return out
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, m1 := tcpPair(t)
			m2, s := tcpPair(t)
			mitm(m1, m2, func(i int, msg []byte) []byte { return tt.edit(t, i, msg) })
			ck, sk := statics(t)
			r := handshakeModes(t, c, s, ck, sk, Hybrid, Hybrid)
			if r.cerr == nil || r.serr == nil {
				t.Fatalf("handshake through the MITM: client %v, server %v", r.cerr, r.serr)
			}
			if !strings.Contains(r.cerr.Error(), "message 2 failed authentication") {
				t.Errorf("client error %v", r.cerr)
			}
		})
	}
	// Control: the same relay with no edit completes.
	c, m1 := tcpPair(t)
	m2, s := tcpPair(t)
	mitm(m1, m2, func(_ int, msg []byte) []byte { return msg })
	ck, sk := statics(t)
	if r := handshakeModes(t, c, s, ck, sk, Hybrid, Hybrid); r.cerr != nil || r.serr != nil {
		t.Fatalf("honest relay: %v %v", r.cerr, r.serr)
	}
}

// setHooks installs test hooks for the duration of the test.
func setHooks(t *testing.T, random func(bool) io.Reader, psk func(bool, []byte)) {
	t.Helper()
	testRandom = random
	testPSK = psk
	testEncapsulate = func(ek *mlkem.EncapsulationKey768) ([]byte, []byte) {
		secret, ct, err := mlkemtest.Encapsulate768(ek, bytes.Repeat([]byte{7}, 32))
		if err != nil {
			panic(err)
		}
		return secret, ct
	}
	t.Cleanup(func() { testRandom, testPSK, testEncapsulate = nil, nil, nil })
}

// TestHybridKeysDependOnKEM runs the same deterministic handshake three
// times: twice unchanged (same keys) and once with only the ML-KEM shared
// secret changed on both sides (same messages 1 and 2, other keys).
func TestHybridKeysDependOnKEM(t *testing.T) {
	ck, sk := statics(t)
	type run struct {
		msgs      [][]byte
		send      [32]byte
		recv      [32]byte
		hash      []byte
		cerr, ser error
	}
	do := func(flip bool) run {
		setHooks(t, func(initiator bool) io.Reader {
			seed := [32]byte{1}
			if initiator {
				seed[0] = 2
			}
			return mrand.NewChaCha8(seed)
		}, func(_ bool, psk []byte) {
			if flip {
				psk[0] ^= 1
			}
		})
		a, b := tcpPair(t)
		ra, rb := &recConn{Conn: a}, &recConn{Conn: b}
		r := handshakeModes(t, ra, rb, ck, sk, Hybrid, Hybrid)
		out := run{cerr: r.cerr, ser: r.serr}
		if r.cerr == nil && r.serr == nil {
			out.msgs = [][]byte{ra.writes[0], rb.writes[0], ra.writes[1]}
			out.send, out.recv = r.cli.enc.UnsafeKey(), r.cli.dec.UnsafeKey()
			out.hash = r.cli.HandshakeHash()
			if r.srv.dec.UnsafeKey() != out.send || r.srv.enc.UnsafeKey() != out.recv {
				t.Fatal("client and server keys disagree")
			}
		}
		return out
	}
	x, y, z := do(false), do(false), do(true)
	for _, r := range []run{x, y, z} {
		if r.cerr != nil || r.ser != nil {
			t.Fatalf("handshake: %v %v", r.cerr, r.ser)
		}
	}
	if x.send != y.send || x.recv != y.recv || !bytes.Equal(x.msgs[2], y.msgs[2]) {
		t.Fatal("the deterministic handshake is not deterministic; the comparison below would prove nothing")
	}
	if !bytes.Equal(x.msgs[0], z.msgs[0]) || !bytes.Equal(x.msgs[1], z.msgs[1]) {
		t.Fatal("messages 1 and 2 differ: more than the ML-KEM secret changed")
	}
	if x.send == z.send || x.recv == z.recv || bytes.Equal(x.hash, z.hash) {
		t.Fatal("session keys do not depend on the ML-KEM shared secret")
	}

	// A secret that differs between the sides fails the handshake.
	setHooks(t, nil, func(initiator bool, psk []byte) {
		if initiator {
			psk[0] ^= 1
		}
	})
	a, b := tcpPair(t)
	r := handshakeModes(t, a, b, ck, sk, Hybrid, Hybrid)
	if r.serr == nil || !strings.Contains(r.serr.Error(), "message 3 failed authentication") {
		t.Fatalf("mismatched ML-KEM secrets: server %v", r.serr)
	}
}

func TestHybridLimits(t *testing.T) {
	ck, sk := statics(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := Respond(ctx, nil, &Config{Static: sk}, make([]byte, MaxHandshakePayload+1)); err == nil {
		t.Fatal("oversized message-2 payload accepted")
	}
	a, b := tcpPair(t)
	go Respond(ctx, b, &Config{Static: sk}, nil)
	_, err := Initiate(ctx, a, &Config{Static: ck}, func(key.NodePublic, []byte) ([]byte, error) {
		return make([]byte, MaxHandshakePayload+1), nil
	})
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("oversized message-3 payload: %v", err)
	}
	// The largest allowed payloads still fit the 65535-byte frame.
	a, b = tcpPair(t)
	done := make(chan error, 1)
	go func() {
		_, p, err := Respond(ctx, b, &Config{Static: sk}, make([]byte, MaxHandshakePayload))
		if err == nil && len(p) != MaxHandshakePayload {
			err = fmt.Errorf("payload3 of %d bytes", len(p))
		}
		done <- err
	}()
	_, err = Initiate(ctx, a, &Config{Static: ck}, func(_ key.NodePublic, p []byte) ([]byte, error) {
		if len(p) != MaxHandshakePayload {
			return nil, fmt.Errorf("payload2 of %d bytes", len(p))
		}
		return make([]byte, MaxHandshakePayload), nil
	})
	if err != nil || <-done != nil {
		t.Fatalf("largest payloads: %v", err)
	}
	// A message 1 with a short ML-KEM key is refused by name.
	a, b = tcpPair(t)
	go func() {
		hs, _ := noise.NewHandshakeState(noise.Config{
			CipherSuite: noise.NewCipherSuite(fixedDH{pub: make([]byte, 32)}, aesGCM{}, noise.HashSHA256),
			Pattern:     noise.HandshakeXX, Initiator: true, PresharedKeyPlacement: 3,
		})
		msg, _, _, _ := hs.WriteMessage(nil, make([]byte, 100))
		writeMsg(a, msg)
	}()
	if _, _, err := Respond(ctx, b, &Config{Static: sk}, nil); err == nil || !strings.Contains(err.Error(), "100-byte ML-KEM-768 key") {
		t.Fatalf("short ML-KEM key: %v", err)
	}
	if _, err := NewStatic(key.NodePrivate{}); err == nil {
		t.Fatal("zero static key accepted")
	}
	if _, err := Initiate(ctx, a, &Config{}, nil); err == nil {
		t.Fatal("missing Static accepted")
	}
}

// heldForTest keeps one secret reachable from a package-level variable:
// the positive control of TestNoEphemeralKeyRetained.
var heldForTest []byte

// TestNoEphemeralKeyRetained runs handshakes, then dumps the live heap
// (and the data and bss segments, i.e. every package-level variable) and
// looks for each ephemeral X25519 private key and ML-KEM seed they made.
func TestNoEphemeralKeyRetained(t *testing.T) {
	const mask = 0xa5
	var mu sync.Mutex
	var secrets [][]byte // masked, so the test's own copies are not found
	testSecret = func(_ string, b []byte) {
		m := make([]byte, len(b))
		for i := range b {
			m[i] = b[i] ^ mask
		}
		mu.Lock()
		secrets = append(secrets, m)
		mu.Unlock()
	}
	defer func() { testSecret = nil }()
	ck, sk := statics(t)
	var conns []*Conn
	for _, m := range []Mode{Hybrid, Classical, Hybrid} {
		a, b := tcpPair(t)
		r := handshakeModes(t, a, b, ck, sk, m, m)
		if r.cerr != nil || r.serr != nil {
			t.Fatal(r.cerr, r.serr)
		}
		conns = append(conns, r.cli, r.srv) // live sessions stay reachable
	}
	testSecret = nil
	if len(secrets) != 3*2+2 {
		t.Fatalf("saw %d secrets, want 8", len(secrets))
	}
	unmask := func(m []byte) []byte {
		b := make([]byte, len(m))
		for i := range m {
			b[i] = m[i] ^ mask
		}
		return b
	}
	heldForTest = unmask(secrets[0][:32])
	runtime.GC()
	runtime.GC()
	f, err := os.CreateTemp(t.TempDir(), "heap")
	if err != nil {
		t.Fatal(err)
	}
	debug.WriteHeapDump(f.Fd())
	f.Close()
	heldForTest = nil
	dump, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(dump, unmask(secrets[0][:32])) {
		t.Fatal("the heap dump lacks a key held in a package variable: the search cannot see keys")
	}
	for i, m := range secrets {
		if bytes.Contains(dump, unmask(m)) {
			t.Errorf("secret %d (%d bytes) is still in the live heap after its handshake", i, len(m))
		}
	}
	runtime.KeepAlive(conns)
}

func TestNewStaticSharesNothing(t *testing.T) {
	// Two handshakes with one Static at once: each has its own ephemeral.
	ck, sk := statics(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			r := handshakeModes(t, a, b, ck, sk, Hybrid, Hybrid)
			if r.cerr != nil || r.serr != nil {
				errs <- fmt.Errorf("%v %v", r.cerr, r.serr)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestMaxMessage: a side with MaxMessage refuses a longer handshake
// message from its header, before reading (or allocating) the body.
func TestMaxMessage(t *testing.T) {
	a, b := testnet.Pair(t)
	st, err := NewStatic(key.NewNodePrivate())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := Respond(context.Background(), b, &Config{Static: st, MaxMessage: 4096}, nil)
		done <- err
	}()
	// A header claiming 65535 bytes, and none of them.
	a.Write([]byte{0xff, 0xff})
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "exceeds this side's limit of 4096") {
			t.Fatalf("Respond = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the responder waited for the body of an oversized message")
	}
}
