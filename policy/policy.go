// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package policy is the attribute expression language that decides who may
// use an inlet or an outlet: parse, evaluate against a peer's attested
// attributes and identifier, and explain a decision.
//
//	inlet-from-saas                         attribute is "true"
//	tier = gold, tier != trial              compare a value
//	identifier = I0123…                     pin one peer
//	a and (b or not c)                      combine
//
// Expressions are a closed sum type, modelled on go/build/constraint.
//
// # Missing attributes
//
// A missing attribute never matches, as in Ockam's attribute-based access
// control: for a peer without tier, "tier", "tier = gold" and
// "tier != trial" are all unknown rather than false, and "not tier" is
// unknown too. Evaluation uses Kleene's three-valued logic (false and
// anything is false, true or anything is true, otherwise unknown) and only
// a true result allows. So a policy allows a peer only if it would allow
// it whatever values the peer's missing attributes had: nothing is ever
// granted because an attribute is absent. Where Ockam denies as soon as
// evaluation touches an unbound attribute (so that "a or b" can depend on
// the order of its operands), this rule gives the same answer for any
// order.
//
// This package is a leaf (stdlib only); any package may import it.
package policy

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Resource types that can carry a default policy.
const (
	TCPInlet  = "tcp-inlet"
	TCPOutlet = "tcp-outlet"
)

// ValidResourceType reports whether s names a resource type.
func ValidResourceType(s string) bool { return s == TCPInlet || s == TCPOutlet }

// Limits on expressions.
const (
	// MaxExprLen bounds the length of an expression in bytes.
	MaxExprLen = 4096
	// MaxDepth bounds nesting (parentheses and not).
	MaxDepth = 64
	// maxNameLen bounds an attribute name.
	maxNameLen = 128
)

// identifierName is the pseudo-attribute that compares the peer identifier.
const identifierName = "identifier"

// Expr is a policy expression.
type Expr interface {
	String() string
	isExpr()
}

// AttrExpr is a bare attribute name: true when the attribute is "true".
type AttrExpr struct{ Name string }

// CmpExpr compares an attribute (or the identifier) with a value.
type CmpExpr struct {
	Name, Value string
	Neq         bool
}

// NotExpr negates X.
type NotExpr struct{ X Expr }

// AndExpr is X and Y.
type AndExpr struct{ X, Y Expr }

// OrExpr is X or Y.
type OrExpr struct{ X, Y Expr }

func (*AttrExpr) isExpr() {}
func (*CmpExpr) isExpr()  {}
func (*NotExpr) isExpr()  {}
func (*AndExpr) isExpr()  {}
func (*OrExpr) isExpr()   {}

func (e *AttrExpr) String() string { return e.Name }
func (e *CmpExpr) String() string {
	op := " = "
	if e.Neq {
		op = " != "
	}
	return e.Name + op + quote(e.Value)
}
func (e *NotExpr) String() string { return "not " + paren(e.X, 3) }
func (e *AndExpr) String() string { return paren(e.X, 2) + " and " + paren(e.Y, 2) }
func (e *OrExpr) String() string  { return paren(e.X, 1) + " or " + paren(e.Y, 1) }

func prec(e Expr) int {
	switch e.(type) {
	case *OrExpr:
		return 1
	case *AndExpr:
		return 2
	}
	return 3
}

func paren(e Expr, min int) string {
	if prec(e) < min {
		return "(" + e.String() + ")"
	}
	return e.String()
}

func quote(v string) string {
	if v != "" && isWord(v) && !isKeyword(v) {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	// Bytes, not runes: a value that is not valid UTF-8 shows as itself,
	// not as U+FFFD (another value).
	for _, c := range []byte(v) {
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String()
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-'
}

func isWord(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return true
}

func isKeyword(s string) bool { return s == "and" || s == "or" || s == "not" }

// ValidAttributeName reports whether s can be an attribute name.
func ValidAttributeName(s string) bool {
	return s != "" && len(s) <= maxNameLen && s[0] != '-' && isWord(s) && !isKeyword(s)
}

// SyntaxError is a parse error at a byte offset of the expression.
type SyntaxError struct {
	Offset int
	Err    string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("policy: at offset %d: %s", e.Offset, e.Err) }

type token struct {
	kind string // "word", "string", "(", ")", "=", "!=", "end"
	val  string
	pos  int
}

type parser struct {
	s     string
	pos   int
	tok   token
	depth int
}

// Parse parses an expression.
func Parse(s string) (Expr, error) {
	if len(s) > MaxExprLen {
		return nil, &SyntaxError{Offset: MaxExprLen, Err: fmt.Sprintf("expression longer than %d bytes", MaxExprLen)}
	}
	p := &parser{s: s}
	if err := p.next(); err != nil {
		return nil, err
	}
	if p.tok.kind == "end" {
		return nil, &SyntaxError{Offset: 0, Err: "empty expression"}
	}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != "end" {
		return nil, &SyntaxError{Offset: p.tok.pos, Err: fmt.Sprintf("unexpected %s", p.tok.describe())}
	}
	return e, nil
}

func (t token) describe() string {
	switch t.kind {
	case "end":
		return "end of expression"
	case "word":
		return fmt.Sprintf("%q", t.val)
	case "string":
		return "quoted string"
	}
	return fmt.Sprintf("%q", t.kind)
}

func (p *parser) next() error {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t' || p.s[p.pos] == '\n' || p.s[p.pos] == '\r') {
		p.pos++
	}
	start := p.pos
	if p.pos >= len(p.s) {
		p.tok = token{kind: "end", pos: start}
		return nil
	}
	c := p.s[p.pos]
	switch {
	case c == '(' || c == ')' || c == '=':
		p.pos++
		p.tok = token{kind: string(c), pos: start}
	case c == '!':
		if p.pos+1 < len(p.s) && p.s[p.pos+1] == '=' {
			p.pos += 2
			p.tok = token{kind: "!=", pos: start}
			return nil
		}
		return &SyntaxError{Offset: start, Err: `"!" must be followed by "=" (use "not" to negate)`}
	case c == '"':
		var b strings.Builder
		p.pos++
		for {
			if p.pos >= len(p.s) {
				return &SyntaxError{Offset: start, Err: "unterminated quoted string"}
			}
			c := p.s[p.pos]
			if c == '"' {
				p.pos++
				break
			}
			if c == '\\' {
				if p.pos+1 >= len(p.s) || (p.s[p.pos+1] != '"' && p.s[p.pos+1] != '\\') {
					return &SyntaxError{Offset: p.pos, Err: `bad escape (only \" and \\)`}
				}
				p.pos++
				c = p.s[p.pos]
			}
			b.WriteByte(c)
			p.pos++
		}
		p.tok = token{kind: "string", val: b.String(), pos: start}
	case isNameByte(c):
		for p.pos < len(p.s) && isNameByte(p.s[p.pos]) {
			p.pos++
		}
		p.tok = token{kind: "word", val: p.s[start:p.pos], pos: start}
	default:
		return &SyntaxError{Offset: start, Err: fmt.Sprintf("unexpected character %s", strconv.QuoteRune(rune(c)))}
	}
	return nil
}

func (p *parser) or() (Expr, error) {
	x, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.tok.kind == "word" && p.tok.val == "or" {
		if err := p.next(); err != nil {
			return nil, err
		}
		y, err := p.and()
		if err != nil {
			return nil, err
		}
		x = &OrExpr{X: x, Y: y}
	}
	return x, nil
}

func (p *parser) and() (Expr, error) {
	x, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.tok.kind == "word" && p.tok.val == "and" {
		if err := p.next(); err != nil {
			return nil, err
		}
		y, err := p.unary()
		if err != nil {
			return nil, err
		}
		x = &AndExpr{X: x, Y: y}
	}
	return x, nil
}

func (p *parser) unary() (Expr, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > MaxDepth {
		return nil, &SyntaxError{Offset: p.tok.pos, Err: fmt.Sprintf("expression nested deeper than %d", MaxDepth)}
	}
	t := p.tok
	switch {
	case t.kind == "word" && t.val == "not":
		if err := p.next(); err != nil {
			return nil, err
		}
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &NotExpr{X: x}, nil
	case t.kind == "(":
		if err := p.next(); err != nil {
			return nil, err
		}
		x, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.tok.kind != ")" {
			return nil, &SyntaxError{Offset: p.tok.pos, Err: fmt.Sprintf("missing \")\" (found %s)", p.tok.describe())}
		}
		if err := p.next(); err != nil {
			return nil, err
		}
		return x, nil
	case t.kind == "word" && !isKeyword(t.val):
		if len(t.val) > maxNameLen {
			return nil, &SyntaxError{Offset: t.pos, Err: fmt.Sprintf("attribute name longer than %d bytes", maxNameLen)}
		}
		if err := p.next(); err != nil {
			return nil, err
		}
		if p.tok.kind == "=" || p.tok.kind == "!=" {
			neq := p.tok.kind == "!="
			if err := p.next(); err != nil {
				return nil, err
			}
			v := p.tok
			if v.kind != "string" && (v.kind != "word" || isKeyword(v.val)) {
				return nil, &SyntaxError{Offset: v.pos, Err: fmt.Sprintf("expected a value after %q, found %s", map[bool]string{false: "=", true: "!="}[neq], v.describe())}
			}
			if err := p.next(); err != nil {
				return nil, err
			}
			return &CmpExpr{Name: t.val, Value: v.val, Neq: neq}, nil
		}
		if t.val == identifierName {
			return nil, &SyntaxError{Offset: t.pos, Err: `"identifier" must be compared: identifier = I…`}
		}
		return &AttrExpr{Name: t.val}, nil
	}
	return nil, &SyntaxError{Offset: t.pos, Err: fmt.Sprintf("expected an attribute name, \"not\" or \"(\", found %s", t.describe())}
}

// Peer is what a policy is evaluated against: the peer's identifier and
// its attested attributes.
type Peer struct {
	Identifier string
	Attributes map[string]string
}

// lookup returns the value of an attribute (or the identifier) and whether
// the peer has it. An empty identifier counts as absent.
func (p Peer) lookup(name string) (string, bool) {
	if name == identifierName {
		return p.Identifier, p.Identifier != ""
	}
	v, ok := p.Attributes[name]
	return v, ok
}

// truth is the value of an expression under Kleene's three-valued logic:
// an atom about an attribute the peer does not have is unknown, neither
// true nor false.
type truth int8

const (
	unknown truth = iota
	isFalse
	isTrue
)

func truthOf(b bool) truth {
	if b {
		return isTrue
	}
	return isFalse
}

// Eval reports whether peer satisfies e. A nil e allows nothing.
//
// A missing attribute never matches: "tier = gold", "tier != trial" and
// the bare "tier" are all unknown for a peer without tier, and so is their
// negation. "and" is false when either side is false, true when both are
// true, unknown otherwise; "or" is true when either side is true, false
// when both are false, unknown otherwise. Only a true result allows, so an
// expression allows a peer only if it would allow it whatever values its
// missing attributes had: absence never grants access.
func Eval(e Expr, peer Peer) bool {
	t, _ := eval(e, peer, false)
	return t == isTrue
}

// Explain is Eval with a short human reason for the decision, naming the
// attribute that decided it ("attribute tier is absent").
func Explain(e Expr, peer Peer) (bool, string) {
	if e == nil {
		return false, "no policy: nothing is allowed"
	}
	t, why := eval(e, peer, true)
	return t == isTrue, why
}

// eval evaluates e; with why it also says why (only then does it
// allocate).
func eval(e Expr, peer Peer, why bool) (truth, string) {
	switch e := e.(type) {
	case *AttrExpr:
		v, ok := peer.lookup(e.Name)
		switch {
		case !ok:
			if !why {
				return unknown, ""
			}
			return unknown, fmt.Sprintf("attribute %s is absent (a missing attribute never matches)", e.Name)
		case v == "true":
			if !why {
				return isTrue, ""
			}
			return isTrue, fmt.Sprintf("attribute %s is \"true\"", e.Name)
		}
		if !why {
			return isFalse, ""
		}
		return isFalse, fmt.Sprintf("attribute %s is %q, not \"true\"", e.Name, v)
	case *CmpExpr:
		v, ok := peer.lookup(e.Name)
		t := unknown
		if ok {
			t = truthOf((v == e.Value) != e.Neq)
		}
		if !why {
			return t, ""
		}
		what := "attribute " + e.Name
		if e.Name == identifierName {
			what = "identifier"
		}
		switch {
		case !ok:
			return t, fmt.Sprintf("%s is absent (a missing attribute never matches %s)", what, e)
		case e.Neq:
			return t, fmt.Sprintf("%s is %q (must not be %q)", what, v, e.Value)
		}
		return t, fmt.Sprintf("%s is %q (must be %q)", what, v, e.Value)
	case *NotExpr:
		t, r := eval(e.X, peer, why)
		switch t {
		case isTrue:
			t = isFalse
		case isFalse:
			t = isTrue
		default:
			return unknown, r // not unknown is unknown, for the same reason
		}
		if !why {
			return t, ""
		}
		return t, "not (" + r + ")"
	case *AndExpr:
		tx, rx := eval(e.X, peer, why)
		if tx == isFalse {
			return isFalse, rx
		}
		ty, ry := eval(e.Y, peer, why)
		switch {
		case ty == isFalse:
			return isFalse, ry
		case tx == unknown:
			return unknown, rx
		case ty == unknown:
			return unknown, ry
		}
		if !why {
			return isTrue, ""
		}
		return isTrue, rx + "; and " + ry
	case *OrExpr:
		tx, rx := eval(e.X, peer, why)
		if tx == isTrue {
			return isTrue, rx
		}
		ty, ry := eval(e.Y, peer, why)
		t := isFalse
		switch {
		case ty == isTrue:
			return isTrue, ry
		case tx == unknown || ty == unknown:
			t = unknown
		}
		if !why {
			return t, ""
		}
		return t, rx + "; and " + ry
	}
	return isFalse, "no policy: nothing is allowed"
}

// Names returns the attribute names e refers to, sorted, without the
// identifier (which every peer has).
func Names(e Expr) []string {
	seen := map[string]bool{}
	var walk func(Expr)
	walk = func(e Expr) {
		switch e := e.(type) {
		case *AttrExpr:
			seen[e.Name] = true
		case *CmpExpr:
			seen[e.Name] = true
		case *NotExpr:
			walk(e.X)
		case *AndExpr:
			walk(e.X)
			walk(e.Y)
		case *OrExpr:
			walk(e.X)
			walk(e.Y)
		}
	}
	walk(e)
	delete(seen, identifierName)
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
