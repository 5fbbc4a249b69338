// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package noiseconn

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeportal/connect/internal/tstest/testnet"
	"github.com/edgeportal/connect/wire/key"
)

var tcpPair = testnet.Pair

// pair handshakes over a and b and returns client and server Conns.
func pair(t testing.TB, a, b net.Conn) (*Conn, *Conn) {
	t.Helper()
	ck, sk := key.NewNodePrivate(), key.NewNodePrivate()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var srv *Conn
	var serr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		var p []byte
		srv, p, serr = Server(ctx, b, sk, []byte("test"), []byte("hello from server"))
		if serr == nil && string(p) != "hello from client" {
			serr = fmt.Errorf("server got payload %q", p)
		}
	}()
	cli, err := Client(ctx, a, ck, []byte("test"), func(peer key.NodePublic, payload []byte) ([]byte, error) {
		if !peer.Equal(sk.Public()) {
			return nil, errors.New("wrong server key")
		}
		if string(payload) != "hello from server" {
			return nil, fmt.Errorf("client got payload %q", payload)
		}
		return []byte("hello from client"), nil
	})
	<-done
	if err != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", err, serr)
	}
	if !srv.Peer().Equal(ck.Public()) || !bytes.Equal(cli.HandshakeHash(), srv.HandshakeHash()) {
		t.Fatal("peer keys or handshake hashes disagree")
	}
	return cli, srv
}

func TestHandshakeAndHalfClose(t *testing.T) {
	for _, transport := range []string{"pipe", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			var a, b net.Conn
			if transport == "pipe" {
				a, b = net.Pipe()
			} else {
				a, b = tcpPair(t)
			}
			cli, srv := pair(t, a, b)
			// Client sends a request and half-closes; server reads to EOF,
			// then answers in full.
			go func() {
				cli.Write([]byte("request"))
				cli.CloseWrite()
			}()
			req, err := io.ReadAll(srv)
			if err != nil || string(req) != "request" {
				t.Fatalf("server read %q, %v", req, err)
			}
			resp := bytes.Repeat([]byte("r"), 300_000)
			go func() {
				srv.Write(resp)
				srv.CloseWrite()
			}()
			got, err := io.ReadAll(cli)
			if err != nil || !bytes.Equal(got, resp) {
				t.Fatalf("client read %d bytes, %v", len(got), err)
			}
			if _, err := cli.Write([]byte("x")); !errors.Is(err, ErrWriteClosed) {
				t.Errorf("write after CloseWrite: %v", err)
			}
		})
	}
}

func TestWrongKeyAndPrologue(t *testing.T) {
	a, b := tcpPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go Server(ctx, b, key.NewNodePrivate(), []byte("p"), nil)
	want := key.NewNodePrivate().Public()
	_, err := Client(ctx, a, key.NewNodePrivate(), []byte("p"), func(peer key.NodePublic, _ []byte) ([]byte, error) {
		if !peer.Equal(want) {
			return nil, errors.New("refused: unexpected peer key")
		}
		return nil, nil
	})
	if err == nil || err.Error() != "refused: unexpected peer key" {
		t.Fatalf("wrong key: %v", err)
	}

	a, b = tcpPair(t)
	serr := make(chan error, 1)
	go func() {
		_, _, err := Server(ctx, b, key.NewNodePrivate(), []byte("prologue A"), nil)
		serr <- err
	}()
	_, err = Client(ctx, a, key.NewNodePrivate(), []byte("prologue B"), func(key.NodePublic, []byte) ([]byte, error) { return nil, nil })
	if err == nil {
		t.Fatal("prologue mismatch: client succeeded")
	}
	a.Close()
	if err := <-serr; err == nil {
		t.Fatal("prologue mismatch: server succeeded")
	}
}

func TestHandshakeDeadline(t *testing.T) {
	a, _ := tcpPair(t) // the peer never answers
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Client(ctx, a, key.NewNodePrivate(), nil, func(key.NodePublic, []byte) ([]byte, error) { return nil, nil })
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("stalled handshake: %v after %s", err, time.Since(start))
	}
	a2, _ := tcpPair(t)
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel2() }()
	if _, _, err := Server(ctx2, a2, key.NewNodePrivate(), nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled handshake: %v", err)
	}
}

func TestOversizedPayload(t *testing.T) {
	a, b := tcpPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go Server(ctx, b, key.NewNodePrivate(), nil, nil)
	_, err := Client(ctx, a, key.NewNodePrivate(), nil, func(key.NodePublic, []byte) ([]byte, error) {
		return make([]byte, MaxHandshakePayload+1), nil
	})
	if err == nil {
		t.Fatal("oversized payload sent")
	}
	if _, _, err := Server(ctx, b, key.NewNodePrivate(), nil, make([]byte, MaxHandshakePayload+1)); err == nil {
		t.Fatal("oversized payload accepted by Server")
	}
}

func TestBulkBothWays(t *testing.T) {
	a, b := tcpPair(t)
	cli, srv := pair(t, a, b)
	const size = 64 << 20
	send := func(c *Conn, seed uint64) [32]byte {
		r := mrand.New(mrand.NewPCG(seed, seed))
		h := sha256.New()
		buf := make([]byte, 1<<20)
		left := size
		for left > 0 {
			n := min(left, 1+r.IntN(len(buf)))
			for i := 0; i < n; i += 8 {
				buf[i] = byte(r.Uint32())
			}
			h.Write(buf[:n])
			if _, err := c.Write(buf[:n]); err != nil {
				t.Error(err)
				break
			}
			left -= n
		}
		c.CloseWrite()
		var s [32]byte
		copy(s[:], h.Sum(nil))
		return s
	}
	recv := func(c *Conn) [32]byte {
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			t.Error(err)
		}
		var s [32]byte
		copy(s[:], h.Sum(nil))
		return s
	}
	var wg sync.WaitGroup
	var sent1, sent2, got1, got2 [32]byte
	wg.Add(4)
	go func() { defer wg.Done(); sent1 = send(cli, 1) }()
	go func() { defer wg.Done(); sent2 = send(srv, 2) }()
	go func() { defer wg.Done(); got1 = recv(srv) }()
	go func() { defer wg.Done(); got2 = recv(cli) }()
	wg.Wait()
	if sent1 != got1 || sent2 != got2 {
		t.Fatal("bulk transfer corrupted")
	}
}

func TestTruncation(t *testing.T) {
	a, b := tcpPair(t)
	cli, srv := pair(t, a, b)
	cli.Write([]byte("partial"))
	a.Close() // transport ends without the authenticated end of stream
	got, err := io.ReadAll(srv)
	if string(got) != "partial" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read %q, %v; want io.ErrUnexpectedEOF", got, err)
	}
}

type tamperConn struct {
	net.Conn
	at int
	n  int
}

func (c *tamperConn) Write(p []byte) (int, error) {
	q := append([]byte(nil), p...)
	if c.at >= c.n && c.at < c.n+len(q) {
		q[c.at-c.n] ^= 1
	}
	c.n += len(q)
	return c.Conn.Write(q)
}

func TestTamper(t *testing.T) {
	a, b := tcpPair(t)
	cli, srv := pair(t, a, b)
	cli.conn = &tamperConn{Conn: a, at: 10} // inside the first transport frame
	cli.Write([]byte("hello, world"))
	buf := make([]byte, 100)
	if _, err := srv.Read(buf); err == nil {
		t.Fatal("tampered frame accepted")
	}
	if _, err := srv.Read(buf); err == nil {
		t.Fatal("conn usable after an authentication failure")
	}
}

// raceEnabled is set under -race, where sync.Pool drops items on purpose.
var raceEnabled bool

func TestNoAllocsOnDataPath(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool randomly drops items under the race detector")
	}
	a, b := tcpPair(t)
	cli, srv := pair(t, a, b)
	msg := make([]byte, 256<<10)
	go io.Copy(io.Discard, srv)
	cli.Write(msg) // warm up pools
	allocs := testing.AllocsPerRun(50, func() {
		cli.Write(msg)
	})
	if allocs > 1 {
		t.Errorf("Write allocates %.1f times per 256 KiB", allocs)
	}
}

func FuzzServerHandshake(f *testing.F) {
	f.Add([]byte{0, 32}, []byte{0, 0})
	f.Add(make([]byte, 34), []byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, msg1, msg3 []byte) {
		a, b := net.Pipe()
		defer a.Close()
		go func() {
			a.Write(msg1)
			io.Copy(io.Discard, io.LimitReader(a, 1<<16))
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		c, _, err := Server(ctx, b, key.NewNodePrivate(), nil, nil)
		if err == nil {
			c.Close()
			t.Fatal("random bytes completed a handshake")
		}
		b.Close()
	})
}

func FuzzReadFrames(f *testing.F) {
	f.Add([]byte{0, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add([]byte{0, 1, 0})
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, junk []byte) {
		a, b := net.Pipe()
		ck, sk := key.NewNodePrivate(), key.NewNodePrivate()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		done := make(chan *Conn, 1)
		go func() {
			c, _, _ := Server(ctx, b, sk, nil, nil)
			done <- c
		}()
		cli, err := Client(ctx, a, ck, nil, func(key.NodePublic, []byte) ([]byte, error) { return nil, nil })
		srv := <-done
		if err != nil || srv == nil {
			t.Skip("handshake failed")
		}
		go func() {
			a.Write(junk)
			a.Close()
		}()
		n, err := io.Copy(io.Discard, srv)
		if err == nil || n != 0 {
			t.Fatalf("junk decoded: %d bytes, %v", n, err)
		}
		cli.Close()
	})
}

func BenchmarkHandshake(b *testing.B) {
	// Both sides in one goroutine pair over net.Pipe: ns/op is the CPU of
	// a full handshake on both nodes (plus two goroutine switches per
	// message); wire-B/op is what both sides send.
	for _, m := range []Mode{Classical, Hybrid} {
		b.Run(m.String(), func(b *testing.B) {
			ck, sk := statics(b)
			ctx := context.Background()
			b.ReportAllocs()
			var wire int
			for b.Loop() {
				x, y := net.Pipe()
				a, c := &recConn{Conn: x}, &recConn{Conn: y}
				done := make(chan error, 1)
				go func() {
					_, _, err := Respond(ctx, c, &Config{Static: sk, Mode: m}, nil)
					done <- err
				}()
				if _, err := Initiate(ctx, a, &Config{Static: ck, Mode: m}, func(key.NodePublic, []byte) ([]byte, error) { return nil, nil }); err != nil {
					b.Fatal(err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				wire = a.total() + c.total()
				x.Close()
				y.Close()
			}
			b.ReportMetric(float64(wire), "wire-B/op")
		})
	}
	// The older entry point, which builds a Static per call.
	b.Run("Client/Server", func(b *testing.B) {
		ck, sk := key.NewNodePrivate(), key.NewNodePrivate()
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			a, c := net.Pipe()
			done := make(chan struct{})
			go func() {
				Server(ctx, c, sk, nil, nil)
				close(done)
			}()
			if _, err := Client(ctx, a, ck, nil, func(key.NodePublic, []byte) ([]byte, error) { return nil, nil }); err != nil {
				b.Fatal(err)
			}
			<-done
			a.Close()
			c.Close()
		}
	})
}

func TestWriteBuffers(t *testing.T) {
	a, b := tcpPair(t)
	cli, srv := pair(t, a, b)
	r := mrand.New(mrand.NewPCG(1, 2))
	var want bytes.Buffer
	sizes := [][]int{
		{0}, {1}, {10, 0, 10}, {MaxPlaintext}, {MaxPlaintext + 1}, {MaxPlaintext - 1, 2},
		{12, 65536, 12, 3, 200_000}, {1 << 20}, {5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5},
	}
	for i := 0; i < 20; i++ {
		var row []int
		for k := r.IntN(40); k >= 0; k-- {
			row = append(row, r.IntN(3*MaxPlaintext))
		}
		sizes = append(sizes, row)
	}
	go func() {
		for _, row := range sizes {
			var bufs [][]byte
			total := 0
			for _, n := range row {
				p := make([]byte, n)
				for j := range p {
					p[j] = byte(r.Uint32())
				}
				want.Write(p)
				bufs = append(bufs, p)
				total += n
			}
			if n, err := cli.WriteBuffers(bufs); err != nil || n != int64(total) {
				t.Errorf("WriteBuffers(%v) = %d, %v", row, n, err)
			}
		}
		cli.CloseWrite()
	}()
	got, err := io.ReadAll(srv)
	if err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("got %d bytes (%v), want %d", len(got), err, want.Len())
	}
}

func TestNextBatch(t *testing.T) {
	a, b := tcpPair(t)
	cli, srv := pair(t, a, b)
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	go func() {
		for p := data; len(p) > 0; {
			n := min(len(p), 1+len(p)%200_000) // frames of many sizes
			cli.Write(p[:n])
			p = p[n:]
		}
		cli.CloseWrite()
	}()
	var got []byte
	var spans [][]byte
	multi := false
	for {
		var err error
		spans, err = srv.NextBatch(spans[:0])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(spans) == 0 || len(spans) > maxSpans {
			t.Fatalf("batch of %d spans", len(spans))
		}
		multi = multi || len(spans) > 1
		for _, p := range spans {
			if len(p) == 0 || len(p) > MaxPlaintext {
				t.Fatalf("span of %d bytes", len(p))
			}
			got = append(got, p...)
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("NextBatch returned %d bytes, want %d, or other bytes", len(got), len(data))
	}
	if !multi {
		t.Error("no batch held more than one frame")
	}
}

// recordConn keeps what is written to it and reads back from r.
type recordConn struct {
	net.Conn
	w bytes.Buffer
	r io.Reader
}

func (c *recordConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *recordConn) Read(p []byte) (int, error)  { return c.r.Read(p) }

// A frame that fails behind good ones in the same read: the good spans
// come first, the error with the next call, and no byte of the bad frame.
func TestNextBatchTamperBehind(t *testing.T) {
	a, b := tcpPair(t)
	cli, srv := pair(t, a, b)
	rec := &recordConn{Conn: a}
	cli.conn = rec
	data := make([]byte, 3*MaxPlaintext) // three full frames in one write
	for i := range data {
		data[i] = byte(i * 13)
	}
	if _, err := cli.Write(data); err != nil {
		t.Fatal(err)
	}
	wire := rec.w.Bytes()
	wire[2*(2+MaxFrame)+10] ^= 1 // inside the third frame
	srv.conn = &recordConn{Conn: b, r: bytes.NewReader(wire)}
	var got []byte
	var spans [][]byte
	var err error
	batches := 0
	for err == nil {
		spans, err = srv.NextBatch(spans[:0])
		if err == nil {
			batches++
		}
		for _, p := range spans {
			got = append(got, p...)
		}
	}
	if err == io.EOF || !strings.Contains(err.Error(), "authentication") {
		t.Fatalf("NextBatch ended with %v, want an authentication failure", err)
	}
	if !bytes.Equal(got, data[:2*MaxPlaintext]) {
		t.Fatalf("got %d bytes before the failure, want the two good frames (%d)", len(got), 2*MaxPlaintext)
	}
	if batches != 1 {
		t.Fatalf("the good frames came in %d batches, want 1 (the bad frame behind them in the same read)", batches)
	}
	if _, err := srv.NextBatch(nil); err == nil {
		t.Fatal("conn usable after an authentication failure")
	}
}

func TestResetIsNotEOF(t *testing.T) {
	for _, how := range []string{"Close", "Reset"} {
		t.Run(how, func(t *testing.T) {
			a, b := tcpPair(t)
			cli, srv := pair(t, a, b)
			cli.Write([]byte("partial"))
			if how == "Close" {
				cli.Close()
			} else {
				cli.Reset()
			}
			got, err := io.ReadAll(srv)
			if how == "Close" && (err != nil || string(got) != "partial") {
				t.Fatalf("after Close: %q, %v", got, err)
			}
			if how == "Reset" && (err == nil || errors.Is(err, io.EOF)) {
				t.Fatalf("after Reset: %q, %v; want an error", got, err)
			}
		})
	}
}

// TestWriteToGathers checks WriteTo's writev path against frames split
// at every boundary.
func TestWriteToGathers(t *testing.T) {
	a, b := tcpPair(t)
	cli, srv := pair(t, a, b)
	want := make([]byte, 5<<20+12345)
	for i := range want {
		want[i] = byte(i>>8 ^ i)
	}
	go func() {
		for p := want; len(p) > 0; {
			n := min(len(p), 1+len(p)%300_000)
			cli.Write(p[:n])
			p = p[n:]
		}
		cli.CloseWrite()
	}()
	x, y := tcpPair(t)
	done := make(chan []byte)
	go func() {
		got, _ := io.ReadAll(y)
		done <- got
	}()
	n, err := srv.WriteTo(x)
	x.Close()
	if err != nil || n != int64(len(want)) {
		t.Fatalf("WriteTo = %d, %v", n, err)
	}
	if got := <-done; !bytes.Equal(got, want) {
		t.Fatal("WriteTo changed the bytes")
	}
}

func benchThroughput(b *testing.B, wrap func(a, c net.Conn) (io.Writer, io.Reader)) {
	a, c := tcpPair(b)
	w, r := wrap(a, c)
	buf := make([]byte, 256<<10)
	rand.Read(buf)
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, r)
		close(done)
	}()
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if cw, ok := w.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	<-done
}

// BenchmarkThroughput sends 256 KiB writes over loopback TCP through
// Noise; the receiver copies to io.Discard (WriteTo). Compare with
// BenchmarkTCPDirect in the same run.
func BenchmarkThroughput(b *testing.B) {
	b.ReportAllocs()
	benchThroughput(b, func(a, c net.Conn) (io.Writer, io.Reader) {
		cli, srv := pair(b, a, c)
		return cli, srv
	})
}

// BenchmarkRelay is the portal's shape: TCP source → noise → loopback →
// noise → TCP sink, both copies through io.Copy (ReadFrom and WriteTo).
func BenchmarkRelay(b *testing.B) {
	src, srcIn := tcpPair(b)
	a, c := tcpPair(b)
	sinkOut, sink := tcpPair(b)
	cli, srv := pair(b, a, c)
	go func() { io.Copy(cli, srcIn); cli.CloseWrite() }()
	go func() { io.Copy(sinkOut, srv); sinkOut.Close() }()
	done := make(chan struct{})
	go func() {
		big := make([]byte, 1<<20) // the sink itself reads in large chunks
		for {
			if _, err := sink.Read(big); err != nil {
				break
			}
		}
		close(done)
	}()
	buf := make([]byte, 256<<10)
	rand.Read(buf)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := src.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	src.(*net.TCPConn).CloseWrite()
	<-done
}

func BenchmarkTCPDirect(b *testing.B) {
	benchThroughput(b, func(a, c net.Conn) (io.Writer, io.Reader) { return a, c })
}
