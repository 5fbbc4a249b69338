// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package noiseconn runs a Noise XX handshake (flynn/noise, X25519,
// AES-GCM, SHA-256) over a net.Conn and returns a net.Conn with half-close.
//
// # Handshakes
//
// Initiate and Respond take a Config: the node's Static (its key.NodePrivate
// parsed once by NewStatic), a prologue, and a Mode. The default Mode,
// Hybrid, is Noise XXpsk3 whose PSK is an ML-KEM-768 shared secret carried
// in the handshake payloads (SuiteHybrid), so the session keys stay secret
// from a recorder who can one day break X25519; Classical is plain XX
// (SuiteClassical). Conn.Suite names the suite in use. Client and Server
// are the older classical entry points with a key.NodePrivate.
//
// Forward secrecy: the only private key kept beyond a handshake is the
// caller's Static. Each handshake's ephemeral X25519 key and ML-KEM
// decapsulation key live in that handshake's own state (no package-level
// cache), and when the handshake ends the ephemeral key bytes that
// flynn/noise holds are zeroed and every reference is dropped.
//
// The library does not authenticate the peer: Initiate's answer callback
// and Respond's caller must check Peer() against what they expect.
//
// # Framing
//
// Every message, handshake or transport, is a uint16 big-endian length
// followed by that many bytes (at most 65535), so a transport frame carries
// at most MaxPlaintext bytes. A frame with an empty plaintext is the
// authenticated end of stream (sent by CloseWrite and Close): Read returns
// io.EOF only after it, and io.ErrUnexpectedEOF when the transport ends
// without it, so a truncation is never mistaken for a clean close. Reset
// ends a connection without it, on purpose.
//
// # Speed
//
// The data path is the product's hot path. Writes encrypt into a pooled
// buffer of batchFrames frames and issue one write per batch; WriteBuffers
// does the same for a gather list (a multiplexer's headers and payloads).
// Reads fill a pooled buffer in large chunks and decrypt frames in place;
// WriteTo hands every frame decrypted from one read to the destination in
// one writev, and NextBatch hands out the decrypted spans of one read
// without a copy. Nothing is allocated per frame. An idle connection holds
// only a small read buffer (a big one is kept only while reads keep
// filling it).
//
// Imported by hub, portal, portal/mux, agent.
package noiseconn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/flynn/noise"

	"github.com/edgeportal/connect/wire/key"
)

// Limits.
const (
	// MaxFrame is the largest message on the wire (the uint16 length).
	MaxFrame = 65535
	// tagLen is the AEAD tag appended to every transport frame.
	tagLen = 16
	// MaxPlaintext is the most plaintext one transport frame carries.
	MaxPlaintext = MaxFrame - tagLen
	// MaxHandshakePayload bounds the application payload of a handshake
	// message (credentials and hellos are a few hundred bytes).
	MaxHandshakePayload = 16 << 10
	// batchFrames is how many full frames one write syscall carries and
	// one read syscall may fill.
	batchFrames = 8
	// bigBufSize holds a batch of frames (512 KiB of plaintext).
	bigBufSize = batchFrames * (2 + MaxFrame)
	// smallBufSize is the read buffer of a quiet connection.
	smallBufSize = 4 << 10
	// maxSpans bounds the spans one NextBatch returns (small frames:
	// a multiplexer's window updates and pings).
	maxSpans = 64
)

var (
	bigPool   = sync.Pool{New: func() any { b := make([]byte, bigBufSize); return &b }}
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
)

// ErrWriteClosed is returned by Write after CloseWrite.
var ErrWriteClosed = errors.New("noiseconn: write after CloseWrite")

// Conn is an established Noise channel.
type Conn struct {
	conn  net.Conn
	peer  key.NodePublic
	hash  []byte
	suite string

	// rmu guards the read side: dec and every field down to wvBuf.
	rmu   sync.Mutex
	dec   *noise.CipherState
	rbuf  *[]byte // nil when no bytes are buffered
	rs    int     // start of undecoded bytes in rbuf
	re    int     // end of bytes in rbuf
	hot   bool    // the last transport read filled more than a small buffer
	plain []byte  // decrypted bytes not yet returned (inside rbuf)
	rerr  error
	// pending is the error of a frame NextBatch met behind the spans it
	// returned: the next read returns it.
	pending error
	wv      net.Buffers // WriteTo's gather list, reused
	wvBuf   [batchFrames + 1][]byte

	// wmu guards the write side: enc, werr, wclosed.
	wmu     sync.Mutex
	enc     *noise.CipherState
	werr    error
	wclosed bool

	closeOnce sync.Once
	closeErr  error
}

func newConn(conn net.Conn, peer key.NodePublic, hash []byte, mode Mode, send, recv *noise.CipherState) *Conn {
	return &Conn{conn: conn, peer: peer, hash: hash, suite: mode.String(), enc: send, dec: recv}
}

func watchCtx(ctx context.Context, conn net.Conn) func() {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-ctx.Done():
			conn.SetDeadline(time.Unix(1, 0))
		case <-stop:
		}
	}()
	return func() {
		close(stop)
		<-done
		conn.SetDeadline(time.Time{})
	}
}

func writeMsg(w io.Writer, msg []byte) error {
	if len(msg) > MaxFrame {
		return fmt.Errorf("handshake message of %d bytes exceeds %d", len(msg), MaxFrame)
	}
	b := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(b, uint16(len(msg)))
	copy(b[2:], msg)
	_, err := w.Write(b)
	return err
}

// readMsg reads one handshake message of at most max bytes (0: MaxFrame);
// a longer one is refused before anything is allocated for it.
func readMsg(r io.Reader, max int) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(h[:]))
	if max > 0 && n > max {
		return nil, fmt.Errorf("handshake message of %d bytes exceeds this side's limit of %d", n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("noise handshake: %w", ctx.Err())
	}
	return fmt.Errorf("noise handshake: %w", err)
}

// Peer returns the peer's static key, proven by the handshake.
func (c *Conn) Peer() key.NodePublic { return c.peer }

// HandshakeHash returns the Noise handshake hash (channel binding).
func (c *Conn) HandshakeHash() []byte { return c.hash }

// Suite returns the name of the suite the handshake ran (SuiteHybrid or
// SuiteClassical), for status, logs and metrics.
func (c *Conn) Suite() string { return c.suite }

// fill reads more bytes from the transport into rbuf until at least need
// undecoded bytes are buffered. rmu held, c.plain empty.
func (c *Conn) fill(need int) error {
	if c.rbuf == nil {
		if c.hot {
			c.rbuf = bigPool.Get().(*[]byte)
		} else {
			c.rbuf = smallPool.Get().(*[]byte)
		}
		c.rs, c.re = 0, 0
	}
	buf := *c.rbuf
	if c.rs == c.re {
		c.rs, c.re = 0, 0
	}
	if need > len(buf)-c.rs || (c.rs > 0 && len(buf)-c.re < 2*(2+MaxFrame) && len(buf) == bigBufSize) {
		if need > len(buf) {
			// Grow to the big buffer for large frames (bulk data).
			big := bigPool.Get().(*[]byte)
			copy(*big, buf[c.rs:c.re])
			c.putRbuf()
			c.rbuf = big
			c.re -= c.rs
			c.rs = 0
			buf = *big
		} else {
			copy(buf, buf[c.rs:c.re])
			c.re -= c.rs
			c.rs = 0
		}
	}
	for c.re-c.rs < need {
		n, err := c.conn.Read(buf[c.re:])
		c.re += n
		c.hot = n > smallBufSize
		if err != nil {
			if c.re-c.rs >= need {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

func (c *Conn) putRbuf() {
	if c.rbuf == nil {
		return
	}
	if len(*c.rbuf) == bigBufSize {
		bigPool.Put(c.rbuf)
	} else {
		smallPool.Put(c.rbuf)
	}
	c.rbuf = nil
}

// readFrame decrypts the next frame in place into c.plain, reading from
// the transport only when no complete frame is buffered. rmu held.
func (c *Conn) readFrame() error {
	if err := c.pending; err != nil {
		c.pending = nil
		return err
	}
	if err := c.fill(2); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint16((*c.rbuf)[c.rs:]))
	if n < tagLen {
		return fmt.Errorf("noiseconn: short frame (%d bytes)", n)
	}
	if err := c.fill(2 + n); err != nil {
		return err
	}
	return c.decryptBuffered(n)
}

// decryptBuffered decrypts the buffered frame of n bytes at rs. rmu held.
func (c *Conn) decryptBuffered(n int) error {
	buf := *c.rbuf
	frame := buf[c.rs+2 : c.rs+2+n]
	pt, err := c.dec.Decrypt(frame[:0], nil, frame)
	if err != nil {
		return fmt.Errorf("noiseconn: frame failed authentication: %w", err)
	}
	c.rs += 2 + n
	if len(pt) == 0 {
		return io.EOF
	}
	c.plain = pt
	return nil
}

// bufferedFrame returns the length of the next frame if it is complete in
// rbuf, else -1. rmu held.
func (c *Conn) bufferedFrame() int {
	if c.rbuf == nil || c.re-c.rs < 2 {
		return -1
	}
	n := int(binary.BigEndian.Uint16((*c.rbuf)[c.rs:]))
	if n < tagLen || c.re-c.rs < 2+n {
		return -1
	}
	return n
}

// releaseIfIdle gives the read buffer back when nothing is buffered and
// the transport is quiet.
func (c *Conn) releaseIfIdle() {
	if len(c.plain) == 0 && c.rbuf != nil && c.rs == c.re && !c.hot {
		c.putRbuf()
	}
}

func (c *Conn) readErr(err error) error {
	c.rerr = err
	if err != io.EOF {
		c.conn.Close()
	}
	c.plain = nil
	c.putRbuf()
	return err
}

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.plain) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if err := c.readFrame(); err != nil {
			return 0, c.readErr(err)
		}
	}
	n := copy(p, c.plain)
	c.plain = c.plain[n:]
	c.releaseIfIdle()
	return n, nil
}

// NextBatch appends to dst the decrypted span of the next frame and of
// every complete frame buffered behind it (at most maxSpans spans, each
// at most MaxPlaintext bytes), reading from the transport only when no
// complete frame is buffered, and returns dst: the bytes of one transport
// read without a copy. The spans are valid only until the next call of
// NextBatch, Read or WriteTo. At the authenticated end of stream it
// returns io.EOF; any other error is final. A frame behind the first that
// fails, or ends the stream, ends the batch: its error comes with the next
// call. NextBatch must not be mixed with a concurrent Read.
func (c *Conn) NextBatch(dst [][]byte) ([][]byte, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.releaseIfIdle()
	for len(c.plain) == 0 {
		if c.rerr != nil {
			return dst, c.rerr
		}
		if err := c.readFrame(); err != nil {
			return dst, c.readErr(err)
		}
	}
	dst = append(dst, c.plain)
	c.plain = nil
	for k := 1; k < maxSpans; k++ {
		n := c.bufferedFrame()
		if n < 0 {
			break
		}
		if err := c.decryptBuffered(n); err != nil {
			c.pending = err
			break
		}
		dst = append(dst, c.plain)
		c.plain = nil
	}
	return dst, nil
}

// WriteTo writes the decrypted stream to w until the authenticated end of
// stream (then it returns nil) or an error. Every frame that one
// transport read completes goes to w in one write (writev on a socket).
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	var total int64
	for {
		if len(c.plain) == 0 && c.rerr == nil {
			if err := c.readFrame(); err != nil {
				c.readErr(err)
			}
		}
		// Gather this frame and every complete frame behind it.
		c.wv = c.wvBuf[:0]
		if len(c.plain) > 0 {
			c.wv = append(c.wv, c.plain)
			c.plain = nil
		}
		var ferr error // ends the stream once the gathered bytes are out
		for c.rerr == nil && len(c.wv) < len(c.wvBuf) {
			n := c.bufferedFrame()
			if n < 0 {
				break
			}
			if ferr = c.decryptBuffered(n); ferr != nil {
				break
			}
			c.wv = append(c.wv, c.plain)
			c.plain = nil
		}
		if len(c.wv) > 0 {
			n, err := c.wv.WriteTo(w)
			total += n
			clear(c.wvBuf[:])
			if err != nil {
				if c.rerr == nil {
					c.readErr(err)
				}
				return total, err
			}
		}
		if ferr != nil {
			c.readErr(ferr)
		}
		if c.rerr != nil {
			if c.rerr == io.EOF {
				return total, nil
			}
			return total, c.rerr
		}
	}
}

// Write implements net.Conn.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	v := [1][]byte{p}
	n, err := c.writeLocked(v[:])
	return int(n), err
}

// WriteBuffers writes the concatenation of bufs as one stream of bytes:
// it fills whole frames across buffer boundaries and issues one transport
// write per batch. It is what a multiplexer uses to send many small
// headers and payloads in few frames and syscalls.
func (c *Conn) WriteBuffers(bufs [][]byte) (int64, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(bufs)
}

func (c *Conn) writeLocked(bufs [][]byte) (int64, error) {
	if c.wclosed {
		return 0, ErrWriteClosed
	}
	if c.werr != nil {
		return 0, c.werr
	}
	bp := bigPool.Get().(*[]byte)
	defer bigPool.Put(bp)
	buf := *bp
	var n int64
	bi, off := 0, 0 // position in bufs
	for bi < len(bufs) && len(bufs[bi]) == 0 {
		bi++
	}
	for bi < len(bufs) {
		out := buf[:0]
		for bi < len(bufs) && len(out)+2+MaxFrame <= len(buf) {
			out = append(out, 0, 0)
			start := len(out)
			// Fast path: a whole frame from one buffer, sealed from it.
			var pt []byte
			if len(bufs[bi])-off >= MaxPlaintext || bi == len(bufs)-1 {
				pt = bufs[bi][off:min(len(bufs[bi]), off+MaxPlaintext)]
				off += len(pt)
			} else {
				// Gather pieces into place, then seal in place.
				for bi < len(bufs) && len(out)-start < MaxPlaintext {
					k := copy(buf[len(out):start+MaxPlaintext], bufs[bi][off:])
					out = out[:len(out)+k]
					off += k
					if off == len(bufs[bi]) {
						bi, off = bi+1, 0
					}
				}
				pt = out[start:]
				out = out[:start]
			}
			for bi < len(bufs) && off == len(bufs[bi]) {
				bi, off = bi+1, 0
			}
			var err error
			out, err = c.enc.Encrypt(out, nil, pt)
			if err != nil {
				c.werr = err
				return n, err
			}
			binary.BigEndian.PutUint16(out[start-2:], uint16(len(out)-start))
			n += int64(len(out) - start - tagLen)
		}
		if _, err := c.conn.Write(out); err != nil {
			c.werr = err
			return n, err
		}
	}
	return n, nil
}

// ReadFrom reads r until EOF in large chunks and sends it. It does not
// CloseWrite at EOF; the caller does.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	bp := bigPool.Get().(*[]byte)
	defer bigPool.Put(bp)
	buf := (*bp)[:batchFrames*MaxPlaintext]
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// endFrame is the authenticated end of stream. wmu held.
func (c *Conn) endFrame() ([]byte, error) {
	var b [2 + tagLen]byte
	out, err := c.enc.Encrypt(b[:2], nil, nil)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint16(out, uint16(len(out)-2))
	return out, nil
}

// CloseWrite sends the authenticated end of stream; the peer's Read
// returns io.EOF there. The transport itself is not half-closed: a FIN
// through the relay or an HTTP proxy (squid tears a CONNECT tunnel down
// both ways on one) would cut the other direction, which is still in use.
// A transport that ends is therefore always the end of the connection.
func (c *Conn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed {
		return nil
	}
	if c.werr != nil {
		return c.werr
	}
	out, err := c.endFrame()
	if err != nil {
		return err
	}
	c.wclosed = true
	if _, err := c.conn.Write(out); err != nil {
		c.werr = err
		return err
	}
	return nil
}

// Close closes the connection, sending the end of stream first when no
// write is in progress.
func (c *Conn) Close() error { return c.close(true) }

// Reset closes the connection without the authenticated end of stream
// (and, on TCP, with a reset), so the peer sees an error, never a clean
// end. Use it when the bytes this side was relaying were cut.
func (c *Conn) Reset() error { return c.close(false) }

func (c *Conn) close(clean bool) error {
	c.closeOnce.Do(func() {
		if c.wmu.TryLock() {
			if clean && !c.wclosed && c.werr == nil {
				c.conn.SetWriteDeadline(time.Now().Add(time.Second))
				if out, err := c.endFrame(); err == nil {
					c.conn.Write(out)
				}
			}
			c.wclosed = true
			c.wmu.Unlock()
		}
		if !clean {
			if l, ok := c.conn.(interface{ SetLinger(int) error }); ok {
				l.SetLinger(0)
			}
		}
		c.closeErr = c.conn.Close()
		if c.rmu.TryLock() {
			// The buffer is dropped, not pooled: spans NextBatch lent out
			// may still be in use by the reader, which is between calls.
			c.plain = nil
			c.rbuf = nil
			if c.rerr == nil {
				c.rerr = net.ErrClosed
			}
			c.rmu.Unlock()
		}
	})
	return c.closeErr
}

// LocalAddr implements net.Conn.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr implements net.Conn.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
