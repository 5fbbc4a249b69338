// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package brand holds the white-label settings of a build: the vendor's
// name, display name, service name, default hub address and embedded public
// keys. They are plain string variables so a vendor build can set them with
//
//	go build -ldflags "-X github.com/edgeportal/connect/internal/brand.name=globex
//	                   -X 'github.com/edgeportal/connect/internal/brand.displayName=Globex Agent'"
//
// Nothing else in the module hard-codes the brand; everything asks this
// package. "initech" is the default brand.
//
// This package is a leaf (stdlib only) and may be imported by any package.
package brand

import (
	"strings"
	"unicode"
)

// Set by -ldflags -X. Empty means "use the default". name's default lives
// in brand_default.go, which vendor builds leave out with -tags whitelabel,
// so their binaries carry no trace of the default brand.
var (
	displayName  string // e.g. "Globex Agent"; defaults to Title(name) + " Agent"
	vendor       string // e.g. "Globex Corp"; defaults to Title(name)
	defaultHub   string // host:port the agent dials when a ticket names none
	authorityKey string // "sigkey:…"; when set, tickets naming another authority key are refused
	commandKey   string // "sigkey:…"
	releaseKey   string // "sigkey:…" (release manifests)
)

// Name is the brand's short, lower-case name ("initech").
func Name() string { return name }

// Valid reports whether the build's brand name is usable (lower-case
// letters, digits and '-'); the binaries refuse to start otherwise.
func Valid() bool { return name != "" && validName(name) }

// Vendor is the vendor's display name ("Initech").
func Vendor() string {
	if vendor != "" {
		return vendor
	}
	return title(Name())
}

// DisplayName is the agent's display name ("Initech Agent").
func DisplayName() string {
	if displayName != "" {
		return displayName
	}
	return Vendor() + " Agent"
}

// HubDisplayName is the hub's display name ("Initech Hub").
func HubDisplayName() string { return Vendor() + " Hub" }

// AgentBinary is the agent's binary and service name ("initech-agent").
func AgentBinary() string { return Name() + "-agent" }

// HubBinary is the hub's binary name ("initech-hub").
func HubBinary() string { return Name() + "-hub" }

// ServiceName is the OS service name of the agent.
func ServiceName() string { return AgentBinary() }

// EnvPrefix is the prefix of environment variables read by the binaries
// ("INITECH_").
func EnvPrefix() string {
	return strings.ToUpper(strings.ReplaceAll(Name(), "-", "_")) + "_"
}

// DefaultHub is the hub address built in by the vendor, or "".
func DefaultHub() string { return defaultHub }

// AuthorityKey is the embedded authority public key ("sigkey:…"), or "" for
// builds that trust the key a ticket names (tests, demo).
func AuthorityKey() string { return authorityKey }

// CommandKey is the embedded command public key, or "".
func CommandKey() string { return commandKey }

// ReleaseKey is the embedded release public key, or "".
func ReleaseKey() string { return releaseKey }

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func title(s string) string {
	if s == "" {
		return s
	}
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}
