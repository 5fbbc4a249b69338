// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package portal carries one TCP connection from an inlet on one node to an
// outlet on another, end to end encrypted and mutually authenticated.
//
// A portal runs over a data connection the hub splices (the agent supplies
// it through SessionDialer; this package knows nothing about the hub). The
// inlet node is the Noise XX initiator, the outlet node the responder; the
// prologue binds the session token. The outlet sends its credential in
// handshake message 2, the inlet checks it (authority signature, bound to
// the proven static key, owner of the relay it asked for, inlet policy)
// and sends its own credential and the outlet name in message 3; the
// outlet checks that credential and the outlet's policy, dials the target
// and answers with a typed PortalResult (ok, denied, unknown outlet, target
// refused…). Then bytes flow through portal/pipe with half-close.
//
// Imports: wire, wire/key, wire/noiseconn, wire/control, enroll, policy,
// portal/pipe. Imported by agent. Never imported by hub.
package portal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/policy"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

// Timeouts.
const (
	// HandshakeTimeout bounds the end-to-end handshake of one portal.
	HandshakeTimeout = 10 * time.Second
	// TargetDialTimeout bounds the outlet's dial of its target.
	TargetDialTimeout = 10 * time.Second
	// MaxResultSize bounds the PortalResult message.
	MaxResultSize = 4096
)

// Self is this node's identity as portals need it.
type Self struct {
	Static     key.NodePrivate
	Authority  key.SigningPublic // the project's authority key
	Credential func() []byte     // current credential (refreshed by the agent)
	Now        func() time.Time  // nil = time.Now
}

func (s *Self) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Rejection is a typed refusal that travelled from the outlet node (or was
// decided locally by the inlet node).
type Rejection struct {
	Code    string // control.Portal* code
	Message string
}

func (r *Rejection) Error() string {
	if r.Message == "" {
		return "portal " + r.Code
	}
	return "portal " + r.Code + ": " + r.Message
}

// Peer returns the policy view of a verified credential.
func Peer(c *enroll.Credential) policy.Peer {
	return policy.Peer{Identifier: c.ID, Attributes: c.Attributes}
}

// prologue binds the session token; it names the oldest protocol version
// this build speaks, which both nodes of a portal must share.
func prologue(token []byte) []byte {
	return wire.Prologue("portal", wire.Offer{Min: wire.MinProtocolVersion, Max: wire.MinProtocolVersion}, token)
}

// Open runs the inlet side of a portal over conn (a data connection already
// bound to the session token). relay is the relay the inlet asked for and
// peerID the node the hub says owns it; allow is the inlet's effective
// policy (nil denies everything). On success the returned conn carries the
// client's bytes to the outlet's target.
func Open(ctx context.Context, conn net.Conn, token []byte, self *Self, relay, peerID, outlet string, allow policy.Expr) (*noiseconn.Conn, *enroll.Credential, error) {
	ctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	var peerCred *enroll.Credential
	var denied *Rejection
	nc, err := noiseconn.Client(ctx, conn, self.Static, prologue(token), func(peer key.NodePublic, payload []byte) ([]byte, error) {
		var hello control.PortalHello
		if err := wire.Unmarshal(payload, &hello); err != nil {
			return nil, fmt.Errorf("outlet hello: %w", err)
		}
		c, err := enroll.VerifyCredential(self.Authority, hello.Credential, peer, self.now())
		if err != nil {
			denied = &Rejection{Code: control.PortalBadCredential, Message: "outlet node: " + err.Error()}
			return nil, denied
		}
		if c.ID != peerID || c.Relay != relay {
			denied = &Rejection{Code: control.PortalBadCredential, Message: fmt.Sprintf("outlet node %s does not own relay %q (credential relay %q, hub said %s)", c.ID, relay, c.Relay, peerID)}
			return nil, denied
		}
		if allow == nil {
			denied = &Rejection{Code: control.PortalDenied, Message: "inlet has no allow policy and no default for tcp-inlet: nothing is allowed"}
			return nil, denied
		}
		if ok, why := policy.Explain(allow, Peer(c)); !ok {
			denied = &Rejection{Code: control.PortalDenied, Message: fmt.Sprintf("inlet policy %q denies outlet node %s: %s", allow.String(), c.ID, why)}
			return nil, denied
		}
		peerCred = c
		return wire.Marshal(control.PortalOpen{Credential: self.Credential(), Outlet: outlet})
	})
	if err != nil {
		conn.Close()
		if denied != nil {
			return nil, nil, denied
		}
		return nil, nil, fmt.Errorf("portal handshake: %w", err)
	}
	nc.SetReadDeadline(time.Now().Add(HandshakeTimeout + TargetDialTimeout))
	b, err := wire.ReadMessage(nc)
	nc.SetReadDeadline(time.Time{})
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("portal result: %w", err)
	}
	var res control.PortalResult
	if len(b) > MaxResultSize {
		nc.Close()
		return nil, nil, errors.New("portal result too large")
	}
	if err := wire.Unmarshal(b, &res); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("portal result: %w", err)
	}
	if res.Code != control.PortalOK {
		nc.Close()
		return nil, peerCred, &Rejection{Code: res.Code, Message: res.Message}
	}
	return nc, peerCred, nil
}

// Request is an incoming portal after its handshake: the verified peer and
// the outlet it names. The caller decides and calls Accept or Reject.
type Request struct {
	Conn   *noiseconn.Conn
	Peer   *enroll.Credential
	Outlet string
}

// Receive runs the outlet side of the handshake over conn.
func Receive(ctx context.Context, conn net.Conn, token []byte, self *Self) (*Request, error) {
	ctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	hello, err := wire.Marshal(control.PortalHello{Credential: self.Credential()})
	if err != nil {
		return nil, err
	}
	nc, payload, err := noiseconn.Server(ctx, conn, self.Static, prologue(token), hello)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("portal handshake: %w", err)
	}
	var open control.PortalOpen
	if err := wire.Unmarshal(payload, &open); err != nil {
		nc.Close()
		return nil, fmt.Errorf("portal open: %w", err)
	}
	c, err := enroll.VerifyCredential(self.Authority, open.Credential, nc.Peer(), self.now())
	if err != nil {
		Reject(nc, control.PortalBadCredential, "inlet node credential: "+err.Error())
		return nil, &Rejection{Code: control.PortalBadCredential, Message: "inlet node " + string(nc.Peer().ID()) + ": " + err.Error()}
	}
	return &Request{Conn: nc, Peer: c, Outlet: open.Outlet}, nil
}

// Reject sends a typed refusal and closes the portal.
func Reject(nc *noiseconn.Conn, code, msg string) {
	b, _ := wire.Marshal(control.PortalResult{Code: code, Message: msg})
	nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	wire.WriteMessage(nc, b)
	nc.CloseWrite()
	nc.Close()
}

// Accept tells the inlet the portal is open.
func Accept(nc *noiseconn.Conn) error {
	b, _ := wire.Marshal(control.PortalResult{Code: control.PortalOK})
	return wire.WriteMessage(nc, b)
}

// Check decides whether peer may use an outlet with the effective policy
// allow. It returns a Rejection naming the reason, or nil.
func Check(allow policy.Expr, resource string, peer *enroll.Credential) *Rejection {
	if allow == nil {
		return &Rejection{Code: control.PortalDenied, Message: fmt.Sprintf("%s has no allow policy and no default: nothing is allowed", resource)}
	}
	if ok, why := policy.Explain(allow, Peer(peer)); !ok {
		return &Rejection{Code: control.PortalDenied, Message: fmt.Sprintf("%s policy %q denies node %s: %s", resource, allow.String(), peer.ID, why)}
	}
	return nil
}

// DialTarget dials an outlet's target and maps failures to typed
// rejections.
func DialTarget(ctx context.Context, d *net.Dialer, target string) (net.Conn, *Rejection) {
	ctx, cancel := context.WithTimeout(ctx, TargetDialTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			return nil, &Rejection{Code: control.PortalTargetTimeout, Message: fmt.Sprintf("target %s did not answer within %s", target, TargetDialTimeout)}
		}
		return nil, &Rejection{Code: control.PortalTargetRefused, Message: fmt.Sprintf("target %s: %v", target, err)}
	}
	return c, nil
}

// LogAttrs returns the log attributes of a portal.
func LogAttrs(log *slog.Logger, token []byte) *slog.Logger {
	if len(token) >= 6 {
		return log.With("portal", fmt.Sprintf("%x", token[:6]))
	}
	return log
}
