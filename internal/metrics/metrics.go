// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package metrics serves a Prometheus registry on an opt-in listener that
// binds to loopback unless told otherwise. Each binary builds its own
// registry (never the global one); this package only serves it.
//
// Imported by hub, agent and cmd.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edgeportal/connect/internal/buildinfo"
)

// NewRegistry returns a registry with the Go and process collectors and a
// build_info gauge for component ("hub" or "agent").
func NewRegistry(component string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bi := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: component + "_build_info", Help: "Build information; the value is always 1.",
	}, []string{"version", "platform"})
	bi.WithLabelValues(buildinfo.Version(), buildinfo.Platform()).Set(1)
	reg.MustRegister(bi)
	return reg
}

// ListenAddr turns a flag value into a listen address: a bare ":port" or
// "port" binds to loopback.
func ListenAddr(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if _, perr := net.LookupPort("tcp", s); perr != nil {
			return "", fmt.Errorf("--metrics %q: want [HOST]:PORT", s)
		}
		host, port = "", s
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// Serve serves reg at /metrics on addr until ctx ends.
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener failed", "err", err)
		}
	}()
	return nil
}
