// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, addr string) string {
	t.Helper()
	var body string
	Await(t, 10*time.Second, "metrics at "+addr, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 200
	})
	return body
}

func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no series %s in:\n%s", series, body)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestMetrics: both binaries expose Prometheus metrics on an opt-in
// loopback listener, and they follow what happens.
func TestMetrics(t *testing.T) {
	env := NewEnv(t)
	web := HTTPServer(t, "ok\n")
	hubMetrics, vendorMetrics, customerMetrics := FreePort(t), FreePort(t), FreePort(t)
	h := env.NewHub().Start("--metrics", hubMetrics)
	vt := h.Ticket("v.ticket", "--attribute", "inlet-from-saas", "--relay", "saas-relay")
	ct := h.Ticket("c.ticket", "--attribute", "outlet-from-saas", "--relay", "acme-relay")
	vcfg := filepath.Join(env.Dir, "v.yaml")
	os.WriteFile(vcfg, []byte("policy:\n  resource-type: tcp-inlet\n  allow: outlet-from-saas\n"), 0o600)
	ccfg := filepath.Join(env.Dir, "c.yaml")
	os.WriteFile(ccfg, []byte(outletYAML(outletItem("web", web, "inlet-from-saas"), outletItem("vip", web, "tier = gold"))), 0o600)
	vendor := env.StartNode("vendor", "--enrollment-ticket", vt, "--config", vcfg, "--metrics", vendorMetrics)
	customer := env.StartNode("customer", "--enrollment-ticket", ct, "--config", ccfg, "--metrics", customerMetrics)
	vendor.AwaitRelayUp()
	customer.AwaitRelayUp()
	p := &pair{env: env, hub: h, vendor: vendor, customer: customer}
	for i := 0; i < 3; i++ {
		if got, err := Get(p.inlet(t, "web")); err != nil || got != "ok\n" {
			t.Fatalf("portal: %q %v", got, err)
		}
	}
	Get(p.inlet(t, "vip")) // denied by the outlet's policy

	hub := scrape(t, hubMetrics)
	if v := metricValue(t, hub, "hub_connected_nodes"); v != 2 {
		t.Errorf("hub_connected_nodes = %v", v)
	}
	if v := metricValue(t, hub, "hub_relays"); v != 2 {
		t.Errorf("hub_relays = %v", v)
	}
	// Four portals, one channel: the relay opened one session.
	if v := metricValue(t, hub, "hub_sessions_opened_total"); v != 1 {
		t.Errorf("hub_sessions_opened_total = %v, want 1 (portals share a channel)", v)
	}
	if !strings.Contains(hub, `hub_build_info{platform=`) {
		t.Error("no hub_build_info")
	}
	Await(t, 5*time.Second, "portal counters", func() bool {
		v := scrape(t, vendorMetrics)
		return strings.Contains(v, `agent_portals_opened_total{side="inlet"} 3`) &&
			strings.Contains(v, `agent_portals_denied_total{reason="denied",side="inlet"} 1`)
	})
	c := scrape(t, customerMetrics)
	if v := metricValue(t, c, `agent_portals_opened_total{side="outlet"}`); v != 3 {
		t.Errorf("customer outlet portals = %v", v)
	}
	if v := metricValue(t, c, `agent_portals_denied_total{reason="denied",side="outlet"}`); v != 1 {
		t.Errorf("customer denials = %v", v)
	}
	if v := metricValue(t, c, "agent_relay_registered"); v != 1 {
		t.Errorf("agent_relay_registered = %v", v)
	}
	if metricValue(t, c, `agent_portal_bytes_total{direction="out",side="outlet"}`) <= 0 {
		t.Error("no bytes counted")
	}
	// One channel carried the four portals, hybrid post-quantum; status
	// (JSON and text), the metrics and the logs all name its suite.
	const suite = "MLKEM768"
	vst, err := vendor.Status()
	if err != nil {
		t.Fatal(err)
	}
	cst, _ := customer.Status()
	if len(vst.Channels) != 1 || vst.Channels[0].Direction != "out" || vst.Channels[0].Peer != cst.Identifier || !strings.Contains(vst.Channels[0].Suite, suite) {
		t.Errorf("vendor channels: %+v", vst.Channels)
	}
	if len(cst.Channels) != 1 || cst.Channels[0].Direction != "in" || cst.Channels[0].Peer != vst.Identifier {
		t.Errorf("customer channels: %+v", cst.Channels)
	}
	if r := vendor.CLI([]string{"status"}); !strings.Contains(r.Stdout, "Channel     to "+cst.Identifier) || !strings.Contains(r.Stdout, suite) {
		t.Errorf("status text:\n%s", r.Stdout)
	}
	if v := scrape(t, vendorMetrics); !strings.Contains(v, `agent_channels_opened_total{direction="dialed",suite="`) || !strings.Contains(v, suite) ||
		metricValue(t, v, "agent_channels_open") != 1 {
		t.Errorf("channel metrics missing:\n%s", grepLines(v, "agent_channel"))
	}
	if !strings.Contains(customer.Proc.Logs(), "channel open") || !strings.Contains(customer.Proc.Logs(), suite) {
		t.Error("the customer's log does not name the channel's suite")
	}

	// The listener is loopback-only when no host is given.
	r := env.Agent("run", "--state-dir", filepath.Join(env.Dir, "x"), "--metrics", "nonsense::")
	if r.Code == 0 {
		t.Error("a bad --metrics address was accepted")
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
