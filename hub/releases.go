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
		return nil, fmt.Errorf("that release key (%s) is not this project's (%s): nodes would refuse the release", o.Key.Public().String(), k.String())
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

// ErrBadReleaseName means a release request named a channel, version or
// platform that is not a valid name; nothing was read.
var ErrBadReleaseName = errors.New("bad release name")

// validateReleaseName checks the names a release request carries: a
// channel (lower-case letters, digits and '-', at most 32), a strict
// semantic version (release.ParseVersion; "" when allowEmptyVersion) and,
// unless empty, a platform ("linux/amd64"). Every hub lookup goes through
// it, so no request can name a path outside the releases directory.
func validateReleaseName(channel, version, platform string, allowEmptyVersion bool) error {
	if !channelRE.MatchString(channel) {
		return fmt.Errorf("%w: channel %s: use lower-case letters, digits and '-', at most 32", ErrBadReleaseName, quoteName(channel))
	}
	if version != "" || !allowEmptyVersion {
		if _, err := release.ParseVersion(version); err != nil {
			return fmt.Errorf("%w: %w", ErrBadReleaseName, err)
		}
	}
	if platform != "" && !platformRE.MatchString(platform) {
		return fmt.Errorf("%w: platform %s: want OS/ARCH like linux/amd64", ErrBadReleaseName, quoteName(platform))
	}
	return nil
}

// quoteName quotes a name for an error message, escaped and cut short, so
// a hostile request is never echoed at length or with control characters.
func quoteName(s string) string {
	const max = 40
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:max], len(s))
}

// releaseFile returns the path, relative to the releases directory, of a
// file of a release, after checking that it stays inside that directory.
// The names must have passed validateReleaseName.
func releaseFile(elem ...string) (string, error) {
	p := filepath.Join(elem...)
	if !filepath.IsLocal(p) {
		return "", fmt.Errorf("%w: %s leaves the releases directory", ErrBadReleaseName, quoteName(p))
	}
	return p, nil
}

// openReleases opens the releases directory as an os.Root: every file is
// then opened through it, and a symlink that points out of it (planted in
// the directory, or raced in) is refused instead of followed. It returns
// (nil, nil) when nothing was ever published.
func (d *Dir) openReleases() (*os.Root, error) {
	r, err := os.OpenRoot(filepath.Join(d.Path, releasesDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("releases: %w", err)
	}
	return r, nil
}

// versions returns the published versions of a channel (directory names
// that are valid versions and not an unfinished publish).
func versions(root *os.Root, channel string) ([]string, error) {
	f, err := root.Open(channel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		name := e.Name()
		if !e.IsDir() || strings.HasSuffix(name, ".tmp") {
			continue
		}
		if _, err := release.ParseVersion(name); err != nil {
			continue
		}
		out = append(out, name)
	}
	return out, nil
}

// Releases lists published releases, newest first within a channel.
// Directories whose names are not valid channels or versions are skipped.
func (d *Dir) Releases() ([]release.Manifest, error) {
	root, err := d.openReleases()
	if err != nil || root == nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.Open(".")
	if err != nil {
		return nil, fmt.Errorf("releases: %w", err)
	}
	chans, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("releases: %w", err)
	}
	var out []release.Manifest
	for _, ch := range chans {
		if !ch.IsDir() || validateReleaseName(ch.Name(), "", "", true) != nil {
			continue
		}
		vers, err := versions(root, ch.Name())
		if err != nil {
			continue
		}
		for _, v := range vers {
			p, err := releaseFile(ch.Name(), v, manifestFile)
			if err != nil {
				return nil, err
			}
			data, err := readRegular(root, p, maxManifestSize)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("release %s/%s: %w", ch.Name(), v, err)
			}
			m, err := d.readManifest(data)
			if err != nil {
				return nil, fmt.Errorf("release %s/%s: %w", ch.Name(), v, err)
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

// manifestFile is a release's signed manifest; maxManifestSize bounds it
// (a manifest lists a few platforms with a minisign signature each).
const (
	manifestFile    = "manifest.cbor"
	maxManifestSize = 1 << 20
)

// readRegular reads a regular file through root, at most max bytes.
func readRegular(root *os.Root, name string, max int64) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, max)
	}
	return io.ReadAll(io.LimitReader(f, max))
}

// ManifestBytes returns the signed manifest of a version, or of the newest
// version of the channel when version is empty. The bytes are served as
// stored: nodes verify them. A bad name is refused (ErrBadReleaseName)
// before anything is read.
func (d *Dir) ManifestBytes(channel, version string) ([]byte, error) {
	if channel == "" {
		channel = "stable"
	}
	if err := validateReleaseName(channel, version, "", true); err != nil {
		return nil, err
	}
	root, err := d.openReleases()
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, fmt.Errorf("no release published on channel %s", channel)
	}
	defer root.Close()
	if version == "" {
		vers, err := versions(root, channel)
		if err != nil {
			return nil, fmt.Errorf("no release published on channel %s", channel)
		}
		for _, v := range vers {
			if version == "" || release.CompareStrings(v, version) > 0 {
				version = v
			}
		}
		if version == "" {
			return nil, fmt.Errorf("no release published on channel %s", channel)
		}
	}
	p, err := releaseFile(channel, version, manifestFile)
	if err != nil {
		return nil, err
	}
	b, err := readRegular(root, p, maxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("release %s is not published on channel %s", version, channel)
	}
	return b, nil
}

// ReadChunk returns up to n bytes of a release binary at offset. A bad
// name is refused (ErrBadReleaseName) before anything is read.
func (d *Dir) ReadChunk(channel, version, platform string, offset int64, n int) ([]byte, error) {
	if err := validateReleaseName(channel, version, platform, false); err != nil {
		return nil, err
	}
	if platform == "" {
		return nil, fmt.Errorf("%w: no platform", ErrBadReleaseName)
	}
	if offset < 0 || offset > release.MaxBinarySize || n <= 0 || n > release.MaxBinarySize {
		return nil, fmt.Errorf("release %s: bad range (offset %d, %d bytes)", version, offset, n)
	}
	root, err := d.openReleases()
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, fmt.Errorf("release %s is not published on channel %s", version, channel)
	}
	defer root.Close()
	p, err := releaseFile(channel, version, platformFile(platform))
	if err != nil {
		return nil, err
	}
	f, err := root.Open(p)
	if err != nil {
		return nil, fmt.Errorf("release %s has no %s binary", version, platform)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("release %s has no %s binary", version, platform)
	}
	buf := make([]byte, n)
	k, err := f.ReadAt(buf, offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("release %s: %w", version, err)
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
