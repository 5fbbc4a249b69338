// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/hub/authority"
	"github.com/edgeportal/connect/portal"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/controlconn"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

// Simulated nodes: this tool runs on the vendor's side, so it issues
// their credentials with the authority's key straight from its directory
// instead of redeeming a ticket for each.

// issuer issues credentials for simulated nodes.
type issuer struct {
	a        *enroll.Authority
	relayKey key.NodePublic
}

func (w *world) issuer() (*issuer, error) {
	ad, err := authority.LoadDir(w.authDir)
	if err != nil {
		return nil, err
	}
	a, err := ad.Authority(nil)
	if err != nil {
		return nil, err
	}
	hd, err := hub.LoadDir(w.hubDir)
	if err != nil {
		return nil, err
	}
	return &issuer{a: a, relayKey: hd.RelayKey.Public()}, nil
}

// simNode is a simulated node's identity.
type simNode struct {
	priv key.NodePrivate
	self *portal.Self
	cred []byte
}

func (is *issuer) node(attrs map[string]string) (*simNode, error) {
	priv := key.NewNodePrivate()
	st, err := noiseconn.NewStatic(priv)
	if err != nil {
		return nil, err
	}
	cred, err := is.a.Issue(enroll.Member{ID: string(priv.Public().ID()), NodeKey: priv.Public().Raw32(), Attributes: attrs})
	if err != nil {
		return nil, err
	}
	n := &simNode{priv: priv, cred: cred}
	n.self = &portal.Self{Static: st, Authority: is.a.Signer.Public(), Credential: func() []byte { return n.cred }}
	return n, nil
}

// control opens the node's control channel to the relay.
func (is *issuer) control(ctx context.Context, addr string, n *simNode) (*controlconn.Conn, error) {
	return controlconn.Dial(ctx, controlconn.Options{Addr: addr, Kind: wire.KindControl, Static: n.priv, Peer: is.relayKey,
		Hello: control.ClientHello{Version: wire.ProtocolVersion, Build: "perf", Credential: n.cred}})
}

// hubMemory connects n simulated members that hold idle control
// connections and returns the relay's RSS before and after.
func hubMemory(ctx context.Context, w *world, is *issuer, n int) (before, after int64, err error) {
	time.Sleep(time.Second)
	before = rssKiB(w.hub.Process.Pid)
	var conns []*controlconn.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		sn, err := is.node(nil)
		if err != nil {
			return 0, 0, err
		}
		c, err := is.control(ctx, w.hubAdr, sn)
		if err != nil {
			return 0, 0, fmt.Errorf("node %d: %w", i, err)
		}
		conns = append(conns, c)
	}
	time.Sleep(2 * time.Second)
	return before, rssKiB(w.hub.Process.Pid), nil
}

// idlePeer is a simulated inlet node holding one channel.
type idlePeer struct {
	ctl *controlconn.Conn
	ch  *portal.Channel
}

func (p *idlePeer) close() {
	if p.ch != nil {
		p.ch.Close()
	}
	p.ctl.Close()
}

// openIdleChannel opens a channel from a new simulated inlet node to the
// owner of relay, carries one portal to outlet through it (one byte
// echoed), and leaves the channel up and idle.
func openIdleChannel(ctx context.Context, w *world, is *issuer, relay, outlet string) (*idlePeer, error) {
	sn, err := is.node(map[string]string{"inlet-from-saas": "true"})
	if err != nil {
		return nil, err
	}
	ctl, err := is.control(ctx, w.hubAdr, sn)
	if err != nil {
		return nil, err
	}
	p := &idlePeer{ctl: ctl}
	var resp control.OpenSessionResponse
	if err := ctl.Call(ctx, control.TypeOpenSession, control.OpenSessionRequest{Relay: relay}, &resp); err != nil {
		p.close()
		return nil, fmt.Errorf("open session: %w", err)
	}
	data, err := net.DialTimeout("tcp", w.hubAdr, 10*time.Second)
	if err != nil {
		p.close()
		return nil, err
	}
	data.(*net.TCPConn).SetNoDelay(true)
	if _, err := data.Write(append(wire.Preface(wire.KindData), resp.Token...)); err != nil {
		data.Close()
		p.close()
		return nil, err
	}
	if p.ch, err = portal.Dial(ctx, data, portal.DialOptions{Self: sn.self, Token: resp.Token, Relay: relay, PeerID: resp.Peer}); err != nil {
		p.close()
		return nil, fmt.Errorf("channel: %w", err)
	}
	st, err := p.ch.Open(ctx, outlet, nil)
	if err != nil {
		p.close()
		return nil, err
	}
	st.SetDeadline(time.Now().Add(15 * time.Second))
	_, err = st.Write([]byte{1})
	if err == nil {
		st.CloseWrite()
		_, err = io.ReadFull(st, make([]byte, 1))
	}
	st.Close()
	if err != nil {
		p.close()
		return nil, fmt.Errorf("portal through the channel: %w", err)
	}
	return p, nil
}
