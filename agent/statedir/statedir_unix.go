// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !windows

package statedir

import (
	"fmt"
	"os"
	"syscall"
)

// secure creates dir 0700 (its parents 0755 as usual) and sets the mode
// of an existing one. The installer then gives it to the service account.
func secure(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// checkDir: owned by this process's user, no access for group or others.
func checkDir(dir string, fi os.FileInfo) error {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("state directory %s is owned by uid %d, not by this user (uid %d); refusing to use it", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("state directory %s has mode %04o; it must not be accessible to group or others (chmod 700 %s)", dir, fi.Mode().Perm(), dir)
	}
	return nil
}

// checkFile: no access for group or others.
func checkFile(path string, fi os.FileInfo) error {
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o; it must be 0600 (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	return nil
}
