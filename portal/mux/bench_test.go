// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package mux

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeportal/connect/internal/tstest/testnet"
)

const benchChunk = 256 << 10

// BenchmarkStreams: bulk bytes over one session on a Noise channel over
// loopback TCP, 1 and 4 streams, against the same Noise channel alone and
// plain TCP in the same run.
func BenchmarkStreams(b *testing.B) {
	buf := make([]byte, benchChunk)
	rand.Read(buf)
	b.Run("tcp", func(b *testing.B) {
		x, y := testnet.Pair(b)
		runBulk(b, buf, []io.Writer{x}, []io.Reader{y}, func() { x.(*net.TCPConn).CloseWrite() })
	})
	b.Run("noise", func(b *testing.B) {
		x, y := testnet.Pair(b)
		c, s := noisePair(b, x, y)
		runBulk(b, buf, []io.Writer{c}, []io.Reader{s}, func() { c.CloseWrite() })
	})
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("mux-%d", n), func(b *testing.B) {
			cli, srv := sessions(b, nil)
			var ws []io.Writer
			var rs []io.Reader
			for i := 0; i < n; i++ {
				st, err := cli.Open(context.Background(), nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				as, err := accept(b, srv).Accept()
				if err != nil {
					b.Fatal(err)
				}
				ws, rs = append(ws, st), append(rs, as)
			}
			runBulk(b, buf, ws, rs, func() {
				for _, w := range ws {
					w.(*Stream).CloseWrite()
				}
			})
		})
	}
}

// runBulk writes b.N chunks spread over the writers; readers drain to
// io.Discard (through WriteTo).
func runBulk(b *testing.B, buf []byte, ws []io.Writer, rs []io.Reader, end func()) {
	var rwg sync.WaitGroup
	for _, r := range rs {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			io.Copy(io.Discard, r)
		}()
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	var left atomic.Int64
	left.Store(int64(b.N))
	var wwg sync.WaitGroup
	for _, w := range ws {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for left.Add(-1) >= 0 {
				if _, err := w.Write(buf); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wwg.Wait()
	end()
	rwg.Wait()
}

// BenchmarkOpen: a new stream to its first byte back (the client's first
// bytes ride with the open; the acceptor answers), against a new TCP
// connection on loopback doing the same.
func BenchmarkOpen(b *testing.B) {
	b.Run("mux", func(b *testing.B) {
		cli, srv := sessions(b, nil)
		ctx := context.Background()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				in, err := srv.Accept(ctx)
				if err != nil {
					return
				}
				as, err := in.Accept()
				if err != nil {
					return
				}
				go func() {
					var p [4]byte
					io.ReadFull(as, p[:])
					as.Write(p[:])
					as.CloseWrite()
					io.Copy(io.Discard, as)
					as.Close()
				}()
			}
		}()
		b.ReportAllocs()
		var p [4]byte
		for b.Loop() {
			st, err := cli.Open(ctx, []byte("outlet"), []byte("ping"))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(st, p[:]); err != nil {
				b.Fatal(err)
			}
			st.CloseWrite()
			st.Close()
		}
		b.StopTimer()
		cli.Close()
		srv.Close()
		<-done
	})
	b.Run("tcp", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					var p [4]byte
					io.ReadFull(c, p[:])
					c.Write(p[:])
					c.Close()
				}()
			}
		}()
		var p [4]byte
		for b.Loop() {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			c.Write([]byte("ping"))
			if _, err := io.ReadFull(c, p[:]); err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
}

// link emulates a path on loopback: every byte is delivered delay after
// it leaves, and bytes leave at rate bytes/s at most (a queue of up to
// 32 MiB in front of the link, like a router's).
type link struct {
	delay time.Duration
	rate  float64
}

type chunk struct {
	b  []byte
	at time.Time
}

// pump moves src→dst through the link until src ends, then half-closes
// dst.
func (l link) pump(src, dst net.Conn, wg *sync.WaitGroup) {
	ch := make(chan chunk, 1024)
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(ch)
		var depart time.Time
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				now := time.Now()
				if depart.Before(now) {
					depart = now
				}
				depart = depart.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
				ch <- chunk{b[:n], depart.Add(l.delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for c := range ch {
			testnet.SleepUntil(c.at)
			if _, err := dst.Write(c.b); err != nil {
				break
			}
		}
		for range ch {
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
}

// delayedPath returns the two ends of node ⇄ link ⇄ hub ⇄ link ⇄ node,
// each link with the given one-way delay and rate; the hub is a plain
// TCP splice, as the product's relay is.
func delayedPath(b testing.TB, oneWay time.Duration, rate float64) (net.Conn, net.Conn) {
	l := link{delay: oneWay, rate: rate}
	var wg sync.WaitGroup
	nodeA, l1a := testnet.Pair(b)
	l1b, hubA := testnet.Pair(b)
	hubB, l2a := testnet.Pair(b)
	l2b, nodeB := testnet.Pair(b)
	l.pump(l1a, l1b, &wg)
	l.pump(l1b, l1a, &wg)
	l.pump(l2a, l2b, &wg)
	l.pump(l2b, l2a, &wg)
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(hubB, hubA); hubB.(*net.TCPConn).CloseWrite() }()
	go func() { defer wg.Done(); io.Copy(hubA, hubB); hubA.(*net.TCPConn).CloseWrite() }()
	b.Cleanup(func() {
		for _, c := range []net.Conn{nodeA, l1a, l1b, hubA, hubB, l2a, l2b, nodeB} {
			c.Close()
		}
		wg.Wait()
	})
	return nodeA, nodeB
}

// BenchmarkDelayedPath: one stream of 48 MiB per op across 20 ms between
// each node and the hub (80 ms round trip) on a 100 MB/s link, through a
// plain TCP relay, the mux with tuned windows (cold: the session's first
// streams, which ramp up from 256 KiB; warm: after one stream taught the
// session the path), and the mux with a fixed 256 KiB window (yamux's
// default). Each op is a new stream on a session opened beforehand.
func BenchmarkDelayedPath(b *testing.B) {
	const (
		oneWay = 20 * time.Millisecond
		rate   = 100e6
		size   = 48 << 20
	)
	buf := make([]byte, benchChunk)
	rand.Read(buf)
	send := func(b *testing.B, w io.Writer, r io.Reader, end func()) {
		done := make(chan int64)
		go func() {
			n, _ := io.Copy(io.Discard, r)
			done <- n
		}()
		for sent := 0; sent < size; sent += len(buf) {
			if _, err := w.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		end()
		if n := <-done; n != size {
			b.Fatalf("received %d of %d bytes", n, size)
		}
	}
	b.Run("tcp-relay", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			x, y := delayedPath(b, oneWay, rate)
			send(b, x, y, func() { x.(*net.TCPConn).CloseWrite() })
		}
	})
	for _, tc := range []struct {
		name string
		max  int
		warm bool // one stream crossed the path before the timer starts
	}{{"mux-tuned", 0, false}, {"mux-tuned-warm", 0, true}, {"mux-fixed-256KiB", InitialWindow, false}} {
		b.Run(tc.name, func(b *testing.B) {
			x, y := delayedPath(b, oneWay, rate)
			cli, srv := sessionsOver(b, x, y, &Config{MaxWindow: tc.max})
			if _, err := cli.Ping(context.Background()); err != nil {
				b.Fatal(err)
			}
			if tc.warm {
				st, _ := cli.Open(context.Background(), nil, nil)
				as, _ := accept(b, srv).Accept()
				send(b, st, as, func() { st.CloseWrite() })
				st.Close()
				as.Close()
			}
			b.SetBytes(size)
			b.ResetTimer()
			var window int
			for b.Loop() {
				st, err := cli.Open(context.Background(), nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				as, err := accept(b, srv).Accept()
				if err != nil {
					b.Fatal(err)
				}
				send(b, st, as, func() { st.CloseWrite() })
				window = as.Window()
				st.Close()
				as.Close()
			}
			b.ReportMetric(float64(window>>10), "window-KiB")
			b.ReportMetric(float64(cli.RTT().Milliseconds()), "rtt-ms")
		})
	}
}

// TestAutotuneOnDelayedPath: on an 80 ms round trip, a stream's window
// grows past the initial 256 KiB; with MaxWindow = InitialWindow it stays.
func TestAutotuneOnDelayedPath(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 16 MiB across an 80 ms path")
	}
	for _, tc := range []struct {
		max    int
		growth bool
	}{{0, true}, {InitialWindow, false}} {
		x, y := delayedPath(t, 20*time.Millisecond, 200e6)
		cli, srv := sessionsOver(t, x, y, &Config{MaxWindow: tc.max})
		if _, err := cli.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
		st, _ := cli.Open(context.Background(), nil, nil)
		as, _ := accept(t, srv).Accept()
		go func() {
			st.Write(make([]byte, 16<<20))
			st.CloseWrite()
		}()
		n, err := io.Copy(io.Discard, as)
		if err != nil || n != 16<<20 {
			t.Fatalf("moved %d bytes, %v", n, err)
		}
		if w := as.Window(); (w > InitialWindow) != tc.growth {
			t.Errorf("MaxWindow %d: window ended at %d KiB", tc.max, w>>10)
		}
		t.Logf("MaxWindow %d: window %d KiB, rtt %s", tc.max, as.Window()>>10, cli.RTT())
	}
}
