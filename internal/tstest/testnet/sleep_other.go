// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package testnet

import "time"

// SleepUntil waits until t (the tests and the bench run on Linux, where it
// is exact; see sleep_linux.go).
func SleepUntil(t time.Time) { time.Sleep(time.Until(t)) }
