// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

// Row is one line of the report: a figure with its target.
type Row struct {
	Key     string   `json:"key"`  // stable identifier
	Name    string   `json:"name"` // what it measures
	Unit    string   `json:"unit"`
	Direct  *float64 `json:"direct,omitempty"` // the same on a direct (or plain-relay) path, in the same run
	Product float64  `json:"product"`
	Ratio   *float64 `json:"ratio,omitempty"` // product / direct
	Delta   *float64 `json:"delta,omitempty"` // product − direct
	Target  string   `json:"target"`          // "" for a figure reported without a target
	// Pass is the verdict: nil when the row has no target or could not
	// be judged (Note says why).
	Pass *bool  `json:"pass"`
	Note string `json:"note,omitempty"`
}

// Keys of every row a complete report has, in order.
var rowKeys = []string{
	"new_portal_p50", "new_portal_p99", "chain_new_p50", "new_channel_portal_p50", "new_channel_portal_p99",
	"iperf3_1_stream", "iperf3_4_streams", "rr64_p50", "chain_rr64_p50", "cpu_rr64", "cpu_new_portal",
	"delayed_new_portal_p50", "delayed_new_channel_portal_p50", "delayed_throughput_1_stream",
	"delay_proxy_rtt_cost", "delay_proxy_throughput", "delayed_relay_rtt", "delayed_portal_rtt",
	"concurrent_stalled", "concurrent_stalled_within_limits", "agent_mem_idle_channel", "agent_mem_open_stream_outlet", "agent_mem_open_stream_inlet",
	"handshake_cpu", "handshake_cpu_initiator", "handshake_cpu_responder", "handshake_bytes",
	"hub_mem_idle_node", "agent_idle_rss",
}

func f(v float64) *float64 { return &v }
func b(v bool) *bool       { return &v }
func us(d time.Duration) float64 {
	return float64(d) / 1e3
}
func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// concTolerance is how much slower the other portals may be with a
// stalled reader and still count as unchanged: the larger of this and
// the spread of the rounds without it.
const concTolerance = 0.20

func rows(o Options, r *Raw) []Row {
	var out []Row
	add := func(row Row) {
		if row.Direct != nil && *row.Direct != 0 {
			if row.Ratio == nil && row.Delta == nil {
				row.Ratio = f(row.Product / *row.Direct)
			}
		}
		out = append(out, row)
	}
	ratio := func(key, name, unit string, direct, product float64, min float64, note string) Row {
		return Row{Key: key, Name: name, Unit: unit, Direct: f(direct), Product: product, Ratio: f(product / direct),
			Target: fmt.Sprintf("≥ %.2fx", min), Pass: b(product/direct >= min), Note: note}
	}
	dP50, pP50 := medianD(r.Setup.DirectP50), medianD(r.Setup.PortalP50)
	dP99, pP99 := medianD(r.Setup.DirectP99), medianD(r.Setup.PortalP99)
	warm := fmt.Sprintf("channel up; %d portals per round; %.0f channels opened during the rounds", o.Setups, r.ChannelsOpenedDuringSetups)
	add(Row{Key: "new_portal_p50", Name: "new portal to first byte, p50", Unit: "µs", Direct: f(us(dP50)), Product: us(pP50),
		Delta: f(us(pP50 - dP50)), Target: "≤ 600 µs", Pass: b(pP50 <= 600*time.Microsecond), Note: warm})
	add(Row{Key: "new_portal_p99", Name: "new portal to first byte, p99", Unit: "µs", Direct: f(us(dP99)), Product: us(pP99),
		Delta: f(us(pP99 - dP99)), Target: "≤ 2000 µs", Pass: b(pP99 <= 2*time.Millisecond), Note: warm})
	cP50 := medianD(r.Setup.ChainP50)
	add(Row{Key: "chain_new_p50", Name: "plain relay chain: new connection, p50", Unit: "µs", Direct: f(us(dP50)), Product: us(cP50),
		Delta: f(us(cP50 - dP50)), Note: "through the same chain: each of its relays accepts and dials the next (a portal accepts once and dials once, its channel up)"})
	nc50, nc99 := medianD(r.NewChannel), time.Duration(0)
	if len(r.NewChannel) > 0 {
		nc99 = percentile(r.NewChannel, 0.99)
	}
	setupNote := fmt.Sprintf("first portal after an inlet node restart, %d samples (p99 = the largest); channel setup (agent_channel_setup_seconds) p50 %.0f µs",
		len(r.NewChannel), us(medianD(r.NewChannelSetup)))
	add(Row{Key: "new_channel_portal_p50", Name: "first portal of a new channel, p50", Unit: "µs", Direct: f(us(dP50)), Product: us(nc50),
		Delta: f(us(nc50 - dP50)), Note: setupNote})
	add(Row{Key: "new_channel_portal_p99", Name: "first portal of a new channel, p99", Unit: "µs", Direct: f(us(dP99)), Product: us(nc99),
		Delta: f(us(nc99 - dP99)), Note: "the target above applies to the common case (channel up)"})

	tool, note := "iperf3", fmt.Sprintf("iperf3 -c through an inlet to iperf3 -s behind an outlet, -t %s", o.Duration)
	if !r.Iperf3 {
		tool, note = "bulk copy", "FALLBACK: iperf3 not installed (apt-get install -y iperf3); this tool's own bulk copy, not judged"
	}
	for _, n := range []struct {
		key     string
		streams int
		d, p    []float64
	}{{"iperf3_1_stream", 1, r.Gbps.Direct1, r.Gbps.Portal1}, {"iperf3_4_streams", 4, r.Gbps.Direct4, r.Gbps.Portal4}} {
		row := ratio(n.key, fmt.Sprintf("%s, %d stream(s)", tool, n.streams), "Gbit/s", medianF(n.d), medianF(n.p), 0.34, note)
		if !r.Iperf3 {
			row.Pass = nil
		}
		add(row)
	}
	rd, rp := medianD(r.RTTP50.Direct), medianD(r.RTTP50.Portal)
	add(Row{Key: "rr64_p50", Name: "64 B request/response, p50", Unit: "µs", Direct: f(us(rd)), Product: us(rp), Delta: f(us(rp - rd)),
		Target: "≤ direct + 150 µs", Pass: b(rp-rd <= 150*time.Microsecond),
		Note: fmt.Sprintf("p99 direct %.0f µs, portal %.0f µs", us(medianD(r.RTTP99.Direct)), us(medianD(r.RTTP99.Portal)))})
	rc := medianD(r.RTTP50.Chain)
	add(Row{Key: "chain_rr64_p50", Name: "plain relay chain: 64 B request/response", Unit: "µs", Direct: f(us(rd)), Product: us(rc),
		Delta: f(us(rc - rd)), Note: "the floor under a portal here: as many processes between client and target (3 relays that only read and write), no crypto, no multiplexing"})
	add(Row{Key: "cpu_rr64", Name: "CPU of relay + nodes per 64 B round trip", Unit: "µs", Product: us(medianD(r.CPU.RTT)),
		Note: "all threads of the three processes (/proc/PID/task/*/schedstat, Linux), median of rounds"})
	add(Row{Key: "cpu_new_portal", Name: "CPU of relay + nodes per new portal", Unit: "µs", Product: us(medianD(r.CPU.NewPortal)),
		Note: "back to back, open to close"})

	d := r.Delayed
	ds := medianD(d.Setups)
	add(Row{Key: "delayed_new_portal_p50", Name: "delayed: new portal to first byte, p50", Unit: "ms", Direct: f(ms(d.DirectSetup)), Product: ms(ds),
		Delta: f(ms(ds - d.DirectSetup)), Target: fmt.Sprintf("≤ direct + 1 round trip (%.1f ms)", ms(d.RelayRTT)),
		Pass: b(ds <= d.DirectSetup+d.RelayRTT), Note: fmt.Sprintf("channel up; %d portals; round trip node↔hub↔node measured through the plain relay", len(d.Setups))})
	dn := medianD(d.NewChannel)
	add(Row{Key: "delayed_new_channel_portal_p50", Name: "delayed: first portal of a new channel, p50", Unit: "ms", Direct: f(ms(d.DirectSetup)), Product: ms(dn),
		Delta: f(ms(dn - d.DirectSetup)), Note: fmt.Sprintf("%d samples; %.1f round trips node↔hub↔node", len(d.NewChannel), float64(dn)/float64(max(d.RelayRTT, 1)))})
	add(ratio("delayed_throughput_1_stream", "delayed: 1 stream vs plain TCP relay", "Gbit/s", medianF(d.RelayGbpsPerRnd), medianF(d.PortalGbpsPerRnd), 0.8,
		fmt.Sprintf("%s one way node↔hub each side, %.0f Mbit/s links, bulk copy for %s; direct = a plain TCP relay on the same delayed path", d.OneWay, d.RateBytes*8/1e6, o.DelayedDuration)))
	add(Row{Key: "delay_proxy_rtt_cost", Name: "delay proxy itself: 64 B p50 (no delay)", Unit: "µs", Direct: f(us(d.ProxyRTTDirect)), Product: us(d.ProxyRTT),
		Delta: f(us(d.ProxyRTT - d.ProxyRTTDirect)), Note: "this tool's own delay proxy (delay.go), 0 delay, no rate limit"})
	add(Row{Key: "delay_proxy_throughput", Name: "delay proxy itself: 1 stream (no limit)", Unit: "Gbit/s", Direct: f(d.ProxyGbpsDirect), Product: d.ProxyGbps,
		Ratio: f(d.ProxyGbps / d.ProxyGbpsDirect), Note: fmt.Sprintf("what one proxy carries at most; the delayed links are limited to %.0f Mbit/s", d.RateBytes*8/1e6)})
	add(Row{Key: "delayed_relay_rtt", Name: "delayed: plain relay 64 B round trip", Unit: "ms", Direct: f(ms(4 * d.OneWay)), Product: ms(d.RelayRTT),
		Delta: f(ms(d.RelayRTT - 4*d.OneWay)), Note: "direct = the nominal 4 × one-way delay"})
	add(Row{Key: "delayed_portal_rtt", Name: "delayed: portal 64 B round trip", Unit: "ms", Direct: f(ms(d.RelayRTT)), Product: ms(d.PortalRTT),
		Delta: f(ms(d.PortalRTT - d.RelayRTT)), Note: "an open stream on the delayed path; direct = the plain relay's round trip above (one in-process relay, where a portal crosses three processes)"})

	stallRow := func(key string, count int, plainRuns, stallRuns []time.Duration, failures []int, note string) Row {
		plain, stall := medianD(plainRuns), medianD(stallRuns)
		tol := concTolerance
		if len(plainRuns) > 1 && plain > 0 {
			lo, hi := plainRuns[0], plainRuns[0]
			for _, x := range plainRuns {
				lo, hi = min(lo, x), max(hi, x)
			}
			tol = max(tol, float64(hi-lo)/float64(plain))
		}
		fails := 0
		for _, x := range failures {
			fails += x
		}
		return Row{Key: key, Name: fmt.Sprintf("%d portals × 1 MiB, one reader stalled", count), Unit: "ms",
			Direct: f(ms(plain)), Product: ms(stall), Ratio: f(float64(stall) / float64(plain)),
			Target: fmt.Sprintf("all exact; ≤ %.2fx", 1+tol), Pass: b(fails == 0 && float64(stall) <= float64(plain)*(1+tol)),
			Note: fmt.Sprintf("direct = the same portals without the stalled one; medians of %d interleaved rounds, tolerance the larger of %.0f%% and their spread; %d of %d portals failed%s",
				len(plainRuns), concTolerance*100, fails, count*len(failures), note)}
	}
	c := r.Conc
	add(stallRow("concurrent_stalled", c.Count, c.Plain, c.Stalled, c.Failures, "; inlet denials by reason: "+denials(c.Denied)))
	ca := r.ConcAdmitted
	add(stallRow("concurrent_stalled_within_limits", ca.Count, ca.Plain, ca.Stalled, ca.Failures, "; within the outlet node's per-peer limits (a burst of 2000 portals, 2048 open)"))

	memRow := func(key, name string, m memDelta, what string) Row {
		return Row{Key: key, Name: name, Unit: "KiB", Product: m.RSSKiB, Target: "≤ 64 KiB", Pass: b(m.RSSKiB <= 64),
			Note: fmt.Sprintf("RSS delta of the real agent process over %d %s; Go heap+stack %.1f KiB, %.1f goroutines each", m.Items, what, m.HeapStackKiB, m.Goroutines)}
	}
	add(memRow("agent_mem_idle_channel", "agent memory per idle channel (outlet)", r.ChannelMem, "idle channels from simulated peers"))
	add(memRow("agent_mem_open_stream_outlet", "agent memory per open stream (outlet)", r.StreamMem.Outlet, "open portals on one channel"))
	add(memRow("agent_mem_open_stream_inlet", "agent memory per open stream (inlet)", r.StreamMem.Inlet, "open portals on one channel"))

	h, cl := r.Hybrid, r.Classical
	add(Row{Key: "handshake_cpu", Name: "hybrid handshake CPU, both sides", Unit: "µs", Direct: f(us(cl.Both())), Product: us(h.Both()),
		Delta: f(us(h.Both() - cl.Both())), Target: "≤ 1000 µs", Pass: b(h.Both() <= time.Millisecond),
		Note: fmt.Sprintf("direct = classical XX; medians of %d in-process handshakes; process CPU per handshake %.0f µs hybrid, %.0f µs classical; once per node pair", h.Count, us(h.ProcCPU), us(cl.ProcCPU))})
	add(Row{Key: "handshake_cpu_initiator", Name: "hybrid handshake CPU, initiator", Unit: "µs", Direct: f(us(cl.Initiator)), Product: us(h.Initiator), Delta: f(us(h.Initiator - cl.Initiator))})
	add(Row{Key: "handshake_cpu_responder", Name: "hybrid handshake CPU, responder", Unit: "µs", Direct: f(us(cl.Responder)), Product: us(h.Responder), Delta: f(us(h.Responder - cl.Responder))})
	add(Row{Key: "handshake_bytes", Name: "hybrid handshake bytes, both sides", Unit: "B", Direct: f(float64(cl.Bytes)), Product: float64(h.Bytes),
		Delta: f(float64(h.Bytes - cl.Bytes)), Note: "direct = classical XX, same payloads"})

	perNode := float64(r.HubRSSAfter-r.HubRSSBefore) / float64(max(1, r.IdleNodes))
	add(Row{Key: "hub_mem_idle_node", Name: fmt.Sprintf("hub RSS per idle node (%d nodes)", r.IdleNodes), Unit: "KiB", Product: perNode,
		Target: "≤ 32 KiB", Pass: b(perNode <= 32), Note: fmt.Sprintf("%d → %d KiB", r.HubRSSBefore, r.HubRSSAfter)})
	maxAgent := int64(0)
	for _, a := range r.AgentRSS {
		maxAgent = max(maxAgent, a)
	}
	add(Row{Key: "agent_idle_rss", Name: "agent RSS at idle", Unit: "MiB", Product: float64(maxAgent) / 1024, Target: "≤ 20 MiB", Pass: b(maxAgent <= 20*1024),
		Note: "the larger of the two nodes, enrolled and connected, no channel"})
	return out
}

func denials(m map[string]float64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// Print writes the table.
func Print(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "\n%-44s %-7s %10s %10s %12s  %-34s %s\n", "metric", "unit", "direct", "product", "ratio/delta", "target", "")
	for _, r := range rep.Rows {
		direct, rd := "", ""
		if r.Direct != nil {
			direct = num(*r.Direct)
		}
		switch {
		case r.Ratio != nil:
			rd = fmt.Sprintf("%.2fx", *r.Ratio)
		case r.Delta != nil:
			rd = "+" + num(*r.Delta)
			rd = strings.Replace(rd, "+-", "−", 1)
		}
		verdict := "—"
		if r.Pass != nil {
			verdict = "MISS"
			if *r.Pass {
				verdict = "PASS"
			}
		} else if r.Target != "" {
			verdict = "n/a"
		}
		fmt.Fprintf(w, "%-44s %-7s %10s %10s %12s  %-34s %s\n", r.Name, r.Unit, direct, num(r.Product), rd, r.Target, verdict)
	}
	fmt.Fprintln(w, "\nnotes:")
	for _, r := range rep.Rows {
		if r.Note != "" {
			fmt.Fprintf(w, "  %-44s %s\n", r.Name+":", r.Note)
		}
	}
}

// checkReport reports a row missing, out of place or without a measured
// value (zero, NaN or infinite).
func checkReport(rep *Report) error {
	if len(rep.Rows) != len(rowKeys) {
		return fmt.Errorf("%d rows, want %d", len(rep.Rows), len(rowKeys))
	}
	bad := func(v float64) bool { return v == 0 || math.IsNaN(v) || math.IsInf(v, 0) }
	for i, r := range rep.Rows {
		if r.Key != rowKeys[i] {
			return fmt.Errorf("row %d is %q, want %q", i, r.Key, rowKeys[i])
		}
		if bad(r.Product) {
			return fmt.Errorf("row %s: product %v not measured", r.Key, r.Product)
		}
		for what, p := range map[string]*float64{"direct": r.Direct, "ratio": r.Ratio} {
			if p != nil && bad(*p) {
				return fmt.Errorf("row %s: %s %v not measured", r.Key, what, *p)
			}
		}
		if r.Delta != nil && (math.IsNaN(*r.Delta) || math.IsInf(*r.Delta, 0)) {
			return fmt.Errorf("row %s: delta %v", r.Key, *r.Delta)
		}
	}
	return nil
}
