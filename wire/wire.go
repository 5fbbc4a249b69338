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
//
// The version is in the preface and mixed into every Noise prologue, so a
// peer speaking another version fails the handshake instead of misreading
// messages.
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

// ProtocolVersion is the current protocol version (see the package doc for
// its history).
const ProtocolVersion = 1

// Preface magic: every TCP connection to the hub starts with these bytes,
// then the version byte, then a kind byte.
var prefaceMagic = [4]byte{'E', 'P', 'X', '!'}

// Connection kinds.
const (
	KindControl byte = 'C' // Noise XX with the hub, then control messages
	KindData    byte = 'D' // a session token, then spliced to the peer's data connection
)

// PrefaceLen is the length of a connection preface.
const PrefaceLen = 6

// TokenLen is the length of a data-session token.
const TokenLen = 32

// Preface returns the preface bytes for a connection of the given kind.
func Preface(kind byte) []byte {
	return []byte{prefaceMagic[0], prefaceMagic[1], prefaceMagic[2], prefaceMagic[3], ProtocolVersion, kind}
}

// ErrBadPreface is returned by ReadPreface when the peer does not speak
// this protocol.
var ErrBadPreface = errors.New("not a hub protocol connection (bad preface)")

// ReadPreface reads a connection preface and returns its kind.
func ReadPreface(r io.Reader) (byte, error) {
	var b [PrefaceLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, fmt.Errorf("read preface: %w", err)
	}
	if !bytes.Equal(b[:4], prefaceMagic[:]) {
		return 0, ErrBadPreface
	}
	if b[4] != ProtocolVersion {
		return 0, fmt.Errorf("unsupported protocol version %d (this side speaks %d)", b[4], ProtocolVersion)
	}
	switch b[5] {
	case KindControl, KindData:
		return b[5], nil
	}
	return 0, fmt.Errorf("unknown connection kind %q", b[5])
}

// Prologue returns the Noise prologue for a purpose ("control", "portal")
// and optional binding bytes (a session token).
func Prologue(purpose string, binding []byte) []byte {
	p := fmt.Appendf(nil, "edgeportal/%d/%s\x00", ProtocolVersion, purpose)
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
