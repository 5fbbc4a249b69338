// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/edgeportal/connect/wire/noiseconn"
)

// Raw is every figure a run measured; the rows are computed from it.
type Raw struct {
	Iperf3 bool `json:"iperf3"` // false: throughput is this tool's own bulk copy

	// Per round (interleaved: direct, then portal, for each figure).
	Gbps struct {
		Direct1, Portal1, Direct4, Portal4 []float64
	} `json:"gbps_per_round"`
	// Chain is the same through a chain of plain relay processes (as
	// many as a portal crosses): the floor process wake-ups set here.
	RTTP50 struct{ Direct, Portal, Chain []time.Duration } `json:"rtt64_p50_ns_per_round"`
	RTTP99 struct{ Direct, Portal, Chain []time.Duration } `json:"rtt64_p99_ns_per_round"`
	Setup  struct {
		DirectP50, DirectP99, PortalP50, PortalP99, ChainP50, ChainP99 []time.Duration
	} `json:"new_portal_ns_per_round"`
	// CPU the relay and both nodes spent (all their threads) per 64 B
	// round trip and per new portal, per round.
	CPU struct{ RTT, NewPortal []time.Duration } `json:"product_cpu_ns_per_round"`
	// ChannelsOpenedDuringSetups is how many channels the inlet node
	// opened during the rounds (0: every portal was a stream of the
	// channel already up).
	ChannelsOpenedDuringSetups float64 `json:"channels_opened_during_setups"`

	// First portals of a new channel (after an inlet node restart).
	NewChannel      []time.Duration `json:"new_channel_first_byte_ns"`
	NewChannelSetup []time.Duration `json:"new_channel_setup_ns"` // agent_channel_setup_seconds

	Conc struct {
		Count    int                `json:"count"`
		Plain    []time.Duration    `json:"plain_total_ns"`   // per round: the portals' total time without a stalled reader
		Stalled  []time.Duration    `json:"stalled_total_ns"` // and with one
		Failures []int              `json:"failures"`         // per run, in the same order (plain, stalled, …)
		Denied   map[string]float64 `json:"inlet_denials"`    // agent_portals_denied_total on the inlet node after them, by series labels
	} `json:"concurrent"`

	// The same within the outlet node's per-peer limits (a burst of
	// 2000 portals, 2048 open at once).
	ConcAdmitted struct {
		Count    int             `json:"count"`
		Plain    []time.Duration `json:"plain_total_ns"`
		Stalled  []time.Duration `json:"stalled_total_ns"`
		Failures []int           `json:"failures"`
	} `json:"concurrent_within_limits"`

	StreamMem  struct{ Inlet, Outlet memDelta } `json:"open_stream_memory"`
	ChannelMem memDelta                         `json:"idle_channel_memory"` // outlet node

	HubRSSBefore int64   `json:"hub_rss_before_kib"`
	HubRSSAfter  int64   `json:"hub_rss_after_kib"`
	IdleNodes    int     `json:"idle_nodes"`
	AgentRSS     []int64 `json:"agent_idle_rss_kib"`

	Hybrid, Classical Handshake

	Delayed struct {
		OneWay           time.Duration   `json:"one_way_ns"`
		RateBytes        float64         `json:"rate_bytes_per_s"`
		ProxyRTTDirect   time.Duration   `json:"proxy_cost_rtt_direct_ns"` // 64 B p50, direct
		ProxyRTT         time.Duration   `json:"proxy_cost_rtt_ns"`        // through a zero-delay, unlimited proxy
		ProxyGbpsDirect  float64         `json:"proxy_cost_gbps_direct"`
		ProxyGbps        float64         `json:"proxy_cost_gbps"`
		RelayRTT         time.Duration   `json:"relay_rtt_p50_ns"`  // 64 B through the delayed plain relay: one node↔hub↔node round trip
		PortalRTT        time.Duration   `json:"portal_rtt_p50_ns"` // 64 B through a portal (stream open) on the delayed path
		DirectSetup      time.Duration   `json:"direct_new_connection_p50_ns"`
		Setups           []time.Duration `json:"new_portal_ns"`
		NewChannel       []time.Duration `json:"new_channel_first_byte_ns"`
		RelayGbpsPerRnd  []float64       `json:"relay_gbps_per_round"`
		PortalGbpsPerRnd []float64       `json:"portal_gbps_per_round"`
	} `json:"delayed"`
}

// Report is a run's rows and the figures behind them.
type Report struct {
	Short bool  `json:"short"`
	Rows  []Row `json:"rows"`
	Raw   Raw   `json:"raw"`
}

func medianF(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func medianD(v []time.Duration) time.Duration {
	if len(v) == 0 {
		return 0
	}
	return percentile(v, 0.5)
}

// Run measures everything.
func Run(ctx context.Context, o Options, log io.Writer) (*Report, error) {
	fmt.Fprintln(log, "handshakes (before any node runs) …")
	cl, err := handshakes(ctx, noiseconn.Classical, o.Shakes)
	if err != nil {
		return nil, fmt.Errorf("classical handshakes: %w", err)
	}
	hy, err := handshakes(ctx, noiseconn.Hybrid, o.Shakes)
	if err != nil {
		return nil, fmt.Errorf("hybrid handshakes: %w", err)
	}
	w, err := setup(ctx, log)
	if err != nil {
		return nil, err
	}
	defer w.close()
	t, err := startTargets(ctx, w.dir)
	if err != nil {
		return nil, err
	}
	defer t.stop()
	rep := &Report{Short: o.Short}
	raw := &rep.Raw
	raw.Iperf3 = t.iperf != ""
	if !raw.Iperf3 {
		fmt.Fprintln(log, "iperf3 is not installed (apt-get install -y iperf3): throughput rows use this tool's own bulk copy")
	}
	raw.Classical, raw.Hybrid = cl, hy

	fmt.Fprintln(log, "starting two nodes …")
	p, err := w.startPair(ctx, "lo", "acme-relay", t, "", "")
	if err != nil {
		return nil, err
	}
	time.Sleep(time.Second)
	for _, a := range []*agentProc{p.vendor, p.cust} {
		// At idle: enrolled, relay registered, inlets listening, no channel yet.
		raw.AgentRSS = append(raw.AgentRSS, rssKiB(a.cmd.Process.Pid))
	}

	// Memory first, on fresh processes: after the bursts below, buffers
	// the runtime keeps pooled (and heap it keeps, then gives back) would
	// hide what streams, idle nodes and channels cost, or show less than
	// nothing.
	fmt.Fprintf(log, "memory of %d open streams …\n", o.Streams)
	if err := streamMemory(ctx, w, p, o.Streams, raw); err != nil {
		return nil, fmt.Errorf("open stream memory: %w", err)
	}
	is, err := w.issuer()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "hub memory with %d idle nodes …\n", o.Nodes)
	raw.IdleNodes = o.Nodes
	if raw.HubRSSBefore, raw.HubRSSAfter, err = hubMemory(ctx, w, is, o.Nodes); err != nil {
		return nil, fmt.Errorf("hub memory: %w", err)
	}
	fmt.Fprintf(log, "memory of %d idle channels …\n", o.Peers)
	if err := channelMemory(ctx, w, is, p, o.Peers, raw); err != nil {
		return nil, fmt.Errorf("idle channel memory: %w", err)
	}
	fmt.Fprintf(log, "%d first portals of a new channel …\n", o.Channels)
	if err := newChannels(ctx, w, p, o.Channels, &raw.NewChannel, &raw.NewChannelSetup); err != nil {
		return nil, err
	}

	before, err := scrape(p.vendor.metrics)
	if err != nil {
		return nil, err
	}
	for r := 0; r < o.Rounds; r++ {
		fmt.Fprintf(log, "round %d of %d: direct and portal …\n", r+1, o.Rounds)
		if err := round(ctx, o, t, p, productCPU(w, p), raw, log); err != nil {
			return nil, err
		}
	}
	after, err := scrape(p.vendor.metrics)
	if err != nil {
		return nil, err
	}
	raw.ChannelsOpenedDuringSetups = after["agent_channels_opened_total"] - before["agent_channels_opened_total"]

	fmt.Fprintf(log, "%d concurrent portals × 1 MiB, with and without a stalled reader …\n", o.Conc)
	raw.Conc.Count = o.Conc
	for r := 0; r < o.Rounds; r++ {
		d, f := concurrent(p.inEcho, o.Conc, 1<<20)
		raw.Conc.Plain, raw.Conc.Failures = append(raw.Conc.Plain, d), append(raw.Conc.Failures, f)
		stopStall, err := stalled(p.inEcho, 64<<20)
		if err != nil {
			return nil, fmt.Errorf("stalled reader: %w", err)
		}
		d, f = concurrent(p.inEcho, o.Conc, 1<<20)
		stopStall()
		raw.Conc.Stalled, raw.Conc.Failures = append(raw.Conc.Stalled, d), append(raw.Conc.Failures, f)
		time.Sleep(time.Second) // let the per-peer portal rate refill
	}
	ca := &raw.ConcAdmitted
	ca.Count = min(o.Conc, admittedConc)
	for r := 0; r < o.Rounds; r++ {
		time.Sleep(2500 * time.Millisecond) // the per-peer portal rate refills
		d, f := concurrent(p.inEcho, ca.Count, 1<<20)
		ca.Plain, ca.Failures = append(ca.Plain, d), append(ca.Failures, f)
		time.Sleep(2500 * time.Millisecond)
		stopStall, err := stalled(p.inEcho, 64<<20)
		if err != nil {
			return nil, fmt.Errorf("stalled reader: %w", err)
		}
		d, f = concurrent(p.inEcho, ca.Count, 1<<20)
		stopStall()
		ca.Stalled, ca.Failures = append(ca.Stalled, d), append(ca.Failures, f)
	}
	if m, err := scrape(p.vendor.metrics); err == nil {
		raw.Conc.Denied = map[string]float64{}
		for series, v := range m {
			if rest, ok := strings.CutPrefix(series, `agent_portals_denied_total{`); ok {
				raw.Conc.Denied[strings.TrimSuffix(rest, "}")] = v
			}
		}
	}

	w.stopPair(p)

	fmt.Fprintf(log, "delayed path: %s one way between each node and the hub, %.0f Mbit/s …\n", o.OneWay, o.Rate*8/1e6)
	if err := delayedPath(ctx, o, w, t, raw); err != nil {
		return nil, fmt.Errorf("delayed path: %w", err)
	}
	rep.Rows = rows(o, raw)
	return rep, nil
}

// admittedConc is the most concurrent portals one peer may open at once
// without a refusal: the outlet node's per-peer burst (agent's
// peerPortalRate, 400) less the stalled one, under MaxPortalsPerPeer.
const admittedConc = 390

// newChannels measures n first portals of a new channel: the inlet node
// has just started (so no channel is up) when the client connects.
func newChannels(ctx context.Context, w *world, p *pair, n int, firsts, setups *[]time.Duration) error {
	for i := 0; i < n; i++ {
		if i > 0 {
			if err := w.restart(ctx, p.vendor); err != nil {
				return err
			}
		}
		time.Sleep(300 * time.Millisecond) // the node settles after its start
		d, err := firstByte(p.inEcho)
		if err != nil {
			return fmt.Errorf("first portal of a new channel: %w", err)
		}
		*firsts = append(*firsts, d)
		m, err := scrape(p.vendor.metrics)
		if err != nil {
			return err
		}
		if c := m["agent_channel_setup_seconds_count"]; c > 0 {
			*setups = append(*setups, time.Duration(m["agent_channel_setup_seconds_sum"]/c*1e9))
		}
	}
	return nil
}

// round measures one interleaved round of the loopback figures: the
// latencies first, then the bulk transfers.
func round(ctx context.Context, o Options, t *targets, p *pair, cpu func() time.Duration, raw *Raw, log io.Writer) error {
	bulk := func(addr, iperfAddr string, n int) (float64, error) {
		if raw.Iperf3 {
			g, err := iperf3(ctx, iperfAddr, n, o.Duration)
			if err != nil && ctx.Err() == nil {
				// iperf3 fails a whole run for one stream it could not set
				// up; say so, and run it once more.
				fmt.Fprintf(log, "%v; running it once more\n", err)
				time.Sleep(time.Second)
				g, err = iperf3(ctx, iperfAddr, n, o.Duration)
			}
			return g, err
		}
		return throughput(addr, n, o.Duration)
	}
	for _, path := range []struct {
		addr     string
		p50, p99 *[]time.Duration
		cpu      *[]time.Duration
	}{{t.echo, &raw.RTTP50.Direct, &raw.RTTP99.Direct, nil}, {p.inEcho, &raw.RTTP50.Portal, &raw.RTTP99.Portal, &raw.CPU.RTT},
		{t.chain, &raw.RTTP50.Chain, &raw.RTTP99.Chain, nil}} {
		c := cpu()
		ds, err := rtt(path.addr, o.RTTs)
		if err != nil {
			return fmt.Errorf("request/response via %s: %w", path.addr, err)
		}
		if path.cpu != nil {
			*path.cpu = append(*path.cpu, (cpu()-c)/time.Duration(len(ds)))
		}
		*path.p50, *path.p99 = append(*path.p50, percentile(ds, 0.5)), append(*path.p99, percentile(ds, 0.99))
	}
	for _, path := range []struct {
		addr     string
		p50, p99 *[]time.Duration
		cpu      *[]time.Duration
	}{{t.echo, &raw.Setup.DirectP50, &raw.Setup.DirectP99, nil}, {p.inEcho, &raw.Setup.PortalP50, &raw.Setup.PortalP99, &raw.CPU.NewPortal},
		{t.chain, &raw.Setup.ChainP50, &raw.Setup.ChainP99, nil}} {
		// Back to back; o.Setups stays under the outlet node's per-peer
		// burst of portals.
		c := cpu()
		ds, err := setupTimes(path.addr, o.Setups, 0)
		if err != nil {
			return fmt.Errorf("new connections via %s: %w", path.addr, err)
		}
		if path.cpu != nil {
			*path.cpu = append(*path.cpu, (cpu()-c)/time.Duration(len(ds)))
		}
		*path.p50, *path.p99 = append(*path.p50, percentile(ds, 0.5)), append(*path.p99, percentile(ds, 0.99))
	}
	for _, n := range []int{1, 4} {
		d, err := bulk(t.sink, t.iperf, n)
		if err != nil {
			return fmt.Errorf("direct, %d streams: %w", n, err)
		}
		g, err := bulk(p.inSink, p.inIperf, n)
		if err != nil {
			return fmt.Errorf("portal, %d streams: %w", n, err)
		}
		if n == 1 {
			raw.Gbps.Direct1, raw.Gbps.Portal1 = append(raw.Gbps.Direct1, d), append(raw.Gbps.Portal1, g)
		} else {
			raw.Gbps.Direct4, raw.Gbps.Portal4 = append(raw.Gbps.Direct4, d), append(raw.Gbps.Portal4, g)
		}
	}
	return nil
}

// streamMemory holds n streams open on the channel between p's nodes
// and records both nodes' growth per stream.
func streamMemory(ctx context.Context, w *world, p *pair, n int, raw *Raw) error {
	if _, err := firstByte(p.inEcho); err != nil { // the channel is up before the first sample
		return err
	}
	settle(ctx, p.vendor)
	settle(ctx, p.cust)
	bi, err := sampleMem(p.vendor)
	if err != nil {
		return err
	}
	bo, err := sampleMem(p.cust)
	if err != nil {
		return err
	}
	closeAll, err := holdStreams(p.inEcho, n, 150)
	if err != nil {
		return err
	}
	defer closeAll()
	settle(ctx, p.vendor)
	settle(ctx, p.cust)
	ai, err := sampleMem(p.vendor)
	if err != nil {
		return err
	}
	ao, err := sampleMem(p.cust)
	if err != nil {
		return err
	}
	raw.StreamMem.Inlet, raw.StreamMem.Outlet = delta(bi, ai, n), delta(bo, ao, n)
	return nil
}

// channelMemory has n simulated inlet nodes each open a channel to p's
// outlet node (through the real hub) and leave it idle, and records the
// outlet node's growth per channel.
func channelMemory(ctx context.Context, w *world, is *issuer, p *pair, n int, raw *Raw) error {
	settle(ctx, p.cust)
	before, err := sampleMem(p.cust)
	if err != nil {
		return err
	}
	var peers []*idlePeer
	defer func() {
		for _, pe := range peers {
			pe.close()
		}
	}()
	for i := 0; i < n; i++ {
		pe, err := openIdleChannel(ctx, w, is, p.relay, "echo")
		if err != nil {
			return fmt.Errorf("peer %d: %w", i, err)
		}
		peers = append(peers, pe)
	}
	settle(ctx, p.cust)
	after, err := sampleMem(p.cust)
	if err != nil {
		return err
	}
	raw.ChannelMem = delta(before, after, n)
	return nil
}

// delayedPath runs a second pair of nodes, each behind its own delayed
// link to the hub, next to a plain TCP relay on the same kind of path.
func delayedPath(ctx context.Context, o Options, w *world, t *targets, raw *Raw) error {
	d := &raw.Delayed
	d.OneWay, d.RateBytes = o.OneWay, o.Rate
	// What the delay proxy costs by itself: no delay, no rate limit.
	free, err := newDelayProxy(t.echo, 0, 0)
	if err != nil {
		return err
	}
	freeSink, err := newDelayProxy(t.sink, 0, 0)
	if err != nil {
		free.Close()
		return err
	}
	a, errA := rtt(t.echo, o.RTTs)
	b, errB := rtt(free.Addr(), o.RTTs)
	d.ProxyGbpsDirect, _ = throughput(t.sink, 1, o.Duration/2)
	d.ProxyGbps, _ = throughput(freeSink.Addr(), 1, o.Duration/2)
	free.Close()
	freeSink.Close()
	if errA != nil || errB != nil {
		return fmt.Errorf("proxy cost: %v %v", errA, errB)
	}
	d.ProxyRTTDirect, d.ProxyRTT = percentile(a, 0.5), percentile(b, 0.5)

	relayEcho, closeRE, err := delayedRelayPath(t.echo, o.OneWay, o.Rate)
	if err != nil {
		return err
	}
	defer closeRE()
	relaySink, closeRS, err := delayedRelayPath(t.sink, o.OneWay, o.Rate)
	if err != nil {
		return err
	}
	defer closeRS()
	rs, err := rtt(relayEcho, 20)
	if err != nil {
		return fmt.Errorf("plain relay round trip: %w", err)
	}
	d.RelayRTT = percentile(rs, 0.5)

	pv, err := newDelayProxy(w.hubAdr, o.OneWay, o.Rate)
	if err != nil {
		return err
	}
	defer pv.Close()
	pc, err := newDelayProxy(w.hubAdr, o.OneWay, o.Rate)
	if err != nil {
		return err
	}
	defer pc.Close()
	p, err := w.startPair(ctx, "wan", "acme-wan", t, pv.Addr(), pc.Addr())
	if err != nil {
		return err
	}
	defer w.stopPair(p)
	if err := newChannels(ctx, w, p, o.DelayedChannels, &d.NewChannel, new([]time.Duration)); err != nil {
		return err
	}
	ds, err := setupTimes(t.echo, 50, 0)
	if err != nil {
		return err
	}
	d.DirectSetup = percentile(ds, 0.5)
	if d.Setups, err = setupTimes(p.inEcho, o.DelayedSetups, 0); err != nil {
		return err
	}
	prt, err := rtt(p.inEcho, 20)
	if err != nil {
		return fmt.Errorf("delayed portal round trip: %w", err)
	}
	d.PortalRTT = percentile(prt, 0.5)
	for r := 0; r < o.Rounds; r++ {
		g, err := throughput(relaySink, 1, o.DelayedDuration)
		if err != nil {
			return fmt.Errorf("plain relay throughput: %w", err)
		}
		d.RelayGbpsPerRnd = append(d.RelayGbpsPerRnd, g)
		if g, err = throughput(p.inSink, 1, o.DelayedDuration); err != nil {
			return fmt.Errorf("portal throughput: %w", err)
		}
		d.PortalGbpsPerRnd = append(d.PortalGbpsPerRnd, g)
	}
	return nil
}
