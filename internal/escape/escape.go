// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package escape makes strings that a peer or the vendor chose safe to
// print: on a terminal, in a table, in a log line. The node's audit log and
// the hub's lists (command acks, update results) both use it.
//
// A leaf: stdlib only.
package escape

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxShown is how many bytes of a peer- or vendor-chosen string String
// shows before it cuts the rest off with a marker.
const MaxShown = 128

// String makes a string that a peer or the vendor chose (an outlet name,
// a reason, an ack or update-result message) safe to print on one line of
// a terminal, a table or a log: printable characters and spaces are kept;
// a backslash, control characters (newlines, tabs, escape codes),
// invalid UTF-8 and invisible or direction-changing characters become
// visible escapes (\\, \n, \t, \x1b, \xff, \u202e); and a string longer
// than MaxShown bytes is cut on a character boundary and ends with
// "…(N bytes)", N being its full length. Two different strings that fit
// never escape to the same text.
func String(s string) string {
	simple := len(s) <= MaxShown
	for i := 0; simple && i < len(s); i++ {
		simple = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\'
	}
	if simple {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if i >= MaxShown {
			b.WriteString("…(" + strconv.Itoa(len(s)) + " bytes)")
			break
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x`)
			b.WriteString(hex2(s[i]))
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\x`)
			b.WriteString(hex2(byte(r)))
		case r == ' ' || unicode.IsPrint(r) && !unicode.Is(unicode.Bidi_Control, r):
			b.WriteString(s[i : i+n])
		case r <= 0xffff:
			q := strconv.FormatInt(int64(r), 16)
			b.WriteString(`\u` + strings.Repeat("0", 4-len(q)) + q)
		default:
			q := strconv.FormatInt(int64(r), 16)
			b.WriteString(`\U` + strings.Repeat("0", 8-len(q)) + q)
		}
		i += n
	}
	return b.String()
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&0xf]})
}

// Clip bounds what is stored of a peer-chosen string: valid UTF-8, at
// most max bytes, cut on a character boundary and marked with its full
// length.
func Clip(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
