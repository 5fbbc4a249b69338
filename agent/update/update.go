// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package update replaces the running agent with a newer signed release and
// puts the old one back when the new one cannot reach the hub.
//
// A release is trusted only through its manifest, verified with the
// release key the binary was built with (or, for an unbranded build, the
// one its ticket named). The binary's size, SHA-256 and minisign signature
// are checked before anything is replaced; minio/selfupdate swaps the file
// and keeps the previous binary beside it. The new binary then runs a trial
// (connect to the hub, re-register the relay) within a deadline; if it
// fails, the previous binary is restored. Downgrades need an explicit pin.
// minio/selfupdate has no version or downgrade protection of its own: the
// signed manifest provides it.
//
// Imports: wire/release, wire/minisig, wire/key, minio/selfupdate.
// Imported by agent.
package update

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/minio/selfupdate"

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
	Exe        string            // the binary to replace
	WorkDir    string            // for downloads (in the state directory)
	// Trial runs the new binary's trial; nil skips it (tests only).
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
	m, err := release.Verify(o.ReleaseKey, data)
	if err != nil {
		return nil, fmt.Errorf("%w (unsigned, tampered, or signed by another key): refusing it", err)
	}
	if m.Project != o.Project {
		return nil, fmt.Errorf("release manifest is for project %q, not %q; refusing it", m.Project, o.Project)
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
	if _, ok := m.Files[o.Platform]; !ok {
		var ps []string
		for p := range m.Files {
			ps = append(ps, p)
		}
		sort.Strings(ps)
		return nil, fmt.Errorf("release %s has no build for %s (it has: %s)", m.Version, o.Platform, strings.Join(ps, ", "))
	}
	return m, nil
}

// Apply updates the binary at o.Exe to the chosen release and runs its
// trial; on any failure the old binary stays (or is put back).
func Apply(ctx context.Context, src Source, o Options) (Result, error) {
	if !running.TryLock() {
		return Result{}, ErrInProgress
	}
	defer running.Unlock()
	res := Result{From: o.Current}
	m, err := Check(ctx, src, o)
	if err != nil {
		return res, err
	}
	res.To = m.Version
	switch c := release.CompareStrings(m.Version, o.Current); {
	case c == 0:
		res.Message = "already at " + o.Current
		return res, nil
	case c < 0 && o.Version == "":
		res.Message = fmt.Sprintf("newest release %s is older than %s; not downgrading", m.Version, o.Current)
		return res, nil
	case c < 0 && o.Version != m.Version:
		return res, fmt.Errorf("downgrade from %s to %s refused: pin the version explicitly", o.Current, m.Version)
	}
	f := m.Files[o.Platform]
	opts := selfupdate.Options{TargetPath: o.Exe, TargetMode: 0o755, Checksum: f.SHA256[:], OldSavePath: o.Exe + ".prev"}
	if err := opts.CheckPermissions(); err != nil {
		return res, fmt.Errorf("cannot replace %s: %w", o.Exe, err)
	}
	bin, err := download(ctx, src, o, m, f)
	if err != nil {
		return res, err
	}
	v := selfupdate.NewVerifier()
	sigPath := filepath.Join(o.WorkDir, m.Version+".minisig")
	if err := os.WriteFile(sigPath, []byte(f.Minisig), 0o600); err != nil {
		return res, err
	}
	defer os.Remove(sigPath)
	if err := v.LoadFromFile(sigPath, minisig.PublicKey(o.ReleaseKey)); err != nil {
		return res, fmt.Errorf("release %s: minisign signature: %w", m.Version, err)
	}
	opts.Verifier = v
	if err := selfupdate.Apply(bytes.NewReader(bin), opts); err != nil {
		if rerr := selfupdate.RollbackError(err); rerr != nil {
			return res, fmt.Errorf("update failed and the old binary could not be restored (%v): reinstall the agent: %w", rerr, err)
		}
		return res, fmt.Errorf("update to %s: %w", m.Version, err)
	}
	if o.Trial != nil {
		if err := o.Trial(ctx, o.Exe); err != nil {
			if rerr := os.Rename(o.Exe+".prev", o.Exe); rerr != nil {
				return res, fmt.Errorf("new version %s failed its trial (%v) and the old binary could not be restored: %w", m.Version, err, rerr)
			}
			return res, fmt.Errorf("new version %s failed its trial (%v); rolled back to %s", m.Version, err, o.Current)
		}
	}
	res.Updated = true
	res.Message = fmt.Sprintf("updated %s → %s", o.Current, m.Version)
	return res, nil
}

func download(ctx context.Context, src Source, o Options, m *release.Manifest, f release.File) ([]byte, error) {
	if f.Size <= 0 || f.Size > release.MaxBinarySize {
		return nil, fmt.Errorf("release %s: implausible size %d", m.Version, f.Size)
	}
	if err := os.MkdirAll(o.WorkDir, 0o700); err != nil {
		return nil, err
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
			return nil, fmt.Errorf("download %s: larger than the manifest's %d bytes; refusing it", m.Version, f.Size)
		}
		buf = append(buf, chunk...)
	}
	if extra, err := src.Chunk(ctx, m.Channel, m.Version, o.Platform, f.Size); err == nil && len(extra) > 0 {
		return nil, fmt.Errorf("download %s: larger than the manifest's %d bytes; refusing it", m.Version, f.Size)
	}
	if sha256.Sum256(buf) != f.SHA256 {
		return nil, fmt.Errorf("download %s: checksum does not match the signed manifest; refusing it", m.Version)
	}
	return buf, nil
}
