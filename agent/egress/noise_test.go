// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/edgeportal/connect/internal/tstest/certtest"
	"github.com/edgeportal/connect/internal/tstest/squidtest"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
	"github.com/edgeportal/connect/wire/outer"
)

// noiseHub runs the product's Noise responder on every connection of ln.
// If hubFirst is nil, it reads until the authenticated end of stream,
// answers with what it read and "bye", and half-closes. Otherwise it
// half-closes first after "hello", reads what the node sends until its end
// of stream, and reports it on hubFirst.
func noiseHub(t testing.TB, ln net.Listener, static key.NodePrivate, hubFirst chan<- string) string {
	return serveConns(t, ln, 10*time.Second, func(c net.Conn) {
		nc, _, err := noiseconn.Server(context.Background(), c, static, wire.Prologue("egress-test", wire.OurOffer, nil), nil)
		if err != nil {
			t.Errorf("hub handshake: %v", err)
			return
		}
		if hubFirst != nil {
			nc.Write([]byte("hello"))
			nc.CloseWrite()
			b, err := io.ReadAll(nc)
			hubFirst <- fmt.Sprintf("%s %v", b, err)
		} else {
			b, err := io.ReadAll(nc)
			if err != nil {
				t.Errorf("hub read: %v", err)
				return
			}
			nc.Write(append(b, "bye"...))
			nc.CloseWrite()
		}
		// Read to the transport's end (TLS close_notify may follow
		// Noise's end frame): closing with unread bytes would reset
		// the connection and lose the answer, as the real hub's
		// splicer, which reads to EOF, never does.
		io.Copy(io.Discard, c)
	})
}

func dialNoise(t testing.TB, d *Dialer, hub string, hubKey key.NodePrivate) *noiseconn.Conn {
	t.Helper()
	c, err := dial(t, d, hub)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	nc, err := noiseconn.Client(context.Background(), c, key.NewNodePrivate(), wire.Prologue("egress-test", wire.OurOffer, nil), func(peer key.NodePublic, _ []byte) ([]byte, error) {
		if !peer.Equal(hubKey.Public()) {
			return nil, fmt.Errorf("hub key %s", peer.Fingerprint())
		}
		return nil, nil
	})
	if err != nil {
		t.Fatalf("noise handshake: %v", err)
	}
	return nc
}

// TestNoiseHalfClose carries the product's Noise, with a half-close in
// each direction, over every path: the end of stream is Noise's own
// authenticated frame, so it survives squid, which closes a tunnel on a
// TCP half-close.
func TestNoiseHalfClose(t *testing.T) {
	hubKey := key.NewNodePrivate()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plain := noiseHub(t, ln, hubKey, nil)
	ca := certtest.NewCA(t, "Hub CA")
	leaf := ca.Leaf(t, "127.0.0.1")
	dir := t.TempDir()
	cfg, err := outer.ServerConfig(certtest.WriteFile(t, dir, "c", leaf.CertPEM, 0o644), certtest.WriteFile(t, dir, "k", leaf.KeyPEM, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	tln, err := outer.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	secure := noiseHub(t, tln, hubKey, nil)
	hubFirst := make(chan string, 1)
	secureFirst := noiseHub(t, mustListen(t, cfg), hubKey, hubFirst)
	caFile := certtest.WriteFile(t, dir, "ca.pem", ca.CertPEM, 0o644)
	testProxy := startProxy(t, pOK).addr

	tlsOpts := func(proxy, ca string) Options {
		return Options{Proxy: proxy, TLS: true, CAFile: ca, SystemRoots: x509.NewCertPool()}
	}
	type path struct {
		name string
		o    Options
		hub  string
	}
	paths := []path{
		{"direct", Options{}, plain},
		{"direct tls", tlsOpts("", caFile), secure},
		{"test proxy", Options{Proxy: testProxy}, plain},
		{"test proxy tls", tlsOpts(testProxy, caFile), secure},
	}
	if squidtest.Installed() {
		sq := squidtest.Start(t, squidtest.Options{AllowPorts: []int{port(t, plain), port(t, secure), port(t, secureFirst)}})
		bump := squidtest.Start(t, squidtest.Options{AllowPorts: []int{port(t, secure), port(t, secureFirst)}, Bump: true, UpstreamCA: ca.CertPEM})
		paths = append(paths,
			path{"squid", Options{Proxy: sq.Addr}, plain},
			path{"squid tls", tlsOpts(sq.Addr, caFile), secure},
			path{"squid inspecting", tlsOpts(bump.Addr, bump.CAFile), secure},
		)
	} else {
		t.Log("squid is not installed: squid paths left out (TestSquid says why)")
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			d := newDialer(t, p.o)
			for i := range 3 { // several connections through the same path
				nc := dialNoise(t, d, p.hub, hubKey)
				msg := fmt.Sprintf("portal bytes %d, ", i)
				if _, err := io.WriteString(nc, msg); err != nil {
					t.Fatal(err)
				}
				if err := nc.CloseWrite(); err != nil {
					t.Fatalf("CloseWrite: %v", err)
				}
				got, err := io.ReadAll(nc)
				if err != nil {
					t.Fatalf("read after half-close: %v (got %q)", err, got)
				}
				if string(got) != msg+"bye" {
					t.Errorf("got %q, want %q", got, msg+"bye")
				}
				nc.Close()
			}
		})
	}
	// The hub half-closes first. Over TLS its CloseWrite sends only
	// close_notify (nothing when upgraded), so squid keeps the tunnel. Over
	// plain TCP noiseconn's CloseWrite half-closes the hub's TCP, and
	// squid closes the tunnel on that FIN: those paths are left out.
	for _, p := range paths {
		if !p.o.TLS {
			continue
		}
		t.Run(p.name+" hub first", func(t *testing.T) {
			if p.hub == secure {
				p.hub = secureFirst
			}
			nc := dialNoise(t, newDialer(t, p.o), p.hub, hubKey)
			got, err := io.ReadAll(nc)
			if err != nil || string(got) != "hello" {
				t.Fatalf("read = %q, %v", got, err)
			}
			io.WriteString(nc, "reply after the hub's half-close")
			nc.CloseWrite()
			select {
			case r := <-hubFirst:
				if r != "reply after the hub's half-close <nil>" {
					t.Errorf("hub read %q", r)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("hub did not get the reply")
			}
			nc.Close()
		})
	}
}

func mustListen(t testing.TB, cfg *tls.Config) net.Listener {
	t.Helper()
	ln, err := outer.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
