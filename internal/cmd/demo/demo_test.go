// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestDemo runs the README's demo command in its checking mode: it builds
// the binaries, brings up the walk-through and curls both portals.
func TestDemo(t *testing.T) {
	if err := os.Chdir("../../.."); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := run(ctx, true, t.TempDir()); err != nil {
		t.Fatal(err)
	}
}
