// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package metrics

import "testing"

func TestListenAddr(t *testing.T) {
	for in, want := range map[string]string{"": "", ":9100": "127.0.0.1:9100", "9100": "127.0.0.1:9100",
		"0.0.0.0:9100": "0.0.0.0:9100", "[::1]:9": "[::1]:9"} {
		got, err := ListenAddr(in)
		if err != nil || got != want {
			t.Errorf("ListenAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ListenAddr("nonsense::"); err == nil {
		t.Error("bad address accepted")
	}
}
