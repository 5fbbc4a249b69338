// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

// Links between the relay nodes of a cluster (see cluster.go): a session
// whose relay's owner is connected to another relay node, and an
// authority connection to the node that has the authority.

// Link limits.
const (
	// LinkDialTimeout bounds dialling another relay node and the link's
	// handshake.
	LinkDialTimeout = 5 * time.Second
	// maxLinkHello bounds a link hello's encoding.
	maxLinkHello = 1 << 10
)

// Link operations.
const (
	linkSession   = "session"
	linkAuthority = "authority"
)

// Link answers, one byte after the handshake. The byte is not
// authenticated, so it can only make a link fail, never succeed in a way
// that matters: the nodes' Noise protects the bytes either way.
const (
	linkOK      byte = 0
	linkNoRelay byte = 1 // the relay's owner is not connected here (any more)
	linkNoAuth  byte = 2 // the authority is not connected here
	linkRefused byte = 3 // a bad or unauthorised request
)

// linkHello is what the dialling relay node says in its handshake's last
// message (in the place of a node's credential).
type linkHello struct {
	Node  string `cbor:"1,keyasint"`           // the dialler's identifier
	Op    string `cbor:"2,keyasint"`           // linkSession or linkAuthority
	Token []byte `cbor:"3,keyasint,omitempty"` // session: the token both halves use
	Relay string `cbor:"4,keyasint,omitempty"` // session: the relay asked for
	From  string `cbor:"5,keyasint,omitempty"` // session: the inlet node
	Owner string `cbor:"6,keyasint,omitempty"` // session: the relay's owner, as presence says
	Offer []byte `cbor:"7,keyasint,omitempty"` // authority: the node's version offer
}

// dialLink dials relay node n and runs the link handshake with hello; it
// returns the raw connection, which then carries the nodes' bytes.
func (s *Server) dialLink(ctx context.Context, n RelayNode, hello linkHello) (net.Conn, byte, error) {
	ctx, cancel := context.WithTimeout(ctx, LinkDialTimeout)
	defer cancel()
	hello.Node = s.cluster.id
	cred, err := wire.Marshal(hello)
	if err != nil {
		return nil, 0, err
	}
	payload, err := wire.Marshal(control.ClientHello{Version: wire.ProtocolVersion, Build: buildinfo.Version(), Platform: "relay-node", Credential: cred})
	if err != nil {
		return nil, 0, err
	}
	var last error
	for _, addr := range n.Addrs {
		d := net.Dialer{KeepAlive: 15 * time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			last = err
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		dl, _ := ctx.Deadline()
		c.SetDeadline(dl)
		if _, err := c.Write(wire.Preface(wire.KindControl)); err != nil {
			c.Close()
			last = err
			continue
		}
		_, err = noiseconn.Initiate(ctx, c, &noiseconn.Config{Static: s.static, Prologue: wire.Prologue("control", wire.OurOffer, nil), Mode: noiseconn.Hybrid},
			func(peer key.NodePublic, _ []byte) ([]byte, error) {
				if !peer.Equal(n.Key) {
					return nil, fmt.Errorf("relay node %s at %s answered with key %s, not its listed %s", n.ID, addr, peer.String(), n.Key.String())
				}
				return payload, nil
			})
		if err != nil {
			c.Close()
			last = err
			continue
		}
		var st [1]byte
		if _, err := io.ReadFull(c, st[:]); err != nil {
			c.Close()
			last = err
			continue
		}
		c.SetDeadline(time.Time{})
		if st[0] != linkOK {
			c.Close()
			return nil, st[0], nil
		}
		return c, linkOK, nil
	}
	return nil, 0, fmt.Errorf("link to relay node %s: %w", n.ID, last)
}

// serveLink answers a link from another relay node, after the handshake
// proved the dialler holds a listed key.
func (s *Server) serveLink(ctx context.Context, c net.Conn, peer key.NodePublic, h linkHello, slot *pendingSlot) {
	n, ok := s.cluster.node(h.Node)
	refuse := func(code byte, why string) {
		s.log.Info("relay node link refused", "relay_node", h.Node, "op", h.Op, "reason", why)
		c.Write([]byte{code})
		c.Close()
	}
	if !ok || !n.Key.Equal(peer) {
		s.metrics.rejected.WithLabelValues("link-not-listed").Inc()
		refuse(linkRefused, fmt.Sprintf("key %s is not listed for relay node %q", peer.String(), h.Node))
		return
	}
	c.SetDeadline(time.Time{})
	slot.release()
	switch h.Op {
	case linkSession:
		var tok token
		if len(h.Token) != len(tok) {
			refuse(linkRefused, "bad token")
			return
		}
		copy(tok[:], h.Token)
		owner := s.relays.holder(h.Relay, h.Owner)
		if owner == nil {
			refuse(linkNoRelay, fmt.Sprintf("relay %q is not held here", h.Relay))
			return
		}
		sess, err := s.sessions.openLinked(tok, h.From, owner.id, h.Relay, c, s.now())
		if err != nil {
			refuse(linkRefused, err.Error())
			return
		}
		if err := owner.push(control.TypeIncoming, control.Incoming{Token: tok[:], Relay: h.Relay, From: h.From}); err != nil {
			s.sessions.cancel(sess)
			refuse(linkNoRelay, "the relay's node did not take the session: "+err.Error())
			return
		}
		if _, err := c.Write([]byte{linkOK}); err != nil {
			s.sessions.cancel(sess)
			return
		}
		c.SetDeadline(time.Now().Add(SessionPairTimeout))
		s.stats.SessionsOpened.Add(1)
		s.metrics.sessionsOpened.Inc()
		// The outlet's data connection pairs with c (serveData splices).
	case linkAuthority:
		if len(h.Offer) != 2 {
			refuse(linkRefused, "bad offer")
			return
		}
		if s.authority.get() == nil {
			refuse(linkNoAuth, "the authority is not connected here")
			return
		}
		s.serveAuthoritySession(ctx, c, wire.Offer{Min: h.Offer[0], Max: h.Offer[1]}, false)
	default:
		refuse(linkRefused, fmt.Sprintf("unknown link operation %q", h.Op))
	}
}

// openRemoteSession opens a session to a relay owner held by another
// relay node (p, from steering): that node announces it to the owner
// and holds the outlet's half; the link it answers on becomes the peer
// of this node's inlet half.
func (s *Server) openRemoteSession(ctx context.Context, cc *controlConn, relay string, p Presence) (control.OpenSessionResponse, error) {
	unknown := &control.Error{Code: control.ErrCodeRelayUnknown, Message: fmt.Sprintf("relay %q is not connected to the hub", relay)}
	n, ok := s.cluster.node(p.Node)
	if !ok || p.Node == s.cluster.id {
		return control.OpenSessionResponse{}, unknown
	}
	sess, err := s.sessions.open(cc.id, p.Owner, relay, s.now())
	if err != nil {
		return control.OpenSessionResponse{}, err
	}
	link, code, err := s.dialLink(ctx, n, linkHello{Op: linkSession, Token: sess.token[:], Relay: relay, From: cc.id, Owner: p.Owner})
	if err != nil || code != linkOK {
		s.sessions.cancel(sess)
		s.cluster.forget(relay)
		if err != nil {
			cc.log.Warn("could not reach the relay node holding the relay", "relay", relay, "relay_node", p.Node, "err", err)
		}
		return control.OpenSessionResponse{}, unknown
	}
	if !s.sessions.attach(sess, link) {
		link.Close()
		return control.OpenSessionResponse{}, unknown
	}
	link.SetDeadline(time.Now().Add(SessionPairTimeout))
	s.stats.SessionsOpened.Add(1)
	s.metrics.sessionsOpened.Inc()
	return control.OpenSessionResponse{Token: sess.token[:], Peer: p.Owner}, nil
}

// forwardAuthority carries a node's authority connection to the relay
// node the authority is connected to.
func (s *Server) forwardAuthority(ctx context.Context, c net.Conn, offer wire.Offer) bool {
	ns, err := s.cluster.store.RelayNodes(ctx)
	if err != nil {
		return false
	}
	for _, n := range ns {
		if !n.Authority || n.ID == s.cluster.id {
			continue
		}
		link, code, err := s.dialLink(ctx, n, linkHello{Op: linkAuthority, Offer: []byte{offer.Min, offer.Max}})
		if err != nil || code != linkOK {
			continue
		}
		defer link.Close()
		// The far node wrote its own status first: pass the ready byte on.
		if _, err := c.Write([]byte{authorityReady}); err != nil {
			return true
		}
		deadline := time.Now().Add(AuthoritySessionTime)
		c.SetDeadline(deadline)
		link.SetDeadline(deadline)
		spliceLimited(c, link, AuthoritySessionBytes)
		return true
	}
	return false
}
