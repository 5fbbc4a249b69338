// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestBenchShort runs the benchmark in its short form: every figure is
// measured and every concurrent portal is byte-exact. Targets are not
// checked here (the machine is shared and noisy); scripts/bench reports them.
func TestBenchShort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	o := Options{Short: true, Duration: 500 * time.Millisecond, RTTs: 200, Setups: 20, Conc: 100, Nodes: 50}
	r, err := Run(ctx, o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]float64{
		"direct 1": r.Direct.Gbps1, "portal 1": r.Portal.Gbps1, "direct 4": r.Direct.Gbps4, "portal 4": r.Portal.Gbps4,
		"rtt": float64(r.Portal.RTTP50), "setup": float64(r.Portal.SetupP50), "hub rss": float64(r.HubRSSAfter),
	} {
		if v <= 0 {
			t.Errorf("%s not measured", name)
		}
	}
	if r.ConcFailures != 0 {
		t.Errorf("%d of %d concurrent portals failed", r.ConcFailures, r.ConcCount)
	}
	if len(r.AgentRSS) != 2 || r.AgentRSS[0] <= 0 {
		t.Errorf("agent RSS: %v", r.AgentRSS)
	}
	var b bytes.Buffer
	Print(&b, r)
	if !strings.Contains(b.String(), "throughput, 1 stream") {
		t.Errorf("table:\n%s", b.String())
	}
}
