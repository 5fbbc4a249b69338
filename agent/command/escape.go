// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package command

import "github.com/edgeportal/connect/internal/escape"

// MaxShown is how many bytes of a peer- or vendor-chosen string Escape
// shows (see internal/escape).
const MaxShown = escape.MaxShown

// Escape makes a peer- or vendor-chosen string safe to print on one line
// (internal/escape.String).
func Escape(s string) string { return escape.String(s) }

// maxField bounds a peer- or vendor-chosen field of an audit record.
const maxField = 512

// clip bounds a string kept in an audit record: valid UTF-8, at most
// maxField bytes, cut on a character boundary with "…(N bytes)" when
// longer. The JSON encoding of the record escapes control characters, so
// a clipped value still cannot break the one-record-per-line format.
func clip(s string) string { return escape.Clip(s, maxField) }
