// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package portal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/portal/mux"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/noiseconn"
)

// Stream kinds in StreamOpen.
const (
	kindPortal     = "" // a portal to an outlet
	kindCredential = "credential"
)

// Channel is an established channel to one peer node.
type Channel struct {
	sess  *mux.Session
	nc    *noiseconn.Conn
	self  *Self
	relay string
	since time.Time

	mu   sync.Mutex // guards peer
	peer *enroll.Credential
}

func newChannel(sess *mux.Session, nc *noiseconn.Conn, peer *enroll.Credential, relay string, self *Self) *Channel {
	return &Channel{sess: sess, nc: nc, self: self, relay: relay, since: time.Now(), peer: peer}
}

// Peer returns the peer's current verified credential.
func (c *Channel) Peer() *enroll.Credential {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peer
}

// Relay is the relay the channel was opened for.
func (c *Channel) Relay() string { return c.relay }

// Suite names the Noise protocol in use.
func (c *Channel) Suite() string { return c.nc.Suite() }

// Since is when the channel was opened.
func (c *Channel) Since() time.Time { return c.since }

// Activity reports the last stream activity and the open streams.
func (c *Channel) Activity() (time.Time, int) { return c.sess.Activity() }

// RTT is the channel's last measured round trip (0 before the first).
func (c *Channel) RTT() time.Duration { return c.sess.RTT() }

// Done is closed when the channel has ended.
func (c *Channel) Done() <-chan struct{} { return c.sess.Done() }

// Err is why the channel ended (nil while it is up).
func (c *Channel) Err() error { return c.sess.Err() }

// Close ends the channel and every stream in it.
func (c *Channel) Close() error { return c.sess.Close() }

// PeerExpired reports whether the peer's credential has expired (with the
// clock skew tolerance) without a refresh.
func (c *Channel) PeerExpired(now time.Time) bool {
	return now.After(c.Peer().Expires().Add(enroll.ClockSkew))
}

// Open opens a stream to outlet on the peer, at once, with the client's
// first bytes (early, at most mux.InitialWindow; may be nil) in the same
// channel write: the caller may write more before the peer accepts. A
// refusal arrives as an error from the stream's reads and writes (Refused
// turns it into a *Rejection).
func (c *Channel) Open(ctx context.Context, outlet string, early []byte) (*mux.Stream, error) {
	hdr, err := wire.Marshal(control.StreamOpen{Outlet: outlet})
	if err != nil {
		return nil, err
	}
	return c.sess.Open(ctx, hdr, early)
}

// Refused returns the outlet node's refusal of a stream, if err is one.
func Refused(err error) (*Rejection, bool) {
	var re *mux.RefusedError
	if errors.As(err, &re) {
		return &Rejection{Code: re.Code, Message: re.Message}, true
	}
	return nil, false
}

// Request is a stream the peer opened to one of this node's outlets,
// not accepted yet: no byte of it has reached anything.
type Request struct {
	Outlet string
	Peer   *enroll.Credential
	in     *mux.Incoming
}

// Accept lets the stream's bytes flow.
func (r *Request) Accept() (*mux.Stream, error) { return r.in.Accept() }

// Refuse sends a typed refusal to the opener.
func (r *Request) Refuse(rej *Rejection) error { return r.in.Refuse(rej.Code, rej.Message) }

// Accept waits for the next portal the peer opens. Credential updates the
// peer sends are handled here: a valid one replaces the peer's
// credential (check, when not nil, decides whether the channel may go on
// with it; an error closes the channel).
func (c *Channel) Accept(ctx context.Context, check func(*enroll.Credential) error) (*Request, error) {
	for {
		in, err := c.sess.Accept(ctx)
		if err != nil {
			return nil, err
		}
		var open control.StreamOpen
		if err := wire.Unmarshal(in.Header(), &open); err != nil {
			in.Refuse(control.PortalUnknownOutlet, "bad stream header")
			continue
		}
		switch open.Kind {
		case kindPortal:
			return &Request{Outlet: open.Outlet, Peer: c.Peer(), in: in}, nil
		case kindCredential:
			if err := c.updatePeer(open.Credential, check); err != nil {
				in.Refuse(control.PortalBadCredential, err.Error())
				c.Close()
				return nil, fmt.Errorf("the peer's refreshed credential: %w", err)
			}
			if st, err := in.Accept(); err == nil {
				st.Close()
			}
		default:
			in.Refuse(control.PortalUnknownOutlet, "unknown stream kind")
		}
	}
}

func (c *Channel) updatePeer(data []byte, check func(*enroll.Credential) error) error {
	cred, err := enroll.VerifyCredential(c.self.Authority, data, c.nc.Peer(), c.self.now())
	if err != nil {
		return err
	}
	if old := c.Peer(); cred.ID != old.ID {
		return errors.New("the credential names another node")
	}
	if check != nil {
		if err := check(cred); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.peer = cred
	c.mu.Unlock()
	return nil
}

// SendCredential hands the peer this node's refreshed credential, so the
// channel outlives the old one's expiry.
func (c *Channel) SendCredential(ctx context.Context) error {
	hdr, err := wire.Marshal(control.StreamOpen{Kind: kindCredential, Credential: c.self.Credential()})
	if err != nil {
		return err
	}
	st, err := c.sess.Open(ctx, hdr, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	st.SetReadDeadline(time.Now().Add(HandshakeTimeout))
	_, err = st.Read(make([]byte, 1))
	if rej, ok := Refused(err); ok {
		return rej
	}
	return nil
}
