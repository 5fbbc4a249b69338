// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/edgeportal/connect/wire"
)

// admission counts connections that have not authenticated yet, per
// source address and in total (MaxPendingPerSource, MaxPending).
type admission struct {
	mu    sync.Mutex // guards bySrc and total
	bySrc map[string]int
	total int
}

func (a *admission) init() { a.bySrc = map[string]int{} }

func (a *admission) admit(ip string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.total >= MaxPending || a.bySrc[ip] >= MaxPendingPerSource {
		return false
	}
	a.bySrc[ip]++
	a.total++
	return true
}

func (a *admission) done(ip string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if a.bySrc[ip]--; a.bySrc[ip] <= 0 {
		delete(a.bySrc, ip)
	}
}

func (a *admission) pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total
}

// pendingSlot is one connection's place in the admission count; release
// gives it back once (the connection authenticated, or ended).
type pendingSlot struct {
	a        *admission
	ip       string
	released bool
}

func (p *pendingSlot) release() {
	if !p.released {
		p.released = true
		p.a.done(p.ip)
	}
}

func sourceIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// handleConn reads the preface and hands the connection to its kind's
// handler. It holds an admission slot until the handler releases it.
func (s *Server) handleConn(ctx context.Context, c net.Conn, ip string) {
	slot := &pendingSlot{a: &s.admission, ip: ip}
	defer slot.release()
	raw := c
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		raw = nc.NetConn() // inside the outer TLS
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	c.SetDeadline(time.Now().Add(s.handshakeTimeout))
	kind, offer, err := wire.ReadPreface(c)
	if err != nil {
		s.metrics.rejected.WithLabelValues("bad-preface").Inc()
		s.log.Debug("dropped connection", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	switch kind {
	case wire.KindControl:
		s.serveControl(ctx, c, offer, slot)
	case wire.KindData:
		s.serveData(c, slot)
	case wire.KindAuthority:
		s.serveAuthoritySession(ctx, c, offer, true)
	}
}
