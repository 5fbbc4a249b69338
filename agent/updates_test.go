// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/edgeportal/connect/agent/config"
)

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

// TestAutoUpdateDefault: updates are automatic by default, except where a
// package manager owns the binary; the config decides when it says.
func TestAutoUpdateDefault(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name     string
		marker   string // installed.json, "" = none
		auto     *bool
		wantAuto bool
	}{
		{"foreground or install --ticket", "", nil, true},
		{"installed by install", `{"service":"initech-agent","installed":"x"}`, nil, true},
		{"packaged", `{"service":"initech-agent","packaged":true}`, nil, false},
		{"packaged, turned on", `{"packaged":true}`, &yes, true},
		{"turned off", "", &no, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.marker != "" {
				os.WriteFile(filepath.Join(dir, "installed.json"), []byte(tt.marker), 0o600)
			}
			cfg := &config.Config{}
			cfg.Update.Auto = tt.auto
			n := New(Options{StateDir: dir, Config: cfg})
			if got := n.autoUpdateEnabled(); got != tt.wantAuto {
				t.Fatalf("autoUpdateEnabled = %v, want %v", got, tt.wantAuto)
			}
		})
	}
}
