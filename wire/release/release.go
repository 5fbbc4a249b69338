// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package release defines the signed release manifest: a version, a
// channel, and for each platform the size, SHA-256 and minisign signature
// of its binary, signed as a whole with the project's release key
// (wire/signed, ContextManifest). A node trusts a binary only through a
// manifest that verifies with the release key it was built with (or, for
// unbranded builds, the one its ticket named).
//
// Imports: wire/signed, wire/key. Imported by hub and agent/update.
package release

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/signed"
)

// Manifest describes one release. CBOR keys 1-5.
type Manifest struct {
	Project string          `cbor:"1,keyasint"`
	Version string          `cbor:"2,keyasint"`
	Channel string          `cbor:"3,keyasint"`
	Created int64           `cbor:"4,keyasint"`
	Files   map[string]File `cbor:"5,keyasint"` // "linux/amd64" → file
}

// File is one platform's binary.
type File struct {
	Size    int64    `cbor:"1,keyasint"`
	SHA256  [32]byte `cbor:"2,keyasint"`
	Minisig string   `cbor:"3,keyasint"` // minisign signature file text
}

// MaxBinarySize bounds a release binary (a download is cut off past it).
const MaxBinarySize = 256 << 20

// Sign signs a manifest.
func Sign(k key.SigningPrivate, m Manifest) ([]byte, error) {
	return signed.Sign(k, signed.ContextManifest, m)
}

// Verify checks a manifest's signature with the release key.
func Verify(k key.SigningPublic, data []byte) (*Manifest, error) {
	var m Manifest
	if err := signed.Verify(k, signed.ContextManifest, data, &m); err != nil {
		return nil, fmt.Errorf("release manifest: %w", err)
	}
	if _, err := ParseVersion(m.Version); err != nil {
		return nil, fmt.Errorf("release manifest: %w", err)
	}
	return &m, nil
}

// Version is a parsed vMAJOR.MINOR.PATCH[-pre].
type Version struct {
	Major, Minor, Patch int
	Pre                 string
}

// ParseVersion parses "v1.2.3" or "1.2.3-rc1".
func ParseVersion(s string) (Version, error) {
	t := strings.TrimPrefix(s, "v")
	core, pre, _ := strings.Cut(t, "-")
	core, _, _ = strings.Cut(core, "+")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("version %q: want vMAJOR.MINOR.PATCH", s)
	}
	var v Version
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return Version{}, fmt.Errorf("version %q: want vMAJOR.MINOR.PATCH", s)
		}
		switch i {
		case 0:
			v.Major = n
		case 1:
			v.Minor = n
		case 2:
			v.Patch = n
		}
	}
	v.Pre = pre
	return v, nil
}

// Compare returns -1, 0 or 1. A pre-release sorts before its release.
func Compare(a, b Version) int {
	for _, d := range []int{a.Major - b.Major, a.Minor - b.Minor, a.Patch - b.Patch} {
		if d < 0 {
			return -1
		}
		if d > 0 {
			return 1
		}
	}
	switch {
	case a.Pre == b.Pre:
		return 0
	case a.Pre == "":
		return 1
	case b.Pre == "":
		return -1
	case a.Pre < b.Pre:
		return -1
	}
	return 1
}

// CompareStrings compares two version strings; unparsable ones sort first.
func CompareStrings(a, b string) int {
	va, ea := ParseVersion(a)
	vb, eb := ParseVersion(b)
	switch {
	case ea != nil && eb != nil:
		return 0
	case ea != nil:
		return -1
	case eb != nil:
		return 1
	}
	return Compare(va, vb)
}
