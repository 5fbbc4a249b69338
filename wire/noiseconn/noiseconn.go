// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package noiseconn owns the encrypted channel of the system: Noise XX
// (Noise_XX_25519_AESGCM_SHA256, flynn/noise) over a net.Conn, returning a
// net.Conn with authenticated half-close.
//
// Every message, handshake or transport, is a uint16 big-endian length
// followed by that many bytes (at most MaxFrame), so a transport frame
// carries at most MaxPlaintext bytes. A frame with an empty plaintext is the
// authenticated end of stream (sent by CloseWrite, and best effort by
// Close): Read returns io.EOF only after it, and io.ErrUnexpectedEOF when
// the transport ends without it, so a truncation is never mistaken for a
// clean close. A frame that fails authentication is fatal: the Conn closes
// the transport and returns the error forever.
//
// The package does not authenticate the peer: Client's respond callback and
// Server's caller must check the peer's static key against what they expect.
//
// This is the product's data path. Writes encrypt into a pooled buffer that
// holds several frames and issue one transport write per batch. Reads fill a
// pooled buffer in large chunks and decrypt frames in place. WriteTo and
// ReadFrom let io.Copy skip the intermediate copy. Idle connections hold at
// most a small read buffer; the large ones go back to a sync.Pool.
//
// It imports only the standard library, flynn/noise and wire/key, and may be
// imported by any package that speaks to the hub or to another node (hub,
// portal, agent).
package noiseconn

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flynn/noise"

	"github.com/edgeportal/connect/wire/key"
)

// Limits of the wire format.
const (
	// MaxFrame is the largest message on the wire: its length is a uint16.
	MaxFrame = 65535
	// TagSize is the AEAD tag that ends every transport frame.
	TagSize = 16
	// MaxPlaintext is the most plaintext one transport frame carries.
	MaxPlaintext = MaxFrame - TagSize
	// MaxHandshakePayload bounds the payload of a handshake message.
	// Hellos and credentials are a few hundred bytes; a peer that sends
	// more is refused before its message is read.
	MaxHandshakePayload = 16 << 10
	// maxHandshakeMsg is the largest XX message with such a payload:
	// ephemeral key (32) + encrypted static key (32+16) + payload tag (16).
	maxHandshakeMsg = MaxHandshakePayload + 32 + 32 + TagSize + TagSize
)

// Buffer sizes of the data path.
const (
	// batchSize is the most plaintext one transport write carries (and
	// ReadFrom reads at once): a 256 KiB application write is one syscall.
	batchSize = 256 << 10
	// maxBatchFrames is the number of frames a batch splits into.
	maxBatchFrames = (batchSize + MaxPlaintext - 1) / MaxPlaintext
	// bigBufSize holds a batch with its headers and tags, or, on the read
	// side, a partial frame followed by a full batch read.
	bigBufSize = batchSize + 2 + MaxFrame
	// smallBufSize is the read buffer of a connection carrying small
	// messages. A transport read that returns at least half of it switches
	// the connection to a big buffer.
	smallBufSize = 8 << 10
	// maxGather bounds the frames WriteTo hands to one (vectored) write.
	maxGather = 16
	// closeMarkerTimeout bounds how long Close waits to send the end of
	// stream marker.
	closeMarkerTimeout = 100 * time.Millisecond
)

var (
	bigPool   = sync.Pool{New: func() any { b := make([]byte, bigBufSize); return &b }}
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
	// staticPool caches parsed static keys across handshakes (a node or the
	// hub uses one static key for all of them). An entry for another key is
	// simply replaced; the pool may drop entries at any GC.
	staticPool sync.Pool // of *staticEntry
)

// ErrWriteClosed is returned by Write and ReadFrom after CloseWrite or Close.
var ErrWriteClosed = errors.New("noiseconn: write after CloseWrite")

// errShortFrame reports a transport frame too short to hold its tag.
var errShortFrame = errors.New("noiseconn: transport frame shorter than its tag")

// aesGCM is Noise's AESGCM cipher (nonce: 32 zero bits then the 64-bit
// big-endian counter) with the nonce built in a per-cipher array, so that
// sealing or opening a frame allocates nothing. Each Cipher belongs to one
// CipherState, used under one mutex.
type aesGCM struct{}

func (aesGCM) CipherName() string { return "AESGCM" }

func (aesGCM) Cipher(k [32]byte) noise.Cipher {
	b, err := aes.NewCipher(k[:])
	if err != nil {
		panic("noiseconn: " + err.Error()) // impossible: the key is 32 bytes
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic("noiseconn: " + err.Error())
	}
	return &gcmCipher{aead: g}
}

type gcmCipher struct {
	aead  cipher.AEAD
	nonce [12]byte
}

func (c *gcmCipher) Encrypt(out []byte, n uint64, ad, plaintext []byte) []byte {
	binary.BigEndian.PutUint64(c.nonce[4:], n)
	return c.aead.Seal(out, c.nonce[:], plaintext, ad)
}

func (c *gcmCipher) Decrypt(out []byte, n uint64, ad, ciphertext []byte) ([]byte, error) {
	binary.BigEndian.PutUint64(c.nonce[4:], n)
	return c.aead.Open(out, c.nonce[:], ciphertext, ad)
}

// staticEntry is a parsed static key.
type staticEntry struct {
	raw [32]byte
	sk  *ecdh.PrivateKey
	pub []byte
}

func parseStatic(k key.NodePrivate) (*staticEntry, error) {
	raw := k.Raw32()
	if e, _ := staticPool.Get().(*staticEntry); e != nil && subtle.ConstantTimeCompare(e.raw[:], raw[:]) == 1 {
		staticPool.Put(e)
		return e, nil
	}
	sk, err := ecdh.X25519().NewPrivateKey(raw[:])
	if err != nil {
		return nil, fmt.Errorf("noiseconn: static key: %w", err)
	}
	e := &staticEntry{raw: raw, sk: sk, pub: sk.PublicKey().Bytes()}
	staticPool.Put(e)
	return e, nil
}

// dh25519 is X25519 on crypto/ecdh that keeps the parsed static and
// ephemeral private keys of one handshake, so each DH is one scalar
// multiplication (x/crypto's curve25519 re-derives the public key on every
// call, which doubles the cost). Its DHName is "25519", so the protocol
// name is the standard one. One value serves one handshake.
type dh25519 struct {
	static *staticEntry
	eph    *ecdh.PrivateKey
	ephRaw []byte
}

func (d *dh25519) GenerateKeypair(rng io.Reader) (noise.DHKey, error) {
	sk, err := ecdh.X25519().GenerateKey(rng)
	if err != nil {
		return noise.DHKey{}, err
	}
	d.eph, d.ephRaw = sk, sk.Bytes()
	return noise.DHKey{Private: d.ephRaw, Public: sk.PublicKey().Bytes()}, nil
}

func (d *dh25519) DH(priv, pub []byte) ([]byte, error) {
	var sk *ecdh.PrivateKey
	switch {
	case d.static != nil && subtle.ConstantTimeCompare(priv, d.static.raw[:]) == 1:
		sk = d.static.sk
	case d.eph != nil && subtle.ConstantTimeCompare(priv, d.ephRaw) == 1:
		sk = d.eph
	default:
		var err error
		if sk, err = ecdh.X25519().NewPrivateKey(priv); err != nil {
			return nil, err
		}
	}
	pk, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return sk.ECDH(pk) // rejects low-order points
}

func (*dh25519) DHLen() int     { return 32 }
func (*dh25519) DHName() string { return "25519" }

func newHandshake(static key.NodePrivate, prologue []byte, initiator bool) (*noise.HandshakeState, error) {
	if static.IsZero() {
		return nil, errors.New("noiseconn: zero static key")
	}
	st, err := parseStatic(static)
	if err != nil {
		return nil, err
	}
	dh := &dh25519{static: st}
	return noise.NewHandshakeState(noise.Config{
		CipherSuite:   noise.NewCipherSuite(dh, aesGCM{}, noise.HashSHA256),
		Pattern:       noise.HandshakeXX,
		Initiator:     initiator,
		StaticKeypair: noise.DHKey{Private: st.raw[:], Public: st.pub},
		Prologue:      prologue,
	})
}

// aLongTimeAgo is a deadline in the past, to interrupt blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// handshakeCtx applies ctx to conn for the duration of a handshake: its
// deadline becomes the conn deadline and cancellation interrupts blocked
// I/O. finish clears what it set and turns err into a context error when
// ctx ended.
type handshakeCtx struct {
	ctx  context.Context
	conn net.Conn
	stop func() bool
	set  bool
}

func startHandshake(ctx context.Context, conn net.Conn) *handshakeCtx {
	h := &handshakeCtx{ctx: ctx, conn: conn}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
		h.set = true
	}
	if ctx.Done() != nil {
		h.set = true
		h.stop = context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	}
	return h
}

func (h *handshakeCtx) finish(err error) error {
	if h.stop != nil && !h.stop() {
		// ctx ended: its AfterFunc ran or is running, so the conn may be
		// left with a past deadline. Fail even if the handshake finished.
		err = h.ctx.Err()
	} else if err != nil && h.ctx.Err() != nil {
		err = h.ctx.Err()
	}
	if h.set {
		h.conn.SetDeadline(time.Time{})
	}
	if err != nil {
		return fmt.Errorf("noise handshake: %w", err)
	}
	return nil
}

// writeHandshake sends one handshake message with its length header.
func writeHandshake(conn net.Conn, hs *noise.HandshakeState, payload []byte) (send, recv *noise.CipherState, err error) {
	if len(payload) > MaxHandshakePayload {
		return nil, nil, fmt.Errorf("payload of %d bytes exceeds %d", len(payload), MaxHandshakePayload)
	}
	out := make([]byte, 2, 2+maxHandshakeMsg)
	out, send, recv, err = hs.WriteMessage(out, payload)
	if err != nil {
		return nil, nil, err
	}
	binary.BigEndian.PutUint16(out, uint16(len(out)-2))
	_, err = conn.Write(out)
	return send, recv, err
}

// readHandshake reads one handshake message, refusing one longer than a
// handshake message with a MaxHandshakePayload payload before reading it.
func readHandshake(conn net.Conn, hs *noise.HandshakeState) (payload []byte, cs1, cs2 *noise.CipherState, err error) {
	var h [2]byte
	if _, err := io.ReadFull(conn, h[:]); err != nil {
		return nil, nil, nil, err
	}
	n := int(binary.BigEndian.Uint16(h[:]))
	if n > maxHandshakeMsg {
		return nil, nil, nil, fmt.Errorf("handshake message of %d bytes exceeds %d", n, maxHandshakeMsg)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(conn, msg); err != nil {
		return nil, nil, nil, err
	}
	payload, cs1, cs2, err = hs.ReadMessage(nil, msg)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(payload) > MaxHandshakePayload {
		return nil, nil, nil, fmt.Errorf("payload of %d bytes exceeds %d", len(payload), MaxHandshakePayload)
	}
	return payload, cs1, cs2, nil
}

// Client runs the initiator side of Noise XX over conn. Message 1 carries
// no payload. After message 2 it calls respond with the responder's static
// key and the payload the responder sent in message 2; respond returns the
// payload for message 3, or an error that aborts the handshake (returned
// as is). The handshake obeys ctx: its deadline and cancellation apply to
// conn and the deadlines are cleared when the handshake ends. On error the
// caller closes conn.
func Client(ctx context.Context, conn net.Conn, static key.NodePrivate, prologue []byte, respond func(peer key.NodePublic, payload []byte) ([]byte, error)) (*Conn, error) {
	hs, err := newHandshake(static, prologue, true)
	if err != nil {
		return nil, err
	}
	h := startHandshake(ctx, conn)
	c, err := client(conn, hs, respond)
	if err != nil {
		var re *respondError
		if errors.As(err, &re) {
			h.finish(nil)
			return nil, re.err
		}
		return nil, h.finish(err)
	}
	if err := h.finish(nil); err != nil {
		return nil, err
	}
	return c, nil
}

// respondError carries the respond callback's error through unchanged.
type respondError struct{ err error }

func (e *respondError) Error() string { return e.err.Error() }

func client(conn net.Conn, hs *noise.HandshakeState, respond func(key.NodePublic, []byte) ([]byte, error)) (*Conn, error) {
	if _, _, err := writeHandshake(conn, hs, nil); err != nil {
		return nil, err
	}
	payload2, _, _, err := readHandshake(conn, hs)
	if err != nil {
		return nil, err
	}
	peer, err := key.NodePublicFromRaw32(hs.PeerStatic())
	if err != nil {
		return nil, err
	}
	payload3, err := respond(peer, payload2)
	if err != nil {
		return nil, &respondError{err}
	}
	send, recv, err := writeHandshake(conn, hs, payload3)
	if err != nil {
		return nil, err
	}
	return newConn(conn, peer, hs.ChannelBinding(), send, recv), nil
}

// Server runs the responder side of Noise XX over conn; payload2 is sent,
// encrypted, in message 2. It returns the initiator's payload from message
// 3; the caller checks Peer() and that payload. The handshake obeys ctx as
// in Client. On error the caller closes conn.
func Server(ctx context.Context, conn net.Conn, static key.NodePrivate, prologue []byte, payload2 []byte) (*Conn, []byte, error) {
	if len(payload2) > MaxHandshakePayload {
		return nil, nil, fmt.Errorf("noise handshake: payload of %d bytes exceeds %d", len(payload2), MaxHandshakePayload)
	}
	hs, err := newHandshake(static, prologue, false)
	if err != nil {
		return nil, nil, err
	}
	h := startHandshake(ctx, conn)
	c, payload3, err := server(conn, hs, payload2)
	if err := h.finish(err); err != nil {
		return nil, nil, err
	}
	return c, payload3, nil
}

func server(conn net.Conn, hs *noise.HandshakeState, payload2 []byte) (*Conn, []byte, error) {
	payload1, _, _, err := readHandshake(conn, hs)
	if err != nil {
		return nil, nil, err
	}
	if len(payload1) != 0 {
		return nil, nil, errors.New("message 1 carries a payload")
	}
	if _, _, err := writeHandshake(conn, hs, payload2); err != nil {
		return nil, nil, err
	}
	payload3, recv, send, err := readHandshake(conn, hs)
	if err != nil {
		return nil, nil, err
	}
	if recv == nil || send == nil {
		return nil, nil, errors.New("handshake did not complete")
	}
	peer, err := key.NodePublicFromRaw32(hs.PeerStatic())
	if err != nil {
		return nil, nil, err
	}
	return newConn(conn, peer, hs.ChannelBinding(), send, recv), payload3, nil
}

// Conn is an established Noise channel. It implements net.Conn; one
// goroutine may read while another writes.
type Conn struct {
	conn net.Conn
	peer key.NodePublic
	hash []byte

	rmu   sync.Mutex
	dec   *noise.CipherState
	rbuf  *[]byte // nil when nothing is buffered and the conn is quiet
	rs    int     // start of the bytes not yet decrypted in rbuf
	re    int     // end of the bytes in rbuf
	plain []byte  // decrypted bytes not yet returned (inside rbuf)
	rerr  error   // permanent read error (io.EOF after the end marker)
	bulk  bool    // the last transport read was large: keep a big buffer
	gath  [maxGather][]byte
	iov   net.Buffers

	wmu     sync.Mutex
	enc     *noise.CipherState
	werr    error // permanent write error
	wclosed bool
	wdl     atomic.Int64 // write deadline, Unix nanoseconds; 0 for none

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

func newConn(conn net.Conn, peer key.NodePublic, hash []byte, send, recv *noise.CipherState) *Conn {
	return &Conn{conn: conn, peer: peer, hash: hash, enc: send, dec: recv}
}

// Peer returns the peer's static key, proven by the handshake.
func (c *Conn) Peer() key.NodePublic { return c.peer }

// HandshakeHash returns the Noise handshake hash, for binding
// application-level authentication to this channel.
func (c *Conn) HandshakeHash() []byte { return append([]byte(nil), c.hash...) }

// isTimeout reports a deadline error, after which I/O may be retried.
func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// fill reads from the transport until rbuf holds need undecrypted bytes.
// rmu is held.
func (c *Conn) fill(need int) error {
	if c.rbuf == nil {
		if c.bulk {
			c.rbuf = bigPool.Get().(*[]byte)
		} else {
			c.rbuf = smallPool.Get().(*[]byte)
		}
		c.rs, c.re = 0, 0
	}
	if buf := *c.rbuf; len(buf) == smallBufSize && (need > smallBufSize || c.bulk) {
		big := bigPool.Get().(*[]byte)
		c.re = copy(*big, buf[c.rs:c.re])
		c.rs = 0
		smallPool.Put(c.rbuf)
		c.rbuf = big
	} else if c.rs > 0 {
		// Move the partial frame to the front, to read as much as fits.
		c.re = copy(buf, buf[c.rs:c.re])
		c.rs = 0
	}
	buf := *c.rbuf
	for c.re < need {
		n, err := c.conn.Read(buf[c.re:])
		c.re += n
		c.bulk = n >= smallBufSize/2
		if err != nil {
			if c.re >= need {
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

// buffered reports the length of the next frame if it is entirely in rbuf.
func (c *Conn) buffered() (int, bool) {
	if c.rbuf == nil || c.re-c.rs < 2 {
		return 0, false
	}
	n := int(binary.BigEndian.Uint16((*c.rbuf)[c.rs:]))
	return n, c.re-c.rs >= 2+n
}

// nextFrame decrypts the next frame in place. It returns io.EOF for the end
// of stream marker. rmu is held and c.plain is empty.
func (c *Conn) nextFrame(block bool) ([]byte, error) {
	n, ok := c.buffered()
	if !ok {
		if !block {
			return nil, nil
		}
		if c.rbuf == nil || c.re-c.rs < 2 {
			if err := c.fill(2); err != nil {
				return nil, err
			}
		}
		n = int(binary.BigEndian.Uint16((*c.rbuf)[c.rs:]))
		if n < TagSize {
			return nil, errShortFrame
		}
		if err := c.fill(2 + n); err != nil {
			return nil, err
		}
	} else if n < TagSize {
		return nil, errShortFrame
	}
	frame := (*c.rbuf)[c.rs+2 : c.rs+2+n]
	pt, err := c.dec.Decrypt(frame[:0], nil, frame)
	if err != nil {
		return nil, fmt.Errorf("noiseconn: transport frame failed authentication: %w", err)
	}
	c.rs += 2 + n
	if len(pt) == 0 {
		return nil, io.EOF
	}
	return pt, nil
}

// fail records a read error. Deadline errors are returned as they are and
// leave the stream intact; anything else is permanent, and a frame that
// fails authentication closes the transport. rmu is held.
func (c *Conn) fail(err error) error {
	if isTimeout(err) {
		return err
	}
	c.rerr = err
	c.plain = nil
	c.putRbuf()
	if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, net.ErrClosed) {
		c.conn.Close()
	}
	return err
}

func (c *Conn) putRbuf() {
	if c.rbuf == nil {
		return
	}
	if len(*c.rbuf) == smallBufSize {
		smallPool.Put(c.rbuf)
	} else {
		bigPool.Put(c.rbuf)
	}
	c.rbuf = nil
	c.rs, c.re = 0, 0
}

// settle gives the read buffer back when it is empty and the connection is
// not moving bulk data, or when the Conn is closed. rmu is held.
func (c *Conn) settle() {
	if c.rbuf != nil && len(c.plain) == 0 && c.rs == c.re && (!c.bulk || c.closed.Load()) {
		c.putRbuf()
	}
}

// Read implements net.Conn. It returns io.EOF only after the peer's
// authenticated end of stream.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.plain) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		pt, err := c.nextFrame(true)
		if err != nil {
			return 0, c.fail(err)
		}
		c.plain = pt
	}
	n := copy(p, c.plain)
	c.plain = c.plain[n:]
	// Serve more from frames already buffered, without blocking.
	for n < len(p) && len(c.plain) == 0 && c.rerr == nil {
		pt, err := c.nextFrame(false)
		if err != nil {
			c.fail(err) // returned by the next Read
			break
		}
		if pt == nil {
			break
		}
		m := copy(p[n:], pt)
		n += m
		c.plain = pt[m:]
	}
	c.settle()
	return n, nil
}

// WriteTo writes the decrypted stream to w until the peer's authenticated
// end of stream (then it returns nil) or an error. io.Copy(w, c) uses it:
// plaintext goes to w straight from the read buffer, several frames per
// (vectored, when w supports it) write.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	var total int64
	for {
		c.iov = c.gath[:0]
		if len(c.plain) > 0 {
			c.iov = append(c.iov, c.plain)
			c.plain = nil
		}
		var ferr error
		for len(c.iov) < maxGather && c.rerr == nil {
			pt, err := c.nextFrame(len(c.iov) == 0)
			if err != nil {
				ferr = err
				break
			}
			if pt == nil {
				break
			}
			c.iov = append(c.iov, pt)
		}
		if len(c.iov) > 0 {
			want := 0
			for _, b := range c.iov {
				want += len(b)
			}
			n, err := c.iov.WriteTo(w)
			total += n
			if err == nil && int(n) < want {
				err = io.ErrShortWrite
			}
			if err != nil {
				c.keepUnwritten()
				if ferr == io.EOF {
					c.rerr = io.EOF // after the plaintext kept above
				} else if ferr != nil {
					c.fail(ferr)
				}
				return total, err
			}
		}
		if ferr != nil {
			err := c.fail(ferr)
			if err == io.EOF {
				return total, nil
			}
			return total, err
		}
		if c.rerr != nil {
			if c.rerr == io.EOF {
				return total, nil
			}
			return total, c.rerr
		}
	}
}

// keepUnwritten moves the plaintext WriteTo could not write (what remains
// in c.iov, in buffer order) together so Read returns it later.
func (c *Conn) keepUnwritten() {
	buf := *c.rbuf
	start, end := -1, 0
	for _, b := range c.iov {
		if len(b) == 0 {
			continue
		}
		if start < 0 {
			start = cap(buf) - cap(b) // b's offset inside rbuf
			end = start + len(b)
			continue
		}
		end += copy(buf[end:], b)
	}
	if start >= 0 {
		c.plain = buf[start:end]
	}
	c.iov = nil
}

// Write implements net.Conn. p is sent in frames of at most MaxPlaintext
// bytes, up to batchSize bytes per transport write. An error is permanent:
// a partly written batch leaves the stream unusable.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writable(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	bp := bigPool.Get().(*[]byte)
	defer bigPool.Put(bp)
	buf := *bp
	n := 0
	for len(p) > 0 {
		out := buf[:0]
		sent := 0
		for len(p) > 0 && sent < batchSize {
			chunk := p[:min(len(p), MaxPlaintext, batchSize-sent)]
			out = append(out, 0, 0)
			start := len(out)
			var err error
			if out, err = c.enc.Encrypt(out, nil, chunk); err != nil {
				c.werr = err
				return n, err
			}
			binary.BigEndian.PutUint16(out[start-2:], uint16(len(out)-start))
			p = p[len(chunk):]
			sent += len(chunk)
		}
		if _, err := c.conn.Write(out); err != nil {
			c.werr = err
			return n, err
		}
		n += sent
	}
	return n, nil
}

// writable reports why nothing may be written. wmu is held.
func (c *Conn) writable() error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	if c.wclosed {
		return ErrWriteClosed
	}
	if c.werr != nil {
		return c.werr
	}
	// A write that times out in the transport is permanent (the batch
	// may be partly sent), so a deadline already past fails the write
	// before anything is encrypted, leaving the stream intact.
	if dl := c.wdl.Load(); dl != 0 && time.Now().UnixNano() >= dl {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// ReadFrom reads r until EOF and sends what it reads. It reads into the
// plaintext slots of a batch buffer, encrypts in place and issues one
// transport write per read. It does not CloseWrite at EOF; the caller does.
// io.Copy(c, r) uses it.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	c.wmu.Lock()
	err := c.writable()
	c.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	bp := bigPool.Get().(*[]byte)
	defer bigPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := r.Read(buf[2 : 2+batchSize])
		if n > 0 {
			if err := c.sendInPlace(buf, n); err != nil {
				return total, err
			}
			total += int64(n)
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// sendInPlace spreads the n plaintext bytes at buf[2:] into frame slots,
// encrypts them in place and writes the batch.
func (c *Conn) sendInPlace(buf []byte, n int) error {
	const slot = 2 + MaxFrame
	k := (n + MaxPlaintext - 1) / MaxPlaintext
	for i := k - 1; i >= 1; i-- {
		src := 2 + i*MaxPlaintext
		ln := min(MaxPlaintext, n-i*MaxPlaintext)
		copy(buf[i*slot+2:i*slot+2+ln], buf[src:src+ln])
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writable(); err != nil {
		return err
	}
	end := 0
	for i := range k {
		ln := min(MaxPlaintext, n-i*MaxPlaintext)
		pt := buf[i*slot+2 : i*slot+2+ln]
		ct, err := c.enc.Encrypt(pt[:0], nil, pt)
		if err != nil {
			c.werr = err
			return err
		}
		binary.BigEndian.PutUint16(buf[i*slot:], uint16(len(ct)))
		end = i*slot + 2 + len(ct)
	}
	if _, err := c.conn.Write(buf[:end]); err != nil {
		c.werr = err
		return err
	}
	return nil
}

// endMarker encrypts the end of stream marker. wmu is held.
func (c *Conn) endMarker() ([]byte, error) {
	out, err := c.enc.Encrypt(make([]byte, 2, 2+TagSize), nil, nil)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint16(out, TagSize)
	return out, nil
}

// CloseWrite sends the authenticated end of stream, then half-closes the
// transport if it supports CloseWrite. Later writes fail with
// ErrWriteClosed; reading goes on.
func (c *Conn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed {
		return nil
	}
	if c.werr != nil {
		return c.werr
	}
	out, err := c.endMarker()
	if err != nil {
		c.werr = err
		return err
	}
	c.wclosed = true
	if _, err := c.conn.Write(out); err != nil {
		c.werr = err
		return err
	}
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close closes the connection. If CloseWrite was not called and no write
// is in progress, it first tries briefly to send the end of stream marker.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if c.wmu.TryLock() {
			if !c.wclosed && c.werr == nil {
				if out, err := c.endMarker(); err == nil {
					c.conn.SetWriteDeadline(time.Now().Add(closeMarkerTimeout))
					c.conn.Write(out)
				}
			}
			c.wclosed = true
			c.wmu.Unlock()
		}
		c.closeErr = c.conn.Close()
		if c.rmu.TryLock() {
			c.plain = nil
			c.putRbuf()
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

// SetDeadline implements net.Conn. A read that times out may be retried. A
// write that times out in the transport leaves the write side unusable (its
// batch may be partly sent); one that finds the deadline already past fails
// without sending anything and may be retried.
func (c *Conn) SetDeadline(t time.Time) error {
	c.storeWriteDeadline(t)
	return c.conn.SetDeadline(t)
}

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline implements net.Conn; see SetDeadline.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.storeWriteDeadline(t)
	return c.conn.SetWriteDeadline(t)
}

func (c *Conn) storeWriteDeadline(t time.Time) {
	if t.IsZero() {
		c.wdl.Store(0)
	} else {
		c.wdl.Store(max(t.UnixNano(), 1))
	}
}
