// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !windows

package agent

import (
	"os"
	"syscall"
)

// Reexec replaces the process with the (updated) binary, keeping its PID,
// arguments and environment, so systemd and launchd see the same service.
func Reexec() error {
	exe, err := executable()
	if err != nil {
		return err
	}
	return syscall.Exec(exe, os.Args, os.Environ())
}
