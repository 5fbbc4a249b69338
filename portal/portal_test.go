// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package portal

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/internal/testnet"
	"github.com/edgeportal/connect/policy"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/signed"
)

type node struct {
	static key.NodePrivate
	cred   []byte
	id     string
	self   *Self
}

func newNode(t *testing.T, auth *enroll.Authority, relay string, attrs map[string]string, now time.Time) *node {
	t.Helper()
	static := key.NewNodePrivate()
	m := enroll.Member{ID: string(static.Public().ID()), NodeKey: static.Public().Raw32(), Attributes: attrs, Relay: relay}
	cred, err := auth.Issue(m)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{static: static, cred: cred, id: m.ID}
	n.self = &Self{Static: static, Authority: auth.Signer.Public(), Credential: func() []byte { return n.cred }, Now: func() time.Time { return now }}
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

type outcome struct {
	inletErr  error
	outletErr error
	outlet    string
	peer      string
}

// portalPair runs Open and Receive over an in-memory pipe; the outlet side
// applies outletAllow to the request.
func portalPair(t *testing.T, in, out *node, relay, peerID string, inletAllow, outletAllow policy.Expr) outcome {
	t.Helper()
	a, b := tcpPair(t)
	token := []byte("0123456789abcdef0123456789abcdef")
	ctx := context.Background()
	res := make(chan outcome, 1)
	go func() {
		req, err := Receive(ctx, b, token, out.self)
		if err != nil {
			res <- outcome{outletErr: err}
			return
		}
		if rej := Check(outletAllow, "tcp-outlet \"x\"", req.Peer); rej != nil {
			Reject(req.Conn, rej.Code, rej.Message)
			res <- outcome{outletErr: rej, outlet: req.Outlet, peer: req.Peer.ID}
			return
		}
		Accept(req.Conn)
		go func() {
			io.Copy(req.Conn, req.Conn) // echo
			req.Conn.CloseWrite()
		}()
		res <- outcome{outlet: req.Outlet, peer: req.Peer.ID}
	}()
	nc, peer, err := Open(ctx, a, token, in.self, relay, peerID, "github", inletAllow)
	o := <-res
	o.inletErr = err
	if err == nil {
		if peer.ID != out.id {
			t.Errorf("inlet saw peer %s, want %s", peer.ID, out.id)
		}
		nc.Write([]byte("marker"))
		nc.CloseWrite()
		got, _ := io.ReadAll(nc)
		if string(got) != "marker" {
			t.Errorf("echo through the portal = %q", got)
		}
		nc.Close()
	}
	return o
}

var tcpPair = testnet.Pair

func TestPortal(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	auth := testAuthority(now)
	saas := newNode(t, auth, "saas-relay", map[string]string{"outlet-to-saas": "true", "inlet-from-saas": "true"}, now)
	acme := newNode(t, auth, "acme-relay", map[string]string{"inlet-to-saas": "true", "outlet-from-saas": "true"}, now)

	t.Run("allowed", func(t *testing.T) {
		o := portalPair(t, saas, acme, "acme-relay", acme.id, mustParse(t, "outlet-from-saas"), mustParse(t, "inlet-from-saas"))
		if o.inletErr != nil || o.outletErr != nil || o.outlet != "github" || o.peer != saas.id {
			t.Fatalf("%+v", o)
		}
	})
	t.Run("identifier pin", func(t *testing.T) {
		o := portalPair(t, saas, acme, "acme-relay", acme.id, mustParse(t, "identifier = "+acme.id), mustParse(t, "identifier = "+saas.id))
		if o.inletErr != nil {
			t.Fatalf("%+v", o)
		}
	})
	t.Run("outlet denies", func(t *testing.T) {
		o := portalPair(t, saas, acme, "acme-relay", acme.id, mustParse(t, "outlet-from-saas"), mustParse(t, "inlet-to-saas"))
		var rej *Rejection
		if !errors.As(o.inletErr, &rej) || rej.Code != control.PortalDenied || !strings.Contains(rej.Message, "inlet-to-saas") {
			t.Fatalf("inlet got %v", o.inletErr)
		}
	})
	t.Run("inlet denies", func(t *testing.T) {
		o := portalPair(t, saas, acme, "acme-relay", acme.id, mustParse(t, "outlet-to-saas"), mustParse(t, "inlet-from-saas"))
		var rej *Rejection
		if !errors.As(o.inletErr, &rej) || rej.Code != control.PortalDenied {
			t.Fatalf("inlet got %v", o.inletErr)
		}
		if o.outletErr == nil {
			t.Fatal("outlet side did not fail")
		}
	})
	t.Run("no policy denies", func(t *testing.T) {
		o := portalPair(t, saas, acme, "acme-relay", acme.id, nil, mustParse(t, "inlet-from-saas"))
		var rej *Rejection
		if !errors.As(o.inletErr, &rej) || rej.Code != control.PortalDenied {
			t.Fatalf("inlet got %v", o.inletErr)
		}
	})
	t.Run("wrong relay owner", func(t *testing.T) {
		o := portalPair(t, saas, acme, "other-relay", acme.id, mustParse(t, "outlet-from-saas"), mustParse(t, "inlet-from-saas"))
		var rej *Rejection
		if !errors.As(o.inletErr, &rej) || rej.Code != control.PortalBadCredential {
			t.Fatalf("inlet got %v", o.inletErr)
		}
	})
	t.Run("credential from another authority", func(t *testing.T) {
		rogue := newNode(t, testAuthority(now), "acme-relay", map[string]string{"outlet-from-saas": "true"}, now)
		o := portalPair(t, saas, rogue, "acme-relay", rogue.id, mustParse(t, "outlet-from-saas"), mustParse(t, "inlet-from-saas"))
		var rej *Rejection
		if !errors.As(o.inletErr, &rej) || rej.Code != control.PortalBadCredential {
			t.Fatalf("inlet got %v", o.inletErr)
		}
	})
	t.Run("stolen credential", func(t *testing.T) {
		thief := newNode(t, auth, "", nil, now)
		thief.cred = saas.cred // another node's credential, without its key
		o := portalPair(t, thief, acme, "acme-relay", acme.id, mustParse(t, "outlet-from-saas"), mustParse(t, "inlet-from-saas"))
		var rej *Rejection
		if !errors.As(o.outletErr, &rej) || rej.Code != control.PortalBadCredential {
			t.Fatalf("outlet got %v", o.outletErr)
		}
		if o.inletErr == nil {
			t.Fatal("inlet side succeeded")
		}
	})
	t.Run("forged attributes", func(t *testing.T) {
		forger := newNode(t, auth, "", map[string]string{"nothing": "true"}, now)
		env, _ := signed.Open(forger.cred)
		var c enroll.Credential
		wire.Unmarshal(env.Payload, &c)
		c.Attributes = map[string]string{"inlet-from-saas": "true"}
		env.Payload, _ = wire.Marshal(c)
		forger.cred, _ = wire.Marshal(env)
		o := portalPair(t, forger, acme, "acme-relay", acme.id, mustParse(t, "outlet-from-saas"), mustParse(t, "inlet-from-saas"))
		var rej *Rejection
		if !errors.As(o.outletErr, &rej) || rej.Code != control.PortalBadCredential {
			t.Fatalf("outlet got %v", o.outletErr)
		}
	})
	t.Run("expired credential", func(t *testing.T) {
		old := testAuthority(now.Add(-48 * time.Hour))
		old.Signer = auth.Signer
		stale := newNode(t, old, "", map[string]string{"inlet-from-saas": "true"}, now)
		o := portalPair(t, stale, acme, "acme-relay", acme.id, mustParse(t, "outlet-from-saas"), mustParse(t, "inlet-from-saas"))
		var rej *Rejection
		if !errors.As(o.outletErr, &rej) || rej.Code != control.PortalBadCredential || !strings.Contains(rej.Message, "expired") {
			t.Fatalf("outlet got %v", o.outletErr)
		}
	})
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
}
