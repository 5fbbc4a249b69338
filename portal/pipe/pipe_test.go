// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package pipe

import (
	"bytes"
	"context"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/edgeportal/connect/internal/testnet"
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
	if _, err := io.ReadAll(client); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("client not closed")
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
