// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package release defines the signed release manifest: a version, a
// channel, and for each platform the size, SHA-256 and minisign signature
// of its binary, signed as a whole with the project's release key
// (wire/signed, ContextManifest). A node trusts a binary only through a
// manifest that verifies with the release key it was built with (or, for
// unbranded builds, the one its ticket named).
//
// Imported by hub and agent/update.
package release

import (
	"cmp"
	"errors"
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

// MaxVersionLen bounds a version string: it names a directory on the hub
// and travels in every release request.
const MaxVersionLen = 64

// Version is a parsed semantic version (semver.org 2.0.0), written
// vMAJOR.MINOR.PATCH[-PRERELEASE][+BUILD].
type Version struct {
	Major, Minor, Patch uint64
	Pre                 string // dot-separated identifiers, without the "-"; "" for a release
	Build               string // dot-separated identifiers, without the "+"; ignored by Compare
}

// String returns the canonical form, which ParseVersion accepts and maps
// back to v.
func (v Version) String() string {
	s := "v" + strconv.FormatUint(v.Major, 10) + "." + strconv.FormatUint(v.Minor, 10) + "." + strconv.FormatUint(v.Patch, 10)
	if v.Pre != "" {
		s += "-" + v.Pre
	}
	if v.Build != "" {
		s += "+" + v.Build
	}
	return s
}

// ParseVersion parses a strict semantic version with a "v" prefix:
// vMAJOR.MINOR.PATCH, then optionally "-" and dot-separated pre-release
// identifiers, then optionally "+" and dot-separated build identifiers.
// Identifiers use only ASCII letters, digits and '-' and are never empty;
// numbers (the core and numeric pre-release identifiers) have no leading
// zeros. So every accepted string is canonical (String gives it back), is
// at most MaxVersionLen bytes, and is safe as a file name: besides
// letters and digits it holds only '.', '-' and '+', never two dots in a
// row, so never a '/', a '\' or "..".
func ParseVersion(s string) (Version, error) {
	if len(s) > MaxVersionLen {
		return Version{}, fmt.Errorf("version is %d bytes long; at most %d", len(s), MaxVersionLen)
	}
	bad := func(why string) (Version, error) {
		return Version{}, fmt.Errorf("version %q: %s (want vMAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], e.g. v1.2.3)", s, why)
	}
	t, ok := strings.CutPrefix(s, "v")
	if !ok {
		return bad(`must start with "v"`)
	}
	t, build, hasBuild := strings.Cut(t, "+")
	core, pre, hasPre := strings.Cut(t, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return bad("the core must be three numbers separated by dots")
	}
	var nums [3]uint64
	for i, p := range parts {
		if !isNumeric(p) {
			return bad(fmt.Sprintf("%q is not a number", p))
		}
		if len(p) > 1 && p[0] == '0' {
			return bad(fmt.Sprintf("%q has a leading zero", p))
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return bad(fmt.Sprintf("%q is too large", p))
		}
		nums[i] = n
	}
	if hasPre {
		if err := checkIdents(pre, true); err != nil {
			return bad("pre-release " + err.Error())
		}
	}
	if hasBuild {
		if err := checkIdents(build, false); err != nil {
			return bad("build metadata " + err.Error())
		}
	}
	return Version{Major: nums[0], Minor: nums[1], Patch: nums[2], Pre: pre, Build: build}, nil
}

// checkIdents checks dot-separated semver identifiers; numeric ones must
// not have leading zeros when strictNumbers (pre-release) is set.
func checkIdents(s string, strictNumbers bool) error {
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return errors.New("has an empty identifier")
		}
		for i := 0; i < len(id); i++ {
			if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
				return fmt.Errorf("identifier %q has %q: use only letters, digits and '-'", id, id[i:i+1])
			}
		}
		if strictNumbers && isNumeric(id) && len(id) > 1 && id[0] == '0' {
			return fmt.Errorf("identifier %q has a leading zero", id)
		}
	}
	return nil
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Compare returns -1, 0 or 1 by semver precedence: the core numbers, then
// a pre-release sorts before its release, pre-release identifiers compare
// one by one (numbers numerically and below words, words in ASCII order,
// a longer list after its prefix). Build metadata is ignored.
func Compare(a, b Version) int {
	if c := cmp.Compare(a.Major, b.Major); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Minor, b.Minor); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Patch, b.Patch); c != 0 {
		return c
	}
	switch {
	case a.Pre == b.Pre:
		return 0
	case a.Pre == "":
		return 1
	case b.Pre == "":
		return -1
	}
	x, y := strings.Split(a.Pre, "."), strings.Split(b.Pre, ".")
	for i := 0; i < len(x) && i < len(y); i++ {
		if c := compareIdent(x[i], y[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(x), len(y))
}

func compareIdent(a, b string) int {
	na, nb := isNumeric(a), isNumeric(b)
	switch {
	case na && nb:
		// No leading zeros, so the longer number is the larger one.
		if c := cmp.Compare(len(a), len(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	case na:
		return -1
	case nb:
		return 1
	}
	return strings.Compare(a, b)
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
