// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package buildinfo

import (
	"debug/buildinfo"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
)

// VersionSymbol is the variable a build stamps the version into:
// -ldflags "-X github.com/edgeportal/connect/internal/buildinfo.version=v1.4.0".
const VersionSymbol = "github.com/edgeportal/connect/internal/buildinfo.version"

// ErrNoVersion means a binary carries no version that can be read without
// running it.
var ErrNoVersion = errors.New("binary carries no readable version")

// ReadVersion returns the version the Go binary at path reports, without
// running it (so it works for every platform's build), and where it was
// found: "ldflags" (the -X VersionSymbol=V in the recorded -ldflags build
// setting; the last -X wins, as in the linker) or "module" (the main
// module's version, which Go stamps from a VCS tag). A binary that is not
// a Go binary, or whose version is in neither place, is an error wrapping
// ErrNoVersion. Go records -ldflags only for builds without -trimpath, so
// a -trimpath build reports the module version: a tagged checkout's tag,
// or a pseudo-version for an untagged one.
func ReadVersion(path string) (version, source string, err error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w: not a Go binary with build information (%v)", path, ErrNoVersion, err)
	}
	v, src, err := VersionOf(bi)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	return v, src, nil
}

// VersionOf is ReadVersion for build information already read.
func VersionOf(bi *debug.BuildInfo) (version, source string, err error) {
	for _, s := range bi.Settings {
		if s.Key != "-ldflags" {
			continue
		}
		if v, ok := stampedVersion(s.Value); ok {
			return v, "ldflags", nil
		}
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v, "module", nil
	}
	return "", "", fmt.Errorf("%w: no -X %s=… in its -ldflags (a -trimpath build does not record them) and no module version (build it from a tagged checkout, or without -trimpath)", ErrNoVersion, VersionSymbol)
}

// stampedVersion finds the last -X VersionSymbol=V in an -ldflags value.
func stampedVersion(ldflags string) (string, bool) {
	args, err := splitQuoted(ldflags)
	if err != nil {
		return "", false
	}
	// A per-package form "pattern=-flags…" carries the pattern on the
	// first word.
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		if pattern, rest, ok := strings.Cut(args[0], "="); ok && pattern != "" {
			args[0] = rest
		}
	}
	found, version := false, ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		var def string
		switch {
		case a == "-X" || a == "--X":
			if i+1 >= len(args) {
				continue
			}
			i++
			def = args[i]
		case strings.HasPrefix(a, "-X="):
			def = a[len("-X="):]
		case strings.HasPrefix(a, "--X="):
			def = a[len("--X="):]
		default:
			continue
		}
		if name, value, ok := strings.Cut(def, "="); ok && name == VersionSymbol {
			found, version = true, value
		}
	}
	return version, found && version != ""
}

// splitQuoted splits s into words as cmd/go (cmd/internal/quoted) does
// when it records flags: words are separated by spaces, and a word that
// starts with ' or " runs to the matching quote (no escapes); an
// unterminated quote is an error.
func splitQuoted(s string) ([]string, error) {
	var out []string
	space := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	for len(s) > 0 {
		for len(s) > 0 && space(s[0]) {
			s = s[1:]
		}
		if len(s) == 0 {
			break
		}
		if q := s[0]; q == '"' || q == '\'' {
			end := strings.IndexByte(s[1:], q)
			if end < 0 {
				return nil, fmt.Errorf("unterminated %c string", q)
			}
			out = append(out, s[1:1+end])
			s = s[2+end:]
			continue
		}
		i := 0
		for i < len(s) && !space(s[i]) {
			i++
		}
		out = append(out, s[:i])
		s = s[i:]
	}
	return out, nil
}
