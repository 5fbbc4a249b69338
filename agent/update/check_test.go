// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package update

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/release"
)

// oneManifest serves one manifest whatever it is asked for, and records
// what was asked.
type oneManifest struct {
	manifest         []byte
	channel, version string
}

func (f *oneManifest) Manifest(ctx context.Context, channel, version string) ([]byte, error) {
	f.channel, f.version = channel, version
	return f.manifest, nil
}

func (f *oneManifest) Chunk(ctx context.Context, channel, version, platform string, offset int64) ([]byte, error) {
	return nil, errors.New("not served")
}

func TestCheck(t *testing.T) {
	k := key.NewSigningPrivate()
	sign := func(t *testing.T, k key.SigningPrivate, m release.Manifest) []byte {
		t.Helper()
		b, err := release.Sign(k, m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := release.Manifest{Project: "P", Version: "v1.2.0", Channel: "stable", Files: map[string]release.File{"linux/amd64": {Size: 1}}}
	with := func(f func(*release.Manifest)) release.Manifest {
		m := good
		f(&m)
		return m
	}
	base := Options{Current: "v1.0.0", Platform: "linux/amd64", Project: "P", ReleaseKey: k.Public()}
	tests := []struct {
		name    string
		data    []byte
		opts    func(*Options)
		wantErr string // "" = accepted
	}{
		{"good", sign(t, k, good), nil, ""},
		{"good, channel asked for", sign(t, k, with(func(m *release.Manifest) { m.Channel = "beta" })), func(o *Options) { o.Channel = "beta" }, ""},
		// The attack: the node follows stable; the hub answers with the
		// (genuinely signed) manifest of another channel.
		{"another channel", sign(t, k, with(func(m *release.Manifest) { m.Channel = "nightly" })), nil, `asked for channel "stable", the hub sent a manifest for channel "nightly"`},
		{"stable asked, beta sent", sign(t, k, with(func(m *release.Manifest) { m.Channel = "beta" })), func(o *Options) { o.Channel = "stable" }, `channel "beta"`},
		{"beta asked, stable sent", sign(t, k, good), func(o *Options) { o.Channel = "beta" }, `asked for channel "beta"`},
		{"another project", sign(t, k, with(func(m *release.Manifest) { m.Project = "Q" })), nil, "project Q, not P"},
		{"another version than pinned", sign(t, k, good), func(o *Options) { o.Version = "v1.1.0" }, "asked for v1.1.0"},
		{"no build for platform", sign(t, k, good), func(o *Options) { o.Platform = "windows/arm64" }, "no build for windows/arm64 (it has: linux/amd64)"},
		{"another key", sign(t, key.NewSigningPrivate(), good), nil, "refusing it"},
		{"bad version", sign(t, k, with(func(m *release.Manifest) { m.Version = "v1.0.0-/../x" })), nil, "version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			if tt.opts != nil {
				tt.opts(&o)
			}
			src := &oneManifest{manifest: tt.data}
			m, err := Check(context.Background(), src, o)
			want := o.Channel
			if want == "" {
				want = "stable"
			}
			if src.channel != want {
				t.Errorf("asked the hub for channel %q, want %q", src.channel, want)
			}
			if tt.wantErr == "" {
				if err != nil || m == nil {
					t.Fatalf("Check = %v, %v", m, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Check = %v, want an error with %q", err, tt.wantErr)
			}
			if m != nil {
				t.Fatalf("Check returned a manifest with its error")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("refusal is not one line: %q", err)
			}
		})
	}
	if _, err := Check(context.Background(), &oneManifest{manifest: sign(t, k, good)}, Options{Project: "P", Platform: "linux/amd64"}); err == nil || !strings.Contains(err.Error(), "no release key") {
		t.Errorf("Check without a release key: %v", err)
	}
}

// TestStageRefusesOtherChannel: Stage goes through Check, so a manifest of
// another channel stages nothing.
func TestStageRefusesOtherChannel(t *testing.T) {
	k := key.NewSigningPrivate()
	b, err := release.Sign(k, release.Manifest{Project: "P", Version: "v9.0.0", Channel: "nightly", Files: map[string]release.File{"linux/amd64": {Size: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, res, err := Stage(context.Background(), &oneManifest{manifest: b}, Options{Current: "v1.0.0", Platform: "linux/amd64", Project: "P",
		ReleaseKey: k.Public(), Dir: dir + "/update", Binary: "agent"})
	if err == nil || !strings.Contains(err.Error(), `channel "nightly"`) || res.Updated || st != nil {
		t.Fatalf("Stage = %+v, %+v, %v", st, res, err)
	}
	if _, err := os.Stat(dir + "/update/bin"); err == nil {
		t.Error("a refused release left files in the update directory")
	}
}
