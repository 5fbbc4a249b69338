// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package mux

import (
	"bytes"
	"testing"
)

// FuzzHeader: a frame header has one encoding (parse then put gives the
// same ten bytes), and a header check accepts stays within the wire
// limits: no payload over its type's bound, stream 0 only for session
// frames, flags only where they mean something.
func FuzzHeader(f *testing.F) {
	for _, h := range []header{
		{typ: typeHello, length: Version}, {typ: typeOpen, id: 1, length: 3}, {typ: typeData, id: 1, length: maxDataFrame, flags: flagFin},
		{typ: typeWindow, id: 7, length: 1 << 20}, {typ: typePing, flags: flagAck, length: 9}, {typ: typeGoAway, length: 1 + maxCodeLen + MaxMessage + 1},
		{typ: numTypes}, {typ: typeAccept, id: 1, flags: 1},
	} {
		b := make([]byte, headerLen)
		h.put(b)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < headerLen {
			return
		}
		b = b[:headerLen]
		h := parseHeader(b)
		again := make([]byte, headerLen)
		h.put(again)
		if !bytes.Equal(again, b) {
			t.Fatalf("header %x parsed as %+v writes back as %x", b, h, again)
		}
		if h.check() != nil {
			return
		}
		limit := map[uint8]uint32{typeOpen: MaxOpenHeader, typeData: maxDataFrame, typeWindow: maxWindowLimit, typeAccept: 0,
			typeRefuse: 1 + maxCodeLen + MaxMessage, typeReset: 1 + maxCodeLen + MaxMessage, typeGoAway: 1 + maxCodeLen + MaxMessage}
		if l, ok := limit[h.typ]; ok && h.length > l {
			t.Fatalf("accepted %+v: length over %d", h, l)
		}
		session := h.typ == typeHello || h.typ == typePing || h.typ == typeGoAway
		if h.typ >= numTypes || session != (h.id == 0) {
			t.Fatalf("accepted %+v", h)
		}
		if h.flags != 0 && h.typ != typeData && h.typ != typePing {
			t.Fatalf("accepted flags on %+v", h)
		}
	})
}

// FuzzReason: a refusal, reset or go-away reason decodes only within its
// limits, and a decoded non-empty payload is exactly what encodeReason
// writes for its code and message (one encoding); encoding any code and
// message and decoding it gives them back, cut to the limits.
func FuzzReason(f *testing.F) {
	f.Add([]byte{}, "denied", "policy denied")
	f.Add(encodeReason("target-refused", "connection refused"), "", "")
	f.Add([]byte{65, 'x'}, string(bytes.Repeat([]byte{'c'}, maxCodeLen+1)), string(bytes.Repeat([]byte{'m'}, MaxMessage+1)))
	f.Fuzz(func(t *testing.T, b []byte, code, msg string) {
		c, m, err := decodeReason(b)
		if err != nil {
			if c != "" || m != "" {
				t.Fatalf("decodeReason returned %q %q with error %v", c, m, err)
			}
		} else {
			if len(c) > maxCodeLen || len(m) > MaxMessage {
				t.Fatalf("decoded a %d-byte code and a %d-byte message", len(c), len(m))
			}
			if len(b) > 0 && !bytes.Equal(encodeReason(c, m), b) {
				t.Fatalf("%x decodes to %q %q, which encode as %x", b, c, m, encodeReason(c, m))
			}
		}
		c2, m2, err := decodeReason(encodeReason(code, msg))
		if err != nil || c2 != code[:min(len(code), maxCodeLen)] || m2 != msg[:min(len(msg), MaxMessage)] {
			t.Fatalf("encodeReason(%q, %q) decodes to %q %q, %v", code, msg, c2, m2, err)
		}
	})
}
