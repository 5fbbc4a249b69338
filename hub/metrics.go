// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"github.com/prometheus/client_golang/prometheus"
)

// hubMetrics are the hub's Prometheus metrics (no per-node labels: the
// cardinality stays bounded however many nodes connect).
type hubMetrics struct {
	sessionsOpened prometheus.Counter
	rejected       *prometheus.CounterVec
	commands       *prometheus.CounterVec
	handshake      prometheus.Histogram
	updates        *prometheus.CounterVec
	slowDowns      prometheus.Counter
}

func newHubMetrics(s *Server, reg *prometheus.Registry) *hubMetrics {
	m := &hubMetrics{
		sessionsOpened: prometheus.NewCounter(prometheus.CounterOpts{Name: "hub_sessions_opened_total", Help: "Portal sessions handed out."}),
		rejected:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hub_connections_rejected_total", Help: "Connections dropped, by reason."}, []string{"reason"}),
		commands:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hub_commands_total", Help: "Vendor commands by outcome."}, []string{"state"}),
		handshake: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hub_control_handshake_seconds", Help: "Control channel Noise handshakes.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 12)}),
		updates:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hub_update_results_total", Help: "Node self-update results."}, []string{"result"}),
		slowDowns: prometheus.NewCounter(prometheus.CounterOpts{Name: "hub_requests_slowed_total", Help: "Member requests refused with slow-down (rate limits)."}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.sessionsOpened, m.rejected, m.commands, m.handshake, m.updates, m.slowDowns,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hub_connected_nodes", Help: "Control connections up."},
			func() float64 { return float64(s.stats.ControlConns.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hub_relays", Help: "Relays registered."},
			func() float64 { return float64(s.relays.count()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hub_portals_open", Help: "Spliced portal sessions."},
			func() float64 { return float64(s.stats.ActiveSessions.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hub_pending_connections", Help: "Connections before their handshake."},
			func() float64 { return float64(s.admission.pending()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "hub_store_queries_total", Help: "Statements sent to a shared store (0 for the single-file store)."},
			func() float64 { return float64(s.Queries()) }),
	)
	return m
}
