// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/controlconn"
	"github.com/edgeportal/connect/wire/key"
)

// Timeouts of the control channel.
const (
	dialTimeout = controlconn.DialTimeout
	callTimeout = controlconn.CallTimeout
	// DefaultKeepAlive is how often a node pings the relay; a ping not
	// answered within the same time marks the connection dead, so a path
	// that stalls without closing is replaced within twice this.
	DefaultKeepAlive = 20 * time.Second
	maxBackoff       = 30 * time.Second
	initialBackoff   = 500 * time.Millisecond
)

// hubConn is one connection to the relay: the control channel, or an
// end-to-end channel to the authority through it.
type hubConn = controlconn.Conn

// HubKeyMismatchError means the relay (or the authority) answered with a
// static key other than the one the ticket (or enrollment) names.
type HubKeyMismatchError = controlconn.KeyMismatchError

// ErrNoAuthority means the relay has no authority connected right now.
var ErrNoAuthority = controlconn.ErrNoAuthority

// hello is what this node says in a handshake; cred is its credential
// (nil on a channel to the authority, which knows the node by its key).
func hello(cred []byte) control.ClientHello {
	return control.ClientHello{Version: wire.ProtocolVersion, Build: buildinfo.Version(), Platform: buildinfo.Platform(), Credential: cred}
}

// checkSkew refuses a relay whose clock is too far from this machine's
// for credentials to be accepted, before this node sends its own.
func checkSkew(h control.ServerHello) error {
	if skew := time.Since(time.Unix(h.TimeUnix, 0)); skew > enroll.ClockSkew || -skew > enroll.ClockSkew {
		return &ClockSkewError{Skew: skew}
	}
	return nil
}

// dialHub opens a control channel to the relay at addr (through dial),
// presenting cred.
// onPush (nil: pushes are ignored) runs on the reader goroutine and must
// not block.
func dialHub(ctx context.Context, dial dialFunc, addr string, static key.NodePrivate, relayKey key.NodePublic, cred []byte, onPush func(control.Msg)) (*hubConn, error) {
	return controlconn.Dial(ctx, controlconn.Options{
		Addr: addr, Dial: dial, Kind: wire.KindControl, Static: static, Peer: relayKey,
		Hello: hello(cred), OnPush: onPush, CheckHello: checkSkew,
	})
}

// dialAuthority opens an end-to-end channel to the authority through the
// relay at addr. The relay splices it without reading it.
func dialAuthority(ctx context.Context, dial dialFunc, addr string, static key.NodePrivate, authorityKey key.NodePublic) (*hubConn, error) {
	return controlconn.Dial(ctx, controlconn.Options{
		Addr: addr, Dial: dial, Kind: wire.KindAuthority, Static: static, Peer: authorityKey, Hello: hello(nil),
	})
}

func dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second}
	return d.DialContext(ctx, "tcp", addr)
}

// authorityKeys are what a node needs to reach the authority.
type authorityKeys struct {
	hubs  []string
	noise key.NodePublic // the authority's Noise key
}

// askAuthority runs f on a channel to the authority, trying each relay
// address once. A refusal from the authority (a *control.Error) or a key
// mismatch is final; otherwise the last network error is returned.
func askAuthority(ctx context.Context, dial dialFunc, static key.NodePrivate, ak authorityKeys, f func(*hubConn) error) error {
	var last error
	for _, addr := range ak.hubs {
		h, err := dialAuthority(ctx, dial, addr, static, ak.noise)
		if err != nil {
			var km *HubKeyMismatchError
			if errors.As(err, &km) {
				return err
			}
			last = err
			continue
		}
		err = f(h)
		h.Close()
		return err
	}
	if last == nil {
		last = errors.New("no relay address")
	}
	return fmt.Errorf("the authority could not be reached: %w", last)
}

// maxSlowDownWait bounds how long a caller waits when asked to slow down
// before it gives up on the request.
const maxSlowDownWait = 5 * time.Second

// slowDown reports whether err asks to slow down, and for how long.
func slowDown(err error) (time.Duration, bool) {
	var ce *control.Error
	if errors.As(err, &ce) && ce.Code == control.ErrCodeSlowDown {
		return ce.RetryAfter(), true
	}
	return 0, false
}

// callPolitely is Call that honours slow-downs: it waits as asked and
// asks again, for up to maxSlowDownWait in all.
func callPolitely(ctx context.Context, h *hubConn, t control.Type, req, resp any) error {
	var waited time.Duration
	for {
		err := h.Call(ctx, t, req, resp)
		wait, ok := slowDown(err)
		if !ok || waited+wait > maxSlowDownWait {
			return err
		}
		if sleepCtx(ctx, wait) != nil {
			return err
		}
		waited += wait
	}
}
