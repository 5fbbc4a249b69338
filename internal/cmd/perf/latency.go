// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// Latency is the quick loop behind --latency: one pair of nodes, then
// rounds of the latency figures only (64 B request/response, new portals
// back to back and paced; direct, through the plain relay chain and
// through a portal), printed as they come. For working on the
// portal's open path; the full run is the record.
func Latency(ctx context.Context, rounds int, out, log io.Writer) error {
	w, err := setup(ctx, log)
	if err != nil {
		return err
	}
	defer w.close()
	t, err := startTargets(ctx, w.dir)
	if err != nil {
		return err
	}
	defer t.stop()
	p, err := w.startPair(ctx, "lo", "acme-relay", t, "", "")
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	if _, err := firstByte(p.inEcho); err != nil { // the channel
		return err
	}
	fmt.Fprintf(log, "pids: relay %d, outlet node %d, inlet node %d, this tool %d; echo %s, through the portal %s\n",
		w.hub.Process.Pid, p.cust.cmd.Process.Pid, p.vendor.cmd.Process.Pid, os.Getpid(), t.echo, p.inEcho)
	if t.iperf != "" {
		fmt.Fprintf(log, "iperf3 -s: direct %s, through the portal %s\n", t.iperf, p.inIperf)
	}
	if d, err := time.ParseDuration(os.Getenv("PERF_HOLD")); err == nil {
		time.Sleep(d) // for a profiler or tracer to attach
	}
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	cpu := productCPU(w, p)
	for r := 0; r < rounds; r++ {
		for _, path := range []struct{ name, addr string }{{"direct", t.echo}, {"chain", t.chain}, {"portal", p.inEcho}} {
			c0 := cpu()
			rt, err := rtt(path.addr, 2000)
			if err != nil {
				return err
			}
			c1 := cpu()
			b2b, err := setupTimes(path.addr, 300, 0)
			if err != nil {
				return err
			}
			c2 := cpu()
			time.Sleep(time.Second) // the per-peer portal rate refills
			paced, err := setupTimes(path.addr, 100, 5*time.Millisecond)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "round %d %-6s rr64 p50 %6.0f µs  new p50 %6.0f p99 %6.0f µs  paced new p50 %6.0f p99 %6.0f µs", r+1, path.name,
				us(percentile(rt, 0.5)), us(percentile(b2b, 0.5)), us(percentile(b2b, 0.99)), us(percentile(paced, 0.5)), us(percentile(paced, 0.99)))
			if path.name == "portal" {
				fmt.Fprintf(out, "  relay+nodes CPU: %.1f µs per rr64, %.1f µs per new portal", us((c1-c0)/time.Duration(len(rt))), us((c2-c1)/time.Duration(len(b2b))))
			}
			fmt.Fprintln(out)
			time.Sleep(time.Second)
		}
	}
	return nil
}
