// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package pipe copies bytes both ways between two connections, carrying
// half-close: when one side finishes sending, the other side's write half
// is closed, so a client that shuts down its write side still gets the
// full response.
//
// A direction that ends with an error rather than a clean end of stream
// (a Noise channel or mux stream that was cut without its authenticated
// close, a TCP reset, a failed write) or a cancelled ctx aborts both
// sides: a connection with a Reset method (noiseconn.Conn, mux.Stream) is
// reset, a TCP connection is closed with SO_LINGER 0 so its peer gets
// ECONNRESET, never a FIN that a close-delimited protocol would take for
// a complete response.
//
// It relies on io.Copy's fast paths: noiseconn.Conn and mux.Stream
// implement WriterTo and ReaderFrom with large pooled buffers, and
// *net.TCPConn splices on Linux.
//
// Imported by agent (and benchmarks).
package pipe

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
)

type closeWriter interface{ CloseWrite() error }

// abort ends c so that its peer sees an error, not a clean end.
func abort(c net.Conn) {
	if r, ok := c.(interface{ Reset() error }); ok {
		r.Reset()
		return
	}
	if l, ok := c.(interface{ SetLinger(int) error }); ok {
		l.SetLinger(0)
	}
	c.Close()
}

// Pipe copies a→b and b→a until both directions are done or ctx ends, then
// closes both. It returns the bytes copied each way and the first real
// error (a clean EOF is not an error). When a direction fails or ctx ends,
// both connections are reset instead of closed.
func Pipe(ctx context.Context, a, b net.Conn) (aToB, bToA int64, err error) {
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
		closed  = make(chan struct{}) // closed once end has run
		once    sync.Once
	)
	end := func(reset bool) {
		once.Do(func() {
			close(closed)
			if reset {
				abort(a)
				abort(b)
			} else {
				a.Close()
				b.Close()
			}
		})
	}
	cp := func(dst, src net.Conn, n *int64) {
		defer wg.Done()
		var err error
		*n, err = io.Copy(dst, src)
		if err != nil {
			select {
			case <-closed:
			default:
				if !errors.Is(err, net.ErrClosed) {
					errOnce.Do(func() { first = err })
				}
			}
			end(true)
			return
		}
		if cw, ok := dst.(closeWriter); ok {
			if err := cw.CloseWrite(); err != nil {
				errOnce.Do(func() { first = err })
				end(true)
			}
		} else {
			end(false)
		}
	}
	// One direction runs in a goroutine of its own, the other in the
	// caller's; a cancelled ctx resets both through AfterFunc, without a
	// goroutine waiting for it. A portal costs one goroutine start here,
	// not three: on a small machine each start can wake another thread.
	stop := context.AfterFunc(ctx, func() { end(true) })
	defer stop()
	wg.Add(2)
	go cp(b, a, &aToB)
	cp(a, b, &bToA)
	wg.Wait()
	end(false)
	return aToB, bToA, first
}
