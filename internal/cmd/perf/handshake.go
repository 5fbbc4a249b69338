// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

// Handshake figures of one mode, per handshake.
type Handshake struct {
	Suite     string        `json:"suite"`
	Count     int           `json:"count"`
	Initiator time.Duration `json:"initiator_ns"` // one side's own work
	Responder time.Duration `json:"responder_ns"`
	ProcCPU   time.Duration `json:"process_cpu_ns"` // getrusage over the loop: both sides and the scheduling between them
	Bytes     int           `json:"wire_bytes"`     // both sides' messages
}

// Both is both sides' own work.
func (h Handshake) Both() time.Duration { return h.Initiator + h.Responder }

// waitConn measures how long its side spends waiting in Read and Write
// (for the peer's message, or for the peer to take ours), and counts the
// bytes it writes. A side's own work is its handshake time less that.
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

// handshakes runs n handshakes of mode between two in-process nodes over
// net.Pipe (no kernel in the way) with credential-sized payloads, and
// returns the median of each side's own work.
func handshakes(ctx context.Context, mode noiseconn.Mode, n int) (Handshake, error) {
	ik, err := noiseconn.NewStatic(key.NewNodePrivate())
	if err != nil {
		return Handshake{}, err
	}
	rk, err := noiseconn.NewStatic(key.NewNodePrivate())
	if err != nil {
		return Handshake{}, err
	}
	payload := make([]byte, 400) // a ChannelHello with its credential
	var ini, res []time.Duration
	h := Handshake{Suite: mode.String(), Count: n}
	cpu0 := cpuTime()
	for i := 0; i < n; i++ {
		x, y := net.Pipe()
		a, b := &waitConn{Conn: x}, &waitConn{Conn: y}
		var wg sync.WaitGroup
		var rerr error
		var rtime time.Duration
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.Now()
			_, _, rerr = noiseconn.Respond(ctx, b, &noiseconn.Config{Static: rk, Mode: mode}, payload)
			rtime = time.Since(t)
		}()
		t := time.Now()
		_, err := noiseconn.Initiate(ctx, a, &noiseconn.Config{Static: ik, Mode: mode}, func(key.NodePublic, []byte) ([]byte, error) { return payload, nil })
		itime := time.Since(t)
		wg.Wait()
		x.Close()
		y.Close()
		if err != nil {
			return h, err
		}
		if rerr != nil {
			return h, rerr
		}
		ini = append(ini, itime-a.wait)
		res = append(res, rtime-b.wait)
		h.Bytes = a.bytes + b.bytes
	}
	h.ProcCPU = (cpuTime() - cpu0) / time.Duration(n)
	h.Initiator, h.Responder = percentile(ini, 0.5), percentile(res, 0.5)
	return h, nil
}
