// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeportal/connect/internal/tstest/certtest"
	"github.com/edgeportal/connect/wire/outer"
)

const (
	testUser     = "agent"
	testPassword = "s3cret-Pa55word"
	testRealm    = "Acme Proxy"
)

// serveConns runs handle on every connection of ln, each with a deadline
// of within, and closes it after. It is stopped and waited for at test
// end; it returns ln's address.
func serveConns(t testing.TB, ln net.Listener, within time.Duration, handle func(net.Conn)) string {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(within))
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// serveEcho serves connections from ln: echo until EOF, then "bye", then
// close.
func serveEcho(t testing.TB, ln net.Listener) string {
	return serveConns(t, ln, 10*time.Second, func(c net.Conn) {
		if _, err := io.Copy(c, c); err != nil {
			return
		}
		c.Write([]byte("bye"))
	})
}

// echoHub is a plain TCP echo "hub" on loopback.
func echoHub(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveEcho(t, ln)
}

// closer is a plain hub that reads the first bytes and closes, as the hub
// does with a connection that does not start with its preface.
func closer(t testing.TB) string { return talker(t, "") }

// talker writes greeting to every connection, reads a little, and closes.
func talker(t testing.TB, greeting string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, greeting)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			c.Read(make([]byte, 64<<10))
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// refusingInspector is a TLS server with the given CA's certificate that
// negotiates no ALPN and answers the upgrade with 403, as a
// TLS-inspecting proxy that does not allow it would.
func refusingInspector(t testing.TB, ca *certtest.CA) string {
	t.Helper()
	leaf := ca.Leaf(t, "127.0.0.1")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nServer: InspectorBox/2.1\r\nContent-Length: 0\r\n\r\n")
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// tlsHub is an echo hub behind wire/outer with a certificate from a fresh
// CA for 127.0.0.1.
func tlsHub(t testing.TB) (addr string, ca *certtest.CA) {
	t.Helper()
	ca = certtest.NewCA(t, "Test Hub CA")
	leaf := ca.Leaf(t, "127.0.0.1", "hub.test")
	dir := t.TempDir()
	cfg, err := outer.ServerConfig(certtest.WriteFile(t, dir, "hub.crt", leaf.CertPEM, 0o644), certtest.WriteFile(t, dir, "hub.key", leaf.KeyPEM, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := outer.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return serveEcho(t, ln), ca
}

// proxy behaviours.
const (
	pOK        = "ok"        // 200, then splice
	pAuth      = "auth"      // 407 unless Basic testUser:testPassword, then as pOK
	p403       = "403"       // 403 Forbidden
	p503       = "503"       // as squid when the hub refuses
	p400       = "400"       // some other refusal
	pHangUp    = "hangup"    // close without answering
	pSilent    = "silent"    // never answer
	pOKClose   = "ok-close"  // 200, then close at once
	pExtra     = "extra"     // 200 with bytes after the headers, then splice
	pNegotiate = "negotiate" // 407 offering only Negotiate and NTLM
	pGarbage   = "garbage"   // not HTTP
)

// testProxy is a CONNECT proxy written for the tests.
type testProxy struct {
	addr string
	mode string

	mu   sync.Mutex // guards reqs
	reqs []*http.Request
}

func startProxy(t testing.TB, mode string) *testProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &testProxy{addr: ln.Addr().String(), mode: mode}
	var wg sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.serve(c, done)
			}()
		}
	}()
	return p
}

func (p *testProxy) requests() []*http.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*http.Request(nil), p.reqs...)
}

func (p *testProxy) serve(c net.Conn, done chan struct{}) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.reqs = append(p.reqs, req)
	p.mu.Unlock()
	answer := func(s string) { io.WriteString(c, s) }
	mode := p.mode
	if mode == pAuth {
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPassword))
		if req.Header.Get("Proxy-Authorization") != want {
			answer("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"" + testRealm + "\"\r\nContent-Length: 0\r\n\r\n")
			return
		}
		mode = pOK
	}
	switch mode {
	case p403:
		answer("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
		return
	case p503:
		answer("HTTP/1.1 503 Service Unavailable\r\nX-Squid-Error: ERR_CONNECT_FAIL 111\r\nContent-Length: 0\r\n\r\n")
		return
	case p400:
		answer("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
		return
	case pNegotiate:
		answer("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Negotiate\r\nProxy-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n")
		return
	case pGarbage:
		answer("SSH-2.0-OpenSSH_9.2\r\n")
		return
	case pHangUp:
		return
	case pSilent:
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		return
	case pOKClose:
		answer("HTTP/1.1 200 Connection established\r\n\r\n")
		return
	}
	if req.Method != http.MethodConnect {
		answer("HTTP/1.1 405 Method Not Allowed\r\n\r\n")
		return
	}
	up, err := net.Dial("tcp", req.Host)
	if err != nil {
		answer("HTTP/1.1 503 Service Unavailable\r\n\r\n")
		return
	}
	defer up.Close()
	if mode == pExtra {
		// The tunnel's first bytes arrive with the answer; the echo hub
		// echoes them back too, after the client's own bytes.
		answer("HTTP/1.1 200 OK\r\n\r\n>>")
	} else {
		answer("HTTP/1.1 200 Connection established\r\n\r\n")
	}
	up.SetDeadline(time.Now().Add(10 * time.Second))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(up, br)
		up.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(c, up)
	c.(*net.TCPConn).CloseWrite()
	wg.Wait()
}

// authFile writes the test credentials with mode 0600.
func authFile(t testing.TB, content string) string {
	t.Helper()
	return certtest.WriteFile(t, t.TempDir(), "proxy-auth", []byte(content), 0o600)
}

func newDialer(t testing.TB, o Options) *Dialer {
	t.Helper()
	if o.Getenv == nil {
		o.Getenv = func(string) string { return "" }
	}
	d, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

// exchange writes msg, half-closes, and returns what came back.
func exchange(t testing.TB, c net.Conn, msg string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("%T has no CloseWrite", c)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func dial(t testing.TB, d *Dialer, addr string) (net.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, addr)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func TestDialWorks(t *testing.T) {
	plainHub := echoHub(t)
	secureHub, ca := tlsHub(t)
	caFile := certtest.WriteFile(t, t.TempDir(), "ca.pem", ca.CertPEM, 0o644)
	ok := startProxy(t, pOK)
	extra := startProxy(t, pExtra)
	auth := startProxy(t, pAuth)
	creds := authFile(t, testUser+":"+testPassword+"\n")
	tests := []struct {
		name      string
		o         Options
		hub       string
		want      string
		wantProxy *testProxy
	}{
		{"direct", Options{}, plainHub, "hello bye", nil},
		{"proxy", Options{Proxy: "http://" + ok.addr}, plainHub, "hello bye", ok},
		{"proxy without scheme", Options{Proxy: ok.addr}, plainHub, "hello bye", ok},
		{"proxy sends bytes with its answer", Options{Proxy: extra.addr}, plainHub, ">>hello bye", extra},
		{"proxy with basic auth", Options{Proxy: auth.addr, ProxyAuthFile: creds}, plainHub, "hello bye", auth},
		{"tls direct", Options{TLS: true, CAFile: caFile}, secureHub, "hello bye", nil},
		{"tls through proxy", Options{TLS: true, CAFile: caFile, Proxy: auth.addr, ProxyAuthFile: creds}, secureHub, "hello bye", auth},
		{"tls with server name", Options{TLS: true, CAFile: caFile, ServerName: "hub.test"}, secureHub, "hello bye", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before int
			if tt.wantProxy != nil {
				before = len(tt.wantProxy.requests())
			}
			d := newDialer(t, tt.o)
			c, err := dial(t, d, tt.hub)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			if _, tunnelled := c.(*tunnelConn); tunnelled {
				// A tunnelled CloseWrite sends no FIN (see tunnelConn), and
				// the echo hub has no end of stream of its own: check the
				// echo only.
				want := strings.TrimSuffix(tt.want, "bye")
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(c, "hello ")
				got := make([]byte, len(want))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
					t.Errorf("got %q, %v; want %q", got, err, want)
				}
				return
			}
			if got := exchange(t, c, "hello "); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if tt.wantProxy != nil {
				reqs := tt.wantProxy.requests()[before:]
				if len(reqs) == 0 || reqs[len(reqs)-1].Method != http.MethodConnect || reqs[len(reqs)-1].Host != tt.hub {
					t.Errorf("proxy did not get CONNECT %s", tt.hub)
				}
			}
		})
	}
}

func TestDialErrors(t *testing.T) {
	hub := echoHub(t)
	secureHub, _ := tlsHub(t)
	creds := authFile(t, testUser+":"+testPassword)
	wrong := authFile(t, testUser+":not-"+testPassword)
	closedPort := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := ln.Addr().String()
		ln.Close()
		return a
	}
	deadProxy, deadHub := closedPort(), closedPort()
	inspectCA := certtest.NewCA(t, "Acme Inspect CA")
	otherCAFile := certtest.WriteFile(t, t.TempDir(), "other.pem", inspectCA.CertPEM, 0o644)
	proxy := func(mode string) string { return startProxy(t, mode).addr }
	auth := proxy(pAuth)
	tests := []struct {
		name       string
		o          Options
		hub        string
		wantHop    Hop
		wantStatus int
		wantRealm  string
		wantSent   bool
		wantMsg    string // the whole message, with PROXY and HUB replaced
	}{
		{"hub unreachable", Options{}, deadHub, HopHub, 0, "", false,
			"hub HUB unreachable: connection refused"},
		{"proxy unreachable", Options{Proxy: deadProxy}, hub, HopProxy, 0, "", false,
			"proxy PROXY unreachable: connection refused"},
		{"407 without credentials", Options{Proxy: auth}, hub, HopProxy, 407, testRealm, false,
			`proxy PROXY refused CONNECT to HUB with 407 Proxy Authentication Required (realm "Acme Proxy"); no credentials were sent; put user:password in a proxy-auth-file`},
		{"407 wrong credentials", Options{Proxy: auth, ProxyAuthFile: wrong}, hub, HopProxy, 407, testRealm, true,
			`proxy PROXY refused CONNECT to HUB with 407 Proxy Authentication Required (realm "Acme Proxy"); it refused the credentials from ` + wrong},
		{"407 negotiate only", Options{Proxy: proxy(pNegotiate), ProxyAuthFile: creds}, hub, HopProxy, 407, "", true,
			"proxy PROXY refused CONNECT to HUB with 407 Proxy Authentication Required; the proxy offers only Negotiate, NTLM authentication, which is not supported; ask for Basic"},
		{"403", Options{Proxy: proxy(p403)}, hub, HopProxy, 403, "", false,
			"proxy PROXY refused CONNECT to HUB with 403 Forbidden; its rules do not allow this destination; ask for CONNECT to HUB to be allowed"},
		{"503", Options{Proxy: proxy(p503)}, hub, HopHub, 503, "", false,
			"hub HUB unreachable through proxy PROXY: the proxy answered 503 Service Unavailable (ERR_CONNECT_FAIL 111)"},
		{"hub down behind proxy", Options{Proxy: proxy(pOK)}, deadHub, HopHub, 503, "", false,
			"hub HUB unreachable through proxy PROXY: the proxy answered 503 Service Unavailable"},
		{"400", Options{Proxy: proxy(p400)}, hub, HopProxy, 400, "", false,
			"proxy PROXY refused CONNECT to HUB with 400 Bad Request"},
		{"hang-up", Options{Proxy: proxy(pHangUp)}, hub, HopProxy, 0, "", false,
			"proxy PROXY closed the connection before answering CONNECT: unexpected EOF"},
		{"not http", Options{Proxy: proxy(pGarbage)}, hub, HopProxy, 0, "", false,
			`proxy PROXY sent a bad answer to CONNECT: malformed HTTP response "SSH-2.0-OpenSSH_9.2"`},
		{"tunnel closes before tls", Options{Proxy: proxy(pOKClose), TLS: true}, secureHub, HopHub, 0, "", false,
			"hub HUB closed the tunnel through proxy PROXY before sending anything (the proxy may have failed to reach it): EOF"},
		{"tls unknown issuer", Options{TLS: true, CAFile: otherCAFile}, secureHub, HopTLS, 0, "", false,
			`TLS to hub HUB failed: tls: failed to verify certificate: x509: certificate signed by unknown authority; the certificate is issued by "CN=Test Hub CA,O=certtest", which is not trusted: if a TLS-inspecting proxy re-signs TLS, set ca-file to its CA bundle`},
		{"upgrade refused", Options{TLS: true, CAFile: otherCAFile}, refusingInspector(t, inspectCA), HopUpgrade, 403, "", false,
			`upgrade to hub HUB inside TLS failed: outer TLS upgrade: answered 403 Forbidden (answered by "InspectorBox/2.1"); a TLS-inspecting proxy must let WebSocket upgrades to the hub through`},
		{"tls to plain hub", Options{TLS: true}, closer(t), HopTLS, 0, "", false,
			"TLS to hub HUB failed: EOF; the hub closed the connection during the TLS handshake: does it serve TLS on this port (serve --tls-cert)?"},
		{"tls to something else", Options{TLS: true}, talker(t, "SSH-2.0-OpenSSH_9.2\r\n"), HopTLS, 0, "", false,
			"TLS to hub HUB failed: tls: first record does not look like a TLS handshake; the other end does not speak TLS: does the hub serve TLS on this port (serve --tls-cert)?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDialer(t, tt.o)
			_, err := dial(t, d, tt.hub)
			var he *HopError
			if !errors.As(err, &he) {
				t.Fatalf("err = %v (%T), want *HopError", err, err)
			}
			if he.Hop != tt.wantHop || he.Status != tt.wantStatus || he.Realm != tt.wantRealm || he.CredentialsSent != tt.wantSent {
				t.Errorf("hop, status, realm, sent = %s, %d, %q, %v; want %s, %d, %q, %v",
					he.Hop, he.Status, he.Realm, he.CredentialsSent, tt.wantHop, tt.wantStatus, tt.wantRealm, tt.wantSent)
			}
			want := strings.NewReplacer("HUB", tt.hub, "PROXY", strings.TrimPrefix(tt.o.Proxy, "http://")).Replace(tt.wantMsg)
			// A peer that closes with unread bytes resets instead of EOF.
			if got := strings.Replace(err.Error(), ": connection reset by peer;", ": EOF;", 1); got != want {
				t.Errorf("error:\n got %s\nwant %s", got, want)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Errorf("error holds the password: %s", err)
			}
		})
	}
}

func TestDialPlainTunnelClosedBeforeHub(t *testing.T) {
	p := startProxy(t, pOKClose)
	d := newDialer(t, Options{Proxy: p.addr})
	hub := "192.0.2.1:443" // never dialled: the proxy answers 200 and closes
	c, err := dial(t, d, hub)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 10))
	var he *HopError
	if !errors.As(err, &he) || he.Hop != HopHub || he.Via != p.addr || !errors.Is(err, io.EOF) {
		t.Fatalf("first read: %v, want a hub HopError wrapping EOF", err)
	}
}

func TestDialContext(t *testing.T) {
	silent := startProxy(t, pSilent)
	tests := []struct {
		name    string
		timeout time.Duration // Options.Timeout
		ctx     time.Duration
	}{
		{"ctx deadline", time.Minute, 200 * time.Millisecond},
		{"options timeout", 200 * time.Millisecond, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDialer(t, Options{Proxy: silent.addr, Timeout: tt.timeout})
			ctx, cancel := context.WithTimeout(context.Background(), tt.ctx)
			defer cancel()
			start := time.Now()
			_, err := d.DialContext(ctx, "hub.test:443")
			var he *HopError
			if !errors.As(err, &he) || he.Hop != HopProxy || !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("err = %v", err)
			}
			if want := "proxy " + silent.addr + " did not answer CONNECT in time: timed out"; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("took %v", el)
			}
		})
	}
}

func TestCredentialsSent(t *testing.T) {
	hub := echoHub(t)
	p := startProxy(t, pOK)
	d := newDialer(t, Options{Proxy: p.addr, ProxyAuthFile: authFile(t, testUser+":"+testPassword), UserAgent: "initech-agent/1.0"})
	c, err := dial(t, d, hub)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	r := p.requests()[0]
	user, pass, ok := r.BasicAuth()
	if !ok {
		// BasicAuth reads Authorization; the proxy header has the same form.
		r.Header.Set("Authorization", r.Header.Get("Proxy-Authorization"))
		user, pass, ok = r.BasicAuth()
	}
	if !ok || user != testUser || pass != testPassword {
		t.Errorf("proxy got credentials %q:%q (ok %v)", user, pass, ok)
	}
	if ua := r.Header.Get("User-Agent"); ua != "initech-agent/1.0" {
		t.Errorf("User-Agent = %q", ua)
	}
	// Without a file, nothing is sent.
	d = newDialer(t, Options{Proxy: p.addr})
	if c, err := dial(t, d, hub); err == nil {
		c.Close()
	}
	if h := p.requests()[1].Header.Get("Proxy-Authorization"); h != "" {
		t.Errorf("sent Proxy-Authorization %q without credentials", h)
	}
}

func TestEnvironmentProxy(t *testing.T) {
	hub := echoHub(t)
	auth := startProxy(t, pAuth)
	env := map[string]string{"HTTPS_PROXY": "http://" + testUser + ":" + testPassword + "@" + auth.addr}
	d := newDialer(t, Options{Proxy: ProxyFromEnvironment, NoProxy: "", Getenv: func(k string) string { return env[k] }})
	// net/http never proxies loopback: the environment's proxy is not used.
	if p := d.ProxyFor(hub); p != "" {
		t.Fatalf("loopback hub proxied through %s", p)
	}
	if p := d.ProxyFor("hub.example.com:443"); p != auth.addr {
		t.Fatalf("ProxyFor = %q, want %q", p, auth.addr)
	}
	desc := d.Describe("hub.example.com:443")
	if want := "plain TCP, via proxy http://" + auth.addr + " from HTTPS_PROXY (Basic auth from HTTPS_PROXY)"; desc != want {
		t.Errorf("Describe = %q, want %q", desc, want)
	}
	env["NO_PROXY"] = "hub.test"
	d2 := newDialer(t, Options{Proxy: ProxyFromEnvironment, Getenv: func(k string) string { return env[k] }})
	if got, want := d2.Describe("hub.test:443"), "plain TCP, direct (NO_PROXY exempts hub.test:443 from proxy http://"+auth.addr+")"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	// The credentials from the URL are used: CONNECT through the proxy
	// to a loopback hub via a name (the route is forced here by dialling
	// the proxy's tunnel directly).
	raw, err := net.Dial("tcp", auth.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c, err := d.connect(raw, auth.addr, hub)
	if err != nil {
		t.Fatalf("connect with the environment's credentials: %v", err)
	}
	if got := echoOnce(t, c, "x"); got != "x" {
		t.Errorf("got %q", got)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	good := authFile(t, "u:p")
	loose := certtest.WriteFile(t, dir, "loose", []byte("u:p"), 0o644)
	empty := certtest.WriteFile(t, dir, "empty", nil, 0o600)
	noColon := certtest.WriteFile(t, dir, "nocolon", []byte("justapassword"), 0o600)
	twoLines := certtest.WriteFile(t, dir, "twolines", []byte("u:p\nv:q\n"), 0o600)
	notPEM := certtest.WriteFile(t, dir, "ca.txt", []byte("hello"), 0o644)
	tests := []struct {
		name    string
		o       Options
		env     map[string]string
		wantErr string
	}{
		{"bad url", Options{Proxy: "http://pro xy:3128"}, nil, "egress: proxy is not a valid URL"},
		{"bad url no scheme", Options{Proxy: "pro xy:3128"}, nil, "egress: proxy is not a valid URL"},
		{"password in path", Options{Proxy: "http://proxy:3128/u:" + testPassword}, nil, "egress: proxy http://proxy:3128: a proxy URL has no path or query"},
		{"socks", Options{Proxy: "socks5://proxy:1080"}, nil, "egress: proxy socks5://proxy:1080: only http:// proxies are supported, not socks5://"},
		{"https proxy", Options{Proxy: "https://proxy:443"}, nil, "only http:// proxies are supported, not https://"},
		{"path", Options{Proxy: "http://proxy:3128/x"}, nil, "a proxy URL has no path or query"},
		{"credentials in url", Options{Proxy: "http://u:" + testPassword + "@proxy:3128"}, nil, "egress: proxy URL must not hold credentials; put user:password in a proxy-auth-file"},
		{"auth file without proxy", Options{ProxyAuthFile: good}, nil, "proxy-auth-file is set but no proxy is"},
		{"auth file missing", Options{Proxy: "proxy:3128", ProxyAuthFile: filepath.Join(dir, "nope")}, nil, "no such file or directory"},
		{"auth file mode", Options{Proxy: "proxy:3128", ProxyAuthFile: loose}, nil, "egress: proxy-auth-file " + loose + " is accessible by group or others (mode 0644); run chmod 600 " + loose},
		{"auth file dir", Options{Proxy: "proxy:3128", ProxyAuthFile: dir}, nil, "is not a regular file"},
		{"auth file empty", Options{Proxy: "proxy:3128", ProxyAuthFile: empty}, nil, "is empty; it must hold user:password"},
		{"auth file no colon", Options{Proxy: "proxy:3128", ProxyAuthFile: noColon}, nil, "has no colon"},
		{"auth file two lines", Options{Proxy: "proxy:3128", ProxyAuthFile: twoLines}, nil, "must hold one line"},
		{"ca file missing", Options{TLS: true, CAFile: filepath.Join(dir, "nope.pem")}, nil, "egress: ca-file: open"},
		{"ca file not pem", Options{TLS: true, CAFile: notPEM}, nil, "egress: ca-file " + notPEM + " holds no PEM certificate"},
		{"ca file without tls", Options{CAFile: notPEM}, nil, "ca-file is set but TLS is not"},
		{"server name without tls", Options{ServerName: "hub"}, nil, "server-name is set but TLS is not"},
		{"env socks", Options{Proxy: ProxyFromEnvironment}, map[string]string{"https_proxy": "socks5://u:" + testPassword + "@p:1080"}, "egress: HTTPS_PROXY socks5://p:1080: only http:// proxies are supported"},
		{"env bad", Options{Proxy: ProxyFromEnvironment}, map[string]string{"HTTPS_PROXY": "http://u:" + testPassword + "@p :1"}, "egress: HTTPS_PROXY is not a valid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Getenv = func(k string) string { return tt.env[k] }
			_, err := New(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if s := err.Error(); strings.Contains(s, "\n") || strings.Contains(s, testPassword) || strings.Contains(s, "u:p") {
				t.Errorf("error is multi-line or holds a secret: %q", s)
			}
		})
	}
}

func TestRoute(t *testing.T) {
	const proxy = "proxy.acme:3128"
	tests := []struct {
		name    string
		o       Options
		env     map[string]string
		hub     string
		wantVia string
	}{
		{"direct", Options{}, nil, "hub.example.com:443", ""},
		{"explicit", Options{Proxy: proxy}, nil, "hub.example.com:443", proxy},
		{"explicit default port", Options{Proxy: "http://proxy.acme"}, nil, "hub.example.com:443", "proxy.acme:80"},
		{"explicit loopback proxied", Options{Proxy: proxy}, nil, "127.0.0.1:7000", proxy},
		{"explicit localhost proxied", Options{Proxy: proxy}, nil, "localhost:7000", proxy},
		{"explicit no-proxy domain", Options{Proxy: proxy, NoProxy: ".example.com"}, nil, "hub.example.com:443", ""},
		{"explicit no-proxy other domain", Options{Proxy: proxy, NoProxy: "example.org"}, nil, "hub.example.com:443", proxy},
		{"explicit no-proxy exact host", Options{Proxy: proxy, NoProxy: "hub.example.com"}, nil, "hub.example.com:443", ""},
		{"explicit no-proxy parent host", Options{Proxy: proxy, NoProxy: "example.com"}, nil, "hub.example.com:443", ""},
		{"explicit no-proxy port", Options{Proxy: proxy, NoProxy: "hub.example.com:7000"}, nil, "hub.example.com:443", proxy},
		{"explicit no-proxy star", Options{Proxy: proxy, NoProxy: "*"}, nil, "hub.example.com:443", ""},
		{"explicit no-proxy cidr", Options{Proxy: proxy, NoProxy: "10.0.0.0/8"}, nil, "10.1.2.3:443", ""},
		{"explicit no-proxy loopback ip", Options{Proxy: proxy, NoProxy: "127.0.0.1"}, nil, "127.0.0.1:7000", ""},
		{"explicit no-proxy loopback port", Options{Proxy: proxy, NoProxy: "127.0.0.1:7001"}, nil, "127.0.0.1:7000", proxy},
		{"explicit no-proxy loopback cidr", Options{Proxy: proxy, NoProxy: "127.0.0.0/8"}, nil, "127.0.0.2:7000", ""},
		{"explicit no-proxy localhost", Options{Proxy: proxy, NoProxy: "localhost"}, nil, "localhost:7000", ""},
		{"explicit no-proxy .localhost", Options{Proxy: proxy, NoProxy: ".localhost"}, nil, "localhost:7000", proxy},
		{"explicit no-proxy ipv6", Options{Proxy: proxy, NoProxy: "[::1]:7000"}, nil, "[::1]:7000", ""},
		{"env unset", Options{Proxy: ProxyFromEnvironment}, nil, "hub.example.com:443", ""},
		{"env upper", Options{Proxy: ProxyFromEnvironment}, map[string]string{"HTTPS_PROXY": proxy}, "hub.example.com:443", proxy},
		{"env lower wins", Options{Proxy: ProxyFromEnvironment}, map[string]string{"https_proxy": "lower:1", "HTTPS_PROXY": "upper:2"}, "hub.example.com:443", "lower:1"},
		{"env http_proxy ignored", Options{Proxy: ProxyFromEnvironment}, map[string]string{"HTTP_PROXY": proxy}, "hub.example.com:443", ""},
		{"env loopback never", Options{Proxy: ProxyFromEnvironment}, map[string]string{"HTTPS_PROXY": proxy}, "127.0.0.1:443", ""},
		{"env localhost never", Options{Proxy: ProxyFromEnvironment}, map[string]string{"HTTPS_PROXY": proxy}, "localhost:443", ""},
		{"env no_proxy", Options{Proxy: ProxyFromEnvironment}, map[string]string{"HTTPS_PROXY": proxy, "no_proxy": "example.com"}, "hub.example.com:443", ""},
		{"env NO_PROXY", Options{Proxy: ProxyFromEnvironment}, map[string]string{"HTTPS_PROXY": proxy, "NO_PROXY": "*.example.com"}, "hub.example.com:443", ""},
		{"env NO_PROXY other", Options{Proxy: ProxyFromEnvironment}, map[string]string{"HTTPS_PROXY": proxy, "NO_PROXY": "other.com,.internal"}, "hub.example.com:443", proxy},
		{"env options no-proxy replaces", Options{Proxy: ProxyFromEnvironment, NoProxy: "other.com"}, map[string]string{"HTTPS_PROXY": proxy, "NO_PROXY": "example.com"}, "hub.example.com:443", proxy},
		{"env idna", Options{Proxy: ProxyFromEnvironment}, map[string]string{"HTTPS_PROXY": proxy, "NO_PROXY": "bücher.example"}, "xn--bcher-kva.example:443", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Getenv = func(k string) string { return tt.env[k] }
			d, err := New(tt.o)
			if err != nil {
				t.Fatal(err)
			}
			if got := d.ProxyFor(tt.hub); got != tt.wantVia {
				t.Errorf("ProxyFor(%s) = %q, want %q", tt.hub, got, tt.wantVia)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	hub, ca := tlsHub(t)
	creds := authFile(t, testUser+":"+testPassword)
	caFile := certtest.WriteFile(t, t.TempDir(), "ca.pem", ca.CertPEM, 0o644)
	p := startProxy(t, pAuth)
	tests := []struct {
		name string
		o    Options
		dial bool
		want string
	}{
		{"direct", Options{}, false, "plain TCP, direct"},
		{"env unset", Options{Proxy: ProxyFromEnvironment}, false, "plain TCP, direct (HTTPS_PROXY is not set)"},
		{"proxy no auth", Options{Proxy: "proxy.acme:3128"}, false, "plain TCP, via proxy http://proxy.acme:3128 (no auth)"},
		{"proxy exempt", Options{Proxy: "proxy.acme:3128", NoProxy: "127.0.0.1"}, false, "plain TCP, direct (no-proxy exempts HUB from proxy http://proxy.acme:3128)"},
		{"env loopback", Options{Proxy: ProxyFromEnvironment, Getenv: func(k string) string {
			return map[string]string{"HTTPS_PROXY": "proxy.acme:3128"}[k]
		}}, false, "plain TCP, direct (a loopback hub never goes through HTTPS_PROXY, as with net/http)"},
		{"tls before dial", Options{TLS: true, CAFile: caFile, Proxy: p.addr, ProxyAuthFile: creds}, false,
			"TLS (ALPN edgeportal/1, server name 127.0.0.1), CA bundle " + caFile + ", via proxy http://" + p.addr + " (Basic auth from " + creds + ")"},
		{"tls after dial", Options{TLS: true, CAFile: caFile, Proxy: p.addr, ProxyAuthFile: creds}, true,
			"TLS (ALPN edgeportal/1, server name 127.0.0.1), CA bundle " + caFile + ", via proxy http://" + p.addr + " (Basic auth from " + creds + "); last TLS: TLS 1.3, certificate \"CN=127.0.0.1\" issued by \"CN=Test Hub CA,O=certtest\", trusted only through ca-file: the outer TLS is re-signed by \"CN=Test Hub CA,O=certtest\" (TLS inspection, or a private hub CA)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.SystemRoots = x509.NewCertPool()
			d := newDialer(t, tt.o)
			if tt.dial {
				c, err := dial(t, d, hub)
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
			}
			want := strings.ReplaceAll(tt.want, "HUB", hub)
			if got := d.Describe(hub); got != want {
				t.Errorf("Describe:\n got %s\nwant %s", got, want)
			}
			if strings.Contains(d.Describe(hub), testPassword) {
				t.Error("Describe holds the password")
			}
		})
	}
}

func TestTLSInfoTrustedBySystem(t *testing.T) {
	hub, ca := tlsHub(t)
	caFile := certtest.WriteFile(t, t.TempDir(), "ca.pem", ca.CertPEM, 0o644)
	// The hub's CA is among the "system" roots: the CA file was not needed.
	d := newDialer(t, Options{TLS: true, CAFile: caFile, SystemRoots: ca.Pool()})
	c, err := dial(t, d, hub)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	info, ok := d.LastTLS()
	if !ok || info.ByCAFile || info.ALPN != outer.ALPN || info.Upgraded || info.Issuer != "CN=Test Hub CA,O=certtest" {
		t.Errorf("LastTLS = %+v, %v", info, ok)
	}
}

func TestParseChallenges(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want string // scheme/realm;…
	}{
		{"squid", []string{`Basic realm="Squid proxy-caching web server"`}, "Basic/Squid proxy-caching web server"},
		{"several headers", []string{"Negotiate", "NTLM", `Basic realm="x"`}, "Negotiate/;NTLM/;Basic/x"},
		{"one header", []string{`Negotiate, Basic realm="a, b", charset="UTF-8", Digest realm="d", nonce="n"`}, "Negotiate/;Basic/a, b;Digest/d"},
		{"token68", []string{"Negotiate abc==, Basic realm=r"}, "Negotiate/;Basic/r"},
		{"escaped quote", []string{`Basic realm="say \"hi\""`}, `Basic/say "hi"`},
		{"unterminated", []string{`Basic realm="open`}, "Basic/open"},
		{"spaces around =", []string{`Basic realm = "x"`}, "Basic/x"},
		{"control chars", []string{"Basic realm=\"a\x1bb\xff\""}, "Basic/ab"},
		{"junk", []string{`==, "x", Basic`}, "x/;Basic/"},
		{"empty", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var parts []string
			for _, c := range parseChallenges(tt.in) {
				parts = append(parts, c.scheme+"/"+c.realm)
			}
			if got := strings.Join(parts, ";"); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseAuth(t *testing.T) {
	tests := []struct {
		in, user, pass, wantErr string
	}{
		{"u:p", "u", "p", ""},
		{"u:p\n", "u", "p", ""},
		{"u:p\r\n", "u", "p", ""},
		{"u:p:with:colons", "u", "p:with:colons", ""},
		{"u:", "u", "", ""},
		{"u: spaced pass ", "u", " spaced pass ", ""},
		{"", "", "", "is empty"},
		{"\n", "", "", "is empty"},
		{":p", "", "", "empty user name"},
		{"nopass", "", "", "no colon"},
		{"u:p\n\n", "", "", "one line"},
		{"u:p\x00", "", "", "control characters"},
		{strings.Repeat("a", maxAuthFile+1), "", "", "longer than"},
	}
	for _, tt := range tests {
		u, p, err := parseAuth([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseAuth(%q) err = %v, want %q", tt.in, err, tt.wantErr)
			}
			if err != nil && len(tt.in) > 3 && strings.Contains(err.Error(), tt.in) {
				t.Errorf("error repeats the content: %v", err)
			}
			continue
		}
		if err != nil || u != tt.user || p != tt.pass {
			t.Errorf("parseAuth(%q) = %q, %q, %v", tt.in, u, p, err)
		}
	}
}

func TestShortErr(t *testing.T) {
	_, err := net.Dial("tcp", "no-such-host.invalid:1")
	if got := shortErr(err); got != `no such host "no-such-host.invalid"` {
		t.Errorf("shortErr(dns) = %q", got)
	}
	if got := shortErr(os.ErrDeadlineExceeded); got != "timed out" {
		t.Errorf("shortErr(deadline) = %q", got)
	}
}

func FuzzReadConnectResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 Connection established\r\n\r\nEPX!"))
	f.Add([]byte("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 503 Service Unavailable\r\nX-Squid-Error: ERR_CONNECT_FAIL 111\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := readConnectResponse(strings.NewReader(string(data)))
		if err != nil {
			return
		}
		if r.status/100 == 2 && !strings.HasSuffix(string(data), string(r.rest)) {
			t.Fatalf("rest %q is not the input's tail", r.rest)
		}
		if r.status/100 != 2 && r.rest != nil {
			t.Fatal("rest on a refusal")
		}
		if strings.ContainsAny(r.line, "\r\n") {
			t.Fatalf("status line %q has line breaks", r.line)
		}
		parseChallenges(r.header.Values("Proxy-Authenticate"))
	})
}

func FuzzParseChallenges(f *testing.F) {
	f.Add(`Negotiate, Basic realm="a, b", charset="UTF-8"`)
	f.Add(`Basic realm="say \"hi\""`)
	f.Add("Negotiate abc==")
	f.Fuzz(func(t *testing.T, s string) {
		chs := parseChallenges([]string{s})
		if len(chs) > maxChallenges {
			t.Fatalf("%d challenges", len(chs))
		}
		for _, c := range chs {
			if c.scheme == "" || strings.ContainsAny(c.scheme+c.realm, "\r\n\x00") {
				t.Fatalf("bad challenge %+v", c)
			}
		}
	})
}

func FuzzParseAuth(f *testing.F) {
	f.Add([]byte("user:password\n"))
	f.Add([]byte(":"))
	f.Add([]byte("a:b\r\nc"))
	f.Fuzz(func(t *testing.T, b []byte) {
		u, p, err := parseAuth(b)
		if err != nil {
			if u != "" || p != "" {
				t.Fatal("partial result on error")
			}
			return
		}
		if u == "" || strings.Contains(u, ":") || strings.ContainsAny(u+p, "\r\n") {
			t.Fatalf("accepted %q as %q:%q", b, u, p)
		}
	})
}
