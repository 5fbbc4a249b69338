// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package mux

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/edgeportal/connect/internal/tstest/testnet"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// noisePair returns both ends of a hybrid Noise channel over a and b.
func noisePair(t testing.TB, a, b net.Conn) (*noiseconn.Conn, *noiseconn.Conn) {
	t.Helper()
	ck, err := noiseconn.NewStatic(key.NewNodePrivate())
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := noiseconn.NewStatic(key.NewNodePrivate())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := make(chan *noiseconn.Conn, 1)
	go func() {
		nc, _, err := noiseconn.Respond(ctx, b, &noiseconn.Config{Static: sk, Prologue: []byte("mux test")}, nil)
		if err != nil {
			t.Error(err)
		}
		srv <- nc
	}()
	cli, err := noiseconn.Initiate(ctx, a, &noiseconn.Config{Static: ck, Prologue: []byte("mux test")}, func(key.NodePublic, []byte) ([]byte, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	s := <-srv
	if s == nil {
		t.Fatal("server handshake failed")
	}
	return cli, s
}

// sessions starts a client and a server session over a Noise channel on
// loopback TCP; both are closed at test end.
func sessions(t testing.TB, cfg *Config) (*Session, *Session) {
	t.Helper()
	a, b := testnet.Pair(t)
	return sessionsOver(t, a, b, cfg)
}

func sessionsOver(t testing.TB, a, b net.Conn, cfg *Config) (*Session, *Session) {
	t.Helper()
	x, y := noisePair(t, a, b)
	cli, err := Client(x, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Server(y, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close(); srv.Close() })
	return cli, srv
}

func accept(t testing.TB, s *Session) *Incoming {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in, err := s.Accept(ctx)
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	return in
}

func TestOpenAcceptHalfClose(t *testing.T) {
	cli, srv := sessions(t, nil)
	ctx := context.Background()
	st, err := cli.Open(ctx, []byte("outlet: github"), []byte("GET / HTTP/1.0\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	// The opener goes on writing and half-closes before any answer.
	if _, err := st.Write([]byte("\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	in := accept(t, srv)
	if string(in.Header()) != "outlet: github" {
		t.Fatalf("header %q", in.Header())
	}
	as, err := in.Accept()
	if err != nil {
		t.Fatal(err)
	}
	req, err := io.ReadAll(as)
	if err != nil || string(req) != "GET / HTTP/1.0\r\n\r\n" {
		t.Fatalf("acceptor read %q, %v", req, err)
	}
	// The acceptor still writes after the opener's half-close.
	resp := bytes.Repeat([]byte("response "), 100_000)
	go func() {
		as.Write(resp)
		as.CloseWrite()
	}()
	got, err := io.ReadAll(st)
	if err != nil || !bytes.Equal(got, resp) {
		t.Fatalf("opener read %d bytes, %v", len(got), err)
	}
	st.Close()
	as.Close()
	if _, err := st.Write([]byte("x")); err == nil {
		t.Fatal("write after Close")
	}
}

func TestRefuse(t *testing.T) {
	cli, srv := sessions(t, nil)
	st, err := cli.Open(context.Background(), []byte("outlet: nope"), []byte("secret early bytes"))
	if err != nil {
		t.Fatal(err)
	}
	in := accept(t, srv)
	if err := in.Refuse("unknown-outlet", `no outlet "nope" on this node`); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Accept(); err == nil {
		t.Fatal("Accept after Refuse")
	}
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = st.Read(make([]byte, 10))
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != "unknown-outlet" || re.Message != `no outlet "nope" on this node` {
		t.Fatalf("opener read %v; want the refusal", err)
	}
	if _, err := st.Write([]byte("more")); !errors.As(err, &re) {
		t.Fatalf("opener write after refusal: %v", err)
	}
	waitFor2(t, func() bool { _, n := srv.Activity(); _, m := cli.Activity(); return n == 0 && m == 0 })
}

// TestEarlyBytesOnlyAfterAccept: the acceptor's application gets nothing
// before Accept (it has no Stream), and the early bytes are the first
// bytes after it, in order with what followed them.
func TestEarlyBytesOnlyAfterAccept(t *testing.T) {
	cli, srv := sessions(t, nil)
	early := bytes.Repeat([]byte("e"), InitialWindow) // the whole initial window
	st, err := cli.Open(context.Background(), []byte("h"), early)
	if err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() { // blocks on the window until the acceptor reads
		_, err := st.Write([]byte("after"))
		st.CloseWrite()
		wrote <- err
	}()
	in := accept(t, srv)
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-wrote:
		t.Fatalf("opener wrote beyond the initial window before Accept: %v", err)
	default:
	}
	as, err := in.Accept()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(as)
	if err != nil || !bytes.Equal(got, append(early, "after"...)) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Open(context.Background(), nil, make([]byte, InitialWindow+1)); err == nil {
		t.Fatal("early bytes beyond the initial window accepted")
	}
	if _, err := cli.Open(context.Background(), make([]byte, MaxOpenHeader+1), nil); err == nil {
		t.Fatal("oversized open header accepted")
	}
}

func waitFor2(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReset(t *testing.T) {
	cli, srv := sessions(t, nil)
	st, _ := cli.Open(context.Background(), nil, []byte("x"))
	as, err := accept(t, srv).Accept()
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(as, make([]byte, 1))
	blocked := make(chan error, 1)
	go func() {
		_, err := as.Read(make([]byte, 1))
		blocked <- err
	}()
	st.Reset()
	var re *ResetError
	select {
	case err := <-blocked:
		if !errors.As(err, &re) || !re.Remote || re.Code != CodeReset {
			t.Fatalf("peer read %v after reset; want a remote ResetError", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reset did not reach the peer")
	}
	if _, err := st.Read(make([]byte, 1)); !errors.As(err, &re) || re.Remote {
		t.Fatalf("local read after Reset: %v", err)
	}
	// Close with bytes still unread is a reset (CodeClosed).
	st2, _ := cli.Open(context.Background(), nil, nil)
	as2, _ := accept(t, srv).Accept()
	as2.Write([]byte("never read"))
	waitFor2(t, func() bool { st2.mu.Lock(); defer st2.mu.Unlock(); return st2.buf.n > 0 })
	st2.Close()
	as2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := as2.Read(make([]byte, 1)); !errors.As(err, &re) || re.Code != CodeClosed {
		t.Fatalf("peer read %v after a Close with unread bytes", err)
	}
	if _, err := st2.Read(make([]byte, 1)); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("read after Close: %v", err)
	}
	// Close with nothing unread is a FIN; bytes sent after it get a reset.
	st3, _ := cli.Open(context.Background(), nil, nil)
	as3, _ := accept(t, srv).Accept()
	st3.Close()
	as3.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := as3.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("peer read %v after a clean Close; want io.EOF", err)
	}
	as3.SetWriteDeadline(time.Now().Add(5 * time.Second))
	waitFor2(t, func() bool { _, err := as3.Write([]byte("late")); return errors.As(err, &re) && re.Code == CodeClosed })
}

// hubRelay splices a⇄b like the hub; cut kills it mid-stream.
func hubRelay(t testing.TB) (nodeA, nodeB net.Conn, cut func()) {
	x, h1 := testnet.Pair(t)
	h2, y := testnet.Pair(t)
	go io.Copy(h2, h1)
	go io.Copy(h1, h2)
	return x, y, func() { h1.Close(); h2.Close() }
}

func TestChannelCutIsNotEOF(t *testing.T) {
	a, b, cut := hubRelay(t)
	cli, srv := sessionsOver(t, a, b, nil)
	done, _ := cli.Open(context.Background(), nil, []byte("complete"))
	done.CloseWrite()
	live, _ := cli.Open(context.Background(), nil, []byte("partial"))
	d, _ := accept(t, srv).Accept()
	l, _ := accept(t, srv).Accept()
	got, err := io.ReadAll(d)
	if err != nil || string(got) != "complete" {
		t.Fatalf("finished stream: %q, %v", got, err)
	}
	io.ReadFull(l, make([]byte, 7))
	cut()
	for _, s := range []*Stream{l, live} {
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := s.Read(make([]byte, 10))
		if err == io.EOF || !errors.Is(err, ErrChannelLost) {
			t.Fatalf("read on a cut channel: %v; want ErrChannelLost", err)
		}
		if _, err := s.Write([]byte("x")); !errors.Is(err, ErrChannelLost) {
			t.Fatalf("write on a cut channel: %v", err)
		}
	}
	if _, err := d.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a stream that ended before the cut: %v; want io.EOF", err)
	}
	<-srv.Done()
	if !errors.Is(srv.Err(), ErrChannelLost) {
		t.Fatalf("session error %v", srv.Err())
	}
	if _, err := cli.Open(context.Background(), nil, nil); err == nil {
		waitFor2(t, func() bool { return cli.Err() != nil })
	}
}

func TestSessionClose(t *testing.T) {
	cli, srv := sessions(t, nil)
	st, _ := cli.Open(context.Background(), nil, []byte("x"))
	as, _ := accept(t, srv).Accept()
	io.ReadFull(as, make([]byte, 1))
	cli.Close()
	if _, err := st.Read(make([]byte, 1)); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("local stream after Close: %v", err)
	}
	as.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := as.Read(make([]byte, 1))
	if !errors.Is(err, ErrChannelLost) || !strings.Contains(err.Error(), "peer closed the session") {
		t.Fatalf("remote stream after the peer's Close: %v", err)
	}
	if _, err := cli.Open(context.Background(), nil, nil); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("Open after Close: %v", err)
	}
	if _, err := cli.Accept(context.Background()); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}

func TestLimits(t *testing.T) {
	cli, srv := sessions(t, &Config{MaxStreams: 2, AcceptBacklog: 1})
	ctx := context.Background()
	readErr := func(st *Stream) error {
		st.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := st.Read(make([]byte, 1))
		return err
	}
	s1, _ := cli.Open(ctx, nil, nil)
	s2, _ := cli.Open(ctx, nil, nil) // waits in the backlog (full at 1)...
	_ = s1
	var re *RefusedError
	if err := readErr(s2); !errors.As(err, &re) || re.Code != CodeBacklogFull {
		t.Fatalf("second stream with a full backlog: %v", err)
	}
	a1, _ := accept(t, srv).Accept()
	s3, _ := cli.Open(ctx, nil, nil)
	a3, _ := accept(t, srv).Accept()
	s4, _ := cli.Open(ctx, nil, nil) // a third concurrent stream
	if err := readErr(s4); !errors.As(err, &re) || re.Code != CodeTooManyStreams {
		t.Fatalf("stream over MaxStreams: %v", err)
	}
	if _, open := srv.Activity(); open != 2 {
		t.Fatalf("acceptor counts %d open streams, want 2", open)
	}
	// Closing one frees a slot.
	s3.CloseWrite()
	a3.CloseWrite()
	io.ReadAll(a3)
	io.ReadAll(s3)
	s3.Close()
	a3.Close()
	waitFor2(t, func() bool { _, n := srv.Activity(); return n == 1 })
	s5, _ := cli.Open(ctx, nil, []byte("ok"))
	a5, _ := accept(t, srv).Accept()
	if got, _ := io.ReadAll(io.LimitReader(a5, 2)); string(got) != "ok" {
		t.Fatalf("after a slot freed: %q", got)
	}
	_, _ = a1, s5
	if _, err := Client(nil, &Config{MaxStreams: -1}); err == nil {
		t.Fatal("negative limit accepted")
	}
	if _, err := Client(nil, &Config{MaxWindow: 1000}); err == nil {
		t.Fatal("MaxWindow below the initial window accepted")
	}
}

func TestActivityAndPing(t *testing.T) {
	cli, srv := sessions(t, nil)
	ctx := context.Background()
	rtt, err := cli.Ping(ctx)
	if err != nil || rtt <= 0 {
		t.Fatalf("ping: %v, %v", rtt, err)
	}
	if cli.RTT() <= 0 {
		t.Fatal("no RTT after a ping")
	}
	before, open := srv.Activity()
	if open != 0 {
		t.Fatalf("%d open streams at start", open)
	}
	time.Sleep(10 * time.Millisecond)
	cli.Ping(ctx) // pings are not activity
	if last, _ := srv.Activity(); !last.Equal(before) {
		t.Fatal("a ping counted as activity")
	}
	st, _ := cli.Open(ctx, nil, []byte("x"))
	as, _ := accept(t, srv).Accept()
	if last, open := srv.Activity(); !last.After(before) || open != 1 {
		t.Fatalf("after an open: %v, %d open", last.Sub(before), open)
	}
	st.CloseWrite()
	io.ReadAll(as)
	as.CloseWrite()
	io.ReadAll(st)
	waitFor2(t, func() bool { _, a := cli.Activity(); _, b := srv.Activity(); return a == 0 && b == 0 })
}

func TestDeadlines(t *testing.T) {
	cli, srv := sessions(t, nil)
	st, _ := cli.Open(context.Background(), nil, make([]byte, InitialWindow))
	accept(t, srv) // never read: the window stays full
	st.SetDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := st.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v", err)
	}
	if _, err := st.Write([]byte("x")); !errors.Is(err, ErrTimeout) {
		t.Fatalf("write past its deadline: %v", err)
	}
}

// TestStalledReader: 1000 concurrent streams of 1 MiB each, one reader
// never reads until the others are done; every other stream completes
// byte-exact, then the stalled one does too.
func TestStalledReader(t *testing.T) {
	n, size := 1000, 1<<20
	if testing.Short() {
		n = 100
	}
	cli, srv := sessions(t, &Config{MaxStreams: 2 * n, AcceptBacklog: n})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const stalled = 17
	data := func(i int) []byte {
		b := make([]byte, size)
		r := mrand.NewChaCha8([32]byte{byte(i), byte(i >> 8)})
		r.Read(b)
		return b
	}
	want := make([][32]byte, n)
	for i := range want {
		want[i] = sha256.Sum256(data(i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := cli.Open(ctx, []byte{byte(i), byte(i >> 8)}, nil)
			if err != nil {
				errs <- err
				return
			}
			if _, err := st.Write(data(i)); err != nil {
				errs <- fmt.Errorf("stream %d write: %w", i, err)
			}
			st.CloseWrite()
			st.Close()
		}()
	}
	var readers sync.WaitGroup
	var finished atomic.Int32
	release := make(chan struct{})
	for i := 0; i < n; i++ {
		in, err := srv.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		id := int(in.Header()[0]) | int(in.Header()[1])<<8
		as, err := in.Accept()
		if err != nil {
			t.Fatal(err)
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			if id == stalled {
				select {
				case <-release:
				case <-ctx.Done():
					return
				}
			}
			h := sha256.New()
			if _, err := io.Copy(h, as); err != nil {
				errs <- fmt.Errorf("stream %d read: %w", id, err)
			}
			if [32]byte(h.Sum(nil)) != want[id] {
				errs <- fmt.Errorf("stream %d: bytes differ", id)
			}
			as.Close()
			if id != stalled {
				finished.Add(1)
			}
		}()
	}
	waitFor := func(cond func() bool) bool {
		for !cond() {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(5 * time.Millisecond):
			}
		}
		return true
	}
	if !waitFor(func() bool { return finished.Load() == int32(n-1) }) {
		t.Fatalf("only %d of %d streams finished while one reader stalled", finished.Load(), n-1)
	}
	close(release)
	readers.Wait()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestProtocolViolations feeds hand-made frames to a session: each ends
// it with a protocol error and nothing else.
func TestProtocolViolations(t *testing.T) {
	hello := frameBytes(header{typ: typeHello, length: Version}, nil)
	open1 := frameBytes(header{typ: typeOpen, id: 1}, nil)
	tests := []struct {
		name  string
		input []byte
		want  string
	}{
		{"no hello", frameBytes(header{typ: typePing}, nil), "did not start with a hello"},
		{"other version", frameBytes(header{typ: typeHello, length: 9}, nil), "version 9"},
		{"unknown type", cat(hello, frameBytes(header{typ: 99}, nil)), "unknown frame type"},
		{"data on a stream never opened", cat(hello, frameBytes(header{typ: typeData, id: 5, length: 1}, []byte("x"))), "never opened"},
		{"open with the wrong parity", cat(hello, frameBytes(header{typ: typeOpen, id: 2}, nil)), "out of order"},
		{"reused id", cat(hello, open1, open1), "out of order"},
		{"beyond the window", cat(hello, open1, frameBytes(header{typ: typeData, id: 1, length: maxDataFrame}, make([]byte, maxDataFrame)), frameBytes(header{typ: typeData, id: 1, length: 1}, []byte("x"))), "beyond its window"},
		{"data after FIN", cat(hello, open1, frameBytes(header{typ: typeData, id: 1, flags: flagFin}, nil), frameBytes(header{typ: typeData, id: 1, length: 1}, []byte("x"))), "after its FIN"},
		{"oversized data frame", cat(hello, open1, frameBytes(header{typ: typeData, id: 1, length: maxDataFrame + 1}, nil)), "limit"},
		{"oversized open header", cat(hello, frameBytes(header{typ: typeOpen, id: 1, length: MaxOpenHeader + 1}, nil)), "limit"},
		{"accept of the peer's own stream", cat(hello, open1, frameBytes(header{typ: typeAccept, id: 1}, nil)), "which the peer opened"},
		{"zero window increment", cat(hello, open1, frameBytes(header{typ: typeWindow, id: 1}, nil)), "window increment"},
		{"bad reason", cat(hello, open1, frameBytes(header{typ: typeReset, id: 1, length: 2}, []byte{200, 1})), "reason"},
		{"flags on open", cat(hello, frameBytes(header{typ: typeOpen, id: 1, flags: 1}, nil)), "flags"},
		{"truncated frame", cat(hello, hello[:5]), "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := feed(t, tt.input)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("session ended with %v; want %q", err, tt.want)
			}
		})
	}
}

func frameBytes(h header, payload []byte) []byte {
	b := make([]byte, headerLen, headerLen+len(payload))
	h.put(b)
	return append(b, payload...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// feed runs a Server session over loopback TCP, writes input as the peer
// and half-closes, and returns how the session ended.
func feed(t testing.TB, input []byte) error {
	a, b := testnet.Pair(t)
	s, err := Server(b, &Config{KeepAlive: -1, WriteTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	drained := make(chan struct{})
	go func() { io.Copy(io.Discard, a); close(drained) }()
	accepted := make(chan struct{})
	// Accept whatever opens but never read it: a reader would widen the
	// window while the frames arrive, and the window test would race.
	go func() {
		defer close(accepted)
		for {
			in, err := s.Accept(context.Background())
			if err != nil {
				return
			}
			in.Accept()
		}
	}()
	a.SetWriteDeadline(time.Now().Add(5 * time.Second))
	a.Write(input)
	a.(*net.TCPConn).CloseWrite()
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session did not end")
	}
	err = s.Err()
	s.Close()
	a.Close()
	<-drained
	<-accepted
	return err
}

func FuzzFrames(f *testing.F) {
	hello := frameBytes(header{typ: typeHello, length: Version}, nil)
	f.Add(hello)
	f.Add(cat(hello, frameBytes(header{typ: typeOpen, id: 1, length: 3}, []byte("abc")), frameBytes(header{typ: typeData, id: 1, length: 2, flags: flagFin}, []byte("hi"))))
	f.Add(cat(hello, frameBytes(header{typ: typePing, length: 7}, nil), frameBytes(header{typ: typeGoAway, length: 3}, []byte{1, 'x', 'y'})))
	f.Add(cat(hello, frameBytes(header{typ: typeOpen, id: 1}, nil), frameBytes(header{typ: typeWindow, id: 1, length: 100}, nil), frameBytes(header{typ: typeReset, id: 1, length: 1}, []byte{0})))
	f.Fuzz(func(t *testing.T, input []byte) {
		err := feed(t, input)
		if err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("session ended with %v", err)
		}
	})
}

// TestIdleMemory opens idle streams and idle sessions and reports (and
// bounds) what each costs in heap and goroutine stacks.
func TestIdleMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector inflates every allocation")
	}
	measure := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc + m.StackInuse
	}
	cli, srv := sessions(t, &Config{MaxStreams: 4000, AcceptBacklog: 4000})
	const streams = 2000
	ctx := context.Background()
	before := measure()
	var opened, accepted []*Stream
	for i := 0; i < streams; i++ {
		st, err := cli.Open(ctx, []byte("outlet"), []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		opened = append(opened, st)
	}
	for i := 0; i < streams; i++ {
		as, err := accept(t, srv).Accept()
		if err != nil {
			t.Fatal(err)
		}
		io.ReadFull(as, make([]byte, 5)) // read the early bytes: now idle
		accepted = append(accepted, as)
	}
	perStream := (measure() - before) / streams // both ends of each stream
	t.Logf("idle stream: %d bytes (both ends)", perStream)
	if perStream > 64<<10 {
		t.Errorf("an idle stream costs %d bytes, over 64 KiB", perStream)
	}
	runtime.KeepAlive(opened)
	runtime.KeepAlive(accepted)

	const sessionsN = 50
	before = measure()
	var all []*Session
	for i := 0; i < sessionsN; i++ {
		a, b := sessions(t, nil)
		if _, err := a.Ping(ctx); err != nil { // settled: both goroutines idle
			t.Fatal(err)
		}
		all = append(all, a, b)
	}
	perSession := (measure() - before) / (2 * sessionsN)
	t.Logf("idle session: %d bytes (one end, including its Noise channel and TCP socket)", perSession)
	if perSession > 64<<10 {
		t.Errorf("an idle session costs %d bytes, over 64 KiB", perSession)
	}
	runtime.KeepAlive(all)
}

// TestNoFrameBeforeItsOpen: a stream's window grant (a session that has
// learned a large window) and its reset (a client that gave up at once)
// must never reach the peer before the stream's open frame. One that did
// would be a protocol violation that ends every other stream of the
// channel.
func TestNoFrameBeforeItsOpen(t *testing.T) {
	cli, srv := sessions(t, nil)
	cli.learnWindow(8 * InitialWindow)
	srv.learnWindow(8 * InitialWindow)
	// Keep the writer's fifo busy so prio frames have something to jump.
	busy, _ := cli.Open(context.Background(), nil, nil)
	bin, _ := accept(t, srv).Accept()
	go io.Copy(io.Discard, bin)
	stopBusy := make(chan struct{})
	busyDone := make(chan struct{})
	go func() {
		defer close(busyDone)
		buf := make([]byte, 64<<10)
		for {
			select {
			case <-stopBusy:
				return
			default:
			}
			if _, err := busy.Write(buf); err != nil {
				return
			}
		}
	}()
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			in, err := srv.Accept(context.Background())
			if err != nil {
				return
			}
			if st, err := in.Accept(); err == nil {
				st.Close()
			}
		}
	}()
	for i := range 500 {
		st, err := cli.Open(context.Background(), []byte("x"), nil)
		if err != nil {
			t.Fatalf("open %d: %v (session: %v)", i, err, cli.Err())
		}
		if i%2 == 0 {
			st.Reset()
		} else {
			st.Close()
		}
	}
	close(stopBusy)
	<-busyDone
	if _, err := cli.Ping(context.Background()); err != nil {
		t.Fatalf("the session died: %v / %v", err, srv.Err())
	}
	select {
	case <-srv.Done():
		t.Fatalf("the server ended the session: %v", srv.Err())
	default:
	}
	cli.Close()
	srv.Close()
	<-accepted
}

func TestOnAccept(t *testing.T) {
	cli, srv := sessions(t, nil)
	ran := make(chan string, 4)
	a, _ := cli.Open(context.Background(), []byte("a"), nil)
	a.OnAccept(func() { ran <- "a" })
	if _, err := accept(t, srv).Accept(); err != nil {
		t.Fatal(err)
	}
	r, _ := cli.Open(context.Background(), []byte("r"), nil)
	r.OnAccept(func() { ran <- "r" })
	accept(t, srv).Refuse("denied", "no")
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.Read(make([]byte, 1)); err == nil {
		t.Fatal("a refused stream read")
	}
	select {
	case got := <-ran:
		if got != "a" {
			t.Fatalf("OnAccept ran for %s", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnAccept did not run for the accepted stream")
	}
	// Set after the accept: runs at once.
	late := make(chan struct{})
	a.OnAccept(func() { close(late) })
	<-late
	select {
	case got := <-ran:
		t.Fatalf("OnAccept ran for %s", got)
	default:
	}
}

// TestWriteToSocket checks WriteTo to a socket, where the session's
// reader writes arriving frames to the socket itself while WriteTo
// waits: every byte arrives once and in order, the count is exact, a
// socket that stops reading (its buffer full, writes partial) moves the
// rest to WriteTo's own writes and back, and the peer's FIN still ends it.
func TestWriteToSocket(t *testing.T) {
	cli, srv := sessions(t, nil)
	st, err := cli.Open(context.Background(), []byte("h"), nil)
	if err != nil {
		t.Fatal(err)
	}
	as, err := accept(t, srv).Accept()
	if err != nil {
		t.Fatal(err)
	}
	out, far := testnet.Pair(t)
	type result struct {
		n   int64
		err error
	}
	res := make(chan result, 1)
	go func() {
		n, err := as.WriteTo(out)
		res <- result{n, err}
	}()
	var want bytes.Buffer
	var wmu sync.Mutex // guards want while the sender adds to it
	send := func(msgs int) {
		for i := range msgs {
			msg := bytes.Repeat([]byte{byte(i), byte(i >> 8), 0x5a}, 1+i%1500)
			wmu.Lock()
			want.Write(msg)
			wmu.Unlock()
			if _, err := st.Write(msg); err != nil {
				t.Error(err)
				return
			}
		}
	}
	// Small messages one at a time, read as they come: the direct path.
	got := make([]byte, 0, 64<<20)
	buf := make([]byte, 64<<10)
	for i := range 200 {
		msg := []byte(fmt.Sprintf("request %d;", i))
		want.Write(msg)
		if _, err := st.Write(msg); err != nil {
			t.Fatal(err)
		}
		far.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.ReadAtLeast(far, buf, len(msg))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if srv.directBytes.Load() == 0 {
		t.Fatal("no byte went straight from the reader to the socket")
	}
	// Then megabytes arrive while far does not read for a while: its
	// buffers fill; then small ones again.
	done := make(chan struct{})
	go func() {
		defer close(done)
		send(4000)
		send(300)
		st.CloseWrite()
	}()
	time.Sleep(300 * time.Millisecond)
	deadline := time.Now().Add(30 * time.Second)
	far.SetReadDeadline(deadline)
	for {
		// The sender may still be between messages when every byte it
		// sent so far has arrived: then wait for it, do not read (the
		// stream's FIN does not end far).
		finished := isDone(done)
		wmu.Lock()
		all := want.Len()
		wmu.Unlock()
		if len(got) == all {
			if finished {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the sender did not finish after %d bytes", len(got))
			}
			time.Sleep(time.Millisecond)
			continue
		}
		n, err := far.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", len(got), all, err)
		}
	}
	r := <-res
	if r.err != nil || r.n != int64(want.Len()) {
		t.Fatalf("WriteTo = %d, %v; want %d, nil", r.n, r.err, want.Len())
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("the socket got %d bytes that differ from the %d sent", len(got), want.Len())
	}
	as.Close()
	st.Close()
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestLazyAccept: an accept waits for the stream's first answer to ride
// with, but not for long: with no answer and nothing else on the
// session, it still reaches the opener (the lazy timer), and an answer
// written right after it arrives behind it.
func TestLazyAccept(t *testing.T) {
	cli, srv := sessions(t, nil)
	// Let the sessions' hellos and first pings settle, so that only the
	// lazy timer can send the first accept.
	time.Sleep(50 * time.Millisecond)
	for _, answer := range []bool{false, true} {
		st, err := cli.Open(context.Background(), []byte("h"), nil)
		if err != nil {
			t.Fatal(err)
		}
		ok := make(chan struct{})
		st.OnAccept(func() { close(ok) })
		as, err := accept(t, srv).Accept()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if answer {
			if _, err := as.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-ok:
		case <-time.After(5 * time.Second):
			t.Fatalf("answer=%v: the accept did not reach the opener in 5 s", answer)
		}
		if answer {
			got := make([]byte, 5)
			st.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(st, got); err != nil || string(got) != "hello" {
				t.Fatalf("read %q, %v", got, err)
			}
		}
		t.Logf("answer=%v: accepted after %s", answer, time.Since(start))
		st.Close()
		as.Close()
	}
}

// sizedReader returns the sizes it is asked to fill, recording the
// buffer each Read was offered.
type sizedReader struct {
	sizes   []int // how much each Read returns (capped by the buffer)
	offered []int
}

func (r *sizedReader) Read(p []byte) (int, error) {
	if len(r.sizes) == 0 {
		return 0, io.EOF
	}
	r.offered = append(r.offered, len(p))
	n := min(r.sizes[0], len(p))
	r.sizes = r.sizes[1:]
	for i := range p[:n] {
		p[i] = byte(i)
	}
	return n, nil
}

// TestReadFromBuffers: ReadFrom reads a quiet source into a chunk, a busy
// one into a data frame's buffer, and goes back to the chunk once reads
// come back short.
func TestReadFromBuffers(t *testing.T) {
	cli, srv := sessions(t, nil)
	st, err := cli.Open(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	as, err := accept(t, srv).Accept()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, as)
		got <- n
	}()
	r := &sizedReader{sizes: []int{100, chunkSize, maxDataFrame, maxDataFrame, 5000, 100, chunkSize, 3}}
	n, err := st.ReadFrom(r)
	if err != nil {
		t.Fatal(err)
	}
	st.CloseWrite()
	want := []int{chunkSize, chunkSize, copyBufSize, copyBufSize, copyBufSize, chunkSize, chunkSize, copyBufSize}
	if fmt.Sprint(r.offered) != fmt.Sprint(want) {
		t.Fatalf("buffers offered %v, want %v", r.offered, want)
	}
	if m := <-got; m != n || n != 100+chunkSize+2*maxDataFrame+5000+100+chunkSize+3 {
		t.Fatalf("sent %d, received %d", n, m)
	}
}
