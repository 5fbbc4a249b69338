// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package egress

import "os"

func init() { checkAuthFileMode = checkAuthFileModeWindows }

// checkAuthFileModeWindows accepts the file: Windows has no mode bits, and
// the file's protection is the DACL the installer gives the state
// directory.
func checkAuthFileModeWindows(string, os.FileInfo) error { return nil }
