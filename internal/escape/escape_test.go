// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package escape

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"web", "web"},
		{"a b", "a b"},
		{`a\b`, `a\\b`},
		{"line\nfake: record", `line\nfake: record`},
		{"\x1b[31mred", `\x1b[31mred`},
		{"tab\there\r", `tab\there\r`},
		{"\xff\xfe", `\xff\xfe`},
		{"evil\u202egnp.exe", `evil\u202egnp.exe`},
		{"café", "café"},
		{"\U000e0001tag", `\U000e0001tag`},
	} {
		if got := String(c.in); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	long := strings.Repeat("é", 100) // 200 bytes
	got := String(long)
	if !strings.HasSuffix(got, "…(200 bytes)") || !utf8.ValidString(got) || len(got) > MaxShown+len("…(200 bytes)") {
		t.Fatalf("long string: %q", got)
	}
}

// TestStringInjective: different strings that fit never print the same
// (so an escaped name cannot pose as another).
func TestStringInjective(t *testing.T) {
	seen := map[string]string{}
	for _, s := range []string{`\n`, "\n", `\x1b`, "\x1b", `\\`, `\`, `\xff`, "\xff", `\u202e`, "\u202e", "a", "a "} {
		e := String(s)
		if prev, ok := seen[e]; ok {
			t.Fatalf("%q and %q both print as %q", prev, s, e)
		}
		seen[e] = s
	}
}

func TestClip(t *testing.T) {
	if got := Clip("short", 10); got != "short" {
		t.Fatalf("Clip short: %q", got)
	}
	if got := Clip("bad\xffutf8", 64); !utf8.ValidString(got) {
		t.Fatalf("Clip keeps invalid UTF-8: %q", got)
	}
	got := Clip(strings.Repeat("é", 10), 5) // cut inside the third é
	if got != "éé…(20 bytes)" {
		t.Fatalf("Clip: %q", got)
	}
}
