// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package egress

import (
	"context"
	"crypto/x509"
	"io"
	"net"
	"testing"
	"time"

	"github.com/edgeportal/connect/internal/tstest/certtest"
	"github.com/edgeportal/connect/internal/tstest/squidtest"
	"github.com/edgeportal/connect/wire/outer"
)

// serveSink reads and drops everything each connection sends.
func serveSink(b testing.TB, ln net.Listener) string {
	return serveConns(b, ln, 5*time.Minute, func(c net.Conn) { io.Copy(io.Discard, c) })
}

type benchEnv struct {
	plain, secure string // sink hubs
	ca            *certtest.CA
	caFile        string // the secure hub's CA
	proxy         string // the test's CONNECT proxy
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	e := &benchEnv{plain: serveSink(b, ln)}
	ca := certtest.NewCA(b, "Bench CA")
	leaf := ca.Leaf(b, "127.0.0.1")
	dir := b.TempDir()
	cfg, err := outer.ServerConfig(certtest.WriteFile(b, dir, "c", leaf.CertPEM, 0o644), certtest.WriteFile(b, dir, "k", leaf.KeyPEM, 0o600))
	if err != nil {
		b.Fatal(err)
	}
	tln, err := outer.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		b.Fatal(err)
	}
	e.secure = serveSink(b, tln)
	e.ca, e.caFile = ca, certtest.WriteFile(b, dir, "ca", ca.CertPEM, 0o644)
	e.proxy = startProxy(b, pOK).addr
	return e
}

type benchCase struct {
	name string
	o    Options
	hub  string
}

func (e *benchEnv) cases(squid, bump *squidtest.Proxy) []benchCase {
	tls := Options{TLS: true, CAFile: e.caFile, SystemRoots: x509.NewCertPool()}
	withProxy := func(o Options, p string) Options { o.Proxy = p; return o }
	cs := []benchCase{
		{"direct", Options{}, e.plain},
		{"tls", tls, e.secure},
		{"proxy", Options{Proxy: e.proxy}, e.plain},
		{"proxy+tls", withProxy(tls, e.proxy), e.secure},
	}
	if squid != nil {
		cs = append(cs,
			benchCase{"squid", Options{Proxy: squid.Addr}, e.plain},
			benchCase{"squid+tls", withProxy(tls, squid.Addr), e.secure},
			benchCase{"squid-inspecting", Options{Proxy: bump.Addr, TLS: true, CAFile: bump.CAFile, SystemRoots: x509.NewCertPool()}, e.secure})
	}
	return cs
}

// squidFor starts squid (plain and ssl-bump) for the bench hubs, or
// returns nils when squid is not installed (the squid cases are then left
// out).
func squidFor(b *testing.B, e *benchEnv) (squid, bump *squidtest.Proxy) {
	b.Helper()
	if !squidtest.Installed() {
		b.Log("squid is not installed: no squid cases")
		return nil, nil
	}
	ports := []int{port(b, e.plain), port(b, e.secure)}
	return squidtest.Start(b, squidtest.Options{AllowPorts: ports}),
		squidtest.Start(b, squidtest.Options{AllowPorts: ports, Bump: true, UpstreamCA: e.ca.CertPEM})
}

// BenchmarkDial measures one dial to a ready connection and its close.
func BenchmarkDial(b *testing.B) {
	e := newBenchEnv(b)
	squid, bump := squidFor(b, e)
	for _, tt := range e.cases(squid, bump) {
		b.Run(tt.name, func(b *testing.B) {
			d := newDialer(b, tt.o)
			ctx := context.Background()
			for b.Loop() {
				c, err := d.DialContext(ctx, tt.hub)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// BenchmarkThroughput measures writing through one connection in
// 256 KiB writes (the node's data path batch size).
func BenchmarkThroughput(b *testing.B) {
	e := newBenchEnv(b)
	squid, bump := squidFor(b, e)
	buf := make([]byte, 256<<10)
	for _, tt := range e.cases(squid, bump) {
		b.Run(tt.name, func(b *testing.B) {
			d := newDialer(b, tt.o)
			c, err := dial(b, d, tt.hub)
			if err != nil {
				b.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Minute))
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.Close()
		})
	}
}
