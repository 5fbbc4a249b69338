// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package mux

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the multiplexer protocol version, sent in the hello frame.
//
// History:
//   - 1: the first version (streams, per-stream windows, 0-RTT open,
//     typed refusals, resets, pings, go-away).
const Version = 1

// Wire limits.
const (
	// headerLen is the fixed frame header: type, flags, stream id, length.
	headerLen = 10
	// InitialWindow is every stream's receive window when it opens, in
	// both directions: an opener may send this much (its client's first
	// bytes) before the acceptor has answered.
	InitialWindow = 256 << 10
	// DefaultMaxWindow is the default cap of a stream's auto-tuned receive
	// window: 16 MiB keeps one stream at ~1.6 Gbit/s on an 80 ms path.
	DefaultMaxWindow = 16 << 20
	// maxWindowLimit bounds Config.MaxWindow and a sender's window.
	maxWindowLimit = 1 << 30
	// maxDataFrame bounds one data frame's payload (and one write batch per
	// stream, for fairness between streams).
	maxDataFrame = 256 << 10
	// MaxOpenHeader bounds an open frame's header (the outlet name).
	MaxOpenHeader = 4 << 10
	// maxCodeLen bounds a refusal or reset code.
	maxCodeLen = 64
	// MaxMessage bounds a refusal, reset or go-away message.
	MaxMessage = 1 << 10
)

// Frame types.
const (
	typeHello  = 0 // id 0; length = protocol version
	typeOpen   = 1 // payload = open header
	typeData   = 2 // payload = stream bytes; flagFin ends the sender's half
	typeWindow = 3 // length = window increment
	typeAccept = 4 // the acceptor took the stream
	typeRefuse = 5 // payload = code + message; the stream is gone
	typeReset  = 6 // payload = code + message; the stream is gone
	typePing   = 7 // id 0; length = opaque; flagAck answers
	typeGoAway = 8 // id 0; payload = code + message; the session ends
	numTypes   = 9
)

// Flags.
const (
	flagFin = 1 << 0 // on data: no more bytes in this direction
	flagAck = 1 << 0 // on ping: the answer
)

type header struct {
	typ    uint8
	flags  uint8
	id     uint32
	length uint32
}

func (h header) put(b []byte) {
	b[0] = h.typ
	b[1] = h.flags
	binary.BigEndian.PutUint32(b[2:], h.id)
	binary.BigEndian.PutUint32(b[6:], h.length)
}

func parseHeader(b []byte) header {
	return header{typ: b[0], flags: b[1], id: binary.BigEndian.Uint32(b[2:]), length: binary.BigEndian.Uint32(b[6:])}
}

// errProtocol marks a peer that broke the protocol.
var errProtocol = errors.New("mux: protocol violation")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errProtocol, fmt.Sprintf(format, args...))
}

// check validates a header on its own (the session checks the rest).
func (h header) check() error {
	if h.typ >= numTypes {
		return protoErr("unknown frame type %d", h.typ)
	}
	switch h.typ {
	case typeHello, typePing:
		if h.id != 0 {
			return protoErr("frame type %d on stream %d", h.typ, h.id)
		}
	case typeGoAway:
		if h.id != 0 || h.length > 1+maxCodeLen+MaxMessage {
			return protoErr("bad go-away frame")
		}
	case typeOpen:
		if h.id == 0 || h.length > MaxOpenHeader {
			return protoErr("open header of %d bytes (limit %d)", h.length, MaxOpenHeader)
		}
	case typeData:
		if h.id == 0 || h.length > maxDataFrame {
			return protoErr("data frame of %d bytes (limit %d)", h.length, maxDataFrame)
		}
	case typeWindow:
		if h.id == 0 || h.length == 0 || h.length > maxWindowLimit {
			return protoErr("window increment %d", h.length)
		}
	case typeAccept:
		if h.id == 0 || h.length != 0 {
			return protoErr("bad accept frame")
		}
	case typeRefuse, typeReset:
		if h.id == 0 || h.length > 1+maxCodeLen+MaxMessage {
			return protoErr("bad refuse/reset frame")
		}
	}
	if h.typ != typeData && h.typ != typePing && h.flags != 0 {
		return protoErr("flags %#x on frame type %d", h.flags, h.typ)
	}
	return nil
}

// carriesPayload reports whether length counts payload bytes that follow.
func (h header) carriesPayload() bool {
	switch h.typ {
	case typeOpen, typeData, typeRefuse, typeReset, typeGoAway:
		return true
	}
	return false
}

// encodeReason is code length (1 byte), code, message, cut to the limits.
func encodeReason(code, msg string) []byte {
	code = code[:min(len(code), maxCodeLen)]
	msg = msg[:min(len(msg), MaxMessage)]
	b := make([]byte, 0, 1+len(code)+len(msg))
	b = append(b, byte(len(code)))
	b = append(b, code...)
	return append(b, msg...)
}

func decodeReason(b []byte) (code, msg string, err error) {
	if len(b) == 0 {
		return "", "", nil
	}
	n := int(b[0])
	if n > maxCodeLen || 1+n > len(b) || len(b)-1-n > MaxMessage {
		return "", "", protoErr("bad reason encoding")
	}
	return string(b[1 : 1+n]), string(b[1+n:]), nil
}
