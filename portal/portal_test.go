// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package portal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/internal/tstest/testnet"
	"github.com/edgeportal/connect/policy"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
	"github.com/edgeportal/connect/wire/signed"
)

type node struct {
	auth *enroll.Authority
	m    enroll.Member
	id   string
	self *Self

	mu   sync.Mutex // guards cred
	cred []byte
}

func (n *node) credential() []byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cred
}

func (n *node) setCredential(c []byte) {
	n.mu.Lock()
	n.cred = c
	n.mu.Unlock()
}

func newNode(t *testing.T, auth *enroll.Authority, relay string, attrs map[string]string, now time.Time) *node {
	t.Helper()
	priv := key.NewNodePrivate()
	st, err := noiseconn.NewStatic(priv)
	if err != nil {
		t.Fatal(err)
	}
	m := enroll.Member{ID: string(priv.Public().ID()), NodeKey: priv.Public().Raw32(), Attributes: attrs, Relay: relay}
	cred, err := auth.Issue(m)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{auth: auth, m: m, id: m.ID, cred: cred}
	n.self = &Self{Static: st, Authority: auth.Signer.Public(), Credential: n.credential, Now: func() time.Time { return now }}
	return n
}

func testAuthority(now time.Time) *enroll.Authority {
	return &enroll.Authority{Project: "P", Signer: key.NewSigningPrivate(), Now: func() time.Time { return now }}
}

func mustParse(t *testing.T, s string) policy.Expr {
	t.Helper()
	e, err := policy.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

var token = []byte("0123456789abcdef0123456789abcdef")

// pair opens a channel from in (inlet side, asking for relay owned by
// peerID) to out (outlet side, admitting with admit).
type pairResult struct {
	inlet, outlet       *Channel
	inletErr, outletErr error
}

func channelPair(t *testing.T, in, out *node, relay, peerID string, admit func(*enroll.Credential) *Rejection) pairResult {
	t.Helper()
	a, b := testnet.Pair(t)
	ctx := context.Background()
	var r pairResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.outlet, r.outletErr = Answer(ctx, b, AnswerOptions{Self: out.self, Token: token, Admit: admit, Relay: out.m.Relay})
	}()
	r.inlet, r.inletErr = Dial(ctx, a, DialOptions{Self: in.self, Token: token, Relay: relay, PeerID: peerID})
	<-done
	t.Cleanup(func() {
		if r.inlet != nil {
			r.inlet.Close()
		}
		if r.outlet != nil {
			r.outlet.Close()
		}
	})
	return r
}

// serveEcho accepts portals on ch, checks allow and echoes what they carry.
func serveEcho(t *testing.T, ch *Channel, allow policy.Expr, check func(*enroll.Credential) error) chan error {
	t.Helper()
	ended := make(chan error, 1)
	go func() {
		for {
			req, err := ch.Accept(context.Background(), check)
			if err != nil {
				ended <- err
				return
			}
			if rej := Check(allow, fmt.Sprintf("tcp-outlet %q", req.Outlet), req.Peer); rej != nil {
				req.Refuse(rej)
				continue
			}
			st, err := req.Accept()
			if err != nil {
				continue
			}
			go func() {
				io.Copy(st, st)
				st.CloseWrite()
			}()
		}
	}()
	return ended
}

func echo(t *testing.T, ch *Channel, outlet, msg string) error {
	t.Helper()
	st, err := ch.Open(context.Background(), outlet, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := st.Write([]byte(msg)); err != nil {
		return err
	}
	st.CloseWrite()
	got, err := io.ReadAll(st)
	if err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo = %q, want %q", got, msg)
	}
	return nil
}

func admitAll(*enroll.Credential) *Rejection { return nil }

func TestChannel(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	auth := testAuthority(now)
	saas := newNode(t, auth, "saas-relay", map[string]string{"outlet-to-saas": "true", "inlet-from-saas": "true"}, now)
	acme := newNode(t, auth, "acme-relay", map[string]string{"inlet-to-saas": "true", "outlet-from-saas": "true"}, now)

	t.Run("many portals share one channel", func(t *testing.T) {
		r := channelPair(t, saas, acme, "acme-relay", acme.id, admitAll)
		if r.inletErr != nil || r.outletErr != nil {
			t.Fatalf("inlet %v, outlet %v", r.inletErr, r.outletErr)
		}
		if r.inlet.Peer().ID != acme.id || r.outlet.Peer().ID != saas.id {
			t.Fatalf("peers %s / %s", r.inlet.Peer().ID, r.outlet.Peer().ID)
		}
		if !strings.Contains(r.inlet.Suite(), "MLKEM768") || r.inlet.Suite() != r.outlet.Suite() {
			t.Fatalf("suites %q / %q, want the hybrid one on both", r.inlet.Suite(), r.outlet.Suite())
		}
		serveEcho(t, r.outlet, mustParse(t, "inlet-from-saas"), nil)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- echo(t, r.inlet, "github", fmt.Sprintf("marker %d", i))
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("outlet policy refuses a stream with its reason", func(t *testing.T) {
		r := channelPair(t, saas, acme, "acme-relay", acme.id, admitAll)
		if r.inletErr != nil {
			t.Fatal(r.inletErr)
		}
		serveEcho(t, r.outlet, mustParse(t, "inlet-to-saas"), nil)
		err := echo(t, r.inlet, "github", "x")
		rej, ok := Refused(err)
		if !ok || rej.Code != control.PortalDenied || !strings.Contains(rej.Message, "inlet-to-saas") {
			t.Fatalf("refusal = %v", err)
		}
		// The channel outlives a refused stream.
		select {
		case <-r.inlet.Done():
			t.Fatal("a refused stream ended the channel")
		default:
		}
	})
	t.Run("inlet policy checks the outlet node", func(t *testing.T) {
		r := channelPair(t, saas, acme, "acme-relay", acme.id, admitAll)
		if r.inletErr != nil {
			t.Fatal(r.inletErr)
		}
		if rej := Check(mustParse(t, "outlet-to-saas"), "tcp-inlet x", r.inlet.Peer()); rej == nil || rej.Code != control.PortalDenied {
			t.Fatalf("inlet check = %v", rej)
		}
		if rej := Check(nil, "tcp-inlet x", r.inlet.Peer()); rej == nil || rej.Code != control.PortalDenied {
			t.Fatalf("no policy = %v", rej)
		}
		if rej := Check(mustParse(t, "identifier = "+acme.id), "tcp-inlet x", r.inlet.Peer()); rej != nil {
			t.Fatalf("identifier pin = %v", rej)
		}
	})
	t.Run("wrong relay owner", func(t *testing.T) {
		r := channelPair(t, saas, acme, "other-relay", acme.id, admitAll)
		var rej *Rejection
		if !errors.As(r.inletErr, &rej) || rej.Code != control.PortalBadCredential {
			t.Fatalf("inlet got %v", r.inletErr)
		}
	})
	t.Run("the node the relay named is not the owner", func(t *testing.T) {
		r := channelPair(t, saas, acme, "acme-relay", saas.id, admitAll)
		var rej *Rejection
		if !errors.As(r.inletErr, &rej) || rej.Code != control.PortalBadCredential {
			t.Fatalf("inlet got %v", r.inletErr)
		}
	})
	t.Run("a relay answering with its own key and credential", func(t *testing.T) {
		// The hub pretends to be acme: it knows the authority's public key
		// but can only sign a credential with a key of its own.
		rogue := newNode(t, testAuthority(now), "acme-relay", map[string]string{"outlet-from-saas": "true"}, now)
		rogue.self.Authority = auth.Signer.Public()
		r := channelPair(t, saas, rogue, "acme-relay", rogue.id, admitAll)
		var rej *Rejection
		if !errors.As(r.inletErr, &rej) || rej.Code != control.PortalBadCredential {
			t.Fatalf("inlet got %v", r.inletErr)
		}
	})
	t.Run("stolen credential", func(t *testing.T) {
		thief := newNode(t, auth, "", nil, now)
		thief.setCredential(saas.credential()) // another node's credential, without its key
		r := channelPair(t, thief, acme, "acme-relay", acme.id, admitAll)
		var rej *Rejection
		if !errors.As(r.outletErr, &rej) || rej.Code != control.PortalBadCredential {
			t.Fatalf("outlet got %v", r.outletErr)
		}
		if r.inletErr == nil {
			t.Fatal("the thief got a channel")
		}
	})
	t.Run("forged attributes", func(t *testing.T) {
		forger := newNode(t, auth, "", map[string]string{"nothing": "true"}, now)
		env, _ := signed.Open(forger.credential())
		var c enroll.Credential
		wire.Unmarshal(env.Payload, &c)
		c.Attributes = map[string]string{"inlet-from-saas": "true"}
		env.Payload, _ = wire.Marshal(c)
		forged, _ := wire.Marshal(env)
		forger.setCredential(forged)
		r := channelPair(t, forger, acme, "acme-relay", acme.id, admitAll)
		var rej *Rejection
		if !errors.As(r.outletErr, &rej) || rej.Code != control.PortalBadCredential {
			t.Fatalf("outlet got %v", r.outletErr)
		}
	})
	t.Run("expired credential", func(t *testing.T) {
		old := testAuthority(now.Add(-48 * time.Hour))
		old.Signer = auth.Signer
		stale := newNode(t, old, "", map[string]string{"inlet-from-saas": "true"}, now)
		r := channelPair(t, stale, acme, "acme-relay", acme.id, admitAll)
		var rej *Rejection
		if !errors.As(r.outletErr, &rej) || rej.Code != control.PortalBadCredential || !strings.Contains(rej.Message, "expired") {
			t.Fatalf("outlet got %v", r.outletErr)
		}
	})
	t.Run("a peer no outlet admits learns nothing of the outlet node", func(t *testing.T) {
		stranger := newNode(t, auth, "", map[string]string{"nothing": "true"}, now)
		r := channelPair(t, stranger, acme, "acme-relay", acme.id, func(c *enroll.Credential) *Rejection {
			if c.ID != stranger.id {
				t.Errorf("admit saw %s", c.ID)
			}
			return &Rejection{Code: control.PortalDenied, Message: "no outlet admits it"}
		})
		var rej *Rejection
		if !errors.As(r.outletErr, &rej) || rej.Code != control.PortalDenied {
			t.Fatalf("outlet got %v", r.outletErr)
		}
		// The inlet side fails in the handshake: it never received the
		// outlet node's credential (message 3 is never sent).
		if r.inletErr == nil || errors.As(r.inletErr, &rej) {
			t.Fatalf("inlet got %v, want a handshake failure without the owner's credential", r.inletErr)
		}
	})
}

func TestCredentialRefreshOverTheChannel(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	auth := testAuthority(now)
	saas := newNode(t, auth, "", map[string]string{"inlet-from-saas": "true"}, now)
	acme := newNode(t, auth, "acme-relay", nil, now)
	r := channelPair(t, saas, acme, "acme-relay", acme.id, admitAll)
	if r.inletErr != nil || r.outletErr != nil {
		t.Fatal(r.inletErr, r.outletErr)
	}
	allow := mustParse(t, "inlet-from-saas")
	admitted := func(c *enroll.Credential) error {
		if rej := Check(allow, "any outlet", c); rej != nil {
			return rej
		}
		return nil
	}
	ended := serveEcho(t, r.outlet, allow, admitted)
	first := r.outlet.Peer().Expires()

	later := time.Unix(1_800_000_000+1800, 0)
	auth.Now = func() time.Time { return later }
	acme.self.Now = auth.Now
	fresh, err := auth.Issue(saas.m)
	if err != nil {
		t.Fatal(err)
	}
	saas.setCredential(fresh)
	if err := r.inlet.SendCredential(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.outlet.Peer().Expires(); !got.After(first) {
		t.Fatalf("peer credential expires %v, want after %v", got, first)
	}
	if r.outlet.PeerExpired(first.Add(time.Minute + enroll.ClockSkew)) {
		t.Fatal("the refreshed credential is taken as expired")
	}
	if err := echo(t, r.inlet, "github", "after refresh"); err != nil {
		t.Fatal(err)
	}

	// A refresh that no longer admits the peer ends the channel.
	m := saas.m
	m.Attributes = map[string]string{"inlet-from-saas": "false"}
	demoted, _ := auth.Issue(m)
	saas.setCredential(demoted)
	err = r.inlet.SendCredential(context.Background())
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Code != control.PortalBadCredential {
		t.Fatalf("demoted refresh: %v", err)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the channel outlived a credential that no longer admits the peer")
	}
}

func TestPeerExpired(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	auth := testAuthority(now)
	saas := newNode(t, auth, "", nil, now)
	acme := newNode(t, auth, "acme-relay", nil, now)
	r := channelPair(t, saas, acme, "acme-relay", acme.id, admitAll)
	if r.inletErr != nil {
		t.Fatal(r.inletErr)
	}
	exp := r.outlet.Peer().Expires()
	if r.outlet.PeerExpired(exp) {
		t.Fatal("expired at its expiry, inside the skew")
	}
	if !r.outlet.PeerExpired(exp.Add(enroll.ClockSkew + time.Second)) {
		t.Fatal("not expired past expiry and skew")
	}
}

func TestDialTarget(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	var d net.Dialer
	_, rej := DialTarget(context.Background(), &d, addr)
	if rej == nil || rej.Code != control.PortalTargetRefused {
		t.Fatalf("refused target: %v", rej)
	}
	_, rej = DialTarget(context.Background(), &d, "no-such-host.invalid:80")
	if rej == nil || rej.Code != control.PortalTargetRefused || !strings.Contains(rej.Message, "does not resolve") {
		t.Fatalf("unresolvable target: %v", rej)
	}
}
