// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// TestDelayProxy sends messages a fraction of a millisecond apart through
// a delaying proxy to an echo: every byte comes back, in order, and no
// message comes back before twice the one-way delay. (How late is not
// checked: that is a figure of this shared machine, which the bench's
// "delayed: plain relay 64 B round trip" row reports.)
func TestDelayProxy(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		c, err := echo.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	const oneWay = 5 * time.Millisecond
	p, err := newDelayProxy(echo.Addr().String(), oneWay, 125e6)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))

	const n = 20
	sent := make(chan time.Time, n)
	go func() {
		for i := range n {
			sent <- time.Now()
			c.Write(bytes.Repeat([]byte{byte(i)}, 64))
			time.Sleep(300 * time.Microsecond)
		}
	}()
	buf := make([]byte, 64)
	for i := range n {
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		got := time.Now()
		at := <-sent
		if !bytes.Equal(buf, bytes.Repeat([]byte{byte(i)}, 64)) {
			t.Fatalf("message %d came back as %v", i, buf[:4])
		}
		if d := got.Sub(at); d < 2*oneWay {
			t.Errorf("message %d came back after %v, before the round trip of %v", i, d, 2*oneWay)
		}
	}
}
