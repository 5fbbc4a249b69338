// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package noiseconn

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/edgeportal/connect/wire/key"
)

// waitConn adds up the time its side spends inside Read and Write (waiting
// for the peer's message, or for the peer to take ours) and the bytes it
// writes; a side's own work is its handshake time less that wait.
type waitConn struct {
	net.Conn
	wait  time.Duration
	bytes int
}

func (c *waitConn) Read(p []byte) (int, error) {
	t := time.Now()
	n, err := c.Conn.Read(p)
	c.wait += time.Since(t)
	return n, err
}

func (c *waitConn) Write(p []byte) (int, error) {
	t := time.Now()
	n, err := c.Conn.Write(p)
	c.wait += time.Since(t)
	c.bytes += n
	return n, err
}

// BenchmarkHandshakeSides splits a handshake's CPU between its two sides
// (each is paid by a different node) and reports the bytes on the wire,
// classical against hybrid: initiator-ns/op and responder-ns/op are each
// side's own work (its time less its waits on the pipe), wire-B/op both
// sides' messages with credential-sized payloads.
func BenchmarkHandshakeSides(b *testing.B) {
	payload := make([]byte, 400) // a ChannelHello with its credential
	for _, m := range []Mode{Classical, Hybrid} {
		b.Run(m.String(), func(b *testing.B) {
			ck, sk := statics(b)
			ctx := context.Background()
			var ini, res time.Duration
			var wire, n int
			for b.Loop() {
				x, y := net.Pipe()
				a, c := &waitConn{Conn: x}, &waitConn{Conn: y}
				done := make(chan error, 1)
				var rt time.Duration
				go func() {
					t := time.Now()
					_, _, err := Respond(ctx, c, &Config{Static: sk, Mode: m}, payload)
					rt = time.Since(t)
					done <- err
				}()
				t := time.Now()
				_, err := Initiate(ctx, a, &Config{Static: ck, Mode: m}, func(key.NodePublic, []byte) ([]byte, error) { return payload, nil })
				it := time.Since(t)
				if err != nil {
					b.Fatal(err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				ini += it - a.wait
				res += rt - c.wait
				wire = a.bytes + c.bytes
				n++
				x.Close()
				y.Close()
			}
			b.ReportMetric(float64(ini.Nanoseconds())/float64(n), "initiator-ns/op")
			b.ReportMetric(float64(res.Nanoseconds())/float64(n), "responder-ns/op")
			b.ReportMetric(float64(wire), "wire-B/op")
		})
	}
}
