// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package inproc

import (
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/edgeportal/connect/enroll"
)

// BenchmarkNewPortal opens portals through an open channel, one after
// another, each to its first echoed byte: the in-process twin of
// scripts/bench's "new portal" row, for profiles (-cpuprofile, -trace).
// Hub, nodes and target share one process here, so the figures are lower
// than the real processes'; scripts/bench is the judge.
func BenchmarkNewPortal(b *testing.B) {
	w := NewWorld(b)
	w.StartHub()
	echo := Echo(b)
	outlet := w.StartNode("outlet", w.Ticket("outlet", enroll.TicketOptions{Relay: "acme-relay", Attributes: Attrs("outlet-node")}),
		outletNode, map[string]string{"ECHO": echo})
	outlet.AwaitRelayUp()
	inlet := w.StartNode("inlet", w.Ticket("inlet", enroll.TicketOptions{Attributes: Attrs("inlet-node")}), inletNode, nil)
	inlet.AwaitHub()
	st, err := inlet.Status()
	if err != nil || len(st.Inlets) != 1 {
		b.Fatalf("inlet status: %+v, %v", st, err)
	}
	addr := st.Inlets[0].Listening
	for range 20 { // the channel, then warm
		if _, err := firstByte(addr); err != nil {
			b.Fatal(err)
		}
	}
	var ds []time.Duration
	for b.Loop() {
		d, err := firstByte(addr)
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "p99-µs")
}

// firstByte connects to addr, sends one byte and waits for it back.
func firstByte(addr string) (time.Duration, error) {
	t := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{1}); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		return 0, err
	}
	return time.Since(t), nil
}
