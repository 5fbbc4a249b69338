// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/release"
)

// releaseKeys are the test relays' release keys (which a relay never holds).
var releaseKeys = map[string]key.SigningPrivate{}

// releaseHub returns a hub directory under parent with one published
// release whose linux/amd64 binary is bin.
func releaseHub(t *testing.T, parent, name, version string, bin []byte) *Dir {
	t.Helper()
	rk := key.NewSigningPrivate()
	d := &Dir{Path: filepath.Join(parent, name), Config: DirConfig{AuthorityKey: key.NewSigningPrivate().Public(), Vendor: "V", ReleaseKey: rk.Public()}}
	releaseKeys[d.Path] = rk
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(parent, name+".bin")
	if err := os.WriteFile(exe, bin, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Publish(PublishOptions{Version: version, Files: map[string]string{"linux/amd64": exe}, Key: releaseKeys[d.Path]}); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestReleaseTraversal replays issue 14's attack: a member of one hub asks
// for a "version" with "/../" in its pre-release suffix (or a channel or
// platform with a path in it, or a symlink planted in the releases
// directory) and reads another project's release files. Every attempt
// must get a one-line refusal and no bytes.
func TestReleaseTraversal(t *testing.T) {
	parent := t.TempDir()
	secret := []byte("OTHER PROJECT'S BINARY")
	other := releaseHub(t, parent, "other", "v1.0.0", secret)
	d := releaseHub(t, parent, "mine", "v1.0.0", []byte("my binary"))

	// The good path still works.
	if b, err := d.ReadChunk("stable", "v1.0.0", "linux/amd64", 0, 1<<10); err != nil || string(b) != "my binary" {
		t.Fatalf("ReadChunk of a published release = %q, %v", b, err)
	}
	mb, err := d.ManifestBytes("", "")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := release.Verify(d.Config.ReleaseKey, mb); err != nil || m.Version != "v1.0.0" {
		t.Fatalf("newest manifest: %+v %v", m, err)
	}

	// Symlinks planted inside the releases directory that point out of it:
	// a channel, a version and a binary.
	otherRel := filepath.Join(other.Path, releasesDir, "stable")
	mustSymlink(t, otherRel, filepath.Join(d.Path, releasesDir, "evil"))
	mustSymlink(t, filepath.Join(otherRel, "v1.0.0"), filepath.Join(d.Path, releasesDir, "stable", "v9.9.9"))
	planted := filepath.Join(d.Path, releasesDir, "stable", "v2.0.0")
	if err := os.Mkdir(planted, 0o700); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, filepath.Join(otherRel, "v1.0.0", "linux_amd64"), filepath.Join(planted, "linux_amd64"))
	mustSymlink(t, filepath.Join(otherRel, "v1.0.0", "manifest.cbor"), filepath.Join(planted, "manifest.cbor"))
	// A directory where a binary should be.
	if err := os.MkdirAll(filepath.Join(d.Path, releasesDir, "stable", "v3.0.0", "linux_amd64"), 0o700); err != nil {
		t.Fatal(err)
	}

	climb := "v1.0.0-/../../../../other/releases/stable/v1.0.0"
	tests := []struct {
		name                      string
		channel, version, platfrm string
		badName                   bool // refused as a bad name, before any file is opened
	}{
		{"version climbs out", "stable", climb, "linux/amd64", true},
		{"version climbs, short", "stable", "v1.0.0-/../v1.0.0", "linux/amd64", true},
		{"version with backslashes", "stable", `v1.0.0-..\..\..\other`, "linux/amd64", true},
		{"version with NUL", "stable", "v1.0.0-a\x00", "linux/amd64", true},
		{"version absolute", "stable", otherRel + "/v1.0.0", "linux/amd64", true},
		{"version 16 KiB", "stable", "v1.0.0-" + strings.Repeat("a", 16<<10), "linux/amd64", true},
		{"channel climbs out", "../../other/releases/stable", "v1.0.0", "linux/amd64", true},
		{"channel dot-dot", "..", "v1.0.0", "linux/amd64", true},
		{"channel with newline", "stable\nlevel=ERROR msg=forged", "v1.0.0", "linux/amd64", true},
		{"platform climbs out", "stable", "v1.0.0", "../../../other/releases/stable/v1.0.0/linux_amd64", true},
		{"platform unknown", "stable", "v1.0.0", "linux/amd64/../../x", true},
		{"symlinked channel", "evil", "v1.0.0", "linux/amd64", false},
		{"symlinked version", "stable", "v9.9.9", "linux/amd64", false},
		{"symlinked binary", "stable", "v2.0.0", "linux/amd64", false},
		{"directory as binary", "stable", "v3.0.0", "linux/amd64", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(what string, b []byte, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s accepted: %q", what, b)
				}
				if len(b) != 0 || bytes.Contains([]byte(err.Error()), secret) {
					t.Fatalf("%s read %q (%v)", what, b, err)
				}
				if msg := err.Error(); strings.ContainsAny(msg, "\n\r\x00") || len(msg) > 300 {
					t.Fatalf("%s: refusal is not one short line: %q", what, msg)
				}
				if got := errors.Is(err, ErrBadReleaseName); got != tt.badName {
					t.Fatalf("%s: errors.Is(%v, ErrBadReleaseName) = %v, want %v", what, err, got, tt.badName)
				}
			}
			b, err := d.ReadChunk(tt.channel, tt.version, tt.platfrm, 0, 1<<10)
			check("ReadChunk", b, err)
			if tt.platfrm == "linux/amd64" {
				b, err = d.ManifestBytes(tt.channel, tt.version)
				check("ManifestBytes", b, err)
			}
		})
	}

	// The newest-version lookup and the listing skip what is not theirs.
	mb2, err := d.ManifestBytes("stable", "")
	if err == nil {
		m, verr := release.Verify(d.Config.ReleaseKey, mb2)
		if verr != nil || m.Project != d.Project() {
			t.Fatalf("newest manifest on a planted channel: %+v, %v", m, verr)
		}
	}
	if _, err := d.ManifestBytes("evil", ""); err == nil {
		t.Error("a symlinked channel is listed")
	}
	rs, err := d.Releases()
	if err == nil {
		for _, m := range rs {
			if m.Project != d.Project() {
				t.Errorf("Releases lists another project's release %+v", m)
			}
		}
	}
	for _, bad := range []struct {
		off int64
		n   int
	}{{-1, 10}, {release.MaxBinarySize + 1, 10}, {0, 0}, {0, -5}} {
		if b, err := d.ReadChunk("stable", "v1.0.0", "linux/amd64", bad.off, bad.n); err == nil {
			t.Errorf("ReadChunk(offset %d, n %d) = %q", bad.off, bad.n, b)
		}
	}
}

func TestManifestNewest(t *testing.T) {
	parent := t.TempDir()
	d := releaseHub(t, parent, "h", "v1.2.0", []byte("a"))
	for _, v := range []string{"v1.10.0-rc.2", "v1.10.0-rc.10", "v1.9.0"} {
		exe := filepath.Join(parent, "b")
		os.WriteFile(exe, []byte(v), 0o600)
		if _, err := d.Publish(PublishOptions{Version: v, Files: map[string]string{"linux/amd64": exe}, Key: releaseKeys[d.Path]}); err != nil {
			t.Fatal(err)
		}
	}
	// An unfinished publish and junk are never served.
	os.MkdirAll(filepath.Join(d.Path, releasesDir, "stable", "v9.0.0.tmp"), 0o700)
	os.MkdirAll(filepath.Join(d.Path, releasesDir, "stable", "v9.0.0-x.tmp"), 0o700)
	os.MkdirAll(filepath.Join(d.Path, releasesDir, "stable", "latest"), 0o700)
	os.MkdirAll(filepath.Join(d.Path, releasesDir, "Bad_Channel", "v1.0.0"), 0o700)
	b, err := d.ManifestBytes("stable", "")
	if err != nil {
		t.Fatal(err)
	}
	m, err := release.Verify(d.Config.ReleaseKey, b)
	if err != nil || m.Version != "v1.10.0-rc.10" {
		t.Fatalf("newest = %+v, %v; want v1.10.0-rc.10 (semver precedence)", m, err)
	}
	rs, err := d.Releases()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, r.Channel+"/"+r.Version)
	}
	if want := "stable/v1.10.0-rc.10 stable/v1.10.0-rc.2 stable/v1.9.0 stable/v1.2.0"; strings.Join(got, " ") != want {
		t.Errorf("Releases = %s, want %s", strings.Join(got, " "), want)
	}
	if _, err := d.Publish(PublishOptions{Version: "1.0.0", Files: map[string]string{"linux/amd64": filepath.Join(parent, "b")}}); err == nil {
		t.Error("Publish accepted a version without its v")
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("cannot create symlinks here: %v", err)
	}
}
