// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build race

package e2e

// raceEnabled: these tests run under the race detector, so the binaries
// they start are built with it too.
const raceEnabled = true
