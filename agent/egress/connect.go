// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package egress

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"unicode/utf8"
)

// MaxConnectResponse bounds the proxy's answer to CONNECT (status line and
// headers; the body of a refusal is not read).
const MaxConnectResponse = 16 << 10

// connectRequest is the CONNECT request for addr.
func connectRequest(addr, userAgent string, cred *credentials) []byte {
	var b strings.Builder
	b.WriteString("CONNECT " + addr + " HTTP/1.1\r\nHost: " + addr + "\r\n")
	if userAgent != "" {
		b.WriteString("User-Agent: " + userAgent + "\r\n")
	}
	if cred != nil {
		b.WriteString("Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(cred.user+":"+cred.password)) + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// connectResponse is what the proxy answered.
type connectResponse struct {
	status int
	line   string // "407 Proxy Authentication Required", sanitised
	header http.Header
	rest   []byte // bytes past the headers of a 2xx (the tunnel's first bytes)
}

// readConnectResponse reads the proxy's answer to CONNECT.
func readConnectResponse(r io.Reader) (*connectResponse, error) {
	lr := &io.LimitedReader{R: r, N: MaxConnectResponse}
	br := bufio.NewReader(lr)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		if lr.N == 0 {
			return nil, fmt.Errorf("answer to CONNECT longer than %d bytes", MaxConnectResponse)
		}
		return nil, err
	}
	cr := &connectResponse{status: resp.StatusCode, line: sanitize(resp.Status), header: resp.Header}
	if resp.StatusCode/100 == 2 {
		cr.rest = make([]byte, br.Buffered())
		br.Read(cr.rest)
	}
	return cr, nil
}

// connect asks the proxy on c (at proxyAddr) for a tunnel to the hub at
// addr. On error c is left for the caller to close.
func (d *Dialer) connect(c net.Conn, proxyAddr, addr string) (net.Conn, error) {
	cred := d.cred
	if _, err := c.Write(connectRequest(addr, d.o.UserAgent, cred)); err != nil {
		return nil, &HopError{Hop: HopProxy, Addr: proxyAddr, Reason: "failed while sending CONNECT", Err: err}
	}
	resp, err := readConnectResponse(c)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			return nil, &HopError{Hop: HopProxy, Addr: proxyAddr, Reason: "closed the connection before answering CONNECT", Err: err}
		}
		return nil, &HopError{Hop: HopProxy, Addr: proxyAddr, Reason: "sent a bad answer to CONNECT", Err: err}
	}
	if resp.status/100 == 2 {
		return &tunnelConn{Conn: c, rest: resp.rest, hub: addr, proxy: proxyAddr}, nil
	}
	e := &HopError{Hop: HopProxy, Addr: proxyAddr, Status: resp.status, CredentialsSent: cred != nil}
	if cred != nil {
		e.AuthSource = cred.source
	}
	refused := fmt.Sprintf("refused CONNECT to %s with %s", addr, resp.line)
	if detail := sanitize(resp.header.Get("X-Squid-Error")); detail != "" {
		refused += " (" + detail + ")"
	}
	switch resp.status {
	case http.StatusProxyAuthRequired:
		chs := parseChallenges(resp.header.Values("Proxy-Authenticate"))
		basic := false
		for _, ch := range chs {
			e.Schemes = append(e.Schemes, ch.scheme)
			if strings.EqualFold(ch.scheme, "basic") {
				basic = true
				e.Realm = ch.realm
			}
		}
		e.Reason = refused
		if e.Realm != "" {
			e.Reason += fmt.Sprintf(" (realm %q)", e.Realm)
		}
		switch {
		case !basic && len(chs) > 0:
			e.Hint = "the proxy offers only " + strings.Join(e.Schemes, ", ") + " authentication, which is not supported; ask for Basic"
		case cred != nil:
			e.Hint = "it refused the credentials from " + cred.source
		default:
			e.Hint = "no credentials were sent; put user:password in a proxy-auth-file"
		}
	case http.StatusForbidden:
		e.Reason = refused
		e.Hint = "its rules do not allow this destination; ask for CONNECT to " + addr + " to be allowed"
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return nil, &HopError{Hop: HopHub, Addr: addr, Via: proxyAddr, Status: resp.status,
			Reason: "unreachable through proxy " + proxyAddr, Err: errors.New("the proxy answered " + strings.TrimPrefix(refused, "refused CONNECT to "+addr+" with "))}
	default:
		e.Reason = refused
	}
	return nil, e
}

// challenge is one challenge of a Proxy-Authenticate header.
type challenge struct {
	scheme string
	realm  string // printable, bounded
}

// maxChallenges bounds how many challenges parseChallenges keeps.
const maxChallenges = 16

// parseChallenges parses Proxy-Authenticate values (RFC 9110 §11.6.1:
// `scheme [token68 | param=value, …]`, several per header, commas between
// both challenges and parameters).
func parseChallenges(values []string) []challenge {
	var out []challenge
	for _, v := range values {
		s := v
		cur := -1
		for len(out) < maxChallenges {
			s = strings.TrimLeft(s, " \t,")
			if s == "" {
				break
			}
			tok, rest := readToken(s)
			if tok == "" {
				s = s[1:] // not a token character: skip it
				continue
			}
			r := strings.TrimLeft(rest, " \t")
			if cur >= 0 && strings.HasPrefix(r, "=") {
				if t := strings.TrimLeft(strings.TrimLeft(r, "="), " \t"); t == "" || t[0] == ',' {
					s = t // token68 (e.g. "abc=="): belongs to the current challenge
					continue
				}
				r = strings.TrimLeft(r[1:], " \t")
				var val string
				if strings.HasPrefix(r, `"`) {
					val, r = readQuoted(r)
				} else {
					val, r = readToken(r)
				}
				if strings.EqualFold(tok, "realm") && out[cur].realm == "" {
					out[cur].realm = printable(val)
				}
				s = r
				continue
			}
			out = append(out, challenge{scheme: tok})
			cur = len(out) - 1
			s = rest
		}
	}
	return out
}

// printable drops control characters and invalid UTF-8 from s and
// bounds its length; error messages then quote it with %q.
func printable(s string) string {
	const max = 100
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "…"
	}
	return s
}

// readToken reads an RFC 9110 token from the start of s.
func readToken(s string) (tok, rest string) {
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func isTokenChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// readQuoted reads a quoted-string (s starts with the quote), unescaping
// backslash pairs. An unterminated string runs to the end.
func readQuoted(s string) (val, rest string) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), s[i+1:]
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), ""
}

// tunnelConn is a connection through a proxy's CONNECT tunnel. It serves
// bytes the proxy sent right after its answer first, and turns an end of
// the tunnel before the hub sent anything into a HopError that says so.
//
// Its CloseWrite does not half-close the TCP connection to the proxy:
// proxies such as squid 5 answer a half-close by closing the whole
// tunnel, which would cut off what the hub still has to send. It only
// ends writing; the protocols on top carry their own end of stream
// (noiseconn's authenticated empty frame, TLS close_notify), which the
// proxy passes on like any other bytes.
type tunnelConn struct {
	net.Conn
	rest       []byte
	answered   atomic.Bool
	wclosed    atomic.Bool
	hub, proxy string
}

// errWriteClosed is returned by Write after CloseWrite.
var errWriteClosed = errors.New("egress: write after CloseWrite")

func (c *tunnelConn) Read(b []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(b, c.rest)
		c.rest = c.rest[n:]
		c.answered.Store(true)
		return n, nil
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.answered.Store(true)
	} else if err != nil && !c.answered.Load() && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		return 0, &HopError{Hop: HopHub, Addr: c.hub, Via: c.proxy,
			Reason: "closed the tunnel through proxy " + c.proxy + " before sending anything (the proxy may have failed to reach it)", Err: err}
	}
	return n, err
}

func (c *tunnelConn) Write(b []byte) (int, error) {
	if c.wclosed.Load() {
		return 0, errWriteClosed
	}
	return c.Conn.Write(b)
}

// CloseWrite ends writing without a TCP half-close (see tunnelConn).
func (c *tunnelConn) CloseWrite() error {
	c.wclosed.Store(true)
	return nil
}
