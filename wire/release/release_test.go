// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package release

import (
	"crypto/ed25519"
	"reflect"
	"strings"
	"testing"

	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/signed"
)

func TestVersions(t *testing.T) {
	// In semver precedence order (semver.org §11's example, and ours).
	order := []string{"v0.9.0", "v1.0.0-0", "v1.0.0-2", "v1.0.0-10", "v1.0.0-alpha", "v1.0.0-alpha.1", "v1.0.0-alpha.beta",
		"v1.0.0-beta", "v1.0.0-beta.2", "v1.0.0-beta.11", "v1.0.0-rc.1", "v1.0.0-rc1", "v1.0.0", "v1.0.1", "v1.10.0", "v2.0.0"}
	for i := range order {
		for j := range order {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := CompareStrings(order[i], order[j]); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", order[i], order[j], got, want)
			}
		}
	}
	if got := CompareStrings("v1.0.0+a", "v1.0.0+b"); got != 0 {
		t.Errorf("build metadata changes precedence: %d", got)
	}
}

func TestParseVersion(t *testing.T) {
	good := []struct {
		in   string
		want Version
	}{
		{"v0.0.0", Version{}},
		{"v1.2.3", Version{Major: 1, Minor: 2, Patch: 3}},
		{"v10.20.30", Version{Major: 10, Minor: 20, Patch: 30}},
		{"v1.0.0-rc1", Version{Major: 1, Pre: "rc1"}},
		{"v1.0.0-alpha.0.x-y", Version{Major: 1, Pre: "alpha.0.x-y"}},
		{"v1.0.0-0a", Version{Major: 1, Pre: "0a"}}, // alphanumeric: a leading zero is fine
		{"v1.0.0+build.007", Version{Major: 1, Build: "build.007"}},
		{"v1.0.0-rc.1+sha.5114f85", Version{Major: 1, Pre: "rc.1", Build: "sha.5114f85"}},
		{"v0.0.0-20260101120000-abcdefabcdef", Version{Pre: "20260101120000-abcdefabcdef"}},
		{"v18446744073709551615.0.0", Version{Major: 1<<64 - 1}},
	}
	for _, tt := range good {
		v, err := ParseVersion(tt.in)
		if err != nil || v != tt.want {
			t.Errorf("ParseVersion(%q) = %+v, %v; want %+v", tt.in, v, err, tt.want)
			continue
		}
		if v.String() != tt.in {
			t.Errorf("ParseVersion(%q).String() = %q", tt.in, v.String())
		}
	}
	bad := []struct{ in, want string }{
		{"", `must start with "v"`},
		{"1.2.3", `must start with "v"`},
		{"V1.2.3", `must start with "v"`},
		{"v1", "three numbers"},
		{"v1.2", "three numbers"},
		{"v1.2.3.4", "three numbers"},
		{"v1.2.x", `"x" is not a number`},
		{"v01.2.3", "leading zero"},
		{"v1.02.3", "leading zero"},
		{"v1.2.03", "leading zero"},
		{"v1.2.3-01", "leading zero"},
		{"v+1.2.3", "three numbers"},
		{"v-1.2.3", "three numbers"},
		{"v1.2.3-", "empty identifier"},
		{"v1.2.3+", "empty identifier"},
		{"v1.2.3-a..b", "empty identifier"},
		{"v1.2.3-rc.", "empty identifier"},
		{"v1.2.3+a+b", `"+"`},
		{"v1.2.3-a_b", `"_"`},
		{"v1.2.3-rc1/../../other", `"/"`},
		{"v1.0.0-/../../../other-project/releases/stable/v1.0.0", `"/"`},
		{`v1.0.0-..\..\x`, "empty identifier"},
		{"v1.0.0-a\x00b", `"\x00"`},
		{"v1.0.0-a\nb", `"\n"`},
		{"v1.0.0-é", `"\xc3"`},
		{"v1.0.0 ", `"0 " is not a number`},
		{"v18446744073709551616.0.0", "too large"},
		{"latest", `must start with "v"`},
		{"v1.0.0-" + strings.Repeat("a", MaxVersionLen), "at most 64"},
	}
	for _, tt := range bad {
		_, err := ParseVersion(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseVersion(%q) = %v, want an error with %q", tt.in, err, tt.want)
			continue
		}
		if strings.ContainsAny(err.Error(), "\n\x00") {
			t.Errorf("ParseVersion(%q): raw control character in %q", tt.in, err)
		}
	}
	if _, err := ParseVersion(strings.Repeat("v1.0.0-a", 10<<10)); err == nil || strings.Contains(err.Error(), "aaaa") || len(err.Error()) > 100 {
		t.Errorf("a long version is echoed back: %.200v", err)
	}
}

func TestSignVerify(t *testing.T) {
	k := key.NewSigningPrivate()
	m := Manifest{Project: "P", Version: "v1.2.3", Channel: "stable", Files: map[string]File{"linux/amd64": {Size: 3}}}
	data, err := Sign(k, m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(k.Public(), data)
	if err != nil || got.Version != "v1.2.3" || got.Files["linux/amd64"].Size != 3 {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
	if _, err := Verify(key.NewSigningPrivate().Public(), data); err == nil {
		t.Error("verified with another key")
	}
	data[len(data)-1] ^= 1
	if _, err := Verify(k.Public(), data); err == nil {
		t.Error("tampered manifest verified")
	}
}

// FuzzVerify: only manifests the release key signed verify, decoded
// exactly as signed and with a version ParseVersion accepts; anything
// else returns no manifest.
func FuzzVerify(f *testing.F) {
	k := fixedSigning(f, 0x03)
	known := map[string]Manifest{}
	for _, m := range []Manifest{
		goldenManifest(f),
		{Project: "P", Version: "v1.0.0-rc.1+b.2", Channel: "beta", Files: map[string]File{"linux/amd64": {Size: 1}, "windows/amd64": {Size: 2}}},
		{Project: "P", Version: "latest", Channel: "stable"}, // signed, but not a version: refused
		{Project: "P", Version: "v1.0.0/../../x", Channel: "stable"},
	} {
		data, err := Sign(k, m)
		if err != nil {
			f.Fatal(err)
		}
		env, _ := signed.Open(data)
		known[string(env.Payload)] = m
		f.Add(data)
	}
	other, _ := Sign(fixedSigning(f, 0x01), goldenManifest(f))
	f.Add(other)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Verify(k.Public(), b)
		if err != nil {
			if m != nil {
				t.Fatalf("Verify returned %+v with error %v", m, err)
			}
			return
		}
		if m == nil {
			t.Fatal("nil manifest without error")
		}
		env, _ := signed.Open(b)
		want, ok := known[string(env.Payload)]
		if !ok || !ed25519.Verify(k.Public().Ed25519(), append([]byte(signed.ContextManifest+"\x00"), env.Payload...), env.Sig) {
			t.Fatalf("verified a manifest the release key never signed: %+v", m)
		}
		if !reflect.DeepEqual(*m, want) {
			t.Fatalf("decoded %+v, signed %+v", *m, want)
		}
		if _, err := ParseVersion(m.Version); err != nil {
			t.Fatalf("verified a manifest with version %q: %v", m.Version, err)
		}
	})
}

// FuzzParseVersion: ParseVersion never panics, accepts only canonical
// strings (String gives back the input), never anything a path could be
// made of, and Compare is consistent with the parsed values.
func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"v1.2.3", "v1.0.0-rc.1+b.2", "v0.0.0-20260101120000-abcdefabcdef", "1.2.3", "v01.2.3",
		"v1.0.0-/../x", "v1.0.0-a..b", "v1.2.3+", "v18446744073709551616.0.0", ""} {
		f.Add(s, "v1.0.0")
	}
	f.Fuzz(func(t *testing.T, s, other string) {
		v, err := ParseVersion(s)
		if err != nil {
			if v != (Version{}) {
				t.Fatalf("ParseVersion(%q) returned %+v with error %v", s, v, err)
			}
			return
		}
		if got := v.String(); got != s {
			t.Fatalf("ParseVersion(%q).String() = %q: not canonical", s, got)
		}
		again, err := ParseVersion(v.String())
		if err != nil || again != v {
			t.Fatalf("round trip of %q: %+v, %v", s, again, err)
		}
		if len(s) > MaxVersionLen || strings.ContainsAny(s, "/\\\x00 ") || strings.Contains(s, "..") {
			t.Fatalf("ParseVersion accepted %q", s)
		}
		if Compare(v, v) != 0 {
			t.Fatalf("Compare(%q, itself) != 0", s)
		}
		if w, err := ParseVersion(other); err == nil && Compare(v, w) != -Compare(w, v) {
			t.Fatalf("Compare(%q, %q) is not antisymmetric", s, other)
		}
	})
}
