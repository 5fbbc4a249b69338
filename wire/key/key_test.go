// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package key

import (
	"os"
	"path/filepath"
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

func FuzzUnmarshalText(f *testing.F) {
	p := NewNodePrivate()
	b, _ := p.MarshalText()
	f.Add(string(b))
	f.Add(p.Public().String())
	f.Add(NewSigningPrivate().Public().String())
	f.Add("nodekey:zz")
	f.Fuzz(func(t *testing.T, s string) {
		var a NodePublic
		var b NodePrivate
		var c SigningPublic
		var d SigningPrivate
		a.UnmarshalText([]byte(s))
		b.UnmarshalText([]byte(s))
		c.UnmarshalText([]byte(s))
		d.UnmarshalText([]byte(s))
	})
}
