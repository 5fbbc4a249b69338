// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package command

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wc "github.com/edgeportal/connect/wire/command"
	"github.com/edgeportal/connect/wire/key"
)

func TestVerify(t *testing.T) {
	k := key.NewSigningPrivate()
	now := time.Unix(1_800_000_000, 0)
	base := wc.Command{Project: "P", Target: "I1", Seq: 5, IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Hour).Unix(),
		Op: wc.OpOutletAdd, Outlet: &wc.OutletArgs{Name: "jira", To: "jira.local:443"}}
	sign := func(c wc.Command, k key.SigningPrivate) []byte {
		b, err := wc.Sign(k, c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := Verify(k.Public(), "P", "I1", sign(base, k), 4, now); err != nil {
		t.Fatalf("good command: %v", err)
	}
	tampered := sign(base, k)
	tampered[len(tampered)/2] ^= 1
	other := base
	other.Target = "I2"
	old := base
	old.ExpiresAt = now.Add(-time.Second).Unix()
	bad := base
	bad.Outlet = &wc.OutletArgs{Name: "x", To: "x:1", Allow: "a and ("}
	tests := []struct {
		name string
		data []byte
		last uint64
		want string
	}{
		{"tampered", tampered, 0, ""},
		{"other key", sign(base, key.NewSigningPrivate()), 0, "bad signature"},
		{"replay", sign(base, k), 5, "replayed"},
		{"older", sign(base, k), 9, "replayed"},
		{"other node", sign(other, k), 0, "another node"},
		{"expired", sign(old, k), 0, "expired"},
		{"bad policy", sign(bad, k), 0, "malformed allow expression"},
		{"garbage", []byte("not cbor at all"), 0, "malformed command"},
	}
	for _, tt := range tests {
		_, err := Verify(k.Public(), "P", "I1", tt.data, tt.last, now) // the node's Verify
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestAllowList(t *testing.T) {
	al, err := ParseAllowList([]string{"github.local:80", "*.acme.internal:443", "10.20.0.0/16:5432", "[fd00::/8]:*", "192.0.2.7:22"})
	if err != nil {
		t.Fatal(err)
	}
	ok := []string{"github.local:80", "GitHub.Local:80", "jira.acme.internal:443", "a.b.acme.internal:443", "10.20.3.4:5432", "[fd00::1]:9", "192.0.2.7:22", "db.example:5432"}
	no := []string{"github.local:81", "acme.internal:443", "evilacme.internal:443", "10.21.0.1:5432", "10.20.0.1:5433", "192.0.2.8:22", "other.example:80"}
	resolve := func(host string) ([]netip.Addr, error) {
		if host == "db.example" {
			return []netip.Addr{netip.MustParseAddr("10.20.9.9")}, nil
		}
		if host == "moved.example" {
			return []netip.Addr{netip.MustParseAddr("10.99.0.1")}, nil
		}
		return nil, errors.New("no such host")
	}
	no = append(no, "moved.example:5432")
	for _, d := range ok {
		if err := al.CheckDestination(d, resolve); err != nil {
			t.Errorf("%s refused: %v", d, err)
		}
	}
	for _, d := range no {
		if err := al.CheckDestination(d, resolve); !errors.Is(err, ErrNotAllowed) {
			t.Errorf("%s: %v, want not allowed", d, err)
		}
	}
	var none *AllowList
	if err := none.CheckDestination("github.local:80", resolve); err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("no allow-list: %v", err)
	}
	// A name allowed only through a CIDR is checked at dial time.
	ctl := al.DialControl("db.example:5432")
	if err := ctl("tcp", "10.20.9.9:5432", nil); err != nil {
		t.Errorf("dial into the CIDR refused: %v", err)
	}
	if err := ctl("tcp", "10.99.9.9:5432", nil); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("dial outside the CIDR: %v", err)
	}
	if err := al.DialControl("github.local:80")("tcp", "203.0.113.1:80", nil); err != nil {
		t.Errorf("name-pattern outlet refused at dial: %v", err)
	}
}

func TestAudit(t *testing.T) {
	dir := t.TempDir()
	a, err := OpenAudit(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := a.Append(Entry{Kind: "portal", Peer: "I1", Outlet: "github", Decision: "allowed"}); err != nil {
			t.Fatal(err)
		}
	}
	a2, _ := OpenAudit(dir) // reopened: the chain continues
	a2.Append(Entry{Kind: "command", Seq: 1, Op: "outlet add", Decision: "applied"})
	if n, err := VerifyAudit(dir); err != nil || n != 6 {
		t.Fatalf("verify: %d %v", n, err)
	}
	path := filepath.Join(dir, AuditFile)
	orig, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(orig), "\n")
	check := func(name, content, want string) {
		os.WriteFile(path, []byte(content), 0o600)
		if _, err := VerifyAudit(dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
	check("edited", strings.Replace(string(orig), `"allowed"`, `"denied"`, 1), "edited")
	check("removed", strings.Join(append(lines[:2:2], lines[3:]...), ""), "removed")
	check("cut off", strings.Join(lines[:4], ""), "cut off")
	os.WriteFile(path, orig, 0o600)
	if _, err := VerifyAudit(dir); err != nil {
		t.Fatal(err)
	}
}

func FuzzVerify(f *testing.F) {
	k := key.NewSigningPrivate()
	b, _ := wc.Sign(k, wc.Command{Project: "P", Target: "I1", Seq: 1, ExpiresAt: 1 << 40, Op: wc.OpOutletRemove, Outlet: &wc.OutletArgs{Name: "x"}})
	f.Add(b)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		Verify(k.Public(), "P", "I1", data, 0, time.Unix(0, 0))
	})
}

func FuzzParseAllowList(f *testing.F) {
	f.Add("github.local:80")
	f.Add("[fd00::/8]:*")
	f.Add("*.x:1")
	f.Fuzz(func(t *testing.T, s string) {
		al, err := ParseAllowList([]string{s})
		if err == nil {
			al.CheckDestination("a.b:1", nil)
		}
	})
}

func FuzzReadAudit(f *testing.F) {
	f.Add([]byte(`{"n":1,"time":"t","kind":"portal","decision":"allowed","prev":"","hash":"x"}` + "\n"))
	f.Add([]byte("not json\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := readEntries(strings.NewReader(string(b)))
		if err == nil && len(entries) > strings.Count(string(b), "\n")+1 {
			t.Fatal("more records than lines")
		}
	})
}
