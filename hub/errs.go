// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import "syscall"

var errTooManyFiles error = syscall.EMFILE
