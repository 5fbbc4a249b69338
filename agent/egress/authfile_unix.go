// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !windows

package egress

import "os"

func init() { checkAuthFileMode = checkAuthFileModeUnix }

// checkAuthFileModeUnix refuses a file readable or writable by group or
// others, as ssh does with private keys.
func checkAuthFileModeUnix(name string, fi os.FileInfo) error {
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return errorf("proxy-auth-file %s is accessible by group or others (mode %04o); run chmod 600 %s", name, m, name)
	}
	return nil
}
