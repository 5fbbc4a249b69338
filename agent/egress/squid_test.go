// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package egress

import (
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/internal/tstest/certtest"
	"github.com/edgeportal/connect/internal/tstest/squidtest"
	"github.com/edgeportal/connect/wire/outer"
)

func port(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// echoOnce writes msg, reads len(msg)+3 bytes ("bye" follows only after a
// half-close, so it is not waited for here) and returns them.
func echoOnce(t testing.TB, c net.Conn, msg string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, len(msg))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	return string(b)
}

// nopWriter drops writes (to read an echo of bytes already sent).
type nopWriter struct{ net.Conn }

func (nopWriter) Write(b []byte) (int, error) { return len(b), nil }

// awaitLog waits until squid's access log has want (squid writes a line
// when a transaction ends).
func awaitLog(t testing.TB, sq *squidtest.Proxy, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(sq.AccessLog(), want) {
		if time.Now().After(deadline) {
			t.Errorf("squid's access log lacks %q:\n%s", want, sq.AccessLog())
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSquid runs the dialer against a real squid that allows CONNECT
// only to the hubs' ports, with Basic auth.
func TestSquid(t *testing.T) {
	plainHub := echoHub(t)
	secureHub, hubCA := tlsHub(t)
	// A port squid allows but where nothing listens: the hub is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downHub := ln.Addr().String()
	ln.Close()
	blocked := echoHub(t)                        // up, but squid does not allow its port
	sshd := talker(t, "SSH-2.0-OpenSSH_9.2\r\n") // not a TLS hub

	sq := squidtest.Start(t, squidtest.Options{
		AllowPorts: []int{port(t, plainHub), port(t, secureHub), port(t, downHub), port(t, sshd)},
		Users:      map[string]string{testUser: testPassword},
		Realm:      testRealm,
	})
	good := authFile(t, testUser+":"+testPassword+"\n")
	wrong := authFile(t, testUser+":guess")
	hubCAFile := certtest.WriteFile(t, t.TempDir(), "hub-ca.pem", hubCA.CertPEM, 0o644)

	t.Run("connect works", func(t *testing.T) {
		d := newDialer(t, Options{Proxy: "http://" + sq.Addr, ProxyAuthFile: good})
		c, err := dial(t, d, plainHub)
		if err != nil {
			t.Fatal(err)
		}
		if got := echoOnce(t, c, "EPX!\x01\x01hello"); got != "EPX!\x01\x01hello" {
			t.Errorf("echo = %q", got)
		}
		if _, ok := c.(interface{ CloseWrite() error }); !ok {
			t.Errorf("%T has no CloseWrite", c)
		}
		c.Close()
		awaitLog(t, sq, "CONNECT "+plainHub+" "+testUser)
	})
	t.Run("half-close", func(t *testing.T) {
		// Squid 5 closes the whole tunnel when the client half-closes
		// the TCP connection, so a tunnelled CloseWrite sends no FIN;
		// TLS's close_notify (like noiseconn's end-of-stream frame)
		// passes through as bytes and the hub's answer still comes back.
		d := newDialer(t, Options{Proxy: sq.Addr, ProxyAuthFile: good, TLS: true, CAFile: hubCAFile, SystemRoots: x509.NewCertPool()})
		c, err := dial(t, d, secureHub)
		if err != nil {
			t.Fatal(err)
		}
		if got := exchange(t, c, "hello "); got != "hello bye" {
			t.Errorf("got %q, want the hub's answer after the half-close", got)
		}
		// Plain: CloseWrite ends writing, and the tunnel stays up.
		d = newDialer(t, Options{Proxy: sq.Addr, ProxyAuthFile: good})
		if c, err = dial(t, d, plainHub); err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("x"))
		if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("y")); err == nil {
			t.Error("Write after CloseWrite succeeded")
		}
		if got := echoOnce(t, nopWriter{c}, "x"); got != "x" {
			t.Errorf("echo after CloseWrite = %q", got)
		}
	})
	t.Run("tls through squid", func(t *testing.T) {
		d := newDialer(t, Options{Proxy: sq.Addr, ProxyAuthFile: good, TLS: true, CAFile: hubCAFile, SystemRoots: x509.NewCertPool()})
		c, err := dial(t, d, secureHub)
		if err != nil {
			t.Fatal(err)
		}
		if got := echoOnce(t, c, "hello"); got != "hello" {
			t.Errorf("echo = %q", got)
		}
		info, _ := d.LastTLS()
		if info.ALPN != outer.ALPN || info.Upgraded || info.ViaProxy != sq.Addr {
			t.Errorf("LastTLS = %+v: want ALPN end to end through a plain CONNECT", info)
		}
	})

	errTests := []struct {
		name       string
		o          Options
		hub        string
		wantHop    Hop
		wantStatus int
		wantMsg    string
	}{
		{"no credentials", Options{Proxy: sq.Addr}, plainHub, HopProxy, 407,
			`proxy PROXY refused CONNECT to HUB with 407 Proxy Authentication Required (ERR_CACHE_ACCESS_DENIED 0) (realm "Acme Proxy"); no credentials were sent; put user:password in a proxy-auth-file`},
		{"wrong credentials", Options{Proxy: sq.Addr, ProxyAuthFile: wrong}, plainHub, HopProxy, 407,
			`proxy PROXY refused CONNECT to HUB with 407 Proxy Authentication Required (ERR_CACHE_ACCESS_DENIED 0) (realm "Acme Proxy"); it refused the credentials from ` + wrong},
		{"port not allowed", Options{Proxy: sq.Addr, ProxyAuthFile: good}, blocked, HopProxy, 403,
			"proxy PROXY refused CONNECT to HUB with 403 Forbidden (ERR_ACCESS_DENIED 0); its rules do not allow this destination; ask for CONNECT to HUB to be allowed"},
		{"hub down", Options{Proxy: sq.Addr, ProxyAuthFile: good}, downHub, HopHub, 503,
			"hub HUB unreachable through proxy PROXY: the proxy answered 503 Service Unavailable (ERR_CONNECT_FAIL 111)"},
		{"tls to something else through squid", Options{Proxy: sq.Addr, ProxyAuthFile: good, TLS: true}, sshd, HopTLS, 0,
			"TLS to hub HUB through proxy PROXY failed: tls: first record does not look like a TLS handshake; the other end does not speak TLS: does the hub serve TLS on this port (serve --tls-cert)?"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDialer(t, tt.o)
			_, err := dial(t, d, tt.hub)
			var he *HopError
			if !errors.As(err, &he) || he.Hop != tt.wantHop || he.Status != tt.wantStatus {
				t.Fatalf("err = %v, want hop %s status %d", err, tt.wantHop, tt.wantStatus)
			}
			want := strings.NewReplacer("HUB", tt.hub, "PROXY", sq.Addr).Replace(tt.wantMsg)
			if err.Error() != want {
				t.Errorf("error:\n got %s\nwant %s", err, want)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Error("error holds the password")
			}
		})
	}

	t.Run("squid down", func(t *testing.T) {
		down := squidtest.Start(t, squidtest.Options{AllowPorts: []int{port(t, plainHub)}})
		down.Stop()
		d := newDialer(t, Options{Proxy: down.Addr})
		_, err := dial(t, d, plainHub)
		if want := "proxy " + down.Addr + " unreachable: connection refused"; err == nil || err.Error() != want {
			t.Fatalf("err = %v, want %q", err, want)
		}
	})
}

// TestSquidInspecting runs the dialer against squid with ssl-bump: it
// re-signs the outer TLS with its own CA, as a TLS-inspecting corporate
// proxy does, and checks the hub's certificate against the hub's CA.
func TestSquidInspecting(t *testing.T) {
	hub, hubCA := tlsHub(t)
	sq := squidtest.Start(t, squidtest.Options{
		AllowPorts: []int{port(t, hub)},
		Users:      map[string]string{testUser: testPassword},
		Bump:       true,
		UpstreamCA: hubCA.CertPEM,
	})
	good := authFile(t, testUser+":"+testPassword)
	hubCAFile := certtest.WriteFile(t, t.TempDir(), "hub-ca.pem", hubCA.CertPEM, 0o644)

	t.Run("with ca-file", func(t *testing.T) {
		d := newDialer(t, Options{Proxy: sq.Addr, ProxyAuthFile: good, TLS: true, CAFile: sq.CAFile, SystemRoots: x509.NewCertPool()})
		c, err := dial(t, d, hub)
		if err != nil {
			t.Fatalf("dial: %v\nsquid access log:\n%s", err, sq.AccessLog())
		}
		if got := echoOnce(t, c, "EPX!\x01\x01\x00\xff binary"); got != "EPX!\x01\x01\x00\xff binary" {
			t.Errorf("echo = %q", got)
		}
		info, ok := d.LastTLS()
		if !ok || !info.ByCAFile || !info.Upgraded || info.Issuer != "CN=squidtest Inspecting CA,O=certtest" {
			t.Errorf("LastTLS = %+v", info)
		}
		desc := d.Describe(hub)
		for _, want := range []string{
			`the outer TLS is re-signed by "CN=squidtest Inspecting CA,O=certtest" (TLS inspection`,
			"ALPN none negotiated instead of edgeportal/1",
			"HTTP upgrade inside TLS",
		} {
			if !strings.Contains(desc, want) {
				t.Errorf("Describe = %q\nwant it to contain %q", desc, want)
			}
		}
		c.Close()
		awaitLog(t, sq, "TCP_TUNNEL/101 ")                                 // squid saw the upgrade inside TLS…
		awaitLog(t, sq, "GET https://"+hub+outer.UpgradePath+" "+testUser) // …as the authenticated user
	})
	t.Run("without ca-file", func(t *testing.T) {
		d := newDialer(t, Options{Proxy: sq.Addr, ProxyAuthFile: good, TLS: true, CAFile: hubCAFile, SystemRoots: x509.NewCertPool()})
		_, err := dial(t, d, hub)
		var he *HopError
		if !errors.As(err, &he) || he.Hop != HopTLS || he.Issuer != "CN=squidtest Inspecting CA,O=certtest" {
			t.Fatalf("err = %v, want a TLS HopError naming the inspecting CA", err)
		}
		if !strings.Contains(err.Error(), "set ca-file to its CA bundle") {
			t.Errorf("error does not say to set ca-file: %v", err)
		}
	})
}

// TestSquidInspectingWithoutUpgrades: squid's default strips the Upgrade
// header of bumped requests, so the hub answers 426 and the error says
// what the proxy must allow.
func TestSquidInspectingWithoutUpgrades(t *testing.T) {
	hub, hubCA := tlsHub(t)
	sq := squidtest.Start(t, squidtest.Options{AllowPorts: []int{port(t, hub)}, Bump: true, NoUpgrade: true, UpstreamCA: hubCA.CertPEM})
	d := newDialer(t, Options{Proxy: sq.Addr, TLS: true, CAFile: sq.CAFile, SystemRoots: x509.NewCertPool()})
	_, err := dial(t, d, hub)
	var he *HopError
	if !errors.As(err, &he) || he.Hop != HopUpgrade || he.Status != 426 {
		t.Fatalf("err = %v, want an upgrade HopError with status 426", err)
	}
	want := "upgrade to hub " + hub + " inside TLS failed: outer TLS upgrade: answered 426 Upgrade Required; a TLS-inspecting proxy must let WebSocket upgrades to the hub through"
	if err.Error() != want {
		t.Errorf("error:\n got %s\nwant %s", err, want)
	}
}
