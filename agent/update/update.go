// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package update brings a node to a newer signed release without writing
// outside its own state directory, and puts the previous release back when
// the new one does not come up.
//
// # Mechanism: versioned binaries behind a launcher
//
// The installed binary (/usr/bin/<brand>-agent from a package, or wherever
// `install` found it) is never replaced. A release is staged as
// STATE/update/bin/<version>/<brand>-agent with the signed manifest it came
// with beside it, and the installed binary acts as a launcher: when it
// starts `run`, before it parses the config, it looks in state.json for the
// version to run and, after verifying it again, execs it (same PID, same
// arguments). We chose this over a privileged updater unit because it keeps
// every piece of the hardening (an unprivileged service, ProtectSystem=strict
// with only the state directory writable, no capabilities) and adds no root
// component, no socket and no second unit that could be talked into
// swapping a system binary; the package manager's files stay untouched, so
// `dpkg -V`/`rpm -V` stay clean and a package upgrade to a newer version
// simply wins (the launcher runs the installed binary when it is at least
// as new as the staged one).
//
// # Trust
//
// A staged binary is run only after Verify: the manifest beside it verifies
// with the release key (embedded in the launcher by a branded build, or the
// one its ticket named), names this project, this version and platform, and
// the binary's size, SHA-256 and minisign signature match it, and the
// binary's embedded version (internal/buildinfo.ReadVersion) is the
// manifest's. That check runs before every exec, so a file planted in the
// state directory is never run. A branded build keeps the key in the
// read-only launcher; an unbranded one (tests, demo) trusts the key its
// ticket named, which is stored in the state directory: there, whoever can
// write the state directory is already the service account.
//
// # Trial and rollback through the service manager
//
// Staging ends with BeginTrial: state.json records {from, to, attempts}.
// The node exits and the service manager (Restart=always) starts the
// launcher again. The launcher counts the attempt before it execs the new
// version, so a binary that crashes at start is retried MaxAttempts times
// and then given up: the release is marked failed and the previous version
// runs. The new version confirms (Confirm) once it reached the hub and
// registered its relay; if it does not within its deadline it records why
// (FailTrial) and exits, and the launcher rolls back at once. A node that
// starts while a trial for another version is pending — it came back at a
// version other than the promised one — fails the trial too. Every outcome
// is kept as a pending Result until the hub acknowledged it, and a failed
// release is remembered (Failed) and never tried again automatically: an
// update loop cannot happen.
//
// Without a service manager (a foreground `run`), the node first runs the
// new binary's trial as a child process, and only if it passes re-execs
// the launcher in place. On Windows, where a process cannot exec, the
// binary is replaced in place (ApplyInPlace) as before.
//
// Imported by agent.
package update

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"aead.dev/minisign"

	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/minisig"
	"github.com/edgeportal/connect/wire/release"
)

// Source is where releases come from (the hub, over the control channel).
type Source interface {
	Manifest(ctx context.Context, channel, version string) ([]byte, error)
	Chunk(ctx context.Context, channel, version, platform string, offset int64) ([]byte, error)
}

// Options describe one update attempt.
type Options struct {
	Current    string            // running version
	Platform   string            // "linux/amd64"
	Project    string            // the manifest must be for this project
	Channel    string            // default "stable"
	Version    string            // explicit target version (a pin); "" = newest
	ReleaseKey key.SigningPublic // non-zero
	// Dir is the update directory in the node's state directory
	// (staged releases and state.json). Required for Stage.
	Dir string
	// Binary is the agent binary's file name ("initech-agent"). Required
	// for Stage.
	Binary string
	// Explicit means a person asked for this version by name: a release
	// that failed before is tried again.
	Explicit bool

	// Exe and Trial are for ApplyInPlace only: the binary to replace,
	// and the new binary's trial (nil skips it; tests only).
	Exe   string
	Trial func(ctx context.Context, exe string) error
}

// Result says what happened.
type Result struct {
	From, To string
	Updated  bool
	Message  string
}

var running sync.Mutex

// ErrInProgress means another update is running.
var ErrInProgress = errors.New("an update is already in progress")

// ErrFailedBefore is wrapped by Stage's result message when the chosen
// release failed on this node before and the request was not explicit.
var ErrFailedBefore = errors.New("this release failed on this node before")

// Check fetches and verifies the manifest and decides the target version:
// signed with the release key, for this project, on the channel asked for,
// at the version asked for (if pinned), with a build for this platform.
// It changes nothing.
func Check(ctx context.Context, src Source, o Options) (*release.Manifest, error) {
	if o.ReleaseKey.IsZero() {
		return nil, errors.New("no release key: this build embeds none and the node's ticket named none")
	}
	if o.Channel == "" {
		o.Channel = "stable"
	}
	data, err := src.Manifest(ctx, o.Channel, o.Version)
	if err != nil {
		return nil, fmt.Errorf("release manifest: %w", err)
	}
	m, err := verifyManifest(o.ReleaseKey, data, o.Project, o.Platform)
	if err != nil {
		return nil, err
	}
	// The channel is signed, so a hub cannot relabel a release, but it can
	// answer a request for one channel with another channel's manifest
	// (beta or nightly to a node that follows stable).
	if m.Channel != o.Channel {
		return nil, fmt.Errorf("asked for channel %q, the hub sent a manifest for channel %q; refusing it", o.Channel, m.Channel)
	}
	if o.Version != "" && m.Version != o.Version {
		return nil, fmt.Errorf("asked for %s, the hub sent a manifest for %s", o.Version, m.Version)
	}
	return m, nil
}

func verifyManifest(k key.SigningPublic, data []byte, project, platform string) (*release.Manifest, error) {
	m, err := release.Verify(k, data)
	if err != nil {
		return nil, fmt.Errorf("%w (unsigned, tampered, or signed by another key): refusing it", err)
	}
	if m.Project != project {
		return nil, fmt.Errorf("release manifest is for project %s, not %s", m.Project, project)
	}
	if _, ok := m.Files[platform]; !ok {
		var ps []string
		for p := range m.Files {
			ps = append(ps, p)
		}
		sort.Strings(ps)
		return nil, fmt.Errorf("release %s has no build for %s (it has: %s)", m.Version, platform, strings.Join(ps, ", "))
	}
	return m, nil
}

// decide compares the release with the running version: "" means go
// ahead; otherwise it is the message for a no-op, or err refuses.
func decide(m *release.Manifest, o Options) (string, error) {
	switch c := release.CompareStrings(m.Version, o.Current); {
	case c == 0:
		return "already at " + o.Current, nil
	case c < 0 && o.Version == "":
		return fmt.Sprintf("newest release %s is older than %s; not downgrading", m.Version, o.Current), nil
	case c < 0 && o.Version != m.Version:
		return "", fmt.Errorf("downgrade from %s to %s refused: pin the version explicitly", o.Current, m.Version)
	}
	return "", nil
}

// download fetches a release binary and checks it against the manifest.
func download(ctx context.Context, src Source, o Options, m *release.Manifest, f release.File) ([]byte, error) {
	if f.Size <= 0 || f.Size > release.MaxBinarySize {
		return nil, fmt.Errorf("release %s: implausible size %d", m.Version, f.Size)
	}
	buf := make([]byte, 0, f.Size)
	for int64(len(buf)) < f.Size {
		chunk, err := src.Chunk(ctx, m.Channel, m.Version, o.Platform, int64(len(buf)))
		if err != nil {
			return nil, fmt.Errorf("download %s: %w", m.Version, err)
		}
		if len(chunk) == 0 {
			return nil, fmt.Errorf("download %s: truncated at %d of %d bytes; the old binary is untouched", m.Version, len(buf), f.Size)
		}
		if int64(len(buf)+len(chunk)) > f.Size {
			return nil, &VerifyError{Version: m.Version, Msg: fmt.Sprintf("download %s: larger than the manifest's %d bytes; refusing it", m.Version, f.Size)}
		}
		buf = append(buf, chunk...)
	}
	if extra, err := src.Chunk(ctx, m.Channel, m.Version, o.Platform, f.Size); err == nil && len(extra) > 0 {
		return nil, &VerifyError{Version: m.Version, Msg: fmt.Sprintf("download %s: larger than the manifest's %d bytes; refusing it", m.Version, f.Size)}
	}
	if err := checkBinary(o.ReleaseKey, m, f, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// VerifyError means a release's content does not match its signed
// manifest (or the binary is another version than the manifest says). It
// will not get better by trying again: the release is marked failed.
type VerifyError struct {
	Version string
	Msg     string
}

func (e *VerifyError) Error() string { return e.Msg }

// checkBinary checks a binary's bytes against its manifest entry.
func checkBinary(k key.SigningPublic, m *release.Manifest, f release.File, b []byte) error {
	if int64(len(b)) != f.Size {
		return &VerifyError{Version: m.Version, Msg: fmt.Sprintf("release %s: binary is %d bytes, the signed manifest says %d", m.Version, len(b), f.Size)}
	}
	if sha256.Sum256(b) != f.SHA256 {
		return &VerifyError{Version: m.Version, Msg: fmt.Sprintf("release %s: the binary's checksum does not match the signed manifest; refusing it", m.Version)}
	}
	var pub minisign.PublicKey
	if err := pub.UnmarshalText([]byte(minisig.PublicKey(k))); err != nil {
		return fmt.Errorf("release key: %w", err)
	}
	if !minisign.Verify(pub, b, []byte(f.Minisig)) {
		return &VerifyError{Version: m.Version, Msg: fmt.Sprintf("release %s: minisign signature does not verify; refusing it", m.Version)}
	}
	return nil
}

// checkEmbeddedVersion refuses a binary that is not the version its
// manifest promises (the update loop of a mislabelled release).
func checkEmbeddedVersion(path, want string) error {
	got, src, err := buildinfo.ReadVersion(path)
	if err != nil {
		return &VerifyError{Version: want, Msg: fmt.Sprintf("release %s: cannot tell the binary's version: %v", want, err)}
	}
	if got != want {
		return &VerifyError{Version: want, Msg: fmt.Sprintf("release %s: the binary says it is %s (%s), not %s; refusing it", want, got, src, want)}
	}
	return nil
}
