// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Command brokenagent is a release that crashes at start, for the update
// tests: built with the same version stamp as the agent
// (-X …/internal/buildinfo.version=V), it passes every check a release
// gets before it runs (signature, checksum, embedded version) and then
// exits 3 whatever it is asked, as a bad build would.
//
// Test fixture; nothing imports it.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "this build is broken: exiting at start")
	os.Exit(3)
}
