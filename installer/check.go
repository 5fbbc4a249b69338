// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package installer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/edgeportal/connect/internal/brand"
)

// The checks below let an install refuse, before it places anything or
// redeems a ticket, what would make the installed service fail on its
// first start. Each changes nothing.

// ErrNeedsRoot means installing (or controlling) the system service
// needs root rights this process does not have.
var ErrNeedsRoot = errors.New("installing the system service needs root")

// ErrHiddenExecutable is wrapped by CheckExecutable's refusals: the
// hardened system service cannot see the binary where it is.
var ErrHiddenExecutable = errors.New("the service cannot run a binary there")

// hiddenFromService lists the directories the hardened system unit
// hides from the service (Linux: ProtectHome=yes hides /home, /root and
// /run/user; PrivateTmp=yes gives it its own /tmp and /var/tmp).
func hiddenFromService() []string {
	if runtime.GOOS != "linux" {
		return nil
	}
	return []string{"/home", "/root", "/run/user", "/tmp", "/var/tmp"}
}

// SuggestedExecutable is where to put the agent binary for a system
// service ("/usr/local/bin/initech-agent").
func SuggestedExecutable() string { return "/usr/local/bin/" + brand.AgentBinary() }

// CheckExecutable refuses a system service whose binary lives where the
// hardened unit cannot execute it, saying where to put it instead. A
// per-user service, an install into an alternate root (the binary is
// copied to its usual path) and a packaged one (the package's binary
// runs) have nothing to check.
func CheckExecutable(s Spec) error {
	if s.User || s.Root != "" || s.Packaged {
		return nil
	}
	for _, d := range hiddenFromService() {
		if within(s.Executable, d) {
			return fmt.Errorf("%w: %s is under %s, which the hardened unit hides from the service; copy it to %s and run install from there",
				ErrHiddenExecutable, s.Executable, d, SuggestedExecutable())
		}
	}
	return nil
}

func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// CheckStateDir reports whether the spec's state directory can be used:
// an existing one must be a directory this process may change (its
// mode, its files), a new one must have a directory as its nearest
// existing parent.
func CheckStateDir(s Spec) error {
	dir := s.Rooted(s.StateDir)
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s is a file, not a directory", dir)
	case err == nil:
		// Setting the mode it already has changes nothing, and fails
		// unless this process owns the directory (or is root).
		if err := os.Chmod(dir, fi.Mode().Perm()); err != nil {
			return fmt.Errorf("%s belongs to another user: %w", dir, errors.Unwrap(err))
		}
		return nil
	}
	// Missing (or under a file: ENOTDIR): the nearest existing parent
	// must be a directory.
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, perr := os.Stat(p)
		switch {
		case perr == nil && fi.IsDir():
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("state directory: %w", err)
		case perr == nil:
			return fmt.Errorf("%s cannot be created: %s is a file, not a directory", dir, p)
		}
		if filepath.Dir(p) == p {
			return fmt.Errorf("state directory: %w", err)
		}
	}
}

// CheckManager reports whether this process may install the service:
// the system service needs root where the platform has service accounts
// (an alternate root and the tests' fake manager need nothing).
func CheckManager(s Spec) error {
	if s.Root != "" || s.User || fakeManager() {
		return nil
	}
	if serviceAccountSupported && os.Geteuid() != 0 {
		return ErrNeedsRoot
	}
	return nil
}
