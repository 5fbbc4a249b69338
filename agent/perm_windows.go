// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import "os"

// On Windows the state directory lives under %ProgramData% with an ACL set
// by the installer; POSIX mode bits say nothing there.
func checkPrivate(dir string, fi os.FileInfo) error { return nil }

func checkPrivateFile(path string) error { return nil }
