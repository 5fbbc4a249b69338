// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package installer

import (
	"os"
	"path/filepath"

	"github.com/kardianos/service"

	"github.com/edgeportal/connect/internal/brand"
)

const serviceAccountSupported = false

// DefaultStateDir is %ProgramData%\<Display Name> (system) or
// %LocalAppData%\<Display Name> (per user).
func DefaultStateDir(user bool) string {
	if user {
		return filepath.Join(os.Getenv("LocalAppData"), brand.DisplayName())
	}
	pd := os.Getenv("ProgramData")
	if pd == "" {
		pd = `C:\ProgramData`
	}
	return filepath.Join(pd, brand.DisplayName())
}

func unitFile(s Spec) (string, string) { return "", "" }

// Windows restarts the service 5 s after a crash-like exit; kardianos only
// sets recovery actions when OnFailure is given explicitly.
func options(s Spec, unit string) service.KeyValue {
	return service.KeyValue{
		"StartType":              "automatic",
		"DelayedAutoStart":       true,
		"OnFailure":              "restart",
		"OnFailureDelayDuration": "5s",
		"OnFailureResetPeriod":   86400,
	}
}

func managerCommands(s Spec) []string {
	return []string{"sc.exe create " + s.Name + " (via the service control manager)", "sc.exe start " + s.Name}
}

func ensureAccount(name, home string) error { return nil }

func chownTree(dir, account string) error { return nil }

func platformStatus(Spec) (string, bool, error) { return "", false, nil }

func platformControl(Spec, string) (bool, error) { return false, nil }
