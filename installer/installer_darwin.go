// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package installer

import (
	"os"
	"path/filepath"
	"text/template"

	"github.com/kardianos/service"

	"github.com/edgeportal/connect/internal/brand"
)

const serviceAccountSupported = false

// DefaultStateDir is /Library/Application Support/<Display Name> (system)
// or ~/Library/Application Support/<Display Name> (per user).
func DefaultStateDir(user bool) string {
	if !user {
		return filepath.Join("/Library/Application Support", brand.DisplayName())
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, "Library", "Application Support", brand.DisplayName())
}

// The plist keeps the agent alive (launchd restarts it after any exit,
// throttled to 5 s) and starts it at load.
var plist = template.Must(template.New("plist").Parse(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key><string>{{.Name}}</string>
  <key>ProgramArguments</key>
  <array>
    <string>{{.Exe}}</string>
{{- range .Args}}
    <string>{{.}}</string>
{{- end}}
  </array>
  <key>RunAtLoad</key><true/>
  <key>KeepAlive</key><true/>
  <key>ThrottleInterval</key><integer>5</integer>
  <key>ProcessType</key><string>Background</string>
  <key>Umask</key><integer>63</integer>
  <key>StandardErrorPath</key><string>{{.Log}}</string>
</dict>
</plist>
`))

func unitFile(s Spec) (string, string) {
	path := "/Library/LaunchDaemons/" + s.Name + ".plist"
	if s.User {
		home, _ := os.UserHomeDir()
		path = filepath.Join(home, "Library", "LaunchAgents", s.Name+".plist")
	}
	return path, render(plist, map[string]any{
		"Name": s.Name, "Exe": s.Executable, "Args": s.Arguments(),
		"Log": filepath.Join(s.StateDir, "agent.log"),
	})
}

func options(s Spec, unit string) service.KeyValue {
	kv := service.KeyValue{"UserService": s.User, "KeepAlive": true, "RunAtLoad": true}
	if unit != "" {
		kv["LaunchdConfig"] = unit
	}
	return kv
}

func managerCommands(s Spec) []string {
	return []string{"launchctl load " + s.Name}
}

func ensureAccount(name, home string) error { return nil }

func chownTree(dir, account string) error { return nil }

func platformStatus(Spec) (string, bool, error) { return "", false, nil }

func platformControl(Spec, string) (bool, error) { return false, nil }
