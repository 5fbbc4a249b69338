// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package buildinfo reports the version, commit and date of the running
// binary, stamped with -ldflags -X by scripts/build.sh and goreleaser, with
// a fallback to the module build information for plain `go build`.
// ReadVersion tells the version of another binary without running it
// (`release publish` refuses a binary that is not the version it
// publishes; the agent checks a downloaded release the same way).
//
// This package is a leaf (stdlib only) and may be imported by any package.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set by -ldflags -X.
var (
	version string // "v1.4.0"
	commit  string
	date    string
)

// Version is the binary's version, "v0.0.0-dev" when unstamped.
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "v0.0.0-dev"
}

// Commit is the VCS revision, or "".
func Commit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return ""
}

// Date is the build date, or "".
func Date() string { return date }

// String is a one-line description for `version` and start-up logs.
func String(binary string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", binary, Version())
	if c := Commit(); c != "" {
		if len(c) > 12 {
			c = c[:12]
		}
		fmt.Fprintf(&b, " (%s)", c)
	}
	if d := Date(); d != "" {
		fmt.Fprintf(&b, " built %s", d)
	}
	fmt.Fprintf(&b, " %s/%s %s", runtime.GOOS, runtime.GOARCH, runtime.Version())
	return b.String()
}

// Platform is "GOOS/GOARCH".
func Platform() string { return runtime.GOOS + "/" + runtime.GOARCH }
