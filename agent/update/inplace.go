// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package update

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"github.com/minio/selfupdate"
)

// ApplyInPlace replaces the binary at o.Exe with the chosen release and
// runs its trial; on any failure the old binary stays (or is put back).
// It is for platforms where a process cannot exec another binary
// (Windows, whose service account may write its install directory); the
// others stage behind the launcher (Stage).
func ApplyInPlace(ctx context.Context, src Source, o Options) (Result, error) {
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
	if msg, err := decide(m, o); msg != "" || err != nil {
		res.Message = msg
		return res, err
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
	if err := selfupdate.Apply(bytes.NewReader(bin), opts); err != nil {
		if rerr := selfupdate.RollbackError(err); rerr != nil {
			return res, fmt.Errorf("update failed and the old binary could not be restored (%v): reinstall the agent: %w", rerr, err)
		}
		return res, fmt.Errorf("update to %s: %w", m.Version, err)
	}
	if err := checkEmbeddedVersion(o.Exe, m.Version); err != nil {
		os.Rename(o.Exe+".prev", o.Exe)
		return res, err
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
