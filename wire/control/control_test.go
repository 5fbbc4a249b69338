// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package control

import (
	"encoding/hex"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	b, err := Encode(TypeOpenSession, 42, OpenSessionRequest{Relay: "acme-relay"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(b)
	if err != nil || m.Type != TypeOpenSession || m.ID != 42 {
		t.Fatalf("Decode = %+v, %v", m, err)
	}
	var req OpenSessionRequest
	if err := DecodeBody(m, &req); err != nil || req.Relay != "acme-relay" {
		t.Fatalf("body = %+v, %v", req, err)
	}
	e, _ := EncodeError(42, &Error{Code: ErrCodeRelayUnknown, Message: "nope"})
	m, err = Decode(e)
	if err != nil || m.Err == nil || m.Err.Code != ErrCodeRelayUnknown {
		t.Fatalf("error answer = %+v, %v", m, err)
	}
	if err := DecodeBody(Msg{Type: TypePing}, &Ping{}); err == nil {
		t.Error("empty body decoded")
	}
}

// Golden bytes of a message: map {1: 4, 2: 42, 4: {1: "acme-relay"}} (the
// body is embedded CBOR, not a byte string).
func TestGolden(t *testing.T) {
	b, _ := Encode(TypeOpenSession, 42, OpenSessionRequest{Relay: "acme-relay"})
	const want = "a3010402182a04a1016a61636d652d72656c6179"
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("encoding = %s, want %s", got, want)
	}
}

func FuzzDecode(f *testing.F) {
	b, _ := Encode(TypeOpenSession, 1, OpenSessionRequest{Relay: "r"})
	f.Add(b)
	b, _ = Encode(TypeIncoming, 0, Incoming{Token: make([]byte, 32), Relay: "r", From: "I0"})
	f.Add(b)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		var in Incoming
		DecodeBody(m, &in)
		var cr CreateTicketRequest
		DecodeBody(m, &cr)
		var so StreamOpen
		DecodeBody(m, &so)
	})
}
