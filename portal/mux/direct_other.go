// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !(linux || darwin || openbsd)

package mux

import (
	"errors"
	"syscall"
)

// directWrites is off here: WriteTo writes every byte itself.
const directWrites = false

func rawWritev(syscall.RawConn, [][]byte) (int, error) {
	return 0, errors.New("mux: no direct writes on this platform")
}
