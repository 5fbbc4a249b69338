// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package portal carries TCP connections from inlets on one node to
// outlets on another, end to end encrypted and mutually authenticated.
//
// # Channels
//
// Two nodes share one channel: a hybrid post-quantum Noise session
// (Noise_XXpsk3_25519+MLKEM768, wire/noiseconn) over one data connection
// the relay splices (the agent supplies it; this package knows nothing
// about the hub), carrying every portal between them as a stream of a
// multiplexer (portal/mux) with its own flow control. The first portal
// between two nodes opens the channel; every later one is a stream opened
// without asking the relay and without waiting for an answer.
//
// The node behind the relay (the outlet side) is the Noise initiator: the
// node that asked for the session (the inlet side) answers message 1 with
// its static key and its credential, so it proves who it is before the
// outlet side shows anything of itself. The outlet side checks that
// credential (the authority's signature, bound to the proven key, valid
// now, admitted by at least one of its outlets), then sends its own in
// message 3; the inlet side checks it (the authority's signature, bound to
// the key, the owner of the relay it asked for, the node the relay named).
// A relay that answers either side itself has neither the keys nor a
// credential the authority signed for its own key: both refuse.
//
// A credential refreshed while the channel is up is sent over it; either
// side closes the channel when the peer's credential expires without one.
//
// # Streams
//
// A stream's open header names the outlet (StreamOpen); the opener's first
// bytes ride with it. The outlet side checks its policy and dials the
// target before any byte reaches it, then accepts; or refuses with a typed
// code (denied, unknown outlet, target refused, …) that reaches the inlet
// as a *Rejection.
//
// Imported by agent. Never imported by hub.
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
	"github.com/edgeportal/connect/portal/mux"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

// Timeouts and limits.
const (
	// HandshakeTimeout bounds a channel's end-to-end handshake.
	HandshakeTimeout = 10 * time.Second
	// TargetDialTimeout bounds the outlet's dial of its target.
	TargetDialTimeout = 10 * time.Second
	// MaxHandshakeMessage bounds each handshake message from the peer.
	MaxHandshakeMessage = 8 << 10
)

// Self is this node's identity as portals need it.
type Self struct {
	Static     *noiseconn.Static // this node's Noise key, parsed once
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

// prologue binds the channel to its session token; it names the oldest
// protocol version this build speaks, which both nodes must share.
func prologue(token []byte) []byte {
	return wire.Prologue("channel", wire.Offer{Min: wire.MinProtocolVersion, Max: wire.MinProtocolVersion}, token)
}

// muxConfig is the multiplexer's configuration for a channel. Every
// stream the peer may have open may also wait to be accepted: a client
// pool that opens hundreds of connections at once gets them all, not a
// refusal for those past a shorter backlog.
func muxConfig(log *slog.Logger, maxStreams int) *mux.Config {
	if maxStreams == 0 {
		maxStreams = mux.DefaultMaxStreams
	}
	return &mux.Config{Logger: log, MaxStreams: maxStreams, AcceptBacklog: maxStreams}
}

// DialOptions open the inlet side of a channel.
type DialOptions struct {
	Self   *Self
	Token  []byte // the session token the relay gave both nodes
	Relay  string // the relay this node asked for
	PeerID string // the node the relay says owns it
	Logger *slog.Logger
	// MaxStreams bounds the streams the peer may open on this channel (0:
	// the multiplexer's default).
	MaxStreams int
}

// Dial runs the inlet side of a channel over conn (a data connection the
// relay splices to the relay owner's). It answers the owner's first
// message with this node's credential, then checks the owner's.
func Dial(ctx context.Context, conn net.Conn, o DialOptions) (*Channel, error) {
	ctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	hello, err := wire.Marshal(control.ChannelHello{Credential: o.Self.Credential()})
	if err != nil {
		return nil, err
	}
	nc, payload, err := noiseconn.Respond(ctx, conn, &noiseconn.Config{Static: o.Self.Static, Prologue: prologue(o.Token),
		Mode: noiseconn.Hybrid, MaxMessage: MaxHandshakeMessage}, hello)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("channel handshake: %w", err)
	}
	var ans control.ChannelHello
	if err := wire.Unmarshal(payload, &ans); err != nil {
		nc.Reset()
		return nil, fmt.Errorf("channel handshake: owner's answer: %w", err)
	}
	c, err := enroll.VerifyCredential(o.Self.Authority, ans.Credential, nc.Peer(), o.Self.now())
	if err != nil {
		nc.Reset()
		return nil, &Rejection{Code: control.PortalBadCredential, Message: "outlet node: " + err.Error()}
	}
	if c.ID != o.PeerID || c.Relay != o.Relay {
		nc.Reset()
		return nil, &Rejection{Code: control.PortalBadCredential, Message: fmt.Sprintf("outlet node %s does not own relay %q (credential relay %q, the relay said %s)", c.ID, o.Relay, c.Relay, o.PeerID)}
	}
	sess, err := mux.Client(nc, muxConfig(o.Logger, o.MaxStreams))
	if err != nil {
		nc.Reset()
		return nil, err
	}
	return newChannel(sess, nc, c, o.Relay, o.Self), nil
}

// AnswerOptions open the outlet side of a channel.
type AnswerOptions struct {
	Self  *Self
	Token []byte
	// Admit decides, from the asking node's verified credential, whether
	// it may have a channel at all (some outlet of this node admits it);
	// a Rejection ends the handshake before this node shows its own
	// credential.
	Admit  func(peer *enroll.Credential) *Rejection
	Relay  string // this node's relay (for logs)
	Logger *slog.Logger
	// MaxStreams bounds the streams the peer may open (0: the default).
	MaxStreams int
}

// Answer runs the outlet side of a channel over conn: it sends the first
// message, checks the asking node's credential and only then sends its
// own.
func Answer(ctx context.Context, conn net.Conn, o AnswerOptions) (*Channel, error) {
	ctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	var peer *enroll.Credential
	var refused *Rejection
	nc, err := noiseconn.Initiate(ctx, conn, &noiseconn.Config{Static: o.Self.Static, Prologue: prologue(o.Token),
		Mode: noiseconn.Hybrid, MaxMessage: MaxHandshakeMessage}, func(pk key.NodePublic, payload []byte) ([]byte, error) {
		var hello control.ChannelHello
		if err := wire.Unmarshal(payload, &hello); err != nil {
			return nil, fmt.Errorf("inlet node's hello: %w", err)
		}
		c, err := enroll.VerifyCredential(o.Self.Authority, hello.Credential, pk, o.Self.now())
		if err != nil {
			refused = &Rejection{Code: control.PortalBadCredential, Message: "inlet node " + string(pk.ID()) + ": " + err.Error()}
			return nil, refused
		}
		if o.Admit != nil {
			if refused = o.Admit(c); refused != nil {
				return nil, refused
			}
		}
		peer = c
		return wire.Marshal(control.ChannelHello{Credential: o.Self.Credential()})
	})
	if err != nil {
		conn.Close()
		if refused != nil {
			return nil, refused
		}
		return nil, fmt.Errorf("channel handshake: %w", err)
	}
	sess, err := mux.Server(nc, muxConfig(o.Logger, o.MaxStreams))
	if err != nil {
		nc.Reset()
		return nil, err
	}
	return newChannel(sess, nc, peer, o.Relay, o.Self), nil
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
// rejections: a name that does not resolve is said as such, not as a
// refused connection.
func DialTarget(ctx context.Context, d *net.Dialer, target string) (net.Conn, *Rejection) {
	ctx, cancel := context.WithTimeout(ctx, TargetDialTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		var dns *net.DNSError
		var ne net.Error
		switch {
		case errors.As(err, &dns):
			return nil, &Rejection{Code: control.PortalTargetRefused, Message: fmt.Sprintf("target %s: its name does not resolve (%v)", target, dns)}
		case errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded):
			return nil, &Rejection{Code: control.PortalTargetTimeout, Message: fmt.Sprintf("target %s did not answer within %s", target, TargetDialTimeout)}
		}
		return nil, &Rejection{Code: control.PortalTargetRefused, Message: fmt.Sprintf("target %s: %v", target, err)}
	}
	return c, nil
}

// LogAttrs returns the log attributes of a channel.
func LogAttrs(log *slog.Logger, token []byte) *slog.Logger {
	if len(token) >= 6 {
		return log.With("channel", fmt.Sprintf("%x", token[:6]))
	}
	return log
}
