// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/edgeportal/connect/internal/atomicfile"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/minisig"
	"github.com/edgeportal/connect/wire/release"
	"github.com/edgeportal/connect/wire/signed"
)

// Releases live in the hub directory: releases/<channel>/<version>/ holds
// manifest.cbor (signed) and one binary per platform (<os>_<arch>). The
// hub serves both to its nodes over their control connections, so a
// customer needs no second egress destination.
const releasesDir = "releases"

var (
	channelRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	platformRE = regexp.MustCompile(`^(linux|darwin|windows|freebsd)/(amd64|arm64|386|arm)$`)
)

// PublishOptions describe a release to publish.
type PublishOptions struct {
	Version string
	Channel string            // default "stable"
	Files   map[string]string // platform ("linux/amd64") → path of the binary
	// Key signs the manifest and the binaries: the vendor's release key,
	// which the relay never holds.
	Key key.SigningPrivate
}

func (d *Dir) releasePath(channel, version string) string {
	return filepath.Join(d.Path, releasesDir, channel, version)
}

func platformFile(platform string) string { return strings.ReplaceAll(platform, "/", "_") }

// Publish signs a manifest for the given binaries and stores both. A
// published version is immutable.
func (d *Dir) Publish(o PublishOptions) (*release.Manifest, error) {
	if o.Channel == "" {
		o.Channel = "stable"
	}
	if !channelRE.MatchString(o.Channel) {
		return nil, fmt.Errorf("channel %q: use lower-case letters, digits and '-'", o.Channel)
	}
	if _, err := release.ParseVersion(o.Version); err != nil {
		return nil, err
	}
	if len(o.Files) == 0 {
		return nil, errors.New("publish needs at least one --file PLATFORM=PATH")
	}
	if o.Key.IsZero() {
		return nil, errors.New("publish needs the vendor's release key (--release-key FILE); the relay holds none")
	}
	if k := d.Config.ReleaseKey; !k.IsZero() && !k.Equal(o.Key.Public()) {
		return nil, fmt.Errorf("that release key (%s) is not this project's (%s): nodes would refuse the release", o.Key.Public().Fingerprint(), k.Fingerprint())
	}
	dir := d.releasePath(o.Channel, o.Version)
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("release %s is already published on channel %s; versions are immutable", o.Version, o.Channel)
	}
	m := release.Manifest{Project: d.Project(), Version: o.Version, Channel: o.Channel, Created: time.Now().Unix(), Files: map[string]release.File{}}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	for platform, path := range o.Files {
		if !platformRE.MatchString(platform) {
			return nil, fmt.Errorf("--file %s=…: platform must look like linux/amd64", platform)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--file %s: %w", platform, err)
		}
		if len(b) > release.MaxBinarySize {
			return nil, fmt.Errorf("--file %s: larger than %d bytes", platform, release.MaxBinarySize)
		}
		if err := os.WriteFile(filepath.Join(tmp, platformFile(platform)), b, 0o600); err != nil {
			return nil, err
		}
		m.Files[platform] = release.File{
			Size:    int64(len(b)),
			SHA256:  sha256.Sum256(b),
			Minisig: minisig.Sign(o.Key, b, fmt.Sprintf("%s %s %s", d.Config.Vendor, o.Version, platform)),
		}
	}
	data, err := release.Sign(o.Key, m)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(tmp, "manifest.cbor"), data, 0o600); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	return &m, nil
}

// Releases lists published releases, newest first within a channel.
func (d *Dir) Releases() ([]release.Manifest, error) {
	var out []release.Manifest
	chans, _ := os.ReadDir(filepath.Join(d.Path, releasesDir))
	for _, ch := range chans {
		vers, _ := os.ReadDir(filepath.Join(d.Path, releasesDir, ch.Name()))
		for _, v := range vers {
			if strings.HasSuffix(v.Name(), ".tmp") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(d.releasePath(ch.Name(), v.Name()), "manifest.cbor"))
			if err != nil {
				continue
			}
			m, err := d.readManifest(data)
			if err != nil {
				return nil, fmt.Errorf("release %s/%s: %w", ch.Name(), v.Name(), err)
			}
			out = append(out, *m)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Channel != out[j].Channel {
			return out[i].Channel < out[j].Channel
		}
		return release.CompareStrings(out[i].Version, out[j].Version) > 0
	})
	return out, nil
}

// ManifestBytes returns the signed manifest of a version, or of the newest
// version of the channel when version is empty. The bytes are served as
// stored: nodes verify them.
func (d *Dir) ManifestBytes(channel, version string) ([]byte, error) {
	if channel == "" {
		channel = "stable"
	}
	if !channelRE.MatchString(channel) {
		return nil, fmt.Errorf("bad channel %q", channel)
	}
	if version == "" {
		vers, err := os.ReadDir(filepath.Join(d.Path, releasesDir, channel))
		if err != nil {
			return nil, fmt.Errorf("no release published on channel %s", channel)
		}
		for _, v := range vers {
			if _, err := release.ParseVersion(v.Name()); err != nil || strings.HasSuffix(v.Name(), ".tmp") {
				continue
			}
			if version == "" || release.CompareStrings(v.Name(), version) > 0 {
				version = v.Name()
			}
		}
		if version == "" {
			return nil, fmt.Errorf("no release published on channel %s", channel)
		}
	}
	if _, err := release.ParseVersion(version); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(d.releasePath(channel, version), "manifest.cbor"))
	if err != nil {
		return nil, fmt.Errorf("release %s is not published on channel %s", version, channel)
	}
	return b, nil
}

// ReadChunk returns up to n bytes of a release binary at offset.
func (d *Dir) ReadChunk(channel, version, platform string, offset int64, n int) ([]byte, error) {
	if !channelRE.MatchString(channel) || !platformRE.MatchString(platform) {
		return nil, errors.New("bad channel or platform")
	}
	if _, err := release.ParseVersion(version); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(d.releasePath(channel, version), platformFile(platform)))
	if err != nil {
		return nil, fmt.Errorf("release %s has no %s binary", version, platform)
	}
	defer f.Close()
	buf := make([]byte, n)
	k, err := f.ReadAt(buf, offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:k], nil
}

// readManifest decodes a stored manifest, verified with the project's
// release key when the relay knows it (nodes verify it either way).
func (d *Dir) readManifest(data []byte) (*release.Manifest, error) {
	if k := d.Config.ReleaseKey; !k.IsZero() {
		return release.Verify(k, data)
	}
	var m release.Manifest
	if err := signed.Peek(data, &m); err != nil {
		return nil, err
	}
	return &m, nil
}
