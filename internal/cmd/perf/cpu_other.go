// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !unix

package main

import "time"

// cpuTime is not measured here (the bench runs on Linux); the process
// CPU note then reads 0.
func cpuTime() time.Duration { return 0 }
