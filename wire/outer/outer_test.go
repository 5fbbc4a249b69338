// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package outer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/internal/tstest/certtest"
)

// hub is a test hub: an outer listener whose connections echo what they
// read until EOF, then write "bye" and close.
type hub struct {
	ln    net.Listener
	ca    *certtest.CA
	conns chan *ServerConn
	errs  chan error
}

func startHub(t *testing.T, cfg *tls.Config) *hub {
	t.Helper()
	ln, err := Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &hub{ln: ln, conns: make(chan *ServerConn, 8), errs: make(chan error, 8)}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sc := c.(*ServerConn)
			sc.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.Copy(sc, sc); err != nil {
				h.errs <- err
				sc.Close()
				continue
			}
			sc.Write([]byte("bye"))
			sc.Close()
			h.conns <- sc
		}
	}()
	return h
}

// pair makes a CA, a hub certificate for 127.0.0.1 in files, and the
// server config loaded from them.
func pair(t *testing.T) (*certtest.CA, *tls.Config) {
	t.Helper()
	ca := certtest.NewCA(t, "Test Hub CA")
	leaf := ca.Leaf(t, "127.0.0.1", "hub.test")
	dir := t.TempDir()
	cfg, err := ServerConfig(certtest.WriteFile(t, dir, "hub.crt", leaf.CertPEM, 0o644), certtest.WriteFile(t, dir, "hub.key", leaf.KeyPEM, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	return ca, cfg
}

// roundTrip dials the hub, writes msg, half-closes, and returns all it
// read back. On an upgraded connection CloseWrite only ends writing, so
// there it reads the echo of msg, checks that writing has ended, and
// closes.
func roundTrip(t *testing.T, addr string, cfg *tls.Config, msg string) (*Conn, string) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Client(ctx, raw, cfg, addr)
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	if c.Upgraded() {
		b := make([]byte, len(msg))
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("read echo: %v", err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatalf("CloseWrite: %v", err)
		}
		if _, err := c.Write([]byte("x")); !errors.Is(err, ErrWriteClosed) {
			t.Errorf("Write after CloseWrite: %v, want ErrWriteClosed", err)
		}
		c.Close()
		return c, string(b) + "bye"
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after CloseWrite: %v", err)
	}
	return c, string(b)
}

func TestClientServer(t *testing.T) {
	ca, scfg := pair(t)
	h := startHub(t, scfg)
	tests := []struct {
		name         string
		protos       []string
		wantALPN     string
		wantUpgraded bool
	}{
		{"alpn end to end", []string{ALPN}, ALPN, false},
		{"http/1.1 as an inspecting proxy offers", []string{"http/1.1"}, "http/1.1", true},
		{"no alpn", nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ClientConfig("127.0.0.1", ca.Pool())
			cfg.NextProtos = tt.protos
			// "EPX!" is the hub preface's start; "GET" checks the hub does
			// not mistake a short non-upgrade start for one.
			for _, msg := range []string{"EPX!\x01\x01hello", "GET", ""} {
				c, got := roundTrip(t, h.ln.Addr().String(), cfg, msg)
				if want := msg + "bye"; got != want {
					t.Errorf("echo of %q = %q, want %q", msg, got, want)
				}
				if p := c.ConnectionState().NegotiatedProtocol; p != tt.wantALPN {
					t.Errorf("ALPN = %q, want %q", p, tt.wantALPN)
				}
				if c.Upgraded() != tt.wantUpgraded {
					t.Errorf("client Upgraded = %v, want %v", c.Upgraded(), tt.wantUpgraded)
				}
				select {
				case sc := <-h.conns:
					if up, _ := sc.Upgraded(); up != tt.wantUpgraded {
						t.Errorf("server Upgraded = %v, want %v", up, tt.wantUpgraded)
					}
				case err := <-h.errs:
					t.Fatalf("hub: %v", err)
				case <-time.After(5 * time.Second):
					t.Fatal("hub did not finish")
				}
			}
		})
	}
}

func TestClientRejectsUnknownCA(t *testing.T) {
	_, scfg := pair(t)
	h := startHub(t, scfg)
	other := certtest.NewCA(t, "Someone Else")
	raw, err := net.Dial("tcp", h.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_, err = Client(context.Background(), raw, ClientConfig("127.0.0.1", other.Pool()), h.ln.Addr().String())
	var ve *tls.CertificateVerificationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want a certificate verification error", err)
	}
	if got := ve.UnverifiedCertificates[0].Issuer.CommonName; got != "Test Hub CA" {
		t.Errorf("issuer = %q", got)
	}
}

func TestClientContextEndsUpgrade(t *testing.T) {
	// A TLS server that negotiates http/1.1 and then never answers: the
	// upgrade must give up when ctx ends.
	ca := certtest.NewCA(t, "CA")
	leaf := ca.Leaf(t, "127.0.0.1")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c)
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	cfg := ClientConfig("127.0.0.1", ca.Pool())
	cfg.NextProtos = []string{"http/1.1"}
	_, err = Client(ctx, raw, cfg, ln.Addr().String())
	if !errors.Is(err, context.DeadlineExceeded) || err.Error() != "outer TLS upgrade: context deadline exceeded" {
		t.Fatalf("err = %v, want the upgrade's deadline exceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
	raw.Close()
}

func TestReadUpgradeResponse(t *testing.T) {
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	good := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
	tests := []struct {
		name       string
		in         string
		wantRest   string
		wantStatus int
		wantErr    string
	}{
		{"101", good, "", 0, ""},
		{"101 with bytes after", good + "EPX!", "EPX!", 0, ""},
		{"403 from squid", "HTTP/1.1 403 Forbidden\r\nServer: squid/5.7\r\nContent-Length: 3\r\n\r\nno\n", "", 403, `answered 403 Forbidden (answered by "squid/5.7")`},
		{"101 wrong accept", strings.Replace(good, "s3pP", "AAAA", 1), "", 101, "wrong Sec-WebSocket-Accept"},
		{"101 without upgrade", strings.Replace(good, "Upgrade: websocket\r\n", "", 1), "", 101, "without Upgrade"},
		{"garbage", "EPX!\x01\x02", "", 0, "reading the answer"},
		{"too long", "HTTP/1.1 101 OK\r\nX: " + strings.Repeat("a", MaxUpgradeHeader) + "\r\n\r\n", "", 0, "longer than"},
		{"control chars in status", "HTTP/1.1 500 \x1b[31mred\r\n\r\n", "", 500, `answered 500 \x1b[31mred`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rest, err := readUpgradeResponse(strings.NewReader(tt.in), key)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if string(rest) != tt.wantRest {
					t.Errorf("rest = %q, want %q", rest, tt.wantRest)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			var ue *UpgradeError
			if errors.As(err, &ue) && ue.Status != tt.wantStatus {
				t.Errorf("status = %d, want %d", ue.Status, tt.wantStatus)
			}
		})
	}
}

func TestServeUpgrade(t *testing.T) {
	req := "GET " + UpgradePath + " HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nVia: 1.1 vm (squid/5.7)\r\n\r\n"
	tests := []struct {
		name     string
		in       string
		wantResp string // prefix of what the hub answers
		wantRest string
		wantVia  string
		wantErr  string
	}{
		{"upgrade", req + "EPX!", "HTTP/1.1 101 Switching Protocols\r\n", "EPX!", "1.1 vm (squid/5.7)", ""},
		{"other path", strings.Replace(req, UpgradePath, "/", 1), "HTTP/1.1 404", "", "", "request for /, not an upgrade"},
		{"no upgrade header", strings.Replace(req, "Upgrade: websocket\r\n", "", 1), "HTTP/1.1 426", "", "", "without Upgrade"},
		{"no key", strings.Replace(req, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 1), "HTTP/1.1 426", "", "", "without Upgrade"},
		{"garbage", "GET \x00\r\n\r\n", "HTTP/1.1 400", "", "", "bad upgrade request"},
		{"too long", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", MaxUpgradeHeader), "HTTP/1.1 400", "", "", "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w bytes.Buffer
			via, rest, err := serveUpgrade(strings.NewReader(tt.in), &w)
			if !strings.HasPrefix(w.String(), tt.wantResp) {
				t.Errorf("answer = %q, want prefix %q", w.String(), tt.wantResp)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(rest) != tt.wantRest || via != tt.wantVia {
				t.Errorf("rest, via = %q, %q; want %q, %q", rest, via, tt.wantRest, tt.wantVia)
			}
			if !strings.Contains(w.String(), "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") {
				t.Errorf("answer lacks the RFC 6455 accept value: %q", w.String())
			}
		})
	}
}

func TestServerConfigErrors(t *testing.T) {
	ca := certtest.NewCA(t, "CA")
	dir := t.TempDir()
	good := ca.Leaf(t, "hub.test")
	other := ca.Leaf(t, "hub.test")
	expired := ca.LeafValid(t, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), "hub.test")
	crt := certtest.WriteFile(t, dir, "good.crt", good.CertPEM, 0o644)
	key := certtest.WriteFile(t, dir, "good.key", good.KeyPEM, 0o600)
	otherKey := certtest.WriteFile(t, dir, "other.key", other.KeyPEM, 0o600)
	expCrt := certtest.WriteFile(t, dir, "exp.crt", expired.CertPEM, 0o644)
	expKey := certtest.WriteFile(t, dir, "exp.key", expired.KeyPEM, 0o600)
	junk := certtest.WriteFile(t, dir, "junk.crt", []byte("not a certificate"), 0o644)
	tests := []struct {
		name, cert, key, wantErr string
	}{
		{"good", crt, key, ""},
		{"missing names", "", key, "both a certificate file and a key file"},
		{"missing file", filepath.Join(dir, "nope.crt"), key, "nope.crt: no such file"},
		{"key mismatch", crt, otherKey, "private key does not match public key"},
		{"expired", expCrt, expKey, "exp.crt expired on"},
		{"not pem", junk, key, "junk.crt with key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ServerConfig(tt.cert, tt.key)
			if tt.wantErr == "" {
				if err != nil || cfg == nil {
					t.Fatalf("err = %v", err)
				}
				if strings.Join(cfg.NextProtos, ",") != ALPN+",http/1.1" {
					t.Errorf("NextProtos = %v", cfg.NextProtos)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestServerConfigReloads(t *testing.T) {
	old := reloadCheckInterval
	reloadCheckInterval = 0
	t.Cleanup(func() { reloadCheckInterval = old })

	ca := certtest.NewCA(t, "CA")
	dir := t.TempDir()
	first := ca.Leaf(t, "127.0.0.1")
	crt := certtest.WriteFile(t, dir, "hub.crt", first.CertPEM, 0o644)
	key := certtest.WriteFile(t, dir, "hub.key", first.KeyPEM, 0o600)
	cfg, err := ServerConfig(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	h := startHub(t, cfg)
	served := func() *x509.Certificate {
		t.Helper()
		c, _ := roundTrip(t, h.ln.Addr().String(), ClientConfig("127.0.0.1", ca.Pool()), "x")
		<-h.conns
		return c.ConnectionState().PeerCertificates[0]
	}
	if got := served(); !got.Equal(first.Cert) {
		t.Fatal("not serving the first certificate")
	}
	second := ca.Leaf(t, "127.0.0.1")
	certtest.WriteFile(t, dir, "hub.key", second.KeyPEM, 0o600)
	certtest.WriteFile(t, dir, "hub.crt", second.CertPEM, 0o644)
	bump(t, crt, key)
	if got := served(); !got.Equal(second.Cert) {
		t.Fatal("renewed certificate not picked up")
	}
	// A broken renewal keeps the working pair.
	certtest.WriteFile(t, dir, "hub.crt", []byte("broken"), 0o644)
	bump(t, crt)
	if got := served(); !got.Equal(second.Cert) {
		t.Fatal("broken renewal replaced the working certificate")
	}
}

// bump moves the files' modification times forward, so a rewrite within
// the file system's time granularity is still seen as a change.
func bump(t *testing.T, files ...string) {
	t.Helper()
	ts := time.Now().Add(time.Duration(time.Now().UnixNano()%1000+1) * time.Second)
	for _, f := range files {
		if err := os.Chtimes(f, ts, ts); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHostHeader(t *testing.T) {
	for in, want := range map[string]string{
		"hub.example.com:443":  "hub.example.com",
		"hub.example.com:7000": "hub.example.com:7000",
		"[::1]:443":            "[::1]",
		"[::1]:8443":           "[::1]:8443",
	} {
		if got := hostHeader(in); got != want {
			t.Errorf("hostHeader(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzServeUpgrade(f *testing.F) {
	f.Add([]byte("GET " + UpgradePath + " HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nSec-WebSocket-Key: a\r\n\r\nEPX!"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("GET \x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var w bytes.Buffer
		_, rest, err := serveUpgrade(bytes.NewReader(data), &w)
		if err != nil {
			if rest != nil {
				t.Fatal("rest on error")
			}
			return
		}
		if !bytes.HasSuffix(data, rest) {
			t.Fatalf("rest %q is not the input's tail", rest)
		}
		if !bytes.HasPrefix(w.Bytes(), []byte("HTTP/1.1 101 ")) {
			t.Fatalf("accepted without a 101: %q", w.Bytes())
		}
	})
}

func FuzzReadUpgradeResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nEPX!"))
	f.Add([]byte("HTTP/1.1 403 Forbidden\r\nServer: squid\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rest, err := readUpgradeResponse(bytes.NewReader(data), "dGhlIHNhbXBsZSBub25jZQ==")
		if err != nil {
			if rest != nil {
				t.Fatal("rest on error")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if !bytes.HasSuffix(data, rest) {
			t.Fatalf("rest %q is not the input's tail", rest)
		}
	})
}
