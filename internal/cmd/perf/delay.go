// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"io"
	"net"
	"sync"
	"time"

	"github.com/edgeportal/connect/internal/tstest/testnet"
)

// Delay proxy limits.
const (
	// delayChunk is the most one read of the proxy takes from a
	// connection (one unit of the emulated link).
	delayChunk = 64 << 10
	// delayQueue is the router queue in front of the emulated link, in
	// bytes, beyond the bytes in flight (rate × delay).
	delayQueue = 4 << 20
)

// delayProxy emulates a network path on loopback: it listens, and for
// every connection dials upstream and carries both directions through a
// link that delivers each byte delay after it leaves, with bytes leaving
// at rate bytes/s at most (0: unlimited) from a bounded queue, as a
// router in front of a slower link does. TCP on either side of the proxy
// sees loopback; the delay and the rate apply to the bytes, so the
// end-to-end flow control above TCP (the multiplexer's windows) sees the
// full round trip.
type delayProxy struct {
	ln       net.Listener
	upstream string
	delay    time.Duration
	rate     float64

	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup // the accept loop and every pump
}

// newDelayProxy listens on a random loopback port and forwards to
// upstream.
func newDelayProxy(upstream string, delay time.Duration, rate float64) (*delayProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &delayProxy{ln: ln, upstream: upstream, delay: delay, rate: rate, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is where clients connect.
func (p *delayProxy) Addr() string { return p.ln.Addr().String() }

func (p *delayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *delayProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.upstream, 10*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		for _, x := range []net.Conn{c, up} {
			x.(*net.TCPConn).SetNoDelay(true)
		}
		if !p.track(c) || !p.track(up) {
			c.Close()
			up.Close()
			return
		}
		p.pump(c, up)
		p.pump(up, c)
	}
}

// Close stops the proxy and cuts every connection through it.
func (p *delayProxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

type delayed struct {
	b  []byte
	at time.Time
}

// pump carries src→dst through the link, then half-closes dst.
func (p *delayProxy) pump(src, dst net.Conn) {
	budget := delayQueue + int(p.rate*p.delay.Seconds())
	q := &byteQueue{limit: budget}
	q.cond = sync.NewCond(&q.mu)
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		defer q.close()
		var depart time.Time
		for {
			b := make([]byte, delayChunk)
			n, err := src.Read(b)
			if n > 0 {
				now := time.Now()
				if depart.Before(now) {
					depart = now
				}
				if p.rate > 0 {
					depart = depart.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
				}
				if !q.put(delayed{b[:n], depart.Add(p.delay)}) {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer p.wg.Done()
		for {
			d, ok := q.get()
			if !ok {
				break
			}
			testnet.SleepUntil(d.at)
			if _, err := dst.Write(d.b); err != nil {
				q.fail()
				src.Close()
				return
			}
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
}

// byteQueue is a FIFO bounded in bytes.
type byteQueue struct {
	limit int
	cond  *sync.Cond

	mu     sync.Mutex // guards the fields below
	items  []delayed
	bytes  int
	closed bool // no more puts
	failed bool // the reader side is gone: puts fail
}

func (q *byteQueue) put(d delayed) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.bytes > 0 && q.bytes+len(d.b) > q.limit && !q.failed {
		q.cond.Wait()
	}
	if q.failed {
		return false
	}
	q.items = append(q.items, d)
	q.bytes += len(d.b)
	q.cond.Broadcast()
	return true
}

func (q *byteQueue) get() (delayed, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.items) == 0 {
		return delayed{}, false
	}
	d := q.items[0]
	q.items[0] = delayed{}
	q.items = q.items[1:]
	q.bytes -= len(d.b)
	q.cond.Broadcast()
	return d, true
}

func (q *byteQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *byteQueue) fail() {
	q.mu.Lock()
	q.failed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// tcpRelay is a plain TCP relay (what the hub is, without its protocol):
// every connection is spliced to upstream with io.Copy, half-close
// carried, and both ends are closed once both directions are done.
type tcpRelay struct {
	ln       net.Listener
	upstream string

	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newTCPRelay(upstream string) (*tcpRelay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &tcpRelay{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", upstream, 10*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			if r.conns == nil {
				r.mu.Unlock()
				c.Close()
				up.Close()
				return
			}
			r.conns[c], r.conns[up] = struct{}{}, struct{}{}
			r.mu.Unlock()
			var pair sync.WaitGroup
			pair.Add(2)
			r.wg.Add(3)
			for _, d := range [][2]net.Conn{{c, up}, {up, c}} {
				go func() {
					defer r.wg.Done()
					defer pair.Done()
					io.Copy(d[1], d[0])
					d[1].(*net.TCPConn).CloseWrite()
				}()
			}
			go func() {
				defer r.wg.Done()
				pair.Wait()
				c.Close()
				up.Close()
				r.mu.Lock()
				if r.conns != nil {
					delete(r.conns, c)
					delete(r.conns, up)
				}
				r.mu.Unlock()
			}()
		}
	}()
	return r, nil
}

func (r *tcpRelay) Addr() string { return r.ln.Addr().String() }

func (r *tcpRelay) Close() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
	r.wg.Wait()
}

// delayedRelayPath builds client → link → plain TCP relay → link → target
// and returns the address clients dial and a closer.
func delayedRelayPath(target string, oneWay time.Duration, rate float64) (string, func(), error) {
	near, err := newDelayProxy(target, oneWay, rate)
	if err != nil {
		return "", nil, err
	}
	relay, err := newTCPRelay(near.Addr())
	if err != nil {
		near.Close()
		return "", nil, err
	}
	far, err := newDelayProxy(relay.Addr(), oneWay, rate)
	if err != nil {
		relay.Close()
		near.Close()
		return "", nil, err
	}
	return far.Addr(), func() { far.Close(); relay.Close(); near.Close() }, nil
}
