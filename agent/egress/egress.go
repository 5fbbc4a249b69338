// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package egress is how a node reaches the hub from networks that do not
// let it connect directly: through an HTTP CONNECT proxy (from config or
// from HTTPS_PROXY/NO_PROXY, as net/http reads them), with Basic
// authentication from a file, and optionally as TLS with ALPN (wire/outer)
// so that firewalls that pass only TLS to 443 pass it, including
// TLS-inspecting proxies whose CA the customer supplies.
//
// A Dialer returns a connection that is ready for the hub protocol (the
// wire preface, then Noise with the pinned hub key, which stays the
// end-to-end protection: the outer TLS certificate is not what the node
// trusts).
//
// # Half-close
//
// Every connection it returns has CloseWrite, but what reaches the hub
// depends on the path, because squid 5 (and other proxies) close a
// CONNECT tunnel both ways when either side half-closes it:
//
//   - direct, plain TCP: a *net.TCPConn; CloseWrite sends a FIN.
//   - through a proxy, plain TCP: CloseWrite only ends writing; no FIN
//     (which would cut off what the hub still has to send).
//   - TLS (wire/outer): CloseWrite sends close_notify, which passes a
//     plain tunnel as opaque bytes; through a TLS-inspecting proxy it
//     sends nothing.
//
// Noise (wire/noiseconn) carries its own authenticated end of stream, so
// portal half-close works over all of them (TestNoiseHalfClose); a
// protocol without one must not rely on CloseWrite through a proxy.
//
// Failures are *HopError values that name the hop: the proxy (unreachable,
// 407 with its realm, 403, other refusals), the hub (unreachable directly
// or through the proxy), the outer TLS (with the issuer of the certificate
// seen and the hint to set ca-file), or the upgrade inside TLS. The proxy
// password never appears in errors, logs or Describe.
//
// Not supported: NTLM, Kerberos/Negotiate and Digest proxy authentication,
// PAC/WPAD discovery, https:// and SOCKS proxies.
//
// Imported by agent (control, data and update connections) and its doctor
// command.
package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgeportal/connect/wire/outer"
)

// ProxyFromEnvironment as Options.Proxy takes the proxy from HTTPS_PROXY
// (or https_proxy) and the exemptions from NO_PROXY (or no_proxy), as
// net/http does for https URLs. HTTP_PROXY is not used, as net/http does
// not use it for https.
const ProxyFromEnvironment = "env"

// Defaults.
const (
	// DefaultTimeout bounds one dial: TCP, CONNECT, TLS and the upgrade.
	DefaultTimeout = 15 * time.Second
	// keepAlive is the TCP keep-alive period of hub connections.
	keepAlive = 15 * time.Second
	// maxCAFile bounds the CA bundle file.
	maxCAFile = 4 << 20
)

// Options configures a Dialer. The zero value dials the hub directly over
// plain TCP.
type Options struct {
	// Proxy is "" (dial the hub directly), ProxyFromEnvironment ("env"),
	// or the proxy's URL: http://host:port (a bare host:port means
	// http://). Only http:// proxies are supported. Credentials in the URL
	// are refused (they would end up in config files and command lines):
	// use ProxyAuthFile. An HTTPS_PROXY with credentials in it is used
	// as net/http would, unless ProxyAuthFile is set.
	Proxy string
	// ProxyAuthFile is a file holding one line user:password for Basic
	// proxy authentication, or "". On Unix it must not be accessible by
	// group or others.
	ProxyAuthFile string
	// NoProxy lists hubs to dial directly, with NO_PROXY's syntax
	// (comma-separated hosts, .domains, IPs, CIDRs, optional :port, or
	// "*"). With Proxy "env" a non-empty NoProxy replaces NO_PROXY.
	NoProxy string

	// TLS dials the hub as TLS with ALPN outer.ALPN (the hub must serve
	// TLS: `serve --tls-cert`). Plain TCP otherwise.
	TLS bool
	// ServerName is the TLS server name (SNI and certificate check);
	// "" means the host of the hub address.
	ServerName string
	// CAFile is a PEM bundle of extra CAs for the outer TLS, added to the
	// system's: a TLS-inspecting proxy's CA, or a private CA of the hub.
	CAFile string

	// Timeout bounds one dial; 0 means DefaultTimeout.
	Timeout time.Duration
	// UserAgent is sent to the proxy with CONNECT; "" sends none.
	UserAgent string
	// Logger gets debug records of the route taken; nil is silent.
	Logger *slog.Logger

	// Getenv reads the environment; nil is os.Getenv. For tests.
	Getenv func(string) string
	// DialTCP opens TCP connections; nil uses a net.Dialer with TCP
	// keep-alive. For tests.
	DialTCP func(ctx context.Context, network, addr string) (net.Conn, error)
	// SystemRoots replaces the system's root CAs; nil uses them. For tests.
	SystemRoots *x509.CertPool
}

// Dialer dials the hub as Options say. It is safe for concurrent use.
type Dialer struct {
	o       Options
	route   *route
	proxyBy string // "config" or "HTTPS_PROXY"
	cred    *credentials
	roots   *x509.CertPool // system roots plus CAFile's (nil: system only)
	system  *x509.CertPool // system roots alone, to tell which one verified
	log     *slog.Logger
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)

	mu      sync.Mutex // guards lastTLS
	lastTLS *TLSInfo
}

// TLSInfo describes the outer TLS of the last successful TLS dial.
type TLSInfo struct {
	Addr       string    // hub address dialled
	At         time.Time // when
	Subject    string    // the certificate's subject
	Issuer     string    // the certificate's issuer
	ByCAFile   bool      // only the CA bundle from CAFile verified it (TLS inspection, or a private hub CA)
	ALPN       string    // negotiated protocol ("" or http/1.1 when something in the path re-negotiated)
	Upgraded   bool      // the HTTP upgrade ran inside TLS
	Version    string    // "TLS 1.3"
	ViaProxy   string    // the proxy, if one was used
	ServerName string    // SNI sent
}

// New checks o and returns a Dialer. It reads ProxyAuthFile and CAFile
// (and the environment, with Proxy "env") once, now. Errors are one line
// and name the setting at fault.
func New(o Options) (*Dialer, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	d := &Dialer{o: o, log: o.Logger, dial: o.DialTCP}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.log = d.log.With("component", "egress")
	if d.dial == nil {
		nd := &net.Dialer{KeepAlive: keepAlive}
		d.dial = nd.DialContext
	}
	var envCred *credentials
	switch p := strings.TrimSpace(o.Proxy); p {
	case "":
		d.route = newRoute("direct", nil, "", "")
	case ProxyFromEnvironment:
		raw := getenvAny(o.Getenv, "https_proxy", "HTTPS_PROXY")
		noProxy, noSource := o.NoProxy, "no-proxy"
		if noProxy == "" {
			noProxy, noSource = getenvAny(o.Getenv, "no_proxy", "NO_PROXY"), "NO_PROXY"
		}
		var u *url.URL
		if raw != "" {
			var err error
			if u, err = parseProxyURL(raw, "HTTPS_PROXY"); err != nil {
				return nil, err
			}
			if u.User != nil {
				pass, _ := u.User.Password()
				envCred = &credentials{user: u.User.Username(), password: pass, source: "HTTPS_PROXY"}
				u.User = nil
			}
		}
		d.route, d.proxyBy = newRoute("env", u, noProxy, noSource), "HTTPS_PROXY"
	default:
		u, err := parseProxyURL(p, "proxy")
		if err != nil {
			return nil, err
		}
		if u.User != nil {
			return nil, errorf("proxy URL must not hold credentials; put user:password in a proxy-auth-file")
		}
		d.route, d.proxyBy = newRoute("explicit", u, o.NoProxy, "no-proxy"), "config"
	}
	d.cred = envCred
	if o.ProxyAuthFile != "" {
		if o.Proxy == "" {
			return nil, errorf("proxy-auth-file is set but no proxy is")
		}
		c, err := readAuthFile(o.ProxyAuthFile)
		if err != nil {
			return nil, err
		}
		d.cred = c
	}
	if o.ServerName != "" && !o.TLS {
		return nil, errorf("server-name is set but TLS is not")
	}
	if o.CAFile != "" && !o.TLS {
		return nil, errorf("ca-file is set but TLS is not")
	}
	if o.TLS {
		sys := o.SystemRoots
		if sys == nil {
			var err error
			if sys, err = x509.SystemCertPool(); err != nil {
				sys = x509.NewCertPool()
			}
		}
		d.system = sys
		if o.CAFile != "" {
			pool, err := loadCAFile(o.CAFile, sys)
			if err != nil {
				return nil, err
			}
			d.roots = pool
		} else {
			d.roots = sys
		}
	}
	return d, nil
}

func getenvAny(getenv func(string) string, names ...string) string {
	for _, n := range names {
		if v := getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// parseProxyURL parses a proxy setting as net/http does (a bare host:port
// means http://) and accepts only http proxies. Its errors show at most
// the scheme and host of the setting, never credentials or a path.
func parseProxyURL(raw, what string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if !strings.Contains(raw, "://") && (err != nil || u.Scheme == "" || u.Host == "") {
		u, err = url.Parse("http://" + raw)
	}
	if err != nil {
		// url.Parse quotes the input, which may hold a password.
		return nil, errorf("%s is not a valid URL", what)
	}
	if u.Scheme != "http" {
		return nil, errorf("%s %s: only http:// proxies are supported, not %s://", what, redact(u), sanitize(u.Scheme))
	}
	if u.Hostname() == "" {
		return nil, errorf("%s %s has no host", what, redact(u))
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		return nil, errorf("%s %s: a proxy URL has no path or query", what, redact(u))
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "80")
	}
	u.Path, u.RawPath = "", ""
	return u, nil
}

// redact shows a proxy URL as scheme://host only: no credentials, path
// or query.
func redact(u *url.URL) string {
	return sanitize(u.Scheme + "://" + u.Host)
}

func loadCAFile(name string, system *x509.CertPool) (*x509.CertPool, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, errorf("ca-file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCAFile+1))
	if err != nil {
		return nil, errorf("ca-file %s: %w", name, err)
	}
	if len(b) > maxCAFile {
		return nil, errorf("ca-file %s is larger than %d bytes", name, maxCAFile)
	}
	pool := system.Clone()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errorf("ca-file %s holds no PEM certificate", name)
	}
	return pool, nil
}

// DialContext returns a connection to the hub at addr (host:port), ready
// for the hub protocol: through the proxy if one applies, then TLS if
// asked. ctx bounds the dial only, not the connection. Errors are
// *HopError, except for a bad addr.
func (d *Dialer) DialContext(ctx context.Context, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return nil, errorf("hub address %q: want host:port", addr)
	}
	ctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()

	proxy := d.route.proxyFor(addr)
	var c net.Conn
	via := ""
	if proxy == nil {
		d.log.Debug("dialing hub directly", "hub", addr)
		if c, err = d.dial(ctx, "tcp", addr); err != nil {
			return nil, &HopError{Hop: HopHub, Addr: addr, Reason: "unreachable", Err: err}
		}
	} else {
		via = proxy.Host
		d.log.Debug("dialing hub through proxy", "hub", addr, "proxy", via)
		raw, err := d.dial(ctx, "tcp", via)
		if err != nil {
			return nil, &HopError{Hop: HopProxy, Addr: via, Reason: "unreachable", Err: err}
		}
		stop := deadlineOnCancel(ctx, raw)
		c, err = d.connect(raw, via, addr)
		if stopped := stop(); err != nil || !stopped {
			raw.Close()
			if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
				cause := ctx.Err()
				if cause == nil {
					cause = context.DeadlineExceeded
				}
				return nil, &HopError{Hop: HopProxy, Addr: via, Reason: "did not answer CONNECT in time", Err: cause}
			}
			return nil, err
		}
	}
	setNoDelay(c)
	if !d.o.TLS {
		return c, nil
	}
	tc, err := d.handshake(ctx, c, addr, via)
	if err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

func setNoDelay(c net.Conn) {
	if tc, ok := c.(*tunnelConn); ok {
		c = tc.Conn
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
}

// deadlineOnCancel bounds I/O on c by ctx's deadline and makes blocked I/O
// return when ctx ends. The returned stop clears the deadline and reports
// true, or reports false if ctx ended first.
func deadlineOnCancel(ctx context.Context, c net.Conn) (stop func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	s := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	return func() bool {
		if !s() {
			return false
		}
		c.SetDeadline(time.Time{})
		return true
	}
}

// serverName is the SNI for a hub at addr.
func (d *Dialer) serverName(addr string) string {
	if d.o.ServerName != "" {
		return d.o.ServerName
	}
	host, _, _ := net.SplitHostPort(addr)
	return host
}

func (d *Dialer) handshake(ctx context.Context, c net.Conn, addr, via string) (net.Conn, error) {
	sni := d.serverName(addr)
	cfg := outer.ClientConfig(sni, d.roots)
	byCAFile := false
	if d.o.CAFile != "" {
		// Verification ran against system+CAFile; note when the system
		// roots alone would not have verified the chain.
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, ic := range cs.PeerCertificates[1:] {
				inter.AddCert(ic)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: sni, Roots: d.system, Intermediates: inter})
			byCAFile = err != nil
			return nil
		}
	}
	tc, err := outer.Client(ctx, c, cfg, addr)
	if err != nil {
		return nil, d.tlsError(err, addr, via)
	}
	cs := tc.ConnectionState()
	leaf := cs.PeerCertificates[0]
	info := &TLSInfo{
		Addr: addr, At: time.Now(), Subject: leaf.Subject.String(), Issuer: leaf.Issuer.String(),
		ByCAFile: byCAFile, ALPN: cs.NegotiatedProtocol, Upgraded: tc.Upgraded(),
		Version: tls.VersionName(cs.Version), ViaProxy: via, ServerName: sni,
	}
	d.mu.Lock()
	d.lastTLS = info
	d.mu.Unlock()
	d.log.Debug("outer TLS up", "hub", addr, "issuer", info.Issuer, "alpn", info.ALPN, "upgraded", info.Upgraded)
	return tc, nil
}

// tlsError turns an outer TLS failure into a HopError.
func (d *Dialer) tlsError(err error, addr, via string) error {
	var he *HopError
	if errors.As(err, &he) {
		return he // the tunnel closed under the handshake
	}
	var ue *outer.UpgradeError
	if errors.As(err, &ue) {
		e := &HopError{Hop: HopUpgrade, Addr: addr, Via: via, Status: ue.Status, Reason: "failed", Err: ue}
		if via != "" || ue.Server != "" {
			e.Hint = "a TLS-inspecting proxy must let WebSocket upgrades to the hub through"
		}
		return e
	}
	e := &HopError{Hop: HopTLS, Addr: addr, Via: via, Reason: "failed", Err: err}
	if via != "" {
		e.Reason = "through proxy " + via + " failed"
	}
	var ve *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &ve):
		if len(ve.UnverifiedCertificates) > 0 {
			e.Issuer = ve.UnverifiedCertificates[0].Issuer.String()
		}
		var ua x509.UnknownAuthorityError
		var hn x509.HostnameError
		switch {
		case errors.As(err, &ua):
			e.Hint = fmt.Sprintf("the certificate is issued by %q, which is not trusted: if a TLS-inspecting proxy re-signs TLS, set ca-file to its CA bundle", e.Issuer)
		case errors.As(err, &hn):
			e.Hint = "the certificate is not for " + d.serverName(addr) + ": set server-name to the name the hub's certificate has"
		default:
			e.Hint = fmt.Sprintf("the certificate (issued by %q) is not valid", e.Issuer)
		}
	case errors.As(err, &rh):
		e.Hint = "the other end does not speak TLS: does the hub serve TLS on this port (serve --tls-cert)?"
	case via == "" && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)):
		e.Hint = "the hub closed the connection during the TLS handshake: does it serve TLS on this port (serve --tls-cert)?"
	}
	return e
}

// LastTLS returns the outer TLS of the last successful TLS dial.
func (d *Dialer) LastTLS() (TLSInfo, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lastTLS == nil {
		return TLSInfo{}, false
	}
	return *d.lastTLS, true
}

// ProxyFor returns the proxy a hub at addr is dialled through (host:port),
// or "" when it is dialled directly.
func (d *Dialer) ProxyFor(addr string) string {
	if p := d.route.proxyFor(addr); p != nil {
		return p.Host
	}
	return ""
}

// Describe says, in one line for doctor, how a hub at addr is reached:
// the transport, the route, and after a TLS dial the certificate seen.
//
//	plain TCP, direct
//	TLS (ALPN edgeportal/1, server name hub.example.com), CA bundle /etc/x/ca.pem, via proxy http://proxy.acme:3128 (Basic auth from /etc/x/proxy-auth); last TLS: …
func (d *Dialer) Describe(addr string) string {
	var parts []string
	if d.o.TLS {
		t := fmt.Sprintf("TLS (ALPN %s, server name %s)", outer.ALPN, d.serverName(addr))
		if d.o.CAFile != "" {
			t += ", CA bundle " + d.o.CAFile
		}
		parts = append(parts, t)
	} else {
		parts = append(parts, "plain TCP")
	}
	r := d.route
	switch p := r.proxyFor(addr); {
	case p != nil:
		s := "via proxy " + redact(p)
		if d.proxyBy == "HTTPS_PROXY" {
			s += " from HTTPS_PROXY"
		}
		if d.cred != nil {
			s += " (Basic auth from " + d.cred.source + ")"
		} else {
			s += " (no auth)"
		}
		parts = append(parts, s)
	case r.proxy != nil && r.mode == "env" && isLoopback(hostOf(addr)):
		parts = append(parts, "direct (a loopback hub never goes through HTTPS_PROXY, as with net/http)")
	case r.proxy != nil:
		parts = append(parts, fmt.Sprintf("direct (%s exempts %s from proxy %s)", r.noSource, addr, redact(r.proxy)))
	case r.mode == "env":
		parts = append(parts, "direct (HTTPS_PROXY is not set)")
	default:
		parts = append(parts, "direct")
	}
	s := strings.Join(parts, ", ")
	if info, ok := d.LastTLS(); ok && info.Addr == addr {
		s += "; last TLS: " + info.Describe()
	}
	return s
}

func hostOf(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

// Describe says what the outer TLS showed, in one line.
func (t TLSInfo) Describe() string {
	s := fmt.Sprintf("%s, certificate %q issued by %q", t.Version, t.Subject, t.Issuer)
	if t.ByCAFile {
		s += fmt.Sprintf(", trusted only through ca-file: the outer TLS is re-signed by %q (TLS inspection, or a private hub CA)", t.Issuer)
	}
	if t.Upgraded {
		alpn := t.ALPN
		if alpn == "" {
			alpn = "none"
		}
		s += fmt.Sprintf(", ALPN %s negotiated instead of %s (something in the path terminates TLS), HTTP upgrade inside TLS", alpn, outer.ALPN)
	}
	return s
}
