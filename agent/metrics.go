// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// nodeMetrics are a node's Prometheus metrics. Labels are bounded sets
// (side, reason code, direction, decision), never peers or clients.
type nodeMetrics struct {
	opened *prometheus.CounterVec
	denied *prometheus.CounterVec
	open   *prometheus.GaugeVec
	bytes  *prometheus.CounterVec
	setup  prometheus.Histogram
	dial   prometheus.Histogram
	// channels counts channels opened, by direction (dialed by this
	// node, accepted from a peer) and Noise suite.
	channels     *prometheus.CounterVec
	channelSetup prometheus.Histogram
	reconnects   prometheus.Counter
	commands     *prometheus.CounterVec
	updates      *prometheus.CounterVec
}

func newNodeMetrics(n *Node, reg *prometheus.Registry) *nodeMetrics {
	m := &nodeMetrics{
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_portals_opened_total", Help: "Portals opened, by side."}, []string{"side"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_portals_denied_total", Help: "Portals refused, by reason."}, []string{"side", "reason"}),
		open:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "agent_portals_open", Help: "Portals open now."}, []string{"side"}),
		bytes:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_portal_bytes_total", Help: "Bytes carried by portals."}, []string{"side", "direction"}),
		setup: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agent_portal_setup_seconds", Help: "Inlet side: client accepted to the outlet node's accepting the portal (includes a new channel's setup when none was up).",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14)}),
		dial: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agent_target_dial_seconds", Help: "Outlet side: target dial time.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14)}),
		channels: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_channels_opened_total", Help: "End-to-end channels opened, by direction and Noise suite."}, []string{"direction", "suite"}),
		channelSetup: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agent_channel_setup_seconds", Help: "Inlet side: first portal's wait for a new channel (session, data connection, handshake).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "agent_hub_reconnects_total", Help: "Control connection losses."}),
		commands:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_commands_total", Help: "Vendor commands by decision."}, []string{"decision"}),
		updates:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_update_results_total", Help: "Self-update attempts by result."}, []string{"result"}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.opened, m.denied, m.open, m.bytes, m.setup, m.dial, m.channels, m.channelSetup, m.reconnects,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "agent_channels_open", Help: "End-to-end channels up now."},
			func() float64 { return float64(len(n.channels.all())) }), m.commands, m.updates,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "agent_hub_connected", Help: "1 while the control connection is up."},
			func() float64 {
				n.mu.Lock()
				defer n.mu.Unlock()
				if n.hub != nil {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "agent_relay_registered", Help: "1 while the relay is registered."},
			func() float64 {
				n.mu.Lock()
				defer n.mu.Unlock()
				if n.relayUp {
					return 1
				}
				return 0
			}),
	)
	return m
}
