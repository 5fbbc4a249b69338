// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package command

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"github", "github"},
		{"two words", "two words"},
		{"café ✓", "café ✓"},
		{"a\nb", `a\nb`},
		{"a\r\nb", `a\r\nb`},
		{"col\tumn", `col\tumn`},
		{"\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
		{"\x00\x07\x7f", `\x00\x07\x7f`},
		{`back\slash`, `back\\slash`},
		{`\n`, `\\n`}, // a literal backslash-n is not a newline
		{"bad \xff utf8", `bad \xff utf8`},
		{"evil\u202egnp.exe", `evil\u202egnp.exe`}, // right-to-left override
		{"zero\u200bwidth", `zero\u200bwidth`},
		{"\U000e0001tag", `\U000e0001tag`},
		{strings.Repeat("a", MaxShown), strings.Repeat("a", MaxShown)},
		{strings.Repeat("a", MaxShown+1), strings.Repeat("a", MaxShown) + "…(129 bytes)"},
		{strings.Repeat("x\n", 8<<10), strings.Repeat(`x\n`, MaxShown/2) + "…(16384 bytes)"},
		{strings.Repeat("a", MaxShown-1) + "é", strings.Repeat("a", MaxShown-1) + "é"}, // cut after the whole character
	}
	for _, tt := range tests {
		if got := Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%.40q) = %.80q, want %.80q", tt.in, got, tt.want)
		}
	}
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "github", "a\nb", "\x1b[2J", "\xff\xfe", "evil\u202e", `\x41`, strings.Repeat("é", 100)} {
		f.Add(s, "x")
	}
	f.Fuzz(func(t *testing.T, s, other string) {
		e := Escape(s)
		if !utf8.ValidString(e) {
			t.Fatalf("Escape(%q) = %q: invalid UTF-8", s, e)
		}
		for _, r := range e {
			if r < 0x20 || r == 0x7f || r == '\u202e' || r == '\u2066' {
				t.Fatalf("Escape(%q) = %q: raw %U", s, e, r)
			}
		}
		if len(e) > MaxShown*10+32 {
			t.Fatalf("Escape of %d bytes gave %d", len(s), len(e))
		}
		if len(s) <= MaxShown && len(other) <= MaxShown && s != other && e == Escape(other) {
			t.Fatalf("Escape(%q) == Escape(%q)", s, other)
		}
	})
}
