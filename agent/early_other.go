// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !unix

package agent

import "net"

// readyBytes reads nothing here: a portal's first bytes follow its open
// in a second channel write.
func readyBytes(*net.TCPConn, []byte) (int, error) { return 0, nil }
