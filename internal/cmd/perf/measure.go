// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub/authority"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

// Run measures everything.
func Run(ctx context.Context, o Options, log io.Writer) (*Report, error) {
	w, sinkAddr, echoAddr, done, err := setup(ctx, o, log)
	if err != nil {
		return nil, err
	}
	defer done()
	r := &Report{}
	time.Sleep(time.Second)
	for _, sd := range []string{w.vendor, w.cust} {
		// At idle: enrolled, relay registered, inlets listening, no traffic yet.
		r.AgentRSS = append(r.AgentRSS, rssOfStateDir(w, sd))
	}
	for _, p := range []struct {
		f          *Figures
		sink, echo string
		name       string
	}{{&r.Direct, sinkAddr, echoAddr, "direct"}, {&r.Portal, w.inletSink, w.inletEcho, "portal"}} {
		fmt.Fprintf(log, "measuring %s …\n", p.name)
		if p.f.Gbps1, err = throughput(p.sink, 1, o.Duration); err != nil {
			return nil, fmt.Errorf("%s single stream: %w", p.name, err)
		}
		if p.f.Gbps4, err = throughput(p.sink, 4, o.Duration); err != nil {
			return nil, fmt.Errorf("%s 4 streams: %w", p.name, err)
		}
		if p.f.RTTMean, p.f.RTTP50, p.f.RTTP99, err = rtt(p.echo, o.RTTs); err != nil {
			return nil, fmt.Errorf("%s latency: %w", p.name, err)
		}
		if p.f.SetupP50, p.f.SetupP99, err = setupTimes(p.echo, o.Setups); err != nil {
			return nil, fmt.Errorf("%s setup: %w", p.name, err)
		}
	}
	fmt.Fprintf(log, "%d concurrent portals …\n", o.Conc)
	r.ConcCount = o.Conc
	r.ConcTotal, r.ConcFailures = concurrent(w.inletEcho, o.Conc, 1<<20)
	fmt.Fprintf(log, "memory with %d idle nodes …\n", o.Nodes)
	if err := hubMemory(ctx, w, o.Nodes, r); err != nil {
		return nil, fmt.Errorf("hub memory: %w", err)
	}
	return r, nil
}

// throughput writes 256 KiB chunks for d over n connections to a sink and
// counts what the sink received.
func throughput(addr string, n int, d time.Duration) (float64, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int64
	var firstErr error
	buf := make([]byte, 256<<10)
	rand.Read(buf)
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
				return
			}
			defer c.Close()
			for time.Since(start) < d {
				if _, err := c.Write(buf); err != nil {
					break
				}
			}
			c.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			var got int64
			if err := binary.Read(c, binary.BigEndian, &got); err != nil {
				mu.Lock()
				firstErr = fmt.Errorf("sink count: %w", err)
				mu.Unlock()
				return
			}
			mu.Lock()
			total += got
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(total) * 8 / el.Seconds() / 1e9, nil
}

func percentile(ds []time.Duration, p float64) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

// rtt sends 64-byte messages one at a time over one connection.
func rtt(addr string, n int) (mean, p50, p99 time.Duration, err error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, 0, 0, err
	}
	defer c.Close()
	msg, back := make([]byte, 64), make([]byte, 64)
	var ds []time.Duration
	var sum time.Duration
	for i := 0; i < n+50; i++ {
		t := time.Now()
		if _, err := c.Write(msg); err != nil {
			return 0, 0, 0, err
		}
		if _, err := io.ReadFull(c, back); err != nil {
			return 0, 0, 0, err
		}
		if i >= 50 { // warm-up
			d := time.Since(t)
			ds = append(ds, d)
			sum += d
		}
	}
	return sum / time.Duration(n), percentile(ds, 0.5), percentile(ds, 0.99), nil
}

// setupTimes connects and waits for the first echoed byte, n times.
func setupTimes(addr string, n int) (p50, p99 time.Duration, err error) {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		t := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return 0, 0, err
		}
		c.Write([]byte{1})
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			c.Close()
			return 0, 0, fmt.Errorf("connection %d: %w", i, err)
		}
		ds = append(ds, time.Since(t))
		c.Close()
	}
	return percentile(ds, 0.5), percentile(ds, 0.99), nil
}

// concurrent opens n portals at once, each echoing size bytes, byte-exact.
func concurrent(addr string, n, size int) (time.Duration, int) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	failures := 0
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail := func() { mu.Lock(); failures++; mu.Unlock() }
			c, err := net.Dial("tcp", addr)
			if err != nil {
				fail()
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Minute))
			msg := bytes.Repeat([]byte{byte(i), byte(i >> 8), 0x5a}, size/3+1)[:size]
			go func() {
				c.Write(msg)
				c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, msg) {
				fail()
			}
		}()
	}
	wg.Wait()
	return time.Since(start), failures
}

func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return -1
}

func rssOfStateDir(w *world, stateDir string) int64 {
	for _, p := range w.procs {
		for i, a := range p.Args {
			if a == "--state-dir" && i+1 < len(p.Args) && p.Args[i+1] == stateDir {
				return rssKiB(p.Process.Pid)
			}
		}
	}
	return -1
}

// hubMemory connects n simulated members that hold idle control
// connections and reports the relay's RSS growth per node. Their
// credentials are issued with the authority's key straight from its
// directory (this tool runs on the vendor's side), not redeemed one by
// one.
func hubMemory(ctx context.Context, w *world, n int, r *Report) error {
	hub := w.procs[0]
	ad, err := authority.LoadDir(w.authDir)
	if err != nil {
		return err
	}
	a, err := ad.Authority(nil)
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	r.HubRSSBefore = rssKiB(hub.Process.Pid)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		static := key.NewNodePrivate()
		cred, err := a.Issue(enroll.Member{ID: string(static.Public().ID()), NodeKey: static.Public().Raw32()})
		if err != nil {
			return err
		}
		hello, _ := wire.Marshal(control.ClientHello{Version: wire.ProtocolVersion, Build: "perf", Credential: cred})
		c, err := net.Dial("tcp", w.hubAdr)
		if err != nil {
			return err
		}
		c.Write(wire.Preface(wire.KindControl))
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		nc, err := noiseconn.Initiate(hctx, c, hybrid(static, wire.Prologue("control", wire.OurOffer, nil)), func(key.NodePublic, []byte) ([]byte, error) { return hello, nil })
		cancel()
		if err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := wire.ReadMessage(nc)
		if err != nil {
			return fmt.Errorf("node %d welcome: %w", i, err)
		}
		if m, _ := control.Decode(resp); m.Err != nil {
			return fmt.Errorf("node %d refused: %s", i, m.Err.Message)
		}
		nc.SetReadDeadline(time.Time{})
		conns = append(conns, nc)
	}
	time.Sleep(2 * time.Second)
	r.HubRSSAfter = rssKiB(hub.Process.Pid)
	r.IdleNodes = n
	r.HubKiBPerNode = float64(r.HubRSSAfter-r.HubRSSBefore) / float64(n)
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }

// Print writes the table.
func Print(w io.Writer, r *Report) {
	d, p := r.Direct, r.Portal
	fmt.Fprintf(w, "\n%-34s %14s %14s %14s  %s\n", "metric", "direct", "portal", "ratio/delta", "target")
	row := func(name, a, b, c, target string) {
		fmt.Fprintf(w, "%-34s %14s %14s %14s  %s\n", name, a, b, c, target)
	}
	row("throughput, 1 stream (Gbit/s)", fmt.Sprintf("%.2f", d.Gbps1), fmt.Sprintf("%.2f", p.Gbps1), fmt.Sprintf("%.2fx", p.Gbps1/d.Gbps1),
		"≥ 0.30x "+verdict(p.Gbps1/d.Gbps1 >= 0.30))
	row("throughput, 4 streams (Gbit/s)", fmt.Sprintf("%.2f", d.Gbps4), fmt.Sprintf("%.2f", p.Gbps4), fmt.Sprintf("%.2fx", p.Gbps4/d.Gbps4), "")
	row("64 B request/response, mean", us(d.RTTMean), us(p.RTTMean), "+"+us(p.RTTMean-d.RTTMean), "")
	row("64 B request/response, p50", us(d.RTTP50), us(p.RTTP50), "+"+us(p.RTTP50-d.RTTP50), "≤ +250 µs "+verdict(p.RTTP50-d.RTTP50 <= 250*time.Microsecond))
	row("64 B request/response, p99", us(d.RTTP99), us(p.RTTP99), "+"+us(p.RTTP99-d.RTTP99), "")
	row("new connection to first byte, p50", us(d.SetupP50), us(p.SetupP50), "", "≤ 2 ms "+verdict(p.SetupP50 <= 2*time.Millisecond))
	row("new connection to first byte, p99", us(d.SetupP99), us(p.SetupP99), "", "")
	row(fmt.Sprintf("%d concurrent portals × 1 MiB", r.ConcCount), "", r.ConcTotal.Round(time.Millisecond).String(),
		fmt.Sprintf("%d failed", r.ConcFailures), "all byte-exact "+verdict(r.ConcFailures == 0))
	row(fmt.Sprintf("hub RSS per idle node (%d nodes)", r.IdleNodes), "", fmt.Sprintf("%.1f KiB", r.HubKiBPerNode),
		fmt.Sprintf("%d→%d KiB", r.HubRSSBefore, r.HubRSSAfter), "≤ 32 KiB "+verdict(r.HubKiBPerNode <= 32))
	maxAgent := int64(0)
	for _, a := range r.AgentRSS {
		maxAgent = max(maxAgent, a)
	}
	row("agent RSS at idle", "", fmt.Sprintf("%.1f MiB", float64(maxAgent)/1024), "", "≤ 20 MiB "+verdict(maxAgent <= 20*1024))
}

// hybrid is the Noise config the relay's control channel requires.
func hybrid(k key.NodePrivate, prologue []byte) *noiseconn.Config {
	st, err := noiseconn.NewStatic(k)
	if err != nil {
		panic(err)
	}
	return &noiseconn.Config{Static: st, Prologue: prologue, Mode: noiseconn.Hybrid}
}
