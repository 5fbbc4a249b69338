// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package testnet has small network helpers for tests: a connected pair
// of loopback TCP connections (net.Pipe has no buffering, which deadlocks
// echoes and half-close tests), and SleepUntil, the exact wait of an
// emulated link's delay.
//
// Only _test.go files and the bench tool (internal/cmd/perf) import it.
package testnet

import (
	"net"
	"testing"
)

// Pair returns both ends of a loopback TCP connection, closed at test end.
func Pair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
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
