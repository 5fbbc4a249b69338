// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package key

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestNodeKeyText(t *testing.T) {
	p := NewNodePrivate()
	b, _ := p.MarshalText()
	var q NodePrivate
	if err := q.UnmarshalText(b); err != nil || !q.Equal(p) {
		t.Fatalf("private round trip: %v", err)
	}
	if strings.Contains(p.String(), string(b[len(nodePrivatePrefix):])) {
		t.Fatal("String leaks the private key")
	}
	pub := p.Public()
	var pub2 NodePublic
	if err := pub2.UnmarshalText([]byte(pub.String())); err != nil || !pub2.Equal(pub) {
		t.Fatalf("public round trip: %v", err)
	}
	// A key pasted in the wrong place says what it is.
	err := pub2.UnmarshalText(b)
	if err == nil || !strings.Contains(err.Error(), `want prefix "nodekey:"`) || !strings.Contains(err.Error(), "privkey:") {
		t.Errorf("wrong kind: %v", err)
	}
}

func TestNodeID(t *testing.T) {
	p := NewNodePrivate().Public()
	id := p.ID()
	if _, err := ParseNodeID(string(id)); err != nil {
		t.Fatal(err)
	}
	if id != p.ID() {
		t.Fatal("ID not stable")
	}
	for _, bad := range []string{"", "I", "X" + string(id[1:]), string(id) + "0", "I" + strings.ToUpper(string(id[1:]))} {
		if _, err := ParseNodeID(bad); err == nil {
			t.Errorf("ParseNodeID(%q) accepted", bad)
		}
	}
}

func TestSigning(t *testing.T) {
	k := NewSigningPrivate()
	sig := k.Sign([]byte("msg"))
	if !k.Public().Verify([]byte("msg"), sig) {
		t.Fatal("signature does not verify")
	}
	if k.Public().Verify([]byte("other"), sig) || NewSigningPrivate().Public().Verify([]byte("msg"), sig) {
		t.Fatal("signature verifies for the wrong message or key")
	}
	var zero SigningPublic
	if zero.Verify([]byte("msg"), sig) {
		t.Fatal("zero key verified")
	}
	b, _ := k.MarshalText()
	var k2 SigningPrivate
	if err := k2.UnmarshalText(b); err != nil || !k2.Public().Equal(k.Public()) {
		t.Fatalf("signing key round trip: %v", err)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	k := NewNodePrivate()
	if err := WriteFile(path, k); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %o, want 0600", fi.Mode().Perm())
	}
	var k2 NodePrivate
	if err := ReadFile(path, &k2); err != nil || !k2.Equal(k) {
		t.Fatalf("read back: %v", err)
	}
}

// textKey is one kind of key with a text form.
type textKey interface {
	UnmarshalText([]byte) error
	MarshalText() ([]byte, error)
	IsZero() bool
}

// FuzzUnmarshalText: each key kind accepts only its own prefix and 64 hex
// digits (so no string is two kinds of key), gives back its canonical
// form, leaves the key zero when it refuses, and refuses with one line
// that echoes at most a few bytes of the input (a private key pasted in
// the wrong place must not end up in an error message or a log).
func FuzzUnmarshalText(f *testing.F) {
	np, sp := fixedNode(f, 0x06), fixedSigning(f, 0x01)
	b, _ := np.MarshalText()
	f.Add(string(b))
	f.Add(np.Public().String())
	f.Add(sp.Public().String())
	b, _ = sp.MarshalText()
	f.Add(string(b))
	f.Add("  " + strings.ToUpper(np.Public().String()[:8]) + strings.ToUpper(np.Public().String()[8:]) + "\n")
	f.Add("nodekey:zz")
	f.Add("nodekey:" + strings.Repeat("0", 63))
	f.Add(strings.Repeat("ab", 32))
	f.Add(strings.Repeat("ab", 32) + ":")
	f.Fuzz(func(t *testing.T, s string) {
		kinds := []struct {
			name, prefix string
			k            textKey
		}{
			{"node public", nodePublicPrefix, new(NodePublic)},
			{"node private", nodePrivatePrefix, new(NodePrivate)},
			{"signing public", signingPublicPrefix, new(SigningPublic)},
			{"signing private", signingPrivatePrefix, new(SigningPrivate)},
		}
		accepted := 0
		for _, kd := range kinds {
			err := kd.k.UnmarshalText([]byte(s))
			if err != nil {
				if !kd.k.IsZero() {
					t.Fatalf("%s: refused %q (%v) but the key is no longer zero", kd.name, s, err)
				}
				msg := err.Error()
				if strings.ContainsAny(msg, "\n\r") {
					t.Fatalf("%s: error for %q is not one line: %q", kd.name, s, msg)
				}
				if w := echoed(msg, strings.TrimSpace(s), 17); w != "" {
					t.Fatalf("%s: error %q echoes %q of the input", kd.name, msg, w)
				}
				continue
			}
			accepted++
			text, err := kd.k.MarshalText()
			if err != nil {
				t.Fatalf("%s: MarshalText after accepting %q: %v", kd.name, s, err)
			}
			trimmed := strings.TrimSpace(s)
			if !strings.HasPrefix(trimmed, kd.prefix) || !strings.EqualFold(trimmed, string(text)) ||
				string(text) != kd.prefix+strings.ToLower(trimmed[len(kd.prefix):]) || len(text) != len(kd.prefix)+64 {
				t.Fatalf("%s: accepted %q, canonical form %q", kd.name, s, text)
			}
			again := reflect.New(reflect.TypeOf(kd.k).Elem()).Interface().(textKey)
			if err := again.UnmarshalText(text); err != nil {
				t.Fatalf("%s: canonical form %q refused: %v", kd.name, text, err)
			}
			if text2, _ := again.MarshalText(); string(text2) != string(text) {
				t.Fatalf("%s: round trip %q → %q", kd.name, text, text2)
			}
			if str := fmt.Sprint(kd.k); strings.Contains(kd.prefix, "priv") && strings.Contains(str, string(text[len(kd.prefix):])) {
				t.Fatalf("%s: String() reveals the key: %q", kd.name, str)
			}
		}
		if accepted > 1 {
			t.Fatalf("%q is %d kinds of key", s, accepted)
		}
	})
}

// echoed returns the first n-byte window of in that msg contains, or "".
func echoed(msg, in string, n int) string {
	for i := 0; i+n <= len(in); i++ {
		if strings.Contains(msg, in[i:i+n]) {
			return in[i : i+n]
		}
	}
	return ""
}

// FuzzParseNodeID: an identifier is accepted only in its one canonical
// form ("I" and 32 lowercase hex digits), and a refusal is one line.
func FuzzParseNodeID(f *testing.F) {
	id := fixedNode(f, 0x06).Public().ID()
	f.Add(string(id))
	f.Add(strings.ToUpper(string(id)))
	f.Add(string(id) + "0")
	f.Add("I")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseNodeID(s)
		if err != nil {
			if got != "" || strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("ParseNodeID(%q) = %q, %q", s, got, err)
			}
			return
		}
		if string(got) != s || len(s) != 33 || s[0] != 'I' || strings.Trim(s[1:], "0123456789abcdef") != "" {
			t.Fatalf("ParseNodeID accepted %q as %q", s, got)
		}
	})
}

// TestWrongPrefixEchoesNoSecret: a private key's digits that happen to
// precede a colon are not copied into the error (the fuzzer found that
// the text up to the first colon was echoed whatever its length).
func TestWrongPrefixEchoesNoSecret(t *testing.T) {
	secret := strings.Repeat("5a", 32)
	for _, in := range []string{secret + ":", secret + "\nprivkey:" + secret, "key: " + secret} {
		var k NodePrivate
		err := k.UnmarshalText([]byte(in))
		if err == nil || strings.Contains(err.Error(), secret[:16]) {
			t.Errorf("UnmarshalText(%.20q…) = %v", in, err)
		}
	}
}
