// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build unix

package agent

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// readyBytes reads what the client has sent already into p, without
// waiting: one read(2) that takes what the socket holds. 0 when nothing
// waits, or at the client's end (which the pipe then reads again). A
// failed client (reset) is an error: read(2) reports a socket's error
// once, so it must not be dropped here.
func readyBytes(c *net.TCPConn, p []byte) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, nil
	}
	n := 0
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		k, err := syscall.Read(int(fd), p)
		switch {
		case k > 0:
			n = k
		case err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR):
			rerr = err
		}
		return true // never wait
	})
	if rerr == nil {
		rerr = err
	}
	if rerr != nil {
		return 0, fmt.Errorf("client connection: %w", rerr)
	}
	return n, nil
}
