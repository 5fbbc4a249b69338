// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeportal/connect/internal/tstest/testnet"
	"github.com/edgeportal/connect/portal/pipe"
)

// refuse plays an outlet node that reads what arrives, then refuses
// (resets the connection without a reply): it returns what it read.
func refuse(t *testing.T, c net.Conn, want int) []byte {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, want)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("refusing side: %v", err)
	}
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	return got
}

// TestReplayConn: a portal refused before any answer leaves the client
// connected, and the next attempt gets the client's bytes again, then
// the rest; after the answer it is the connection as it is.
func TestReplayConn(t *testing.T) {
	client, server := testnet.Pair(t)
	rp := newReplayConn(server.(*net.TCPConn))
	first, far1 := testnet.Pair(t)
	io.WriteString(client, "GET / HTTP/1.0\r\n")
	done := make(chan error, 1)
	go func() { _, _, err := pipe.Pipe(context.Background(), rp, first); done <- err }()
	if got := refuse(t, far1, 16); string(got) != "GET / HTTP/1.0\r\n" {
		t.Fatalf("first attempt read %q", got)
	}
	if err := <-done; err == nil {
		t.Fatal("the refused attempt's pipe ended cleanly")
	}
	if !rp.replayable() {
		t.Fatal("a refused attempt with 16 bytes kept is not replayable")
	}
	// The client is still connected and goes on sending.
	io.WriteString(client, "\r\n")
	client.(*net.TCPConn).CloseWrite()
	rp2 := rp.again()
	second, far2 := testnet.Pair(t)
	go func() { _, _, err := pipe.Pipe(context.Background(), rp2, second); done <- err }()
	far2.SetDeadline(time.Now().Add(5 * time.Second))
	rp2.accepted()
	req, err := io.ReadAll(far2)
	if err != nil || string(req) != "GET / HTTP/1.0\r\n\r\n" {
		t.Fatalf("second attempt read %q, %v; want the replayed bytes, then the rest", req, err)
	}
	io.WriteString(far2, "HTTP/1.0 200 OK\r\n\r\nhi")
	far2.Close()
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := io.ReadAll(client)
	if err != nil || string(resp) != "HTTP/1.0 200 OK\r\n\r\nhi" {
		t.Fatalf("client got %q, %v", resp, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("second pipe: %v", err)
	}
	rp2.finish()
}

// TestReplayConnOverflow: a client that sent more than maxReplay before
// the answer is not retried, and finish resets it as a refused direct
// connection would be.
func TestReplayConnOverflow(t *testing.T) {
	client, server := testnet.Pair(t)
	rp := newReplayConn(server.(*net.TCPConn))
	stream, far := testnet.Pair(t)
	big := bytes.Repeat([]byte("x"), maxReplay+1)
	go client.Write(big)
	done := make(chan error, 1)
	go func() { _, _, err := pipe.Pipe(context.Background(), rp, stream); done <- err }()
	refuse(t, far, len(big))
	<-done
	if rp.replayable() {
		t.Fatal("a client that sent more than maxReplay is replayable")
	}
	rp.finish()
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := client.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) && (err == nil || !strings.Contains(err.Error(), "reset")) {
		t.Fatalf("the client after a final refusal: %v, want a reset", err)
	}
}

// BenchmarkClientRead: reading the client through a replayConn once the
// outlet node accepted (one atomic load per read) against the bare TCP
// connection, 256 KiB reads as the portal's copy makes them.
func BenchmarkClientRead(b *testing.B) {
	for _, wrapped := range []bool{false, true} {
		name := "tcp"
		if wrapped {
			name = "replayConn"
		}
		b.Run(name, func(b *testing.B) {
			client, server := testnet.Pair(b)
			var r io.Reader = server
			if wrapped {
				rp := newReplayConn(server.(*net.TCPConn))
				rp.accepted()
				r = rp
			}
			chunk := make([]byte, 64<<10)
			b.SetBytes(int64(len(chunk)))
			go func() {
				for range b.N {
					if _, err := client.Write(chunk); err != nil {
						return
					}
				}
				client.Close()
			}()
			buf := make([]byte, 256<<10)
			b.ResetTimer()
			for {
				if _, err := r.Read(buf); err != nil {
					break
				}
			}
		})
	}
}
