// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package control

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
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

// unhex decodes annotated hex: everything after a '#' on a line is a
// comment, white space is ignored.
func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	var digits strings.Builder
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		tb.Fatalf("bad golden hex: %v", err)
	}
	return b
}

// TestGolden pins the bytes of a few frames. The body is embedded CBOR,
// not a byte string. Old nodes read these: change them only with a new
// message set version (see the package doc).
func TestGolden(t *testing.T) {
	tests := []struct {
		name string
		got  func() ([]byte, error)
		want string
	}{
		{"open session", func() ([]byte, error) { return Encode(TypeOpenSession, 42, OpenSessionRequest{Relay: "acme-relay"}) }, `
			a3                                  # map(3)
			  01 04                             #   1 Type: 4 (open-session)
			  02 18 2a                          #   2 ID: 42
			  04 a1                             #   4 Body: map(1)
			    01 6a 61636d652d72656c6179      #     1 Relay: "acme-relay"
		`},
		{"open session to a replica", func() ([]byte, error) {
			return Encode(TypeOpenSession, 42, OpenSessionRequest{Relay: "acme-relay", Outlet: "web", Avoid: []string{"Ia"}})
		}, `
			a3                                  # map(3)
			  01 04                             #   1 Type: 4 (open-session)
			  02 18 2a                          #   2 ID: 42
			  04 a3                             #   4 Body: map(3)
			    01 6a 61636d652d72656c6179      #     1 Relay: "acme-relay"
			    02 63 776562                    #     2 Outlet: "web"
			    03 81 62 4961                   #     3 Avoid: ["Ia"]
		`},
		{"node state", func() ([]byte, error) {
			return Encode(TypeNodeState, 8, NodeState{Draining: true, Down: []string{"web"}})
		}, `
			a3                                  # map(3)
			  01 0c                             #   1 Type: 12 (node-state)
			  02 08                             #   2 ID: 8
			  04 a3                             #   4 Body: map(3)
			    01 f4                           #     1 Paused: false (always sent)
			    02 f5                           #     2 Draining: true
			    03 81 63 776562                 #     3 Down: ["web"]
		`},
		{"node state, paused only", func() ([]byte, error) { return Encode(TypeNodeState, 8, NodeState{Paused: true}) }, `
			a3                                  # map(3)
			  01 0c                             #   1 Type: 12 (node-state)
			  02 08                             #   2 ID: 8
			  04 a1                             #   4 Body: map(1): as before replicas
			    01 f5                           #     1 Paused: true
		`},
		{"welcome", func() ([]byte, error) { return Encode(TypeWelcome, 0, Welcome{Role: RoleMember}) }, `
			a2                                  # map(2): a push has no ID
			  01 10                             #   1 Type: 16 (welcome)
			  04 a1                             #   4 Body: map(1)
			    01 66 6d656d626572              #     1 Role: "member"
		`},
		{"refused welcome", func() ([]byte, error) {
			return EncodeMsg(Msg{Type: TypeWelcome, Err: &Error{Code: ErrCodeBadCredential, Message: "no"}})
		}, `
			a2                                  # map(2)
			  01 10                             #   1 Type: 16 (welcome)
			  03 a2                             #   3 Err: map(2)
			    01 6e 6261642d63726564656e7469616c #   1 Code: "bad-credential"
			    02 62 6e6f                      #     2 Message: "no"
		`},
		{"command push", func() ([]byte, error) { return Encode(TypeCommand, 0, CommandPush{Seq: 7, Data: []byte{0xa0}}) }, `
			a2                                  # map(2)
			  01 0a                             #   1 Type: 10 (command)
			  04 a2                             #   4 Body: map(2)
			    01 07                           #     1 Seq: 7
			    02 41 a0                        #     2 Data: bytes(1) (the signed command)
		`},
		{"command ack", func() ([]byte, error) { return Encode(TypeCommandAck, 3, CommandAck{Seq: 7, Applied: true}) }, `
			a3                                  # map(3)
			  01 0b                             #   1 Type: 11 (command-ack)
			  02 03                             #   2 ID: 3
			  04 a2                             #   4 Body: map(2)
			    01 07                           #     1 Seq: 7
			    02 f5                           #     2 Applied: true
		`},
		{"empty answer", func() ([]byte, error) { return Encode(TypeResponse, 3, Empty{}) }, `
			a3                                  # map(3)
			  01 18 63                          #   1 Type: 99 (response)
			  02 03                             #   2 ID: 3
			  04 a0                             #   4 Body: map(0)
		`},
		{"error answer", func() ([]byte, error) { return EncodeError(5, &Error{Code: ErrCodeRelayTaken, Message: "taken"}) }, `
			a3                                  # map(3)
			  01 18 63                          #   1 Type: 99 (response)
			  02 05                             #   2 ID: 5
			  03 a2                             #   3 Err: map(2)
			    01 6b 72656c61792d74616b656e    #     1 Code: "relay-taken"
			    02 65 74616b656e                #     2 Message: "taken"
		`},
	}
	for _, tt := range tests {
		got, err := tt.got()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if want := unhex(t, tt.want); !bytes.Equal(got, want) {
			t.Errorf("%s: encoding = %x, want %x (control frames are read by nodes of other versions)", tt.name, got, want)
		}
	}
}

// bodies lists a zero value of every body type, so the fuzz target can
// decode any frame's body as each of them.
var bodies = []func() any{
	func() any { return new(ServerHello) }, func() any { return new(ClientHello) }, func() any { return new(Welcome) },
	func() any { return new(RevokedPush) }, func() any { return new(CredentialUpdate) }, func() any { return new(Revocations) },
	func() any { return new(AuthoritySession) }, func() any { return new(LiveStatus) }, func() any { return new(RedeemRequest) },
	func() any { return new(CredentialResponse) }, func() any { return new(RegisterRelayRequest) }, func() any { return new(OpenSessionRequest) },
	func() any { return new(OpenSessionResponse) }, func() any { return new(Incoming) }, func() any { return new(CreateTicketRequest) },
	func() any { return new(CreateTicketResponse) }, func() any { return new(Ping) }, func() any { return new(ChannelHello) },
	func() any { return new(StreamOpen) }, func() any { return new(CommandPush) },
	func() any { return new(CommandAck) }, func() any { return new(NodeState) }, func() any { return new(ReleaseCheck) },
	func() any { return new(ReleaseManifest) }, func() any { return new(ReleaseFetch) }, func() any { return new(ReleaseChunk) },
	func() any { return new(UpdateResult) },
}

// FuzzDecode: a frame that decodes re-encodes to bytes that decode to
// the same frame, and those bytes are a fixed point (so a canonical frame
// comes back byte for byte); a refused frame leaves nothing behind. Every
// body type that accepts the frame's body round-trips the same way.
func FuzzDecode(f *testing.F) {
	seeds := []struct {
		t  Type
		id uint64
		v  any
	}{
		{TypeOpenSession, 1, OpenSessionRequest{Relay: "r"}},
		{TypeOpenSession, 2, OpenSessionRequest{Relay: "r", Outlet: "web", Avoid: []string{"Ia", "Ib"}}},
		{TypeResponse, 2, OpenSessionResponse{Token: make([]byte, 32), Peer: "Ia", Healthy: 2}},
		{TypeNodeState, 3, NodeState{Paused: true, Draining: true, Down: []string{"db", "web"}}},
		{TypeResponse, 9, LiveStatus{Nodes: []NodeLive{{ID: "I2", Connected: true, Relay: "r", Replica: true, Draining: true, Down: []string{"web"}}}}},
		{TypeIncoming, 0, Incoming{Token: make([]byte, 32), Relay: "r", From: "I0"}},
		{TypeCreateTicket, 9, CreateTicketRequest{Attributes: map[string]string{"a": "true"}, Relay: "r", ExpiresIn: 3600, Uses: 2}},
		{TypeResponse, 9, LiveStatus{Nodes: []NodeLive{{ID: "I1", Connected: true, Relay: "r", LastSeen: 5}}}},
		{TypeCommand, 0, CommandPush{Seq: 3, Data: []byte{0xa0}}},
		{TypeWelcome, 0, Welcome{Role: RoleMember}},
		{TypePing, 4, nil},
	}
	for _, s := range seeds {
		b, err := Encode(s.t, s.id, s.v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	e, _ := EncodeError(7, &Error{Code: ErrCodeRelayUnknown, Message: "no such relay"})
	f.Add(e)
	f.Add([]byte{0xa0})
	f.Add([]byte{0xa2, 0x01, 0x04, 0x04, 0xa1, 0x01, 0x18, 0x01}) // a body in non-canonical CBOR
	f.Add([]byte{0xa2, 0x01, 0x04, 0x09, 0x01})                   // an unknown field
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			if !reflect.DeepEqual(m, Msg{}) {
				t.Fatalf("Decode returned %+v with error %v", m, err)
			}
			return
		}
		b1, err := EncodeMsg(m)
		if err != nil {
			t.Fatalf("a decoded frame does not encode: %v", err)
		}
		m2, err := Decode(b1)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("frame %+v re-encoded as %x decodes to %+v, %v", m, b1, m2, err)
		}
		if b2, _ := EncodeMsg(m2); !bytes.Equal(b1, b2) {
			t.Fatalf("frame encoding is not a fixed point: %x then %x", b1, b2)
		}
		for _, newBody := range bodies {
			v := newBody()
			if DecodeBody(m, v) != nil {
				continue
			}
			enc, err := Encode(m.Type, m.ID, reflect.ValueOf(v).Elem().Interface())
			if err != nil {
				t.Fatalf("%T decoded from %x does not encode: %v", v, data, err)
			}
			back, err := Decode(enc)
			if err != nil {
				t.Fatalf("%T re-encoded as %x: %v", v, enc, err)
			}
			v2 := newBody()
			if err := DecodeBody(back, v2); err != nil {
				t.Fatalf("%T re-encoded as %x does not decode: %v", v, enc, err)
			}
			if enc2, _ := Encode(back.Type, back.ID, reflect.ValueOf(v2).Elem().Interface()); !bytes.Equal(enc, enc2) {
				t.Fatalf("%T encoding is not a fixed point: %x then %x", v, enc, enc2)
			}
		}
	})
}
