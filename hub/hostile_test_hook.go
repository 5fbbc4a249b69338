// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build hostilerelay

package hub

// This file is compiled only with -tags hostilerelay, into a relay that
// the end-to-end tests use to play a compromised hub: instead of splicing
// a channel's two data connections it answers both itself, with its own
// Noise key, and the best credentials it has: the one the relay's owner
// presented in its control hello (a genuine credential, but for another
// key), and one it signs itself for its own key (the right key, but not
// the authority's signature). Both nodes must refuse. Never shipped.

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
	"github.com/edgeportal/connect/wire/signed"
)

func init() { hostileSplice = mitm }

// prefixed replays bytes already read before the connection's own.
type prefixed struct {
	net.Conn
	r io.Reader
}

func (p *prefixed) Read(b []byte) (int, error) { return p.r.Read(b) }

func mitm(s *Server, sess *session, a, b net.Conn) {
	defer a.Close()
	defer b.Close()
	// The outlet node (the Noise initiator of a channel) speaks first:
	// peek at both, then stop the silent one's read.
	type peeked struct {
		c   net.Conn
		buf []byte
	}
	got := make(chan peeked, 2)
	var wg sync.WaitGroup
	for _, c := range []net.Conn{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 2)
			if _, err := io.ReadFull(c, buf); err == nil {
				got <- peeked{c, buf}
			}
		}()
	}
	var p peeked
	select {
	case p = <-got:
	case <-time.After(5 * time.Second):
		return
	}
	outlet, inlet := p.c, a
	if outlet == a {
		inlet = b
	}
	inlet.SetReadDeadline(time.Now())
	wg.Wait()
	inlet.SetReadDeadline(time.Time{})
	outlet.SetReadDeadline(time.Time{})
	prologue := wire.Prologue("channel", wire.Offer{Min: wire.MinProtocolVersion, Max: wire.MinProtocolVersion}, sess.token[:])
	ownerCred := s.captured(sess.to)
	fake := key.NewSigningPrivate()
	mine := s.dir.RelayKey.Public()
	selfMade, _ := signed.Sign(fake, signed.ContextCredential, enroll.Credential{Project: s.project, NodeKey: mine.Raw32(), ID: string(mine.ID()),
		Relay: sess.relay, Attributes: map[string]string{"inlet-from-saas": "true", "outlet-from-saas": "true"},
		IssuedAt: time.Now().Unix(), ExpiresAt: time.Now().Add(time.Hour).Unix()})
	s.log.Warn("HOSTILE RELAY: answering a channel itself", "channel", sess.token[:6], "from", sess.from, "to", sess.to)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := func() *noiseconn.Config {
		return &noiseconn.Config{Static: s.static, Prologue: prologue, Mode: noiseconn.Hybrid, MaxMessage: 8 << 10}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// To the inlet node: "I am the relay's owner" (its real credential,
		// for another key).
		_, err := noiseconn.Initiate(ctx, inlet, cfg(), func(key.NodePublic, []byte) ([]byte, error) {
			return wire.Marshal(control.ChannelHello{Credential: ownerCred})
		})
		s.log.Warn("HOSTILE RELAY: the inlet node's side", "err", err)
		if err == nil {
			inlet.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, inlet)
		}
	}()
	// To the outlet node: "I am the inlet node" (a credential it made for
	// its own key).
	hello, _ := wire.Marshal(control.ChannelHello{Credential: selfMade})
	_, _, err := noiseconn.Respond(ctx, &prefixed{Conn: outlet, r: io.MultiReader(bytes.NewReader(p.buf), outlet)}, cfg(), hello)
	s.log.Warn("HOSTILE RELAY: the outlet node's side", "err", err)
	<-done
}

// captured returns the credential a member presented to this relay.
func (s *Server) captured(id string) []byte {
	for _, cc := range s.members.of(id) {
		cc.mu.Lock()
		c := cc.credRaw
		cc.mu.Unlock()
		if c != nil {
			return c
		}
	}
	return nil
}
