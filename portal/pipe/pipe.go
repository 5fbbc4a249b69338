// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package pipe copies bytes both ways between two connections, carrying
// half-close: when one side finishes sending, the other side's write half
// is closed, so a client that shuts down its write side still gets the
// full response. An error in one direction tears both down so nothing
// hangs.
//
// It relies on io.Copy's fast paths: noiseconn.Conn implements WriterTo
// and ReaderFrom with large pooled buffers, and *net.TCPConn splices on
// Linux.
//
// Imports: stdlib only. Imported by agent (and benchmarks).
package pipe

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
)

type closeWriter interface{ CloseWrite() error }

// Pipe copies a→b and b→a until both directions are done or ctx ends, then
// closes both. It returns the bytes copied each way and the first real
// error (a clean EOF is not an error).
func Pipe(ctx context.Context, a, b net.Conn) (aToB, bToA int64, err error) {
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
		closed  = make(chan struct{})
		once    sync.Once
	)
	closeBoth := func() {
		once.Do(func() {
			close(closed)
			a.Close()
			b.Close()
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
			closeBoth()
			return
		}
		if cw, ok := dst.(closeWriter); ok {
			if cw.CloseWrite() != nil {
				closeBoth()
			}
		} else {
			closeBoth()
		}
	}
	wg.Add(2)
	go cp(b, a, &aToB)
	go cp(a, b, &bToA)
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		closeBoth()
		<-done
	}
	closeBoth()
	return aToB, bToA, first
}
