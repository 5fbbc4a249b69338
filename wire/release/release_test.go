// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package release

import (
	"testing"

	"github.com/edgeportal/connect/wire/key"
)

func TestVersions(t *testing.T) {
	order := []string{"v0.9.0", "v1.0.0-rc1", "v1.0.0", "v1.0.1", "v1.10.0", "v2.0.0"}
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
	for _, bad := range []string{"", "v1", "v1.2", "v1.2.x", "latest"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted", bad)
		}
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

func FuzzVerify(f *testing.F) {
	k := key.NewSigningPrivate()
	data, _ := Sign(k, Manifest{Project: "P", Version: "v1.0.0", Channel: "stable", Files: map[string]File{"linux/amd64": {Size: 1}}})
	f.Add(data)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := Verify(k.Public(), b); err == nil && m == nil {
			t.Fatal("nil manifest without error")
		}
	})
}
