// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in, want string // want: canonical String()
	}{
		{"inlet-from-saas", "inlet-from-saas"},
		{"a and b or c", "a and b or c"},
		{"a and (b or c)", "a and (b or c)"},
		{"not a and b", "not a and b"},
		{"not (a and b)", "not (a and b)"},
		{"tier = gold", "tier = gold"},
		{`tier != "gold plated"`, `tier != "gold plated"`},
		{`v = "say \"hi\""`, `v = "say \"hi\""`},
		{"identifier = I0123456789abcdef0123456789abcdef", "identifier = I0123456789abcdef0123456789abcdef"},
		{"  ((a))  ", "a"},
		{"x.y:z_w-1", "x.y:z_w-1"},
		{`a = "and"`, `a = "and"`},
	}
	for _, tt := range tests {
		e, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got := e.String(); got != tt.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
		again, err := Parse(e.String())
		if err != nil || again.String() != e.String() {
			t.Errorf("round trip of %q: %v", tt.in, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in      string
		offset  int
		wantErr string
	}{
		{"", 0, "empty expression"},
		{"   ", 0, "empty expression"},
		{"a and", 5, "expected an attribute name"},
		{"a b", 2, `unexpected "b"`},
		{"(a or b", 7, `missing ")"`},
		{"a)", 1, `unexpected ")"`},
		{"a = ", 4, "expected a value"},
		{"a = and", 4, "expected a value"},
		{"!a", 0, `"!" must be followed by "="`},
		{`a = "open`, 4, "unterminated"},
		{`a = "\n"`, 5, "bad escape"},
		{"identifier", 0, "must be compared"},
		{"a & b", 2, "unexpected character"},
		{"and", 0, "expected an attribute name"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		se, ok := err.(*SyntaxError)
		if !ok {
			t.Errorf("Parse(%q) = %v, want a SyntaxError", tt.in, err)
			continue
		}
		if se.Offset != tt.offset || !strings.Contains(se.Err, tt.wantErr) {
			t.Errorf("Parse(%q) = offset %d %q, want offset %d %q", tt.in, se.Offset, se.Err, tt.offset, tt.wantErr)
		}
	}
}

func TestLimits(t *testing.T) {
	long := strings.Repeat("a or ", MaxExprLen/5+1) + "a"
	if _, err := Parse(long); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("long expression: %v", err)
	}
	deep := strings.Repeat("(", MaxDepth+1) + "a" + strings.Repeat(")", MaxDepth+1)
	if _, err := Parse(deep); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("deep expression: %v", err)
	}
	nots := strings.Repeat("not ", MaxDepth+1) + "a"
	if _, err := Parse(nots); err == nil {
		t.Error("deep not chain accepted")
	}
	ok := strings.Repeat("(", MaxDepth-1) + "a" + strings.Repeat(")", MaxDepth-1)
	if _, err := Parse(ok); err != nil {
		t.Errorf("depth %d refused: %v", MaxDepth-1, err)
	}
}

func TestEval(t *testing.T) {
	peer := Peer{Identifier: "I01", Attributes: map[string]string{"inlet-from-saas": "true", "tier": "gold", "off": "false"}}
	tests := []struct {
		expr string
		want bool
	}{
		{"inlet-from-saas", true},
		{"off", false},
		{"missing", false},
		{"tier = gold", true},
		{"tier = silver", false},
		{"tier != silver", true},
		{"missing != x", true},
		{"missing = x", false},
		{"not missing", true},
		{"inlet-from-saas and tier = gold", true},
		{"inlet-from-saas and missing", false},
		{"missing or tier = gold", true},
		{"identifier = I01", true},
		{"identifier = I02", false},
		{"identifier != I02 and not off", true},
	}
	for _, tt := range tests {
		e, err := Parse(tt.expr)
		if err != nil {
			t.Fatal(err)
		}
		if got := Eval(e, peer); got != tt.want {
			t.Errorf("Eval(%q) = %v, want %v", tt.expr, got, tt.want)
		}
		if ok, why := Explain(e, peer); ok != tt.want || why == "" {
			t.Errorf("Explain(%q) = %v, %q", tt.expr, ok, why)
		}
	}
	if Eval(nil, peer) {
		t.Error("nil policy allowed")
	}
}

func TestExplain(t *testing.T) {
	peer := Peer{Identifier: "I01", Attributes: map[string]string{"tier": "silver"}}
	tests := []struct{ expr, want string }{
		{"inlet-from-saas", `attribute "inlet-from-saas" is not "true" (absent)`},
		{"tier", `attribute "tier" is "silver", not "true"`},
		{"tier = gold", `attribute "tier" is "silver" (must be "gold")`},
		{"identifier = I02", `identifier is "I01" (must be "I02")`},
		{"a or b", `attribute "a" is not "true" (absent); and attribute "b" is not "true" (absent)`},
	}
	for _, tt := range tests {
		e, _ := Parse(tt.expr)
		if ok, why := Explain(e, peer); ok || why != tt.want {
			t.Errorf("Explain(%q) = %v, %q; want %q", tt.expr, ok, why, tt.want)
		}
	}
	if ok, why := Explain(nil, peer); ok || !strings.Contains(why, "nothing is allowed") {
		t.Errorf("Explain(nil) = %v %q", ok, why)
	}
}

func TestValidAttributeName(t *testing.T) {
	for _, s := range []string{"a", "inlet-from-saas", "x.y:z_1"} {
		if !ValidAttributeName(s) {
			t.Errorf("%q refused", s)
		}
	}
	for _, s := range []string{"", "a b", "=", "-a", "and", strings.Repeat("a", 129), "a=b"} {
		if ValidAttributeName(s) {
			t.Errorf("%q accepted", s)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"a", "a and (b or not c)", `t = "x\"y"`, "identifier = I0", "((", "a = ", "not not a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s)
		if err != nil {
			if e != nil {
				t.Fatal("expression and error")
			}
			return
		}
		again, err := Parse(e.String())
		if err != nil {
			t.Fatalf("String() %q of %q does not parse: %v", e.String(), s, err)
		}
		if again.String() != e.String() {
			t.Fatalf("round trip changed %q to %q", e.String(), again.String())
		}
		Explain(e, Peer{Attributes: map[string]string{"a": "true"}})
	})
}

func BenchmarkEval(b *testing.B) {
	e, _ := Parse(`a and (b or c = "x") and not d`)
	peer := Peer{Identifier: "I0", Attributes: map[string]string{"a": "true", "c": "x"}}
	b.ReportAllocs()
	for b.Loop() {
		if !Eval(e, peer) {
			b.Fatal("denied")
		}
	}
}
