// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !windows

package agent

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// launcherSupported: this platform can exec a staged binary.
const launcherSupported = true

// supervised reports whether this process is the main process of a
// systemd service (systemd ≥ 248 sets SYSTEMD_EXEC_PID to it; a child of a
// service, such as a shell an admin opened from one, has another PID).
// Such a node exits to be restarted; any other re-executes in place.
func supervised() bool {
	pid, err := strconv.Atoi(os.Getenv("SYSTEMD_EXEC_PID"))
	return err == nil && pid == os.Getpid() && os.Getenv("INVOCATION_ID") != ""
}

// Reexec restarts the node into the version it handed over to. Under
// systemd it exits with RestartExitCode and the unit's Restart=always
// starts the launcher again (a crash of the new version is then retried
// and counted the same way). In the foreground it replaces the process
// with the launcher, keeping its PID, arguments and environment.
func Reexec() error {
	if supervised() {
		fmt.Fprintf(os.Stderr, "exiting with status %d for the service manager to start the new version\n", RestartExitCode)
		os.Exit(RestartExitCode)
	}
	launcher := os.Getenv(launcherEnv())
	if launcher == "" {
		exe, err := executable()
		if err != nil {
			return err
		}
		launcher = exe
	}
	return execBinary(launcher, withoutEnv(os.Environ(), launcherEnv()))
}

// execBinary replaces the process with exe, keeping the arguments.
func execBinary(exe string, env []string) error {
	argv := append([]string{exe}, os.Args[1:]...)
	if err := syscall.Exec(exe, argv, env); err != nil {
		return fmt.Errorf("exec %s: %w", exe, err)
	}
	return nil
}
