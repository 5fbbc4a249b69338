// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !windows

package installer

import "syscall"

func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
