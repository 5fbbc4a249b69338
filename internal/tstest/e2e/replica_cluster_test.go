// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClusterReplicas: two replicas of acme-relay on different relay
// nodes of a cluster (a real PostgreSQL), the vendor's node on the first:
// portals reach both (the second through a link between relay nodes);
// with one replica's target down (its presence row says so), every new
// portal goes to the other.
func TestClusterReplicas(t *testing.T) {
	c := startCluster(t, 2)
	ta, tb := newTarget(t, "replica A\n"), newTarget(t, "replica B\n")
	tk := c.ticket("replica.ticket", "--attribute", "outlet-from-saas", "--relay", "acme-relay", "--replica", "--usage-count", "2")
	start := func(name, to string, on int) *Node {
		t.Helper()
		cp := filepath.Join(c.env.Dir, name+".ticket")
		os.WriteFile(cp, mustRead(t, tk), 0o600)
		cfg := writeFile(t, c.env, name+".yaml", replicaYAML(to))
		n := c.env.StartNode(name, "--enrollment-ticket", cp, "--config", cfg, "--hub", c.relays[on].addr)
		n.AwaitRelayUp()
		return n
	}
	a, b := start("a", ta.addr, 0), start("b", tb.addr, 1)
	vt := c.ticket("vendor.ticket", "--attribute", "inlet-from-saas", "--relay", "saas-relay")
	vcfg := writeFile(t, c.env, "vendor.yaml", "policy:\n  resource-type: tcp-inlet\n  allow: outlet-from-saas\n")
	c.vendorN = c.env.StartNode("vendor", "--enrollment-ticket", vt, "--config", vcfg, "--hub", c.relays[0].addr)
	c.vendorN.AwaitRelayUp()
	in := c.inlet("web")
	if n := c.sql(`select count(*) from presence where relay = 'acme-relay' and lease_until > now()`); n != 2 {
		t.Fatalf("presence rows of acme-relay: %d, want one per replica", n)
	}
	seen := map[string]int{}
	Await(t, 30*time.Second, "portals reaching both replicas", func() bool {
		got, err := Get(in)
		if err != nil {
			t.Fatalf("portal: %v", err)
		}
		seen[got]++
		return seen["replica A\n"] > 0 && seen["replica B\n"] > 0
	})
	t.Logf("portals until both answered: %v", seen)
	if c.relayOf(a) != 0 || c.relayOf(b) != 1 {
		t.Fatalf("replicas on relay nodes %d and %d, want 0 and 1", c.relayOf(a), c.relayOf(b))
	}
	// B (on relay node 2) loses its target: its presence says so, and the
	// vendor's relay node (1) steers every new portal to A.
	tb.stop()
	Await(t, 30*time.Second, "B's presence showing web down", func() bool {
		return c.sql(`select count(*) from presence where relay = 'acme-relay' and 'web' = any(down)`) == 1
	})
	for i := range 10 {
		got, err := Get(in)
		if err != nil || got != "replica A\n" {
			t.Fatalf("portal %d with B's target down: %q, %v", i, got, err)
		}
	}
	r := c.hub("relay", "list", "--dir", c.relays[0].dir)
	idB, _ := b.Status()
	if !strings.Contains(r.Stdout, fmt.Sprintf("%s (down: web)", idB.Identifier)) {
		t.Fatalf("relay list on relay node 1 does not show B's health:\n%s", r.Stdout)
	}
}
