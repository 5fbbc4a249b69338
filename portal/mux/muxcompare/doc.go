// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package muxcompare measures portal/mux against hashicorp/yamux and
// xtaci/smux (version 2), each over the same hybrid Noise channel on
// loopback TCP: bulk throughput with 1 and 4 streams, the time from
// opening a stream to its first byte back, and the memory of idle
// streams. It is a separate module so the candidates never enter the
// product's go.mod; run it with
//
//	cd portal/mux/muxcompare && go test -bench . -benchtime 2s
//
// It is a leaf: nothing imports it.
package muxcompare
