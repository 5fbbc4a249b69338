// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build linux || darwin || openbsd

package mux

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// directWrites: the reader may write a stream's arriving bytes straight
// to the socket its WriteTo waits to write to.
const directWrites = true

// rawWritev writes vec to rc's socket in one writev, without waiting: it
// returns how much the socket took (0 when its buffer is full) and any
// error other than a full buffer.
func rawWritev(rc syscall.RawConn, vec [][]byte) (int, error) {
	var n int
	var err error
	if werr := rc.Write(func(fd uintptr) bool {
		n, err = unix.Writev(int(fd), vec)
		return true // never wait
	}); werr != nil {
		return 0, werr
	}
	if n < 0 {
		n = 0
	}
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
		err = nil
	}
	return n, err
}
