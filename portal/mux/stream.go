// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package mux

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// chunkSize is the unit of a stream's receive buffer; chunks come from a
// pool when bytes arrive and go back when they are read.
const chunkSize = 16 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// copyBufSize is ReadFrom's pooled read buffer while its source is busy
// (one data frame).
const copyBufSize = maxDataFrame

var copyPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// rbuf is a queue of bytes in pooled chunks.
type rbuf struct {
	chunks []*[]byte
	head   int // read offset in chunks[0]
	tail   int // write offset in the last chunk
	n      int // bytes buffered
}

func (b *rbuf) push(p []byte) {
	b.n += len(p)
	for len(p) > 0 {
		if len(b.chunks) == 0 || b.tail == chunkSize {
			b.chunks = append(b.chunks, chunkPool.Get().(*[]byte))
			b.tail = 0
		}
		k := copy((*b.chunks[len(b.chunks)-1])[b.tail:], p)
		b.tail += k
		p = p[k:]
	}
}

func (b *rbuf) end(i int) int {
	if i == len(b.chunks)-1 {
		return b.tail
	}
	return chunkSize
}

// discard drops n buffered bytes, copying them to p first if p != nil.
func (b *rbuf) discard(n int, p []byte) int {
	done := 0
	for done < n && b.n > 0 {
		c := (*b.chunks[0])[b.head:b.end(0)]
		k := min(len(c), n-done)
		if p != nil {
			copy(p[done:], c[:k])
		}
		b.head += k
		b.n -= k
		done += k
		if b.head == b.end(0) {
			b.popHead()
		}
	}
	return done
}

func (b *rbuf) popHead() {
	chunkPool.Put(b.chunks[0])
	b.chunks[0] = nil
	b.chunks = b.chunks[1:]
	b.head = 0
	if len(b.chunks) == 0 {
		b.tail = 0
		if cap(b.chunks) > 16 {
			b.chunks = nil
		}
	}
}

// slices appends the buffered bytes to v as slices of the chunks.
func (b *rbuf) slices(v net.Buffers) net.Buffers {
	for i := range b.chunks {
		start := 0
		if i == 0 {
			start = b.head
		}
		if s := (*b.chunks[i])[start:b.end(i)]; len(s) > 0 {
			v = append(v, s)
		}
	}
	return v
}

func (b *rbuf) free() {
	for _, c := range b.chunks {
		chunkPool.Put(c)
	}
	*b = rbuf{}
}

// Stream is one bidirectional byte stream of a session: a net.Conn with
// half-close (CloseWrite) and abort (Reset).
//
// Read returns io.EOF only after the peer's CloseWrite (or clean Close);
// a *ResetError after a reset, a *RefusedError if the acceptor refused
// it, and an error wrapping ErrChannelLost (after any bytes that arrived
// before) if the channel ended under it. Close before the peer's end of
// stream resets the stream (CodeClosed); to end cleanly, CloseWrite, read
// to io.EOF, then Close.
type Stream struct {
	sess   *Session
	id     uint32
	opener bool
	// openOut is set once the stream's open frame is on the wire (at
	// once for a stream the peer opened). Until then its control frames
	// (window, reset) queue behind the open frame instead of jumping the
	// queue: the peer must never hear of a stream before its open.
	openOut atomic.Bool

	// wmu serializes writers, so data frames keep their order.
	wmu sync.Mutex

	// mu guards every field below.
	mu         sync.Mutex
	buf        rbuf
	recvLimit  uint64 // bytes the peer may send in total (granted)
	recvd      uint64 // bytes received in total
	consumed   uint64 // bytes read by the application in total
	window     uint64 // current receive window (auto-tuned)
	epochStart time.Time
	epochOff   uint64
	wupQueued  bool   // a window update is queued
	remoteFin  bool   // the peer's FIN arrived
	sendWindow int64  // bytes this side may still send
	localFin   bool   // this side's FIN is queued
	isAccepted bool   // opener: the peer accepted; acceptor: Accept called
	onAccept   func() // opener: runs when the peer accepts (OnAccept)
	answered   bool   // acceptor: Accept or Refuse called
	closed     bool   // Close called
	resetSent  bool   // a reset went out after Close
	err        error  // terminal error of both directions
	readBusy   bool   // WriteTo is writing from buf without mu
	freeLater  bool   // free buf when WriteTo is done
	// sink is the socket WriteTo waits to write to, while it waits with
	// nothing buffered: the reader writes arriving bytes to it itself
	// (directN counts them for WriteTo) instead of waking WriteTo's
	// goroutine for each frame. nil otherwise.
	sink     syscall.RawConn
	directN  int64
	rdl, wdl time.Time
	readCh   chan struct{} // data, end or error arrived; deadline moved
	writeCh  chan struct{} // window opened, error; deadline moved
	wdone    chan error    // the writer wrote (or failed) this stream's data frame
}

func newStream(s *Session, id uint32, opener bool) *Stream {
	st := &Stream{
		sess:       s,
		id:         id,
		opener:     opener,
		recvLimit:  InitialWindow,
		window:     s.learned(),
		sendWindow: InitialWindow,
		readCh:     make(chan struct{}, 1),
		writeCh:    make(chan struct{}, 1),
		wdone:      make(chan error, 1),
	}
	st.openOut.Store(!opener)
	return st
}

// urgent reports whether the stream's control frames may go before
// queued stream frames (its open frame is out).
func (st *Stream) urgent() bool { return st.openOut.Load() }

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// waitFor waits for ch until the deadline dl (zero = none); false means
// the deadline passed.
func waitFor(ch chan struct{}, dl time.Time) bool {
	if dl.IsZero() {
		<-ch
		return true
	}
	d := time.Until(dl)
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// ID returns the stream's id in its session (for logs).
func (st *Stream) ID() uint32 { return st.id }

// terminate ends both directions with err and drops unread bytes. mu held.
func (st *Stream) terminate(err error) {
	if st.err == nil {
		st.err = err
	}
	if st.readBusy {
		st.freeLater = true
	} else {
		st.buf.free()
	}
	notify(st.readCh)
	notify(st.writeCh)
}

// sessionEnded fails the stream with the session's error; bytes already
// received stay readable before it.
func (st *Stream) sessionEnded(err error) {
	st.mu.Lock()
	if st.err == nil {
		st.err = err
	}
	notify(st.readCh)
	notify(st.writeCh)
	st.mu.Unlock()
}

// arriving accounts for a data frame of n bytes before its payload.
func (st *Stream) arriving(n uint32, fin bool) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.remoteFin {
		return protoErr("data on stream %d after its FIN", st.id)
	}
	if st.recvd+uint64(n) > st.recvLimit {
		return protoErr("stream %d sent %d bytes beyond its window", st.id, st.recvd+uint64(n)-st.recvLimit)
	}
	st.recvd += uint64(n)
	return nil
}

// push buffers arriving bytes (reader goroutine), or writes them to the
// sink WriteTo waits on when nothing is buffered before them, in one
// writev (what the socket does not take at once is buffered, as always).
// A stream this side ended drops them; one closed while the peer was
// still sending answers with a reset (once), as TCP does.
func (st *Stream) push(vec [][]byte) {
	st.mu.Lock()
	switch {
	case st.err == nil:
		if st.sink != nil && st.buf.n == 0 && !st.readBusy {
			n, err := rawWritev(st.sink, vec)
			if n > 0 {
				st.sess.directBytes.Add(int64(n))
				st.directN += int64(n)
				st.consumedLocked(n)
			}
			for len(vec) > 0 && n >= len(vec[0]) {
				n -= len(vec[0])
				vec = vec[1:]
			}
			if len(vec) > 0 {
				vec[0] = vec[0][n:]
			}
			if err != nil || len(vec) > 0 {
				st.sink = nil // WriteTo writes the rest, and meets the error itself
			}
		}
		if len(vec) > 0 {
			for _, p := range vec {
				st.buf.push(p)
			}
			notify(st.readCh)
		}
	case st.closed && !st.resetSent && st.err == ErrStreamClosed:
		st.resetSent = true
		st.sendReset(CodeClosed)
	}
	st.mu.Unlock()
}

func isReset(err error) bool {
	switch err.(type) {
	case *ResetError, *RefusedError:
		return true
	}
	return false
}

func (st *Stream) remoteFinished() {
	st.mu.Lock()
	st.remoteFin = true
	done := st.localFin || st.err != nil
	notify(st.readCh)
	st.mu.Unlock()
	if done {
		st.sess.remove(st)
	}
}

func (st *Stream) addSendWindow(inc uint32) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.sendWindow += int64(inc)
	if st.sendWindow > 2*maxWindowLimit {
		return protoErr("stream %d window grew to %d", st.id, st.sendWindow)
	}
	notify(st.writeCh)
	return nil
}

func (st *Stream) accepted() {
	st.mu.Lock()
	st.isAccepted = true
	f := st.onAccept
	st.onAccept = nil
	st.mu.Unlock()
	if f != nil {
		f()
	}
}

// OnAccept makes f run once the peer accepts this stream (which this
// side opened), or at once if it has: f never runs for a stream the peer
// refused. f runs on the session's reader and must not block.
func (st *Stream) OnAccept(f func()) {
	st.mu.Lock()
	if !st.isAccepted {
		st.onAccept = f
		st.mu.Unlock()
		return
	}
	st.mu.Unlock()
	f()
}

func (st *Stream) refused(code, msg string) {
	st.mu.Lock()
	st.terminate(&RefusedError{Code: code, Message: msg})
	st.mu.Unlock()
	st.sess.remove(st)
}

func (st *Stream) remoteReset(code, msg string) {
	st.mu.Lock()
	st.terminate(&ResetError{Code: code, Message: msg, Remote: true})
	st.mu.Unlock()
	st.sess.remove(st)
}

// consumedLocked records n bytes read by the application and queues a
// window update when the peer's credit fell to half a window. mu held.
func (st *Stream) consumedLocked(n int) {
	st.consumed += uint64(n)
	if st.remoteFin || st.wupQueued || st.err != nil {
		return
	}
	if st.recvLimit-st.consumed <= st.window/2 {
		st.wupQueued = true
		st.sess.enqueue(frame{h: header{typ: typeWindow, id: st.id}, st: st}, st.urgent(), true)
	}
}

// learnedGrant returns the window update a new stream sends with its
// open or accept when it starts with a learned window larger than the
// protocol's initial one, so the peer need not wait a round trip for it;
// nil otherwise. mu held.
func (st *Stream) learnedGrant() *frame {
	if st.window <= InitialWindow || st.wupQueued {
		return nil
	}
	st.wupQueued = true
	return &frame{h: header{typ: typeWindow, id: st.id}, st: st}
}

// takeCredit computes the increment of a queued window update, tuning
// the window first (writer goroutine).
func (st *Stream) takeCredit() uint32 {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.wupQueued = false
	if st.err != nil || st.remoteFin {
		return 0
	}
	st.autotune(time.Now())
	limit := st.consumed + st.window
	if limit <= st.recvLimit {
		return 0
	}
	inc := limit - st.recvLimit
	st.recvLimit = limit
	return uint32(inc)
}

// autotune doubles the window when the application consumed more than
// half of it in less than two round trips' worth of time (scaled by the
// fraction consumed): the sender was waiting for credit, not for data.
// mu held.
func (st *Stream) autotune(now time.Time) {
	maxW := uint64(st.sess.cfg.MaxWindow)
	if st.window >= maxW {
		return
	}
	if st.epochStart.IsZero() {
		st.epochStart, st.epochOff = now, st.consumed
		return
	}
	inEpoch := st.consumed - st.epochOff
	if inEpoch <= st.window/2 {
		return
	}
	if rtt := st.sess.RTT(); rtt > 0 {
		fraction := float64(inEpoch) / float64(st.window)
		if now.Sub(st.epochStart) < time.Duration(4*fraction*float64(rtt)) {
			st.window = min(2*st.window, maxW)
			st.sess.learnWindow(st.window)
		}
	}
	st.epochStart, st.epochOff = now, st.consumed
}

// Window returns the stream's current receive window (for tests and
// metrics).
func (st *Stream) Window() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return int(st.window)
}

// Read implements net.Conn.
func (st *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	st.mu.Lock()
	for {
		if st.buf.n > 0 {
			n := st.buf.discard(len(p), p)
			st.consumedLocked(n)
			st.mu.Unlock()
			return n, nil
		}
		if err := st.readEnd(); err != nil {
			st.mu.Unlock()
			return 0, err
		}
		dl := st.rdl
		st.mu.Unlock()
		if !waitFor(st.readCh, dl) {
			return 0, ErrTimeout
		}
		st.mu.Lock()
	}
}

// readEnd is what a read returns with nothing buffered (nil: wait).
// mu held.
func (st *Stream) readEnd() error {
	switch {
	case st.closed:
		return ErrStreamClosed
	case isReset(st.err):
		return st.err
	case st.remoteFin:
		return io.EOF // even if the session ended after the peer's FIN
	}
	return st.err
}

// WriteTo writes the stream to w until the peer's end of stream (then it
// returns nil) or an error, handing everything buffered to w in one write
// (writev on a socket).
//
// While it waits with nothing buffered and w is a socket, the session's
// reader writes arriving bytes to w itself, as far as w takes them
// without blocking: a frame goes from the channel to the socket in one
// goroutine, with no hand-off.
func (st *Stream) WriteTo(w io.Writer) (int64, error) {
	var total int64
	var vec, v net.Buffers
	var sink syscall.RawConn
	if sc, ok := w.(syscall.Conn); ok && directWrites {
		sink, _ = sc.SyscallConn()
	}
	// unsink stops the reader's direct writes and counts them, before
	// WriteTo writes itself or returns. mu held.
	unsink := func() {
		st.sink = nil
		total += st.directN
		st.directN = 0
	}
	for {
		st.mu.Lock()
		for st.buf.n == 0 {
			if err := st.readEnd(); err != nil {
				unsink()
				st.mu.Unlock()
				if err == io.EOF {
					return total, nil
				}
				return total, err
			}
			st.sink = sink
			dl := st.rdl
			st.mu.Unlock()
			if !waitFor(st.readCh, dl) {
				st.mu.Lock()
				unsink()
				st.mu.Unlock()
				return total, ErrTimeout
			}
			st.mu.Lock()
		}
		unsink()
		vec = st.buf.slices(vec[:0])
		st.readBusy = true
		st.mu.Unlock()
		v = vec
		n, err := v.WriteTo(w)
		clear(vec)
		st.mu.Lock()
		st.readBusy = false
		if st.freeLater {
			st.freeLater = false
			st.buf.free()
		} else {
			st.buf.discard(int(n), nil)
			st.consumedLocked(int(n))
		}
		st.mu.Unlock()
		total += n
		if err != nil {
			return total, err
		}
	}
}

// writeErr is the error a write returns now, if any. mu held.
func (st *Stream) writeErr() error {
	switch {
	case st.err != nil:
		return st.err
	case st.localFin:
		return ErrWriteClosed
	}
	return nil
}

// Write implements net.Conn. It returns once the bytes are on the channel
// (or in the kernel's buffer for it).
func (st *Stream) Write(p []byte) (int, error) {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	total := 0
	for len(p) > 0 {
		st.mu.Lock()
		for {
			if err := st.writeErr(); err != nil {
				st.mu.Unlock()
				return total, err
			}
			if st.sendWindow > 0 {
				break
			}
			dl := st.wdl
			st.mu.Unlock()
			if !waitFor(st.writeCh, dl) {
				return total, ErrTimeout
			}
			st.mu.Lock()
		}
		k := min(len(p), int(st.sendWindow), maxDataFrame)
		st.sendWindow -= int64(k)
		// Queued under mu, so it never follows this stream's end; written
		// from here when no one else is writing, else by whoever is (the
		// loop or another stream's Write). Its completion comes on wdone.
		held, err := st.sess.put(frame{h: header{typ: typeData, id: st.id, length: uint32(k)}, payload: p[:k], req: st})
		st.mu.Unlock()
		if err != nil {
			return total, err
		}
		if held {
			st.sess.flushHeld()
		}
		if err := <-st.wdone; err != nil {
			return total, streamErr(err)
		}
		total += k
		p = p[k:]
	}
	return total, nil
}

// ReadFrom reads r until EOF and sends it. It does not CloseWrite at EOF;
// the caller does. A quiet source is read into a small pooled chunk; once
// a read fills it, reads go to a buffer of one data frame, handed back as
// soon as a read comes back short of a chunk. An open stream waiting on
// its source so pins 16 KiB, not 256.
func (st *Stream) ReadFrom(r io.Reader) (int64, error) {
	small := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(small)
	var big *[]byte // while reads fill the small buffer
	defer func() {
		if big != nil {
			copyPool.Put(big)
		}
	}()
	var total int64
	for {
		buf := *small
		if big != nil {
			buf = *big
		}
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := st.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		switch {
		case big == nil && n == len(buf):
			big = copyPool.Get().(*[]byte)
		case big != nil && n < chunkSize:
			copyPool.Put(big)
			big = nil
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// CloseWrite sends the end of this side's stream (an authenticated FIN);
// the peer reads io.EOF after the bytes before it.
func (st *Stream) CloseWrite() error {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	st.mu.Lock()
	if st.localFin {
		st.mu.Unlock()
		return nil
	}
	if st.err != nil {
		st.mu.Unlock()
		return st.err
	}
	st.localFin = true
	held, err := st.sess.put(frame{h: header{typ: typeData, flags: flagFin, id: st.id}})
	done := st.remoteFin
	st.mu.Unlock()
	if held {
		st.sess.flushHeld()
	}
	if done {
		st.sess.remove(st)
	}
	return err
}

// Close ends the stream like a TCP close: if bytes are still unread it
// resets the stream (CodeClosed); otherwise it sends the FIN (if
// CloseWrite did not) and, should the peer still send bytes, answers them
// with a reset. After Close, Read and Write return ErrStreamClosed.
func (st *Stream) Close() error {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return nil
	}
	st.closed = true
	finished := true
	if st.err == nil {
		if st.buf.n > 0 {
			st.sendReset(CodeClosed)
			st.resetSent = true
		} else {
			if !st.localFin {
				st.localFin = true
				st.sess.enqueue(frame{h: header{typ: typeData, flags: flagFin, id: st.id}}, false, true)
			}
			finished = st.remoteFin // else stay known until the peer's FIN or reset
		}
	}
	st.terminate(ErrStreamClosed)
	st.mu.Unlock()
	if finished {
		st.sess.remove(st)
	}
	return nil
}

// sendReset queues a reset frame. mu held.
func (st *Stream) sendReset(code string) {
	p := encodeReason(code, "")
	st.sess.enqueue(frame{h: header{typ: typeReset, id: st.id, length: uint32(len(p))}, payload: p}, st.urgent(), true)
}

// Reset aborts the stream in both directions: the peer's Read and Write
// return a *ResetError (never io.EOF), and so do this side's.
func (st *Stream) Reset() error {
	st.mu.Lock()
	if st.err == nil && !(st.localFin && st.remoteFin) {
		st.sendReset(CodeReset)
	}
	st.terminate(&ResetError{Code: CodeReset})
	st.mu.Unlock()
	st.sess.remove(st)
	return nil
}

// LocalAddr implements net.Conn (the channel's address).
func (st *Stream) LocalAddr() net.Addr { return st.sess.laddr }

// RemoteAddr implements net.Conn (the channel's address).
func (st *Stream) RemoteAddr() net.Addr { return st.sess.raddr }

// SetDeadline implements net.Conn.
func (st *Stream) SetDeadline(t time.Time) error {
	st.SetReadDeadline(t)
	return st.SetWriteDeadline(t)
}

// SetReadDeadline implements net.Conn.
func (st *Stream) SetReadDeadline(t time.Time) error {
	st.mu.Lock()
	st.rdl = t
	st.mu.Unlock()
	notify(st.readCh)
	return nil
}

// SetWriteDeadline implements net.Conn. It bounds waiting for the peer's
// window, not a frame already handed to the channel (Config.WriteTimeout
// bounds that).
func (st *Stream) SetWriteDeadline(t time.Time) error {
	st.mu.Lock()
	st.wdl = t
	st.mu.Unlock()
	notify(st.writeCh)
	return nil
}

var _ net.Conn = (*Stream)(nil)
