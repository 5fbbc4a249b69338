// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

// Timeouts of the control channel.
const (
	dialTimeout = 10 * time.Second
	callTimeout = 20 * time.Second
	// DefaultKeepAlive is how often a node pings the hub; a ping not
	// answered within the same time marks the connection dead, so a path
	// that stalls without closing is replaced within twice this.
	DefaultKeepAlive = 20 * time.Second
	writeTimeout     = 15 * time.Second
	maxBackoff       = 30 * time.Second
	initialBackoff   = 500 * time.Millisecond
)

// HubKeyMismatchError means the hub answered with a static key other than
// the one the ticket (or enrollment) names.
type HubKeyMismatchError struct {
	Addr      string
	Got, Want key.NodePublic
}

func (e *HubKeyMismatchError) Error() string {
	return fmt.Sprintf("hub at %s has key %s but the ticket names %s: this is a ticket for another hub", e.Addr, e.Got.Fingerprint(), e.Want.Fingerprint())
}

// hubConn is one control connection to the hub. Its reader goroutine,
// started by dialHub, delivers answers to callers and pushes to onPush;
// close stops it and waits for it.
type hubConn struct {
	addr   string
	nc     *noiseconn.Conn
	hello  control.ServerHello
	onPush func(control.Msg)

	wmu sync.Mutex // serializes writes to nc

	mu     sync.Mutex // guards nextID, calls, err and keepalive
	nextID uint64
	calls  map[uint64]chan control.Msg
	err    error // why the connection ended; set once
	// keepalive sets the read deadline: three silent intervals end it.
	keepalive time.Duration

	done chan struct{} // closed when the reader has returned
}

// dialHub connects to the hub at addr, checks its static key and starts
// the reader. onPush (nil: pushes are ignored) runs on the reader
// goroutine and must not block.
func dialHub(ctx context.Context, addr string, static key.NodePrivate, hubKey key.NodePublic, onPush func(control.Msg)) (*hubConn, error) {
	d := net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("hub %s unreachable: %w", addr, err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	hctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c.SetDeadline(time.Now().Add(dialTimeout))
	if _, err := c.Write(wire.Preface(wire.KindControl)); err != nil {
		c.Close()
		return nil, fmt.Errorf("hub %s: %w", addr, err)
	}
	var hello control.ServerHello
	ch, _ := wire.Marshal(control.ClientHello{Version: wire.ProtocolVersion, Build: buildinfo.Version(), Platform: buildinfo.Platform()})
	nc, err := noiseconn.Client(hctx, c, static, wire.Prologue("control", nil), func(peer key.NodePublic, payload []byte) ([]byte, error) {
		if !peer.Equal(hubKey) {
			return nil, &HubKeyMismatchError{Addr: addr, Got: peer, Want: hubKey}
		}
		if err := wire.Unmarshal(payload, &hello); err != nil {
			return nil, fmt.Errorf("hub hello: %w", err)
		}
		return ch, nil
	})
	if err != nil {
		c.Close()
		var km *HubKeyMismatchError
		if errors.As(err, &km) {
			return nil, km
		}
		return nil, fmt.Errorf("hub %s handshake: %w", addr, err)
	}
	c.SetDeadline(time.Time{})
	if onPush == nil {
		onPush = func(control.Msg) {}
	}
	h := &hubConn{addr: addr, nc: nc, hello: hello, onPush: onPush, calls: map[uint64]chan control.Msg{}, done: make(chan struct{}), keepalive: DefaultKeepAlive}
	go h.read()
	return h, nil
}

// setKeepalive sets how often the owner pings (the read deadline is three
// times that).
func (h *hubConn) setKeepalive(d time.Duration) {
	h.mu.Lock()
	h.keepalive = d
	h.mu.Unlock()
}

// read reads messages until the connection ends. Answers (TypeResponse,
// with the request's ID) go to their callers; everything else is a push.
func (h *hubConn) read() {
	defer close(h.done)
	for {
		h.mu.Lock()
		ka := h.keepalive
		h.mu.Unlock()
		h.nc.SetReadDeadline(time.Now().Add(3 * ka))
		b, err := wire.ReadMessage(h.nc)
		if err != nil {
			h.fail(err)
			return
		}
		m, err := control.Decode(b)
		if err != nil {
			h.fail(err)
			return
		}
		if m.Type == control.TypeResponse {
			h.mu.Lock()
			ch := h.calls[m.ID]
			delete(h.calls, m.ID)
			h.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		h.onPush(m)
	}
}

func (h *hubConn) fail(err error) {
	h.mu.Lock()
	if h.err == nil {
		h.err = err
	}
	h.mu.Unlock()
	h.nc.Close()
}

// error returns why the connection ended (nil while it is up).
func (h *hubConn) error() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// close ends the connection and waits for its reader.
func (h *hubConn) close() {
	h.fail(net.ErrClosed)
	<-h.done
}

// call sends a request and waits for its answer. A refusal from the hub is
// returned as *control.Error.
func (h *hubConn) call(ctx context.Context, t control.Type, req, resp any) error {
	h.mu.Lock()
	if h.err != nil {
		err := h.err
		h.mu.Unlock()
		return fmt.Errorf("hub connection lost: %w", err)
	}
	h.nextID++
	id := h.nextID
	ch := make(chan control.Msg, 1)
	h.calls[id] = ch
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.calls, id)
		h.mu.Unlock()
	}()
	b, err := control.Encode(t, id, req)
	if err != nil {
		return err
	}
	h.wmu.Lock()
	h.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	err = wire.WriteMessage(h.nc, b)
	h.wmu.Unlock()
	if err != nil {
		h.fail(err)
		return fmt.Errorf("hub connection lost: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	select {
	case m := <-ch:
		if m.Err != nil {
			return m.Err
		}
		if resp == nil {
			return nil
		}
		return control.DecodeBody(m, resp)
	case <-h.done:
		return fmt.Errorf("hub connection lost: %w", h.error())
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			h.fail(errors.New("hub did not answer in time"))
		}
		return fmt.Errorf("hub did not answer: %w", ctx.Err())
	}
}
