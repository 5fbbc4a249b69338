// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package outer

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// TestDualListener: one port serves a plain client (whose connection can
// then be spliced as plain TCP) and a TLS client, told apart by the first
// byte; a silent client blocks only its own first Read.
func TestDualListener(t *testing.T) {
	ca, cfg := pair(t)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewDualListener(inner, cfg)
	type served struct {
		tls, plainTCP bool
		got           string
	}
	results := make(chan served, 4)
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				b := make([]byte, 5)
				if _, err := io.ReadFull(c, b); err != nil {
					results <- served{got: "error: " + err.Error()}
					return
				}
				d := c.(*DualConn)
				_, isTCP := Plain(c).(*net.TCPConn)
				results <- served{tls: d.IsTLS(), plainTCP: isTCP, got: string(b)}
				c.Write(b)
			}()
		}
	}()
	addr := inner.Addr().String()

	// A silent client first: it must not hold up the others.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	plain, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.Write([]byte("EPX!\x02"))
	echo := make([]byte, 5)
	plain.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(plain, echo); err != nil || string(echo) != "EPX!\x02" {
		t.Fatalf("plain echo %q, %v", echo, err)
	}
	if r := <-results; r.tls || !r.plainTCP || r.got != "EPX!\x02" {
		t.Fatalf("plain: %+v", r)
	}

	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tc, err := Client(ctx, raw, ClientConfig("127.0.0.1", ca.Pool()), addr)
	if err != nil {
		t.Fatal(err)
	}
	tc.Write([]byte("EPX!\x03"))
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(tc, echo); err != nil || string(echo) != "EPX!\x03" {
		t.Fatalf("TLS echo %q, %v", echo, err)
	}
	if r := <-results; !r.tls || r.plainTCP || r.got != "EPX!\x03" {
		t.Fatalf("TLS: %+v", r)
	}
}
