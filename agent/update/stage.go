// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package update

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/edgeportal/connect/internal/atomicfile"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/release"
)

// Staged is a verified release in the update directory.
type Staged struct {
	Version string
	Exe     string // its binary
}

// Stage downloads the chosen release into o.Dir/bin/<version>/ and
// verifies it (manifest, size, SHA-256, minisign, embedded version). It
// changes nothing else: the caller hands over with BeginTrial. A release
// that failed on this node before is skipped unless o.Explicit; a release
// whose content does not match its manifest is marked failed so that
// scheduled checks do not fetch it again.
func Stage(ctx context.Context, src Source, o Options) (*Staged, Result, error) {
	if !running.TryLock() {
		return nil, Result{}, ErrInProgress
	}
	defer running.Unlock()
	res := Result{From: o.Current}
	if o.Dir == "" || o.Binary == "" {
		return nil, res, errors.New("update: no update directory or binary name (a construction error)")
	}
	m, err := Check(ctx, src, o)
	if err != nil {
		return nil, res, err
	}
	res.To = m.Version
	if msg, err := decide(m, o); msg != "" || err != nil {
		res.Message = msg
		return nil, res, err
	}
	if err := validVersion(m.Version); err != nil {
		return nil, res, err
	}
	st, err := LoadState(o.Dir)
	if err != nil {
		return nil, res, err
	}
	if f, ok := st.FailedBefore(m.Version); ok && !o.Explicit {
		res.Message = fmt.Sprintf("%s failed on this node before (%s); not trying it again automatically (update --version %s does)", m.Version, f.Reason, m.Version)
		return nil, res, nil
	}
	if st.Trial != nil {
		return nil, res, fmt.Errorf("%w: %s → %s is still on trial", ErrInProgress, st.Trial.From, st.Trial.To)
	}
	f := m.Files[o.Platform]
	bin, err := download(ctx, src, o, m, f)
	if err != nil {
		return nil, res, markIfPermanent(o.Dir, err)
	}
	manifest, err := src.Manifest(ctx, m.Channel, m.Version)
	if err != nil {
		return nil, res, fmt.Errorf("release manifest: %w", err)
	}
	if _, err := verifyManifest(o.ReleaseKey, manifest, o.Project, o.Platform); err != nil {
		return nil, res, err
	}
	final := versionDir(o.Dir, m.Version)
	tmp := final + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, res, fmt.Errorf("stage %s: %w", m.Version, err)
	}
	defer os.RemoveAll(tmp)
	exe := filepath.Join(tmp, o.Binary)
	if err := atomicfile.WriteFile(exe, bin, 0o500); err != nil {
		return nil, res, fmt.Errorf("stage %s: %w", m.Version, err)
	}
	if err := checkEmbeddedVersion(exe, m.Version); err != nil {
		return nil, res, markIfPermanent(o.Dir, err)
	}
	if err := atomicfile.WriteFile(filepath.Join(tmp, ManifestFile), manifest, 0o600); err != nil {
		return nil, res, fmt.Errorf("stage %s: %w", m.Version, err)
	}
	os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return nil, res, fmt.Errorf("stage %s: %w", m.Version, err)
	}
	return &Staged{Version: m.Version, Exe: filepath.Join(final, o.Binary)}, res, nil
}

// markIfPermanent remembers a release whose content is wrong as failed.
func markIfPermanent(dir string, err error) error {
	var ve *VerifyError
	if !errors.As(err, &ve) {
		return err
	}
	modify(dir, func(st *State) (bool, error) {
		st.markFailed(ve.Version, ve.Msg, time.Now())
		return true, nil
	})
	return err
}

// VerifyStaged checks a staged version right before it is run: the
// manifest beside it verifies with k and names project, version and
// platform, and the binary matches it byte for byte and reports that
// version. It returns the binary's path.
func VerifyStaged(dir, version, binary, project, platform string, k key.SigningPublic) (string, error) {
	if err := validVersion(version); err != nil {
		return "", err
	}
	if k.IsZero() {
		return "", errors.New("no release key to verify it with")
	}
	vd := versionDir(dir, version)
	data, err := os.ReadFile(filepath.Join(vd, ManifestFile))
	if err != nil {
		return "", fmt.Errorf("staged %s: %w", version, err)
	}
	m, err := verifyManifest(k, data, project, platform)
	if err != nil {
		return "", fmt.Errorf("staged %s: %w", version, err)
	}
	if m.Version != version {
		return "", fmt.Errorf("staged %s: its manifest is for %s", version, m.Version)
	}
	exe := filepath.Join(vd, binary)
	fi, err := os.Stat(exe)
	if err != nil {
		return "", fmt.Errorf("staged %s: %w", version, err)
	}
	if fi.Size() > release.MaxBinarySize {
		return "", fmt.Errorf("staged %s: larger than %d bytes", version, release.MaxBinarySize)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		return "", fmt.Errorf("staged %s: %w", version, err)
	}
	if err := checkBinary(k, m, m.Files[platform], b); err != nil {
		return "", fmt.Errorf("staged %s: %w", version, err)
	}
	if err := checkEmbeddedVersion(exe, version); err != nil {
		return "", fmt.Errorf("staged %s: %w", version, err)
	}
	return exe, nil
}

// Discard removes a staged version (a foreground trial refused it).
func Discard(dir, version string) {
	if validVersion(version) == nil {
		os.RemoveAll(versionDir(dir, version))
	}
}
