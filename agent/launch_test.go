// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import "testing"

func TestLaunchStateDir(t *testing.T) {
	t.Setenv("INITECH_STATE_DIR", "")
	tests := []struct {
		name string
		args []string
		want string
		ok   bool
	}{
		{"service command line", []string{"x", "run", "--state-dir", "/var/lib/a", "--wait-for-ticket"}, "/var/lib/a", true},
		{"equals form", []string{"x", "run", "--state-dir=/s"}, "/s", true},
		{"single dash", []string{"x", "run", "-state-dir", "/s"}, "/s", true},
		{"trial runs are not launched", []string{"x", "run", "--state-dir", "/s", "--update-trial"}, "", false},
		{"trial=true", []string{"x", "run", "--update-trial=true", "--state-dir", "/s"}, "", false},
		{"trial=false is launched", []string{"x", "run", "--update-trial=false", "--state-dir", "/s"}, "/s", true},
		{"other commands", []string{"x", "status", "--state-dir", "/s"}, "", false},
		{"no state dir", []string{"x", "run"}, "", false},
		{"after --", []string{"x", "run", "--", "--state-dir", "/s"}, "", false},
		{"no args", []string{"x"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := launchStateDir(tt.args)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("launchStateDir(%q) = %q, %v; want %q, %v", tt.args, got, ok, tt.want, tt.ok)
			}
		})
	}
	t.Setenv("INITECH_STATE_DIR", "/env")
	if got, ok := launchStateDir([]string{"x", "run"}); got != "/env" || !ok {
		t.Fatalf("from the environment: %q %v", got, ok)
	}
}
