// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestPreface(t *testing.T) {
	for _, k := range []byte{KindControl, KindData, KindAuthority} {
		got, o, err := ReadPreface(bytes.NewReader(Preface(k)))
		if err != nil || got != k || o != OurOffer {
			t.Errorf("ReadPreface(Preface(%q)) = %q, %v, %v", k, got, o, err)
		}
	}
	tests := []struct {
		name, in, wantErr string
	}{
		{"http", "GET / HTTP/1.1\r\n", "bad preface"},
		{"short", "EPX", "read preface"},
		{"too new", "EPX!\x09\x0aC", "no common protocol version: the peer speaks 9..10"},
		{"too old", "EPX!\x01\x01C", "no common protocol version: the peer speaks 1..1"},
		{"inverted", "EPX!\x03\x02C", "no common protocol version"},
		{"kind", "EPX!\x02\x02Z", "unknown connection kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ReadPreface(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestVersionRange: a newer peer that still speaks this build's version
// is answered with it; the highest common version wins.
func TestVersionRange(t *testing.T) {
	tests := []struct {
		o    Offer
		want int
	}{
		{Offer{MinProtocolVersion, ProtocolVersion}, ProtocolVersion},
		{Offer{MinProtocolVersion, ProtocolVersion + 5}, ProtocolVersion},
		{Offer{1, ProtocolVersion}, ProtocolVersion},
	}
	for _, tt := range tests {
		if got, err := tt.o.Choose(); err != nil || got != tt.want {
			t.Errorf("%v.Choose() = %d, %v; want %d", tt.o, got, err, tt.want)
		}
	}
	if !bytes.Equal(Prologue("control", Offer{2, 3}, nil), []byte("edgeportal/2-3/control\x00")) {
		t.Errorf("prologue %q", Prologue("control", Offer{2, 3}, nil))
	}
}

func TestMessageRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	for _, m := range [][]byte{{}, []byte("hello"), bytes.Repeat([]byte{7}, MaxMessageSize)} {
		buf.Reset()
		if err := WriteMessage(&buf, m); err != nil {
			t.Fatal(err)
		}
		got, err := ReadMessage(&buf)
		if err != nil || !bytes.Equal(got, m) {
			t.Fatalf("round trip of %d bytes: %v", len(m), err)
		}
	}
}

// TestMessageSize pins the frame limit: a header that claims more than
// MaxMessageSize is refused before anything is allocated.
func TestMessageSize(t *testing.T) {
	if err := WriteMessage(io.Discard, make([]byte, MaxMessageSize+1)); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("write oversized: %v", err)
	}
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], MaxMessageSize+1)
	if _, err := ReadMessage(bytes.NewReader(h[:])); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("read oversized: %v", err)
	}
	binary.BigEndian.PutUint32(h[:], 10)
	if _, err := ReadMessage(bytes.NewReader(append(h[:], 1, 2, 3))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read truncated: %v", err)
	}
}

type sample struct {
	A int               `cbor:"1,keyasint"`
	B string            `cbor:"2,keyasint"`
	M map[string]string `cbor:"3,keyasint"`
}

func TestCBORDeterministic(t *testing.T) {
	v := sample{A: 1, B: "x", M: map[string]string{"b": "2", "a": "1", "c": "3"}}
	first, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		again, _ := Marshal(v)
		if !bytes.Equal(first, again) {
			t.Fatal("encoding is not deterministic")
		}
	}
	// Golden bytes: map(3) {1: 1, 2: "x", 3: {"a":"1","b":"2","c":"3"}}
	const golden = "a3010102617803a3616161316162613261636133"
	if got := hex.EncodeToString(first); got != golden {
		t.Errorf("encoding = %s, want %s", got, golden)
	}
}

func TestCBORLimits(t *testing.T) {
	deep := bytes.Repeat([]byte{0x81}, 100) // 100 nested one-element arrays
	deep = append(deep, 0x01)
	var v any
	if err := Unmarshal(deep, &v); err == nil {
		t.Error("deeply nested CBOR accepted")
	}
	huge := []byte{0x9a, 0x7f, 0xff, 0xff, 0xff} // array claiming 2^31-1 elements
	if err := Unmarshal(huge, &v); err == nil {
		t.Error("huge array header accepted")
	}
	dup := []byte{0xa2, 0x01, 0x01, 0x01, 0x02} // {1:1, 1:2}
	var s sample
	if err := Unmarshal(dup, &s); err == nil {
		t.Error("duplicate map key accepted")
	}
	unknown := []byte{0xa1, 0x09, 0x01} // {9:1}
	if err := Unmarshal(unknown, &s); err != nil {
		t.Errorf("lenient decode refused an unknown field: %v", err)
	}
	if err := UnmarshalStrict(unknown, &s); err == nil {
		t.Error("strict decode accepted an unknown field")
	}
	indef := []byte{0x9f, 0x01, 0xff}
	if err := Unmarshal(indef, &v); err == nil {
		t.Error("indefinite-length array accepted")
	}
}

// FuzzReadMessage: a message is returned only whole and within the
// limit, with nothing on error, and writing it back gives exactly the
// bytes it was read from (the framing has one encoding).
func FuzzReadMessage(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c'})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c', 'd'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x00, 0x10, 0x00, 0x01}) // MaxMessageSize+1
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ReadMessage(bytes.NewReader(b))
		if err != nil {
			if m != nil {
				t.Fatalf("ReadMessage returned %d bytes with error %v", len(m), err)
			}
			if len(b) >= 4 && binary.BigEndian.Uint32(b) > MaxMessageSize && !errors.Is(err, ErrMessageTooLarge) {
				t.Fatalf("oversized header refused with %v, want ErrMessageTooLarge", err)
			}
			return
		}
		if len(m) > MaxMessageSize {
			t.Fatalf("message of %d bytes returned (limit %d)", len(m), MaxMessageSize)
		}
		var buf bytes.Buffer
		if err := WriteMessage(&buf, m); err != nil {
			t.Fatalf("WriteMessage of a message ReadMessage returned: %v", err)
		}
		if !bytes.Equal(buf.Bytes(), b[:4+len(m)]) {
			t.Fatalf("re-framed %x, read from %x", buf.Bytes(), b[:4+len(m)])
		}
	})
}

func FuzzReadPreface(f *testing.F) {
	f.Add(Preface(KindControl))
	f.Add(Preface(KindData))
	f.Add([]byte("GET / HTTP/1.1"))
	f.Add(Preface(KindAuthority))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, o, err := ReadPreface(bytes.NewReader(b))
		if err != nil {
			return
		}
		// Only a known kind and a range with a version in common pass,
		// and the preface read back is exactly the bytes given.
		if k != KindControl && k != KindData && k != KindAuthority {
			t.Fatalf("kind %q accepted", k)
		}
		if v, err := o.Choose(); err != nil || v < MinProtocolVersion || v > ProtocolVersion {
			t.Fatalf("offer %v accepted: %d, %v", o, v, err)
		}
		if !bytes.Equal(b[:PrefaceLen], append(append([]byte("EPX!"), o.Min, o.Max), k)) {
			t.Fatalf("preface %q read as %q %v", b[:PrefaceLen], k, o)
		}
	})
}
