// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package installer

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// RunAsServiceAccount runs exe with args as the system service's account
// when this process is root and the service's state directory belongs to
// that account: the supported way for root's `doctor` (and any command
// that reads the state directory) to see the installed node, whose state
// is private to its account. It reports ran=false, doing nothing, in every
// other case (not root, a per-user or foreground node, no such account);
// otherwise the child's exit code.
func RunAsServiceAccount(ctx context.Context, spec Spec, exe string, args []string, stdin io.Reader, stdout, stderr io.Writer) (ran bool, code int, err error) {
	cred, ok := serviceCredential(spec)
	if !ok {
		return false, 0, nil
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Dir = spec.StateDir
	cmd.Env = append(os.Environ(), "HOME="+spec.StateDir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return true, ee.ExitCode(), nil
	}
	if err != nil {
		return true, 1, err
	}
	return true, 0, nil
}

// serviceCredential is the service account's credential, when root should
// drop to it for spec's state directory.
func serviceCredential(spec Spec) (*syscall.Credential, bool) {
	if os.Geteuid() != 0 || spec.User || spec.RunAs == "" || spec.Root != "" {
		return nil, false
	}
	u, err := user.Lookup(spec.RunAs)
	if err != nil {
		return nil, false
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil || uid == 0 {
		return nil, false
	}
	fi, err := os.Stat(spec.StateDir)
	if err != nil {
		return nil, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || uint64(st.Uid) != uid {
		return nil, false
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, true
}
