// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package sdbox gives a test a real, throwaway systemd machine: the
// systemd-box script beside this file (a copy of the team's tool, embedded
// so CI needs nothing outside the repository) boots systemd-nspawn with
// systemd as PID 1 on an overlay of this machine's root whose writes go to
// a tmpfs. Nothing the box does reaches this machine's files, and all of it
// vanishes at Stop.
//
// The box shares this machine's network namespace: a hub the test starts
// on 127.0.0.1 is reachable from inside, and a port opened inside is
// reachable from the test.
//
//	b := sdbox.Start(t, "install")         // skips when not root or nspawn cannot be had
//	b.CopyIn(agentBin, "/usr/local/bin/initech-agent")
//	r := b.Exec("systemctl", "is-active", "initech-agent")
//
// Boxes are named NAME-PID-N so parallel test processes (and two boxes of
// one test) do not collide; each
// records its owner, and Start first stops boxes whose owner died (a test
// binary killed by a timeout leaves its box mounted otherwise).
//
// Test-only harness: imported by _test.go files. Imports only the standard
// library.
package sdbox

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

//go:embed systemd-box
var script []byte

// BaseDir is where the script keeps its boxes (SYSTEMD_BOX_DIR).
var BaseDir = "/run/systemd-box"

// ExecTimeout bounds one Exec.
var ExecTimeout = 2 * time.Minute

// ownerFile, inside a box's directory, holds the PID of the test process
// that started it.
const ownerFile = "owner.pid"

// boxSeq numbers the boxes of this process.
var boxSeq atomic.Int64

var (
	scriptOnce sync.Once
	scriptPath string
	scriptErr  error
)

// Script returns the path of the systemd-box script, written once per
// process to a temporary file.
func Script() (string, error) {
	scriptOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sdbox-")
		if err != nil {
			scriptErr = err
			return
		}
		scriptPath = filepath.Join(dir, "systemd-box")
		scriptErr = os.WriteFile(scriptPath, script, 0o755)
	})
	return scriptPath, scriptErr
}

// Result is a finished command.
type Result struct {
	Stdout, Stderr string
	Code           int // -1 when it did not run to an exit (timeout)
}

// Box is one running systemd machine.
type Box struct {
	Name string // the box's name (as `systemd-box list` shows it)
	Root string // the host path of the box's root: files copied here appear inside
	t    testing.TB
}

// Available returns nil when boxes can be started here, or the reason they
// cannot.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("a systemd box needs root (it mounts an overlay and boots systemd-nspawn)")
	}
	if _, err := exec.LookPath("systemd-nspawn"); err == nil {
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return errors.New("systemd-nspawn is not installed and there is no apt-get to install systemd-container")
	}
	return nil
}

// Start boots a box for the test and stops it in t.Cleanup. It skips the
// test when boxes cannot run here (not root; systemd-nspawn missing and
// not installable) and fails it when the box does not boot.
func Start(t testing.TB, name string) *Box {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("no systemd box: %v", err)
	}
	sh, err := Script()
	if err != nil {
		t.Fatal(err)
	}
	StopStale()
	b := &Box{Name: fmt.Sprintf("%s-%d-%d", name, os.Getpid(), boxSeq.Add(1)), t: t}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // includes installing systemd-container
	defer cancel()
	r := run(ctx, sh, "start", b.Name)
	if r.Code != 0 {
		if strings.Contains(r.Stderr, "could not install systemd-container") {
			t.Skipf("no systemd box: systemd-nspawn is missing and could not be installed:\n%s", r.Stderr)
		}
		t.Fatalf("systemd-box start %s: exit %d\n%s%s", b.Name, r.Code, r.Stdout, r.Stderr)
	}
	b.Root = filepath.Join(BaseDir, b.Name, "root")
	os.WriteFile(filepath.Join(BaseDir, b.Name, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- box %s: journal ----\n%s", b.Name, b.Exec("journalctl", "--no-pager", "-n", "200").Stdout)
		}
		if err := b.Stop(); err != nil {
			t.Errorf("stop box %s: %v", b.Name, err)
		}
	})
	return b
}

// Exec runs a command inside the box as root, bounded by ExecTimeout.
func (b *Box) Exec(args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), ExecTimeout)
	defer cancel()
	return b.ExecContext(ctx, args...)
}

// ExecContext runs a command inside the box as root until ctx ends.
func (b *Box) ExecContext(ctx context.Context, args ...string) Result {
	sh, err := Script()
	if err != nil {
		return Result{Stderr: err.Error(), Code: -1}
	}
	return run(ctx, sh, append([]string{"exec", b.Name}, args...)...)
}

// Must runs a command inside the box and fails the test unless it exits 0;
// it returns the command's stdout.
func (b *Box) Must(args ...string) string {
	b.t.Helper()
	r := b.Exec(args...)
	if r.Code != 0 {
		b.t.Fatalf("in box %s: %s: exit %d\n%s%s", b.Name, strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// CopyIn copies a file of this machine to boxPath inside the box, keeping
// its mode (parent directories are created 0755).
func (b *Box) CopyIn(hostPath, boxPath string) error {
	data, err := os.ReadFile(hostPath)
	if err != nil {
		return err
	}
	fi, err := os.Stat(hostPath)
	if err != nil {
		return err
	}
	return b.WriteFile(boxPath, data, fi.Mode().Perm())
}

// WriteFile writes data to boxPath inside the box (owner root).
func (b *Box) WriteFile(boxPath string, data []byte, mode os.FileMode) error {
	if !filepath.IsAbs(boxPath) {
		return fmt.Errorf("box path %q is not absolute", boxPath)
	}
	dst := filepath.Join(b.Root, boxPath)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".sdbox-tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// Stop powers the box off and forgets it. Cleanup calls it; calling it
// twice is harmless.
func (b *Box) Stop() error {
	if _, err := os.Stat(filepath.Join(BaseDir, b.Name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	sh, err := Script()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if r := run(ctx, sh, "stop", b.Name); r.Code != 0 {
		return fmt.Errorf("systemd-box stop: exit %d: %s", r.Code, strings.TrimSpace(r.Stderr))
	}
	return nil
}

// StopStale stops the boxes whose owning test process is gone (a run that
// crashed or was killed by its timeout).
func StopStale() {
	ents, _ := os.ReadDir(BaseDir)
	sh, err := Script()
	if err != nil {
		return
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(BaseDir, e.Name(), ownerFile))
		if err != nil {
			continue // not ours (someone's manual box) or still starting
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if pid > 0 && processAlive(pid) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		run(ctx, sh, "stop", e.Name())
		cancel()
	}
}

// StopAll stops every box, ours or not (systemd-box stop-all).
func StopAll() error {
	sh, err := Script()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if r := run(ctx, sh, "stop-all"); r.Code != 0 {
		return fmt.Errorf("systemd-box stop-all: exit %d: %s", r.Code, strings.TrimSpace(r.Stderr))
	}
	return nil
}

func processAlive(pid int) bool {
	_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
	return err == nil
}

func run(ctx context.Context, sh string, args ...string) Result {
	cmd := exec.CommandContext(ctx, sh, args...)
	cmd.Env = append(os.Environ(), "SYSTEMD_BOX_DIR="+BaseDir)
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		r.Code = ee.ExitCode()
	default:
		r.Code = -1
		r.Stderr += fmt.Sprintf("\n(%s %s: %v)", filepath.Base(sh), strings.Join(args, " "), err)
	}
	return r
}
