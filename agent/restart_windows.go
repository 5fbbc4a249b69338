// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import "os"

// RestartExitCode is the exit code that asks the service manager to start
// the updated binary (a crash-like exit triggers the recovery action).
const RestartExitCode = 75

// Reexec exits so the Windows service manager restarts the new binary.
func Reexec() error {
	os.Exit(RestartExitCode)
	return nil
}
