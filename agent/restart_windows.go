// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"os"
)

// launcherSupported: a Windows process cannot exec another binary, so
// updates replace the binary in place (update.ApplyInPlace).
const launcherSupported = false

func supervised() bool { return true }

// Reexec exits so the Windows service manager restarts the new binary.
func Reexec() error {
	os.Exit(RestartExitCode)
	return nil
}

func execBinary(string, []string) error {
	return errors.New("exec is not supported on windows")
}
