// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package update

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/minisig"
	"github.com/edgeportal/connect/wire/release"
)

const (
	project  = "P1234"
	platform = "linux/amd64"
	binName  = "initech-agent"
)

var (
	binsOnce sync.Once
	binsDir  string
	binsErr  error
)

// stampedBinary returns a tiny Go program stamped with version (built
// once per test process).
func stampedBinary(t *testing.T, version string) []byte {
	t.Helper()
	binsOnce.Do(func() {
		binsDir, binsErr = os.MkdirTemp("", "update-test-")
		if binsErr != nil {
			return
		}
		os.WriteFile(filepath.Join(binsDir, "go.mod"), []byte("module example.com/tiny\n\ngo 1.24\n"), 0o644)
		os.WriteFile(filepath.Join(binsDir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644)
		for _, v := range []string{"v1.1.0", "v1.2.0", "v1.3.0"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binsDir, v), "-ldflags", "-X "+buildinfo.VersionSymbol+"="+v, ".")
			cmd.Dir = binsDir
			cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
			if out, err := cmd.CombinedOutput(); err != nil {
				binsErr = fmt.Errorf("go build: %v\n%s", err, out)
				return
			}
		}
	})
	if binsErr != nil {
		t.Fatal(binsErr)
	}
	b, err := os.ReadFile(filepath.Join(binsDir, version))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeSource serves signed releases from memory.
type fakeSource struct {
	manifests map[string][]byte // version → signed manifest
	bins      map[string][]byte
	newest    string
}

func newSource() *fakeSource {
	return &fakeSource{manifests: map[string][]byte{}, bins: map[string][]byte{}}
}

func (s *fakeSource) publish(t *testing.T, k key.SigningPrivate, version string, bin []byte) {
	t.Helper()
	m := release.Manifest{Project: project, Version: version, Channel: "stable", Files: map[string]release.File{
		platform: {Size: int64(len(bin)), SHA256: sha256.Sum256(bin), Minisig: minisig.Sign(k, bin, version)},
	}}
	data, err := release.Sign(k, m)
	if err != nil {
		t.Fatal(err)
	}
	s.manifests[version], s.bins[version] = data, bin
	if release.CompareStrings(version, s.newest) > 0 {
		s.newest = version
	}
}

func (s *fakeSource) Manifest(_ context.Context, _, version string) ([]byte, error) {
	if version == "" {
		version = s.newest
	}
	m, ok := s.manifests[version]
	if !ok {
		return nil, fmt.Errorf("release %s is not published", version)
	}
	return m, nil
}

func (s *fakeSource) Chunk(_ context.Context, _, version, _ string, off int64) ([]byte, error) {
	b := s.bins[version]
	if off >= int64(len(b)) {
		return nil, nil
	}
	return b[off:min(int64(len(b)), off+1<<20)], nil
}

type world struct {
	t   *testing.T
	k   key.SigningPrivate
	src *fakeSource
	dir string
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, k: key.NewSigningPrivate(), src: newSource(), dir: filepath.Join(t.TempDir(), "update")}
	for _, v := range []string{"v1.2.0", "v1.3.0"} {
		w.src.publish(t, w.k, v, stampedBinary(t, v))
	}
	return w
}

func (w *world) opts(current, version string) Options {
	return Options{Current: current, Platform: platform, Project: project, Version: version, ReleaseKey: w.k.Public(), Dir: w.dir, Binary: binName, Explicit: version != ""}
}

func (w *world) launch(self string) Decision {
	w.t.Helper()
	d, err := Decide(LaunchOptions{Dir: w.dir, Binary: binName, Self: self, Project: project, Platform: platform, ReleaseKey: w.k.Public()})
	if err != nil {
		w.t.Fatalf("Decide: %v", err)
	}
	return d
}

func (w *world) state() *State {
	w.t.Helper()
	st, err := LoadState(w.dir)
	if err != nil {
		w.t.Fatal(err)
	}
	return st
}

func (w *world) stage(current, version string) *Staged {
	w.t.Helper()
	s, res, err := Stage(context.Background(), w.src, w.opts(current, version))
	if err != nil || s == nil {
		w.t.Fatalf("Stage: %+v %v", res, err)
	}
	return s
}

// TestCrashingVersionIsRolledBack: a version that exits before it
// confirms gets MaxAttempts starts, then the previous one comes back, the
// release is remembered as failed and not tried again automatically.
func TestCrashingVersionIsRolledBack(t *testing.T) {
	w := newWorld(t)
	s := w.stage("v1.1.0", "")
	if s.Version != "v1.3.0" {
		t.Fatalf("staged %s, want the newest", s.Version)
	}
	if err := BeginTrial(w.dir, "v1.1.0", s.Version, false); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= MaxAttempts; i++ {
		d := w.launch("v1.1.0")
		if d.Exe != s.Exe || !d.Trial || d.Attempt != i {
			t.Fatalf("start %d: %+v", i, d)
		}
	}
	d := w.launch("v1.1.0")
	if d.Exe != "" || d.Version != "v1.1.0" || d.Trial {
		t.Fatalf("after %d crashes: %+v", MaxAttempts, d)
	}
	st := w.state()
	if st.Trial != nil || st.Result == nil || st.Result.OK || !strings.Contains(st.Result.Reason, "exited 3 times") {
		t.Fatalf("state after rollback: %+v %+v", st, st.Result)
	}
	if _, ok := st.FailedBefore("v1.3.0"); !ok {
		t.Fatal("the failed release is not remembered")
	}
	if _, err := os.Stat(s.Exe); err == nil {
		t.Error("the rolled-back release is still staged")
	}
	// Not again automatically (no loop) …
	staged, res, err := Stage(context.Background(), w.src, w.opts("v1.1.0", ""))
	if err != nil || staged != nil || !strings.Contains(res.Message, "failed on this node before") {
		t.Fatalf("automatic retry: %+v %+v %v", staged, res, err)
	}
	// … but when a person names it.
	if s := w.stage("v1.1.0", "v1.3.0"); s.Version != "v1.3.0" {
		t.Fatal(s)
	}
}

func TestConfirmAndPackageUpgrade(t *testing.T) {
	w := newWorld(t)
	s := w.stage("v1.1.0", "v1.2.0")
	BeginTrial(w.dir, "v1.1.0", s.Version, true)
	if d := w.launch("v1.1.0"); !d.Trial {
		t.Fatalf("%+v", d)
	}
	if on, tr, err := StartCheck(w.dir, "v1.2.0"); !on || tr.To != "v1.2.0" || err != nil {
		t.Fatalf("StartCheck: %v %+v %v", on, tr, err)
	}
	if ok, err := Confirm(w.dir, "v1.2.0"); !ok || err != nil {
		t.Fatalf("Confirm: %v %v", ok, err)
	}
	st := w.state()
	if st.Current != "v1.2.0" || st.Trial != nil || st.Result == nil || !st.Result.OK {
		t.Fatalf("confirmed state: %+v", st)
	}
	Acknowledged(w.dir, *st.Result)
	if r, _ := PendingResult(w.dir); r != nil {
		t.Fatalf("result still pending after the hub acknowledged it: %+v", r)
	}
	// Every later start runs the confirmed version, verified.
	if d := w.launch("v1.1.0"); d.Exe != s.Exe || d.Trial || d.Version != "v1.2.0" {
		t.Fatalf("steady start: %+v", d)
	}
	// A package upgrade installs v1.3.0: the installed binary wins and
	// the staged one goes.
	if d := w.launch("v1.3.0"); d.Exe != "" || d.Version != "v1.3.0" {
		t.Fatalf("after a package upgrade: %+v", d)
	}
	if _, err := os.Stat(s.Exe); err == nil {
		t.Error("the superseded staged binary is still there")
	}
	if st := w.state(); st.Current != "" {
		t.Fatalf("Current = %q after the package upgrade", st.Current)
	}
}

// TestPlantedFilesNeverRun: whatever is in the update directory runs only
// if it verifies against the signed manifest with the release key.
func TestPlantedFilesNeverRun(t *testing.T) {
	other := key.NewSigningPrivate()
	tests := []struct {
		name   string
		tamper func(w *world, s *Staged)
		want   string
	}{
		{"binary replaced", func(w *world, s *Staged) {
			os.Chmod(s.Exe, 0o700)
			os.WriteFile(s.Exe, stampedBinary(w.t, "v1.3.0"), 0o700)
		}, "checksum does not match"},
		{"binary truncated", func(w *world, s *Staged) {
			b, _ := os.ReadFile(s.Exe)
			os.Chmod(s.Exe, 0o700)
			os.WriteFile(s.Exe, b[:len(b)/2], 0o700)
		}, "the signed manifest says"},
		{"binary flipped", func(w *world, s *Staged) {
			b, _ := os.ReadFile(s.Exe)
			b[len(b)/2] ^= 1
			os.Chmod(s.Exe, 0o700)
			os.WriteFile(s.Exe, b, 0o700)
		}, "checksum does not match"},
		{"manifest signed by another key", func(w *world, s *Staged) {
			b := stampedBinary(w.t, "v1.2.0")
			data, _ := release.Sign(other, release.Manifest{Project: project, Version: "v1.2.0", Files: map[string]release.File{
				platform: {Size: int64(len(b)), SHA256: sha256.Sum256(b), Minisig: minisig.Sign(other, b, "x")}}})
			os.WriteFile(filepath.Join(filepath.Dir(s.Exe), ManifestFile), data, 0o600)
		}, "signature does not verify"},
		{"manifest gone", func(w *world, s *Staged) {
			os.Remove(filepath.Join(filepath.Dir(s.Exe), ManifestFile))
		}, "no such file"},
		{"another version's release renamed", func(w *world, s *Staged) {
			os.Rename(filepath.Dir(s.Exe), versionDir(w.dir, "v1.9.0"))
			st, _ := LoadState(w.dir)
			st.Current = "v1.9.0"
			st.Save(w.dir)
		}, "its manifest is for v1.2.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			s := w.stage("v1.1.0", "v1.2.0")
			BeginTrial(w.dir, "v1.1.0", s.Version, true)
			w.launch("v1.1.0")
			Confirm(w.dir, "v1.2.0")
			tt.tamper(w, s)
			d := w.launch("v1.1.0")
			if d.Exe != "" {
				t.Fatalf("a tampered staged binary would run: %+v", d)
			}
			if !strings.Contains(strings.Join(d.Notes, "\n"), tt.want) {
				t.Fatalf("notes %q lack %q", d.Notes, tt.want)
			}
		})
	}
	t.Run("on trial", func(t *testing.T) {
		w := newWorld(t)
		s := w.stage("v1.1.0", "v1.2.0")
		BeginTrial(w.dir, "v1.1.0", s.Version, true)
		os.Chmod(s.Exe, 0o700)
		os.WriteFile(s.Exe, []byte("#!/bin/sh\necho pwned\n"), 0o700)
		if d := w.launch("v1.1.0"); d.Exe != "" {
			t.Fatalf("a planted trial binary would run: %+v", d)
		}
		st := w.state()
		if st.Trial != nil || st.Result == nil || !strings.Contains(st.Result.Reason, "refused to run it") {
			t.Fatalf("state: %+v %+v", st, st.Result)
		}
	})
}

func TestWrongVersionCameBack(t *testing.T) {
	w := newWorld(t)
	s := w.stage("v1.1.0", "v1.2.0")
	BeginTrial(w.dir, "v1.1.0", s.Version, false)
	// No launcher ran the new version: the old one started instead.
	on, tr, err := StartCheck(w.dir, "v1.1.0")
	if on || tr.To != "v1.2.0" || err != nil {
		t.Fatalf("StartCheck: %v %+v %v", on, tr, err)
	}
	st := w.state()
	f, ok := st.FailedBefore("v1.2.0")
	if !ok || !strings.Contains(f.Reason, "came back as v1.1.0, not the promised v1.2.0") || st.Trial != nil || st.Result == nil || st.Result.OK {
		t.Fatalf("state: %+v", st)
	}
	if d := w.launch("v1.1.0"); d.Exe != "" {
		t.Fatalf("launcher after the failure: %+v", d)
	}
}

func TestGaveUpTrialRollsBackAtOnce(t *testing.T) {
	w := newWorld(t)
	s := w.stage("v1.1.0", "v1.2.0")
	BeginTrial(w.dir, "v1.1.0", s.Version, false)
	w.launch("v1.1.0")
	if err := FailTrial(w.dir, "v1.2.0", "v1.2.0 did not reach the hub within 1m0s"); err != nil {
		t.Fatal(err)
	}
	d := w.launch("v1.1.0")
	if d.Exe != "" || !strings.Contains(strings.Join(d.Notes, " "), "gave up its trial") {
		t.Fatalf("%+v", d)
	}
	if r, _ := PendingResult(w.dir); r == nil || r.OK || r.To != "v1.2.0" || !strings.Contains(r.Reason, "did not reach the hub") {
		t.Fatalf("result %+v", r)
	}
}

// TestMislabelledRelease: the release whose binary is another version than
// its manifest (the cause of the update loop) is refused and remembered.
func TestMislabelledRelease(t *testing.T) {
	w := newWorld(t)
	w.src.publish(t, w.k, "v1.4.0", stampedBinary(t, "v1.3.0"))
	_, _, err := Stage(context.Background(), w.src, w.opts("v1.1.0", ""))
	var ve *VerifyError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "the binary says it is v1.3.0") {
		t.Fatalf("Stage: %v", err)
	}
	if _, ok := w.state().FailedBefore("v1.4.0"); !ok {
		t.Fatal("a mislabelled release is not remembered as failed")
	}
	if _, err := os.Stat(versionDir(w.dir, "v1.4.0")); err == nil {
		t.Fatal("the mislabelled binary was staged")
	}
}

func TestStageRefusals(t *testing.T) {
	w := newWorld(t)
	tests := []struct {
		name    string
		opts    Options
		wantErr string
		wantMsg string
	}{
		{"no release key", Options{Current: "v1.1.0", Platform: platform, Project: project, Dir: w.dir, Binary: binName}, "no release key", ""},
		{"another project", func() Options { o := w.opts("v1.1.0", ""); o.Project = "P9"; return o }(), "is for project", ""},
		{"another platform", func() Options { o := w.opts("v1.1.0", ""); o.Platform = "windows/arm64"; return o }(), "has no build for windows/arm64", ""},
		{"already current", w.opts("v1.3.0", ""), "", "already at v1.3.0"},
		{"no downgrade unasked", w.opts("v1.4.0", ""), "", "not downgrading"},
		{"not published", w.opts("v1.1.0", "v9.9.9"), "not published", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, res, err := Stage(context.Background(), w.src, tt.opts)
			if s != nil {
				t.Fatalf("staged %+v", s)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
			if tt.wantMsg != "" && (err != nil || !strings.Contains(res.Message, tt.wantMsg)) {
				t.Fatalf("%+v %v, want %q", res, err, tt.wantMsg)
			}
		})
	}
	if ents, _ := os.ReadDir(filepath.Join(w.dir, BinDir)); len(ents) != 0 {
		t.Fatalf("refusals left files: %v", ents)
	}
}

// TestGaveUpWithoutLauncher: a version that gave up its trial but was
// started again without a launcher (nothing rolled it back) does not stay
// on trial: the trial ends as failed.
func TestGaveUpWithoutLauncher(t *testing.T) {
	w := newWorld(t)
	s := w.stage("v1.1.0", "v1.2.0")
	BeginTrial(w.dir, "v1.1.0", s.Version, false)
	FailTrial(w.dir, "v1.2.0", "v1.2.0 did not reach the hub")
	if on, _, err := StartCheck(w.dir, "v1.2.0"); on || err != nil {
		t.Fatalf("still on trial: %v %v", on, err)
	}
	if st := w.state(); st.Trial != nil || st.Result == nil || st.Result.OK {
		t.Fatalf("state %+v", st)
	}
}

// FuzzState: whatever state.json holds, it loads or fails cleanly, saves
// back to the same state, and never makes the launcher run anything that
// is not a verified staged release (there is none here).
func FuzzState(f *testing.F) {
	f.Add([]byte(`{"current":"v1.2.0","trial":{"from":"v1.1.0","to":"v1.3.0","attempts":1},"failed":{"v1.0.0":{"reason":"x"}}}`))
	f.Add([]byte(`{"trial":{"from":"","to":"../../etc","attempts":-5,"reason":""}}`))
	f.Add([]byte(`{"current":"v9.9.9","result":{"from":"a","to":"b","ok":true}}`))
	f.Add([]byte(`null`))
	k := key.NewSigningPrivate().Public()
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, StateFile), b, 0o600)
		st, err := LoadState(dir)
		if err != nil {
			return
		}
		if err := st.Save(dir); err != nil {
			t.Fatal(err)
		}
		again, err := LoadState(dir)
		if err != nil {
			t.Fatalf("a saved state does not load: %v", err)
		}
		if again.Current != st.Current || (again.Trial == nil) != (st.Trial == nil) || len(again.Failed) != len(st.Failed) {
			t.Fatalf("round trip changed the state: %+v → %+v", st, again)
		}
		d, _ := Decide(LaunchOptions{Dir: dir, Binary: binName, Self: "v1.0.0", Project: project, Platform: platform, ReleaseKey: k})
		if d.Exe != "" {
			t.Fatalf("the launcher would run %s from a state with nothing staged", d.Exe)
		}
	})
}
