// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package muxcompare

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/xtaci/smux"

	"github.com/edgeportal/connect/portal/mux"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func noisePair(t testing.TB) (*noiseconn.Conn, *noiseconn.Conn) {
	a, b := tcpPair(t)
	ck, _ := noiseconn.NewStatic(key.NewNodePrivate())
	sk, _ := noiseconn.NewStatic(key.NewNodePrivate())
	ctx := context.Background()
	srv := make(chan *noiseconn.Conn, 1)
	go func() {
		c, _, err := noiseconn.Respond(ctx, b, &noiseconn.Config{Static: sk}, nil)
		if err != nil {
			t.Error(err)
		}
		srv <- c
	}()
	c, err := noiseconn.Initiate(ctx, a, &noiseconn.Config{Static: ck}, func(key.NodePublic, []byte) ([]byte, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	return c, <-srv
}

// candidate opens and accepts streams over a Noise channel pair.
type candidate struct {
	name  string
	setup func(t testing.TB) (open func() net.Conn, accept func() net.Conn, closeAll func())
}

var candidates = []candidate{
	{"own", func(t testing.TB) (func() net.Conn, func() net.Conn, func()) {
		x, y := noisePair(t)
		c, _ := mux.Client(x, nil)
		s, _ := mux.Server(y, &mux.Config{MaxStreams: 1 << 16, AcceptBacklog: 1 << 14})
		return func() net.Conn {
				st, err := c.Open(context.Background(), nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				return st
			}, func() net.Conn {
				in, err := s.Accept(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				st, err := in.Accept()
				if err != nil {
					t.Fatal(err)
				}
				return st
			}, func() { c.Close(); s.Close() }
	}},
	{"yamux", func(t testing.TB) (func() net.Conn, func() net.Conn, func()) {
		x, y := noisePair(t)
		cfg := yamux.DefaultConfig()
		cfg.LogOutput = io.Discard
		cfg.AcceptBacklog = 1 << 14
		c, _ := yamux.Client(x, cfg)
		s, _ := yamux.Server(y, cfg)
		return func() net.Conn {
				st, err := c.OpenStream()
				if err != nil {
					t.Fatal(err)
				}
				return st
			}, func() net.Conn {
				st, err := s.AcceptStream()
				if err != nil {
					t.Fatal(err)
				}
				return st
			}, func() { c.Close(); s.Close() }
	}},
	{"smux-v2", func(t testing.TB) (func() net.Conn, func() net.Conn, func()) {
		x, y := noisePair(t)
		cfg := smux.DefaultConfig()
		cfg.Version = 2
		c, _ := smux.Client(x, cfg)
		s, _ := smux.Server(y, cfg)
		return func() net.Conn {
				st, err := c.OpenStream()
				if err != nil {
					t.Fatal(err)
				}
				return st
			}, func() net.Conn {
				st, err := s.AcceptStream()
				if err != nil {
					t.Fatal(err)
				}
				return st
			}, func() { c.Close(); s.Close() }
	}},
}

func BenchmarkThroughput(b *testing.B) {
	buf := make([]byte, 256<<10)
	rand.Read(buf)
	for _, c := range candidates {
		for _, n := range []int{1, 4} {
			b.Run(c.name+"/"+string(rune('0'+n)), func(b *testing.B) {
				open, accept, closeAll := c.setup(b)
				defer closeAll()
				var ws []net.Conn
				var rwg sync.WaitGroup
				var got atomic.Int64
				for i := 0; i < n; i++ {
					w := open()
					w.Write([]byte{1}) // smux and yamux announce a stream with its first bytes
					r := accept()
					io.ReadFull(r, make([]byte, 1))
					ws = append(ws, w)
					rwg.Add(1)
					go func() {
						defer rwg.Done()
						n, _ := io.Copy(io.Discard, r)
						got.Add(n)
					}()
				}
				b.SetBytes(int64(len(buf)))
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
				for _, w := range ws {
					w.Close() // half-close in all three
				}
				rwg.Wait()
				if got.Load() != int64(b.N)*int64(len(buf)) {
					b.Fatalf("received %d bytes", got.Load())
				}
			})
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, c := range candidates {
		b.Run(c.name, func(b *testing.B) {
			open, accept, closeAll := c.setup(b)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					st := accept()
					go func() {
						var p [4]byte
						io.ReadFull(st, p[:])
						st.Write(p[:])
						st.Close()
					}()
				}
			}()
			var p [4]byte
			for b.Loop() {
				st := open()
				st.Write([]byte("ping"))
				if _, err := io.ReadFull(st, p[:]); err != nil {
					b.Fatal(err)
				}
				st.Close()
			}
			b.StopTimer()
			close(stop)
			open().Write([]byte("ping")) // unblock the acceptor
			wg.Wait()
			closeAll()
		})
	}
}

func TestIdleStreamMemory(t *testing.T) {
	measure := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc + m.StackInuse
	}
	for _, c := range candidates {
		open, accept, closeAll := c.setup(t)
		const n = 1000
		before := measure()
		var keep []net.Conn
		for i := 0; i < n; i++ {
			w := open()
			w.Write([]byte("hello"))
			r := accept()
			io.ReadFull(r, make([]byte, 5))
			keep = append(keep, w, r)
		}
		time.Sleep(100 * time.Millisecond)
		t.Logf("%s: idle stream (both ends) %d bytes", c.name, (measure()-before)/n)
		runtime.KeepAlive(keep)
		closeAll()
	}
}
