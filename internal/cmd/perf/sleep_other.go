// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package main

import "time"

// sleepUntil waits until t (the bench runs on Linux, where it is exact;
// see sleep_linux.go).
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }
