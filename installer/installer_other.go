// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !linux && !darwin && !windows

package installer

import (
	"os"
	"path/filepath"

	"github.com/kardianos/service"
)

const serviceAccountSupported = false

// DefaultStateDir is /var/db/<name> on other systems.
func DefaultStateDir(user bool) string {
	if user {
		home, _ := os.UserHomeDir()
		return filepath.Join(home, "."+serviceName())
	}
	return "/var/db/" + serviceName()
}

func unitFile(s Spec) (string, string) { return "", "" }

func options(s Spec, unit string) service.KeyValue { return service.KeyValue{"UserService": s.User} }

func managerCommands(s Spec) []string { return nil }

func ensureAccount(name, home string) error { return nil }

func chownTree(dir, account string) error { return nil }

func platformStatus(Spec) (string, bool, error) { return "", false, nil }

func platformControl(Spec, string) (bool, error) { return false, nil }
