// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package outer

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// tlsRecordHandshake is the first byte of every TLS connection (a
// handshake record); the hub protocol's preface starts with 'E'.
const tlsRecordHandshake = 0x16

// NewDualListener wraps a TCP listener so that each accepted connection
// is told apart by its first byte: TLS (then served as by NewListener)
// or the plain hub protocol. One port then serves nodes that must come
// through TLS-only firewalls and those (and the authority) that connect
// directly. Accept does not wait for the byte: the first Read does, under
// the deadline the caller set, so a silent client holds nothing but its
// own connection.
func NewDualListener(inner net.Listener, cfg *tls.Config) net.Listener {
	return &dualListener{Listener: inner, cfg: cfg}
}

type dualListener struct {
	net.Listener
	cfg *tls.Config
}

func (l *dualListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &DualConn{raw: c, cfg: l.cfg}, nil
}

// DualConn is a connection from NewDualListener, TLS or plain by its
// first byte.
type DualConn struct {
	raw net.Conn
	cfg *tls.Config

	mu    sync.Mutex // guards the fields below; held while the first byte is read
	inner net.Conn   // *ServerConn, or plain (raw with the byte put back); nil until decided
	err   error
}

// decide reads the first byte (once) and picks the form.
func (c *DualConn) decide() (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner != nil || c.err != nil {
		return c.inner, c.err
	}
	var b [1]byte
	if _, err := c.raw.Read(b[:]); err != nil {
		c.err = err
		return nil, err
	}
	p := &prefixed{Conn: c.raw, rest: b[:]}
	if b[0] == tlsRecordHandshake {
		c.inner = &ServerConn{raw: c.raw, tc: tls.Server(p, c.cfg)}
	} else {
		c.inner = p
	}
	return c.inner, nil
}

// IsTLS reports whether the connection turned out to be TLS (false
// before the first Read).
func (c *DualConn) IsTLS() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.inner.(*ServerConn)
	return ok
}

// Plain returns the TCP connection beneath when the connection turned
// out plain and the first byte was read back, so a relay can splice it
// in the kernel; otherwise nil.
func (c *DualConn) Plain() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.inner.(*prefixed); ok && len(p.rest) == 0 {
		return c.raw
	}
	return nil
}

// Plain returns c's TCP connection when c is a plain DualConn whose
// first byte was consumed, else c itself.
func Plain(c net.Conn) net.Conn {
	if d, ok := c.(*DualConn); ok {
		if raw := d.Plain(); raw != nil {
			return raw
		}
	}
	return c
}

func (c *DualConn) Read(b []byte) (int, error) {
	in, err := c.decide()
	if err != nil {
		return 0, err
	}
	return in.Read(b)
}

func (c *DualConn) Write(b []byte) (int, error) {
	in, err := c.decide()
	if err != nil {
		return 0, err
	}
	return in.Write(b)
}

// CloseWrite ends writing as the form does (close_notify for TLS, a FIN
// for plain TCP).
func (c *DualConn) CloseWrite() error {
	in, err := c.decide()
	if err != nil {
		return err
	}
	if cw, ok := in.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close closes the connection.
func (c *DualConn) Close() error { return c.raw.Close() }

// LocalAddr returns the local address.
func (c *DualConn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr returns the peer's address.
func (c *DualConn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline sets both deadlines.
func (c *DualConn) SetDeadline(t time.Time) error { return c.raw.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (c *DualConn) SetReadDeadline(t time.Time) error { return c.raw.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *DualConn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

// prefixed is a connection with bytes already read put back in front.
type prefixed struct {
	net.Conn
	rest []byte
}

func (p *prefixed) Read(b []byte) (int, error) {
	if len(p.rest) > 0 {
		n := copy(b, p.rest)
		p.rest = p.rest[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// CloseWrite half-closes the TCP connection beneath.
func (p *prefixed) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
