// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package wire is the shared vocabulary of hub and nodes: the protocol
// version, the plaintext connection preface, the CBOR modes used for
// everything on the wire and on disk, and the length-prefixed message
// framing used inside Noise streams.
//
// # Protocol versions
//
//	1: first version: control and data prefaces, Noise XX everywhere,
//	   CBOR control messages (see wire/control).
//	2: the relay holds no signing key: a node presents its credential in
//	   the control hello, reaches the authority end to end over an
//	   authority connection ('A'), and the preface offers a version range.
//
// A preface offers a range (min..max); the hub picks the highest version
// both sides speak and says which in its hello. The offer is mixed into
// the Noise prologue, so a peer in the middle cannot lower it unnoticed,
// and a peer speaking no common version fails with a message naming both
// ranges instead of misreading messages.
//
// This package imports only fxamacker/cbor and the standard library; it may
// be imported by any package in the module.
package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"
)

// Protocol versions this build speaks (see the package doc for their
// history).
const (
	MinProtocolVersion = 2
	ProtocolVersion    = 2
)

// Preface magic: every TCP connection to the hub starts with these bytes,
// then the lowest and highest version offered, then a kind byte.
var prefaceMagic = [4]byte{'E', 'P', 'X', '!'}

// Connection kinds.
const (
	KindControl   byte = 'C' // Noise XX with the relay, then control messages
	KindData      byte = 'D' // a session token, then spliced to the peer's data connection
	KindAuthority byte = 'A' // spliced to the authority, for Noise end to end with it
)

// PrefaceLen is the length of a connection preface.
const PrefaceLen = 7

// TokenLen is the length of a data-session token.
const TokenLen = 32

// Offer is the range of protocol versions a preface offers.
type Offer struct{ Min, Max byte }

// OurOffer is what this build offers.
var OurOffer = Offer{MinProtocolVersion, ProtocolVersion}

// Choose returns the highest version both o and this build speak.
func (o Offer) Choose() (int, error) {
	lo, hi := max(int(o.Min), MinProtocolVersion), min(int(o.Max), ProtocolVersion)
	if o.Min > o.Max || lo > hi {
		return 0, fmt.Errorf("no common protocol version: the peer speaks %d..%d, this side %d..%d", o.Min, o.Max, MinProtocolVersion, ProtocolVersion)
	}
	return hi, nil
}

// Preface returns the preface bytes for a connection of the given kind.
func Preface(kind byte) []byte {
	return []byte{prefaceMagic[0], prefaceMagic[1], prefaceMagic[2], prefaceMagic[3], OurOffer.Min, OurOffer.Max, kind}
}

// ErrBadPreface is returned by ReadPreface when the peer does not speak
// this protocol.
var ErrBadPreface = errors.New("not a hub protocol connection (bad preface)")

// ReadPreface reads a connection preface and returns its kind and the
// version range it offers, refusing a range with no version in common.
func ReadPreface(r io.Reader) (byte, Offer, error) {
	var b [PrefaceLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, Offer{}, fmt.Errorf("read preface: %w", err)
	}
	if !bytes.Equal(b[:4], prefaceMagic[:]) {
		return 0, Offer{}, ErrBadPreface
	}
	o := Offer{b[4], b[5]}
	if _, err := o.Choose(); err != nil {
		return 0, o, err
	}
	switch b[6] {
	case KindControl, KindData, KindAuthority:
		return b[6], o, nil
	}
	return 0, o, fmt.Errorf("unknown connection kind %q", b[6])
}

// Prologue returns the Noise prologue for a purpose ("control",
// "authority", "portal"), the version range the connection's preface
// offered, and optional binding bytes (a session token).
func Prologue(purpose string, o Offer, binding []byte) []byte {
	p := fmt.Appendf(nil, "edgeportal/%d-%d/%s\x00", o.Min, o.Max, purpose)
	return append(p, binding...)
}

// MaxMessageSize is the largest framed message (control message, portal
// result) accepted from a peer. Control messages are small; release
// binaries travel in chunks well under this.
const MaxMessageSize = 1 << 20

// ErrMessageTooLarge is returned for a frame above MaxMessageSize.
var ErrMessageTooLarge = fmt.Errorf("message larger than %d bytes", MaxMessageSize)

// WriteMessage writes one length-prefixed message (uint32 big-endian).
func WriteMessage(w io.Writer, msg []byte) error {
	if len(msg) > MaxMessageSize {
		return ErrMessageTooLarge
	}
	buf := make([]byte, 4+len(msg))
	binary.BigEndian.PutUint32(buf, uint32(len(msg)))
	copy(buf[4:], msg)
	_, err := w.Write(buf)
	return err
}

// ReadMessage reads one length-prefixed message.
func ReadMessage(r io.Reader) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n > MaxMessageSize {
		return nil, ErrMessageTooLarge
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return msg, nil
}

// CBOR limits for untrusted input.
const (
	maxNestedLevels  = 16
	maxArrayElements = 4096
	maxMapPairs      = 1024
)

var (
	encMode    cbor.EncMode
	strictDec  cbor.DecMode
	lenientDec cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	opts := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MaxNestedLevels:  maxNestedLevels,
		MaxArrayElements: maxArrayElements,
		MaxMapPairs:      maxMapPairs,
		UTF8:             cbor.UTF8RejectInvalid,
	}
	if lenientDec, err = opts.DecMode(); err != nil {
		panic(err)
	}
	opts.ExtraReturnErrors = cbor.ExtraDecErrorUnknownField
	if strictDec, err = opts.DecMode(); err != nil {
		panic(err)
	}
}

// Marshal encodes v with core deterministic encoding (RFC 8949 §4.2.1), so
// signed bytes are reproducible.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes untrusted CBOR with strict limits. Unknown fields are
// ignored, so newer peers can add fields; use UnmarshalStrict for signed
// statements and files where every field must be understood.
func Unmarshal(data []byte, v any) error { return lenientDec.Unmarshal(data, v) }

// UnmarshalStrict is Unmarshal that also refuses unknown fields.
func UnmarshalStrict(data []byte, v any) error { return strictDec.Unmarshal(data, v) }
