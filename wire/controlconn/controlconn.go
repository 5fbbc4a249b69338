// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package controlconn is the client side of the control protocol
// (wire/control), shared by everything that dials the relay: nodes (their
// control channel, and their end-to-end channel to the authority) and the
// authority itself.
//
// Dial writes the preface, runs Noise XX as the initiator, checks the
// peer's static key against the pinned one, and starts a reader goroutine
// that hands answers to their callers and everything else to OnPush. On a
// control connection it then waits for the relay's welcome, so a refused
// credential is an error from Dial, not from the first call. Close stops
// the reader and waits for it.
//
// May be imported by agent and hub; imports only wire packages.
package controlconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

// Timeouts.
const (
	// DialTimeout bounds the TCP dial, the preface and the handshake.
	DialTimeout = 10 * time.Second
	// CallTimeout bounds one call's wait for its answer.
	CallTimeout = 20 * time.Second
	// WriteTimeout bounds one write.
	WriteTimeout = 15 * time.Second
	// DefaultReadIdle is how long the reader waits for anything before it
	// declares the connection dead (see SetKeepAlive).
	DefaultReadIdle = 60 * time.Second
)

// KeyMismatchError means the peer answered with a static key other than
// the pinned one.
type KeyMismatchError struct {
	Addr      string
	What      string // "relay" or "authority"
	Got, Want key.NodePublic
}

func (e *KeyMismatchError) Error() string {
	return fmt.Sprintf("the %s at %s has key %s but this node expects %s: this is a ticket or enrollment for another hub",
		e.What, e.Addr, e.Got.String(), e.Want.String())
}

// ErrNoAuthority means the relay has no authority connected to reach.
var ErrNoAuthority = errors.New("the project's authority is not connected to the relay; try again later")

// Options say what to dial and how.
type Options struct {
	Addr string // the relay's host:port
	// Dial opens the TCP (or TLS, or proxied) connection to Addr; nil
	// means a plain TCP dial.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Kind is wire.KindControl (a control channel with the relay) or
	// wire.KindAuthority (an end-to-end channel with the authority
	// through the relay).
	Kind   byte
	Static key.NodePrivate // this side's Noise key
	Peer   key.NodePublic  // the pinned key of the relay or the authority
	// Hello is the message-3 payload (a control.ClientHello for a
	// control channel).
	Hello any
	// OnPush runs on the reader goroutine for every message that is not
	// an answer; it must not block. nil ignores pushes.
	OnPush func(control.Msg)
	// CheckHello, if not nil, sees the relay's hello before this side
	// sends its own (and its credential); an error ends the handshake.
	CheckHello func(control.ServerHello) error
}

// Conn is one connection speaking the control protocol.
type Conn struct {
	addr   string
	nc     *noiseconn.Conn
	hello  control.ServerHello // the relay's hello (control channels)
	onPush func(control.Msg)

	wmu sync.Mutex // serializes writes to nc

	mu       sync.Mutex // guards nextID, calls, err and readIdle
	nextID   uint64
	calls    map[uint64]chan control.Msg
	err      error // why the connection ended; set once
	readIdle time.Duration

	done chan struct{} // closed when the reader has returned
}

// Dial connects and returns a ready connection.
func Dial(ctx context.Context, o Options) (*Conn, error) {
	what, purpose := "relay", "control"
	if o.Kind == wire.KindAuthority {
		what, purpose = "authority", "authority"
	}
	dial := o.Dial
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: DialTimeout, KeepAlive: 15 * time.Second}
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	c, err := dial(ctx, o.Addr)
	if err != nil {
		return nil, fmt.Errorf("hub %s unreachable: %w", o.Addr, err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	hctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	c.SetDeadline(time.Now().Add(DialTimeout))
	if _, err := c.Write(wire.Preface(o.Kind)); err != nil {
		c.Close()
		return nil, fmt.Errorf("hub %s: %w", o.Addr, err)
	}
	if o.Kind == wire.KindAuthority {
		// The relay says whether the authority is there before it
		// splices; the answer is not authenticated, so it can only make
		// this fail, never succeed.
		var st [1]byte
		if _, err := io.ReadFull(c, st[:]); err != nil {
			c.Close()
			return nil, fmt.Errorf("relay %s closed the authority connection: %w", o.Addr, err)
		}
		if st[0] != 0 {
			c.Close()
			return nil, ErrNoAuthority
		}
	}
	payload, err := wire.Marshal(o.Hello)
	if err != nil {
		c.Close()
		return nil, err
	}
	static, err := noiseconn.NewStatic(o.Static)
	if err != nil {
		c.Close()
		return nil, err
	}
	var hello control.ServerHello
	// Hybrid (X25519 + ML-KEM-768): the authority channel carries ticket
	// secrets and credentials, which a recording today must not reveal to
	// a quantum computer later.
	cfg := &noiseconn.Config{Static: static, Prologue: wire.Prologue(purpose, wire.OurOffer, nil), Mode: noiseconn.Hybrid}
	nc, err := noiseconn.Initiate(hctx, c, cfg, func(peer key.NodePublic, p []byte) ([]byte, error) {
		if !peer.Equal(o.Peer) {
			return nil, &KeyMismatchError{Addr: o.Addr, What: what, Got: peer, Want: o.Peer}
		}
		if o.Kind == wire.KindControl {
			if err := wire.Unmarshal(p, &hello); err != nil {
				return nil, fmt.Errorf("relay hello: %w", err)
			}
			if hello.Version < wire.MinProtocolVersion || hello.Version > wire.ProtocolVersion {
				return nil, fmt.Errorf("the relay chose protocol version %d, which this node does not speak (%d..%d)", hello.Version, wire.MinProtocolVersion, wire.ProtocolVersion)
			}
			if o.CheckHello != nil {
				if err := o.CheckHello(hello); err != nil {
					return nil, err
				}
			}
		}
		return payload, nil
	})
	if err != nil {
		c.Close()
		var km *KeyMismatchError
		if errors.As(err, &km) {
			return nil, km
		}
		return nil, fmt.Errorf("%s %s handshake: %w", what, o.Addr, err)
	}
	if o.Kind == wire.KindControl {
		if err := awaitWelcome(nc); err != nil {
			nc.Close()
			return nil, err
		}
	}
	c.SetDeadline(time.Time{})
	onPush := o.OnPush
	if onPush == nil {
		onPush = func(control.Msg) {}
	}
	h := &Conn{addr: o.Addr, nc: nc, hello: hello, onPush: onPush, calls: map[uint64]chan control.Msg{}, done: make(chan struct{}), readIdle: DefaultReadIdle}
	go h.read()
	return h, nil
}

// awaitWelcome reads the relay's first message: a welcome, or a refusal
// of the hello's credential (returned as *control.Error).
func awaitWelcome(nc *noiseconn.Conn) error {
	b, err := wire.ReadMessage(nc)
	if err != nil {
		return fmt.Errorf("relay closed the connection before welcoming this node: %w", err)
	}
	m, err := control.Decode(b)
	if err != nil {
		return err
	}
	if m.Type != control.TypeWelcome {
		return fmt.Errorf("relay sent message type %d before its welcome", m.Type)
	}
	if m.Err != nil {
		return m.Err
	}
	return nil
}

// Addr is the address dialled.
func (h *Conn) Addr() string { return h.addr }

// ServerHello is the relay's hello (zero on an authority channel).
func (h *Conn) ServerHello() control.ServerHello { return h.hello }

// Done is closed once the connection has ended and its reader returned.
func (h *Conn) Done() <-chan struct{} { return h.done }

// SetReadIdle sets how long the reader waits for any message before the
// connection is declared dead (an owner that pings every d sets 3d).
func (h *Conn) SetReadIdle(d time.Duration) {
	h.mu.Lock()
	h.readIdle = d
	h.mu.Unlock()
}

// read reads messages until the connection ends. Answers (TypeResponse,
// with the request's ID) go to their callers; everything else is a push.
func (h *Conn) read() {
	defer close(h.done)
	for {
		h.mu.Lock()
		idle := h.readIdle
		h.mu.Unlock()
		h.nc.SetReadDeadline(time.Now().Add(idle))
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

func (h *Conn) fail(err error) {
	h.mu.Lock()
	if h.err == nil {
		h.err = err
	}
	h.mu.Unlock()
	h.nc.Close()
}

// Err returns why the connection ended (nil while it is up).
func (h *Conn) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// Close ends the connection and waits for its reader. It must not be
// called from OnPush.
func (h *Conn) Close() {
	h.fail(net.ErrClosed)
	<-h.done
}

// Call sends a request and waits for its answer. A refusal from the other
// side is returned as *control.Error.
func (h *Conn) Call(ctx context.Context, t control.Type, req, resp any) error {
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
	if req == nil {
		req = control.Empty{}
	}
	b, err := control.Encode(t, id, req)
	if err != nil {
		return err
	}
	h.wmu.Lock()
	h.nc.SetWriteDeadline(time.Now().Add(WriteTimeout))
	err = wire.WriteMessage(h.nc, b)
	h.wmu.Unlock()
	if err != nil {
		h.fail(err)
		return fmt.Errorf("hub connection lost: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
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
		return fmt.Errorf("hub connection lost: %w", h.Err())
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			h.fail(errors.New("hub did not answer in time"))
		}
		return fmt.Errorf("hub did not answer: %w", ctx.Err())
	}
}
