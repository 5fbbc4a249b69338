// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package pipe

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/edgeportal/connect/internal/tstest/testnet"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

var tcpPair = testnet.Pair

// chain: client ⇄ [a1 | Pipe | b1] ⇄ server
func chain(t *testing.T, ctx context.Context) (client, server net.Conn, done chan [2]int64) {
	client, a1 := tcpPair(t)
	b1, server := tcpPair(t)
	done = make(chan [2]int64, 1)
	go func() {
		x, y, _ := Pipe(ctx, a1, b1)
		done <- [2]int64{x, y}
	}()
	return client, server, done
}

func TestHalfClose(t *testing.T) {
	client, server, done := chain(t, context.Background())
	go func() {
		req, _ := io.ReadAll(server) // until the client's half-close arrives
		server.Write(append([]byte("response to "), req...))
		server.Close()
	}()
	client.Write([]byte("request"))
	client.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "response to request" {
		t.Fatalf("got %q, %v", got, err)
	}
	select {
	case n := <-done:
		if n[0] != 7 || n[1] != int64(len(got)) {
			t.Errorf("counts %v", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe did not return")
	}
}

func TestLarge(t *testing.T) {
	client, server, _ := chain(t, context.Background())
	data := bytes.Repeat([]byte("0123456789abcdef"), 4<<20) // 64 MiB
	go func() {
		client.Write(data)
		client.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(server)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, %v", len(got), err)
	}
}

func TestErrorUnblocksOtherDirection(t *testing.T) {
	client, server, done := chain(t, context.Background())
	client.Write([]byte("x"))
	buf := make([]byte, 1)
	io.ReadFull(server, buf)
	server.(*net.TCPConn).SetLinger(0)
	server.Close() // reset
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe hung after a reset")
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(client); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read %v after the server's reset; want ECONNRESET", err)
	}
}

// noiseChain: client ⇄ [Pipe] ⇄ noise ⇄ hub ⇄ noise ⇄ [Pipe] ⇄ server,
// the shape of a portal. The hub is a plain TCP relay; kill closes its two
// connections (with a FIN, as a dying process's sockets are), which cuts
// the channel without its authenticated end.
func noiseChain(t *testing.T) (client, server net.Conn, kill func(), done chan error) {
	t.Helper()
	client, in := tcpPair(t)
	out, server := tcpPair(t)
	x, h1 := tcpPair(t)
	h2, y := tcpPair(t)
	go io.Copy(h2, h1)
	go io.Copy(h1, h2)
	kill = func() { h1.Close(); h2.Close() }
	ck, err := noiseconn.NewStatic(key.NewNodePrivate())
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := noiseconn.NewStatic(key.NewNodePrivate())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srvc := make(chan *noiseconn.Conn, 1)
	go func() {
		nc, _, err := noiseconn.Respond(ctx, y, &noiseconn.Config{Static: sk}, nil)
		if err != nil {
			t.Error(err)
		}
		srvc <- nc
	}()
	nc1, err := noiseconn.Initiate(ctx, x, &noiseconn.Config{Static: ck}, func(key.NodePublic, []byte) ([]byte, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	nc2 := <-srvc
	done = make(chan error, 2)
	go func() { _, _, err := Pipe(context.Background(), in, nc1); done <- err }()
	go func() { _, _, err := Pipe(context.Background(), nc2, out); done <- err }()
	return client, server, kill, done
}

// TestCutChannelResetsBothEnds: when the channel under a portal dies
// mid-transfer (the hub is killed), the client and the target each get
// ECONNRESET, not a FIN after a truncated response.
func TestCutChannelResetsBothEnds(t *testing.T) {
	client, server, kill, done := noiseChain(t)
	part := bytes.Repeat([]byte("z"), 100_000)
	server.Write(part)
	got := make([]byte, len(part))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	kill()
	for _, c := range []net.Conn{client, server} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.ReadAll(c)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("after the cut, read returned %v; want ECONNRESET", err)
		}
	}
	for i := 0; i < 2; i++ {
		select {
		case err := <-done:
			if err == nil {
				t.Error("Pipe reported a cut channel as a clean end")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Pipe did not return")
		}
	}
}

// TestCleanEndIsFIN: through the same chain, a clean end reaches the
// client as a FIN after every byte, and half-close works both ways.
func TestCleanEndIsFIN(t *testing.T) {
	client, server, _, done := noiseChain(t)
	resp := bytes.Repeat([]byte("r"), 3<<20)
	go func() {
		req, _ := io.ReadAll(server) // until the client's half-close
		server.Write(append([]byte("re: "+string(req)+"\n"), resp...))
		server.Close()
	}()
	client.Write([]byte("GET"))
	client.(*net.TCPConn).CloseWrite()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || !bytes.Equal(got, append([]byte("re: GET\n"), resp...)) {
		t.Fatalf("client got %d bytes, %v", len(got), err)
	}
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil {
			t.Errorf("Pipe: %v", err)
		}
	}
}

func TestContextCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	client, _, done := chain(t, ctx)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe ignored ctx")
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(client)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Errorf("goroutines: %d before, %d after", before, n)
	}
}

func BenchmarkPipe(b *testing.B) {
	client, a1 := tcpPair(b)
	b1, server := tcpPair(b)
	go Pipe(context.Background(), a1, b1)
	go io.Copy(io.Discard, server)
	buf := make([]byte, 256<<10)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		client.Write(buf)
	}
}
