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
// This package is a leaf (stdlib only); any package may import it.
package policy

import (
	"fmt"
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
	for _, r := range v {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
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

func (p Peer) lookup(name string) (string, bool) {
	if name == identifierName {
		return p.Identifier, true
	}
	v, ok := p.Attributes[name]
	return v, ok
}

// Eval reports whether peer satisfies e. A nil e allows nothing.
func Eval(e Expr, peer Peer) bool {
	ok, _ := eval(e, peer, false)
	return ok
}

// Explain is Eval with a short human reason for the decision.
func Explain(e Expr, peer Peer) (bool, string) {
	if e == nil {
		return false, "no policy: nothing is allowed"
	}
	return eval(e, peer, true)
}

func eval(e Expr, peer Peer, why bool) (bool, string) {
	switch e := e.(type) {
	case *AttrExpr:
		v, ok := peer.lookup(e.Name)
		if v == "true" {
			return true, reason(why, "attribute %q is true", e.Name)
		}
		if !ok {
			return false, reason(why, "attribute %q is not \"true\" (absent)", e.Name)
		}
		return false, reason(why, "attribute %q is %q, not \"true\"", e.Name, v)
	case *CmpExpr:
		v, ok := peer.lookup(e.Name)
		eq := ok && v == e.Value
		what := fmt.Sprintf("attribute %q", e.Name)
		if e.Name == identifierName {
			what = "identifier"
		}
		got := fmt.Sprintf("%q", v)
		if !ok {
			got = "absent"
		}
		if e.Neq {
			return !eq, reason(why, "%s is %s (must not be %q)", what, got, e.Value)
		}
		return eq, reason(why, "%s is %s (must be %q)", what, got, e.Value)
	case *NotExpr:
		ok, r := eval(e.X, peer, why)
		return !ok, reason(why, "not (%s)", r)
	case *AndExpr:
		ok, r := eval(e.X, peer, why)
		if !ok {
			return false, r
		}
		return eval(e.Y, peer, why)
	case *OrExpr:
		ok, r1 := eval(e.X, peer, why)
		if ok {
			return true, r1
		}
		ok, r2 := eval(e.Y, peer, why)
		if ok {
			return true, r2
		}
		return false, reason(why, "%s; and %s", r1, r2)
	}
	return false, "no policy: nothing is allowed"
}

func reason(why bool, format string, args ...any) string {
	if !why {
		return ""
	}
	return fmt.Sprintf(format, args...)
}
