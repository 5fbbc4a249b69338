// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !windows

package agent

import (
	"fmt"
	"os"
	"syscall"
)

func checkPrivate(dir string, fi os.FileInfo) error {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("state directory %s is owned by uid %d, not by this user (uid %d); refusing to use it", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("state directory %s has mode %04o; it must not be accessible to group or others (chmod 700 %s)", dir, fi.Mode().Perm(), dir)
	}
	return nil
}

func checkPrivateFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o; it must be 0600 (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	return nil
}
