// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package ratelimit

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := New(map[int]Rule{1: {Every: 2, Per: time.Second, Burst: 3}}, func() time.Time { return now })
	for i := range 3 {
		if ok, _ := l.Allow("a", 1); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, wait := l.Allow("a", 1)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("past the burst: %v, wait %s", ok, wait)
	}
	// Another identity, and another kind, are not affected.
	if ok, _ := l.Allow("b", 1); !ok {
		t.Error("another identity was slowed down")
	}
	if ok, _ := l.Allow("a", 2); !ok {
		t.Error("a kind without a rule was limited")
	}
	// Tokens come back at the rule's rate.
	now = now.Add(500 * time.Millisecond)
	if ok, _ := l.Allow("a", 1); !ok {
		t.Error("no token back after half a second at 2/s")
	}
	if ok, _ := l.Allow("a", 1); ok {
		t.Error("two tokens back after half a second at 2/s")
	}
	// Idle buckets are forgotten.
	now = now.Add(2 * idleForget)
	l.Allow("c", 1)
	if n := l.Len(); n != 1 {
		t.Errorf("%d buckets kept after they idled, want 1", n)
	}
}
