// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package outer is the optional TLS layer around hub connections, for
// networks that let only TLS (usually to port 443) out. Both ends use it:
// the hub wraps its listener (NewListener, Listen), the agent wraps the
// connections it dials (Client), so the two agree on the ALPN name and on
// the upgrade described below.
//
// # Trust
//
// The outer TLS is camouflage and transport, not what the agent trusts:
// inside it every connection still runs Noise with the hub's pinned static
// key. A TLS-inspecting proxy that re-signs the outer TLS with the
// customer's CA therefore sees only Noise ciphertext.
//
// # The upgrade inside TLS
//
// When the agent's TLS session reaches the hub itself, ALPN negotiates
// [ALPN] and the hub protocol starts right after the handshake. A
// TLS-inspecting proxy terminates the agent's TLS and opens its own to the
// hub: it offers its own ALPN list (squid offers "http/1.1") and expects
// HTTP inside. So whenever [ALPN] was not negotiated, the agent first sends
// an HTTP/1.1 WebSocket-style upgrade request for [UpgradePath]; the hub
// answers "101 Switching Protocols" with the Sec-WebSocket-Accept value
// derived from the agent's key (which shows the answer came from the hub),
// and the hub protocol follows. The bytes after the upgrade are not
// WebSocket frames: a proxy that parses WebSocket frames will cut the
// connection. The hub accepts both forms whatever ALPN it negotiated (it
// tells them apart by the first bytes: "GET " starts an upgrade).
//
// # Half-close
//
// CloseWrite sends TLS close_notify, which the peer reads as EOF, and does
// not half-close the TCP connection beneath: squid 5 answers a FIN from
// either side of a CONNECT tunnel by closing the tunnel both ways, which
// would cut off what the other side still has to send, while
// close_notify passes through a plain tunnel as opaque bytes. When the
// TLS was terminated by something in the path (Upgraded), CloseWrite
// sends nothing at all, on either side: a TLS-inspecting proxy answers
// close_notify by closing the tunnel both ways too. It then only ends
// writing, and the protocol inside must carry its own end of stream
// (noiseconn's authenticated empty frame does).
//
// This package is a leaf: it imports the standard library only. Imported
// by the hub's serve command and by agent/egress.
package outer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ALPN is the application protocol name the agent offers and the hub
// prefers. It is brand-neutral on purpose (one name for every vendor).
//
// History:
//
//	edgeportal/1: first version; the hub protocol (wire preface, Noise)
//	              starts right after the TLS handshake, or after the
//	              upgrade when another protocol was negotiated.
const ALPN = "edgeportal/1"

// alpnHTTP is what TLS-inspecting proxies offer the hub; the hub accepts
// it so that their handshake succeeds.
const alpnHTTP = "http/1.1"

// UpgradePath is the request path of the HTTP upgrade inside TLS.
const UpgradePath = "/edgeportal/1"

// upgradeProto is the Upgrade token: "websocket", since TLS-inspecting
// proxies commonly let WebSocket upgrades through (squid does with
// `http_upgrade_request_protocols websocket allow …`) and little else.
const upgradeProto = "websocket"

// wsGUID is RFC 6455's constant for Sec-WebSocket-Accept.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Limits.
const (
	// MaxUpgradeHeader bounds the HTTP upgrade request or response
	// (headers included). Real ones are a few hundred bytes; proxies add
	// Via and X-Forwarded-For.
	MaxUpgradeHeader = 16 << 10
	// MinVersion is the oldest TLS version either side accepts.
	MinVersion = tls.VersionTLS12
)

// reloadCheckInterval is how often the hub looks at its certificate
// files for a renewed certificate. A variable for tests.
var reloadCheckInterval = 30 * time.Second

// ServerConfig loads the hub's TLS certificate (PEM chain, leaf first) and
// key, and returns a server config that offers ALPN and the HTTP/1.1
// that inspecting proxies ask for. It refuses a pair that does not match,
// a certificate that has expired, and missing or unreadable files, each
// with a one-line error naming the file.
//
// The files are looked at again at most every 30 seconds while the hub
// serves handshakes; a renewed pair replaces the old one without a
// restart, and a broken one is ignored (the old pair stays in use).
func ServerConfig(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("outer TLS: both a certificate file and a key file are needed")
	}
	r := &reloader{certFile: certFile, keyFile: keyFile}
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cur, r.stamp, r.checked = st.cert, st.stamp, time.Now()
	return &tls.Config{
		MinVersion:     MinVersion,
		NextProtos:     []string{ALPN, alpnHTTP},
		GetCertificate: r.get,
	}, nil
}

// reloader serves the hub's certificate and picks up renewed files.
type reloader struct {
	certFile, keyFile string

	mu      sync.Mutex // guards the fields below
	cur     *tls.Certificate
	stamp   string    // size and modification time of both files
	checked time.Time // last look at the files
}

type loaded struct {
	cert  *tls.Certificate
	stamp string
}

func (r *reloader) load() (loaded, error) {
	stamp, err := fileStamp(r.certFile, r.keyFile)
	if err != nil {
		return loaded{}, err
	}
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return loaded{}, fmt.Errorf("outer TLS: certificate %s with key %s: %w", r.certFile, r.keyFile, err)
	}
	leaf := c.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return loaded{}, fmt.Errorf("outer TLS: certificate %s: %w", r.certFile, err)
		}
	}
	if now := time.Now(); now.After(leaf.NotAfter) {
		return loaded{}, fmt.Errorf("outer TLS: certificate %s expired on %s", r.certFile, leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	return loaded{cert: &c, stamp: stamp}, nil
}

func fileStamp(files ...string) (string, error) {
	var b strings.Builder
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("outer TLS: %w", err)
		}
		fmt.Fprintf(&b, "%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}

func (r *reloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= reloadCheckInterval {
		r.checked = time.Now()
		if stamp, err := fileStamp(r.certFile, r.keyFile); err == nil && stamp != r.stamp {
			if st, err := r.load(); err == nil {
				r.cur, r.stamp = st.cert, st.stamp
			}
		}
	}
	return r.cur, nil
}

// ClientConfig returns the agent's TLS config for the hub: ALPN, SNI
// serverName, and roots (nil: the system's).
func ClientConfig(serverName string, roots *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion: MinVersion,
		NextProtos: []string{ALPN},
		ServerName: serverName,
		RootCAs:    roots,
	}
}

// UpgradeError means the HTTP upgrade inside TLS was not answered by the
// hub: typically a TLS-inspecting proxy refused it.
type UpgradeError struct {
	Status int    // HTTP status of the answer (0: none could be read)
	Reason string // what was wrong
	Server string // the answer's Server header, if any (e.g. "squid/5.7")
}

func (e *UpgradeError) Error() string {
	s := "outer TLS upgrade: " + e.Reason
	if e.Server != "" {
		s += fmt.Sprintf(" (answered by %q)", e.Server)
	}
	return s
}

// Conn is a hub connection inside the outer TLS, as the agent sees it.
type Conn struct {
	tc       *tls.Conn
	raw      net.Conn
	upgraded bool
	rest     []byte      // bytes read past the upgrade answer; Read serves them first
	wclosed  atomic.Bool // CloseWrite ran (upgraded connections only)
}

// ErrWriteClosed is returned by Write after CloseWrite.
var ErrWriteClosed = errors.New("outer TLS: write after CloseWrite")

// Client runs the outer TLS handshake over conn (the TCP connection to the
// hub, or the tunnel through a proxy) and, unless the hub itself answered
// with ALPN, the HTTP upgrade for host (the hub's host:port, as dialled).
// cfg is usually ClientConfig's. On error conn is left open for the
// caller to close.
func Client(ctx context.Context, conn net.Conn, cfg *tls.Config, host string) (*Conn, error) {
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	c := &Conn{tc: tc, raw: conn}
	if tc.ConnectionState().NegotiatedProtocol == ALPN {
		return c, nil
	}
	stop := deadlineOnCancel(ctx, conn)
	err := c.upgrade(host)
	if stopped := stop(); !stopped || err != nil && (ctx.Err() != nil || pastDeadline(ctx, err)) {
		// ctx ended (its deadline may have hit the connection before
		// ctx's own timer fired).
		cause := context.Cause(ctx)
		if cause == nil {
			cause = context.DeadlineExceeded
		}
		return nil, fmt.Errorf("outer TLS upgrade: %w", cause)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// pastDeadline reports whether err is the connection's timeout from
// ctx's deadline, which can come a moment before ctx itself is done.
func pastDeadline(ctx context.Context, err error) bool {
	d, ok := ctx.Deadline()
	var ne net.Error
	return ok && !time.Now().Before(d) && errors.As(err, &ne) && ne.Timeout()
}

// deadlineOnCancel bounds I/O on c by ctx's deadline and makes blocked I/O
// return when ctx ends. The returned stop clears the deadline and reports
// true, or reports false if ctx ended first (c is then unusable).
func deadlineOnCancel(ctx context.Context, c net.Conn) (stop func() bool) {
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
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

func (c *Conn) upgrade(host string) error {
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	req := "GET " + UpgradePath + " HTTP/1.1\r\n" +
		"Host: " + hostHeader(host) + "\r\n" +
		"Upgrade: " + upgradeProto + "\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: " + ALPN + "\r\n\r\n"
	if _, err := io.WriteString(c.tc, req); err != nil {
		return fmt.Errorf("outer TLS upgrade: %w", err)
	}
	rest, err := readUpgradeResponse(c.tc, key)
	if err != nil {
		return err
	}
	c.upgraded, c.rest = true, rest
	return nil
}

// hostHeader drops the port when it is https' default.
func hostHeader(hostport string) string {
	if h, p, err := net.SplitHostPort(hostport); err == nil && p == "443" {
		if strings.Contains(h, ":") {
			return "[" + h + "]"
		}
		return h
	}
	return hostport
}

// readUpgradeResponse reads the answer to an upgrade request with key and
// returns the bytes read past it.
func readUpgradeResponse(r io.Reader, key string) ([]byte, error) {
	lr := &io.LimitedReader{R: r, N: MaxUpgradeHeader}
	br := bufio.NewReader(lr)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		if lr.N == 0 {
			return nil, &UpgradeError{Reason: fmt.Sprintf("answer longer than %d bytes", MaxUpgradeHeader)}
		}
		var ue *UpgradeError
		if errors.As(err, &ue) {
			return nil, err
		}
		return nil, fmt.Errorf("outer TLS upgrade: reading the answer: %w", err)
	}
	resp.Body.Close() // a 101 has no body; for others we only need the status
	server := sanitize(resp.Header.Get("Server"))
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, &UpgradeError{Status: resp.StatusCode, Reason: "answered " + sanitize(resp.Status), Server: server}
	}
	if !headerHasToken(resp.Header, "Upgrade", upgradeProto) {
		return nil, &UpgradeError{Status: resp.StatusCode, Reason: "101 answer without Upgrade: " + upgradeProto, Server: server}
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key) {
		return nil, &UpgradeError{Status: resp.StatusCode, Reason: "101 answer with a wrong Sec-WebSocket-Accept (not from the hub)", Server: server}
	}
	rest := make([]byte, br.Buffered())
	br.Read(rest)
	return rest, nil
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// sanitize bounds and quotes-safe a string that came from the network for
// use in an error message.
func sanitize(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "…"
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

// Read reads from the hub.
func (c *Conn) Read(b []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(b, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.tc.Read(b)
}

// Write writes to the hub.
func (c *Conn) Write(b []byte) (int, error) {
	if c.wclosed.Load() {
		return 0, ErrWriteClosed
	}
	return c.tc.Write(b)
}

// Close closes the connection.
func (c *Conn) Close() error { return c.tc.Close() }

// CloseWrite sends close_notify; on an upgraded connection it only ends
// writing (see the package doc).
func (c *Conn) CloseWrite() error {
	if c.upgraded {
		c.wclosed.Store(true)
		return nil
	}
	return c.tc.CloseWrite()
}

// LocalAddr returns the local address.
func (c *Conn) LocalAddr() net.Addr { return c.tc.LocalAddr() }

// RemoteAddr returns the remote address (the proxy's, when tunnelled).
func (c *Conn) RemoteAddr() net.Addr { return c.tc.RemoteAddr() }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.tc.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.tc.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.tc.SetWriteDeadline(t) }

// ConnectionState returns the outer TLS state (the certificate the agent
// saw: the hub's, or an inspecting proxy's).
func (c *Conn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// NetConn returns the connection beneath the TLS (TCP, or a proxy tunnel).
func (c *Conn) NetConn() net.Conn { return c.raw }

// Upgraded reports whether the HTTP upgrade ran (ALPN was not negotiated
// end to end: typically a TLS-inspecting proxy is in the path).
func (c *Conn) Upgraded() bool { return c.upgraded }

// NewListener wraps a TCP listener so that every connection it accepts is
// a *ServerConn: the outer TLS server side, with the upgrade handled. The
// handshake runs on the first Read or Write, under the deadlines the
// caller set (the hub sets its handshake deadline before reading the
// preface), as with tls.NewListener.
func NewListener(inner net.Listener, cfg *tls.Config) net.Listener {
	return &listener{Listener: inner, cfg: cfg}
}

// Listen listens on the TCP address and wraps it with NewListener.
func Listen(network, addr string, cfg *tls.Config) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	return NewListener(ln, cfg), nil
}

type listener struct {
	net.Listener
	cfg *tls.Config
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &ServerConn{raw: c, tc: tls.Server(c, l.cfg)}, nil
}

// ServerConn is one accepted connection inside the outer TLS.
type ServerConn struct {
	raw net.Conn
	tc  *tls.Conn

	hsMu     sync.Mutex // guards the fields below; held for the whole handshake
	hsDone   bool
	hsErr    error
	upgraded bool
	via      string
	rest     []byte // bytes read while telling the forms apart; Read serves them first

	wclosed atomic.Bool // CloseWrite ran (upgraded connections only)
}

// Handshake runs the TLS handshake and the upgrade, if the agent asks for
// one. Read and Write call it; a second call returns the first's result.
func (c *ServerConn) Handshake() error {
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.hsDone {
		return c.hsErr
	}
	c.hsDone = true
	c.hsErr = c.handshake()
	return c.hsErr
}

func (c *ServerConn) handshake() error {
	if err := c.tc.Handshake(); err != nil {
		return fmt.Errorf("outer TLS handshake: %w", err)
	}
	if c.tc.ConnectionState().NegotiatedProtocol == ALPN {
		return nil
	}
	// Tell the two forms apart: an upgrade starts with "GET ".
	var first [4]byte
	n, err := io.ReadFull(c.tc, first[:])
	if err != nil {
		c.rest = first[:n]
		if n > 0 && errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
			return nil // too short for either; let the caller see the bytes and EOF
		}
		return fmt.Errorf("outer TLS: %w", err)
	}
	if string(first[:]) != "GET " {
		c.rest = append([]byte(nil), first[:]...)
		return nil
	}
	via, rest, err := serveUpgrade(io.MultiReader(bytes.NewReader(first[:]), c.tc), c.tc)
	if err != nil {
		return err
	}
	c.upgraded, c.via, c.rest = true, via, rest
	return nil
}

// serveUpgrade reads an upgrade request from r, answers it on w, and
// returns the request's Via header and the bytes read past the request.
func serveUpgrade(r io.Reader, w io.Writer) (via string, rest []byte, err error) {
	lr := &io.LimitedReader{R: r, N: MaxUpgradeHeader}
	br := bufio.NewReader(lr)
	req, err := http.ReadRequest(br)
	if err != nil {
		if lr.N == 0 {
			err = fmt.Errorf("longer than %d bytes", MaxUpgradeHeader)
		}
		io.WriteString(w, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return "", nil, fmt.Errorf("outer TLS: bad upgrade request: %w", err)
	}
	key := req.Header.Get("Sec-WebSocket-Key")
	switch {
	case req.Method != http.MethodGet || req.URL.Path != UpgradePath:
		io.WriteString(w, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return "", nil, fmt.Errorf("outer TLS: request for %s, not an upgrade", sanitize(req.URL.Path))
	case !headerHasToken(req.Header, "Upgrade", upgradeProto) || key == "":
		io.WriteString(w, "HTTP/1.1 426 Upgrade Required\r\nUpgrade: "+upgradeProto+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return "", nil, errors.New("outer TLS: request without Upgrade: " + upgradeProto)
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: " + upgradeProto + "\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + acceptKey(key) + "\r\n" +
		"Sec-WebSocket-Protocol: " + ALPN + "\r\n\r\n"
	if _, err := io.WriteString(w, resp); err != nil {
		return "", nil, fmt.Errorf("outer TLS upgrade: %w", err)
	}
	rest = make([]byte, br.Buffered())
	br.Read(rest)
	return sanitize(strings.Join(req.Header.Values("Via"), ", ")), rest, nil
}

// Read reads from the agent.
func (c *ServerConn) Read(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if len(c.rest) > 0 {
		n := copy(b, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.tc.Read(b)
}

// Write writes to the agent.
func (c *ServerConn) Write(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if c.wclosed.Load() {
		return 0, ErrWriteClosed
	}
	return c.tc.Write(b)
}

// Close closes the connection.
func (c *ServerConn) Close() error { return c.tc.Close() }

// CloseWrite sends close_notify; on an upgraded connection it only ends
// writing (see the package doc).
func (c *ServerConn) CloseWrite() error {
	if err := c.Handshake(); err != nil {
		return err
	}
	if c.upgraded {
		c.wclosed.Store(true)
		return nil
	}
	return c.tc.CloseWrite()
}

// LocalAddr returns the local address.
func (c *ServerConn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr returns the agent's (or its proxy's) address.
func (c *ServerConn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline sets both deadlines.
func (c *ServerConn) SetDeadline(t time.Time) error { return c.raw.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (c *ServerConn) SetReadDeadline(t time.Time) error { return c.raw.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *ServerConn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

// NetConn returns the TCP connection beneath (for keep-alive settings).
func (c *ServerConn) NetConn() net.Conn { return c.raw }

// ConnectionState returns the TLS state (valid after Handshake).
func (c *ServerConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// Upgraded reports whether the agent came in through the HTTP upgrade
// (after Handshake), and the request's Via header: a TLS-inspecting proxy
// usually names itself there.
func (c *ServerConn) Upgraded() (upgraded bool, via string) {
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	return c.upgraded, c.via
}
