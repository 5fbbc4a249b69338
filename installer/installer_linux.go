// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package installer

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"

	"github.com/kardianos/service"
)

const serviceAccountSupported = true

// DefaultStateDir is /var/lib/<name> for the system service and
// $XDG_STATE_HOME/<name> (~/.local/state/<name>) for a per-user one.
func DefaultStateDir(user bool) string {
	name := serviceName()
	if !user {
		return "/var/lib/" + name
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, name)
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "state", name)
}

// systemdUnit is hardened: an unprivileged account, no new privileges, a
// read-only system with only the state directory writable, private /tmp,
// no capabilities, only the address families the agent uses, and a restart
// 2 s after any exit (kardianos' default waits 120 s).
var systemdUnit = template.Must(template.New("unit").Parse(`[Unit]
Description={{.Description}}
Documentation=man:{{.Name}}(8)
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=0

[Service]
Type=simple
ExecStart={{.Exec}}
{{- if .RunAs}}
User={{.RunAs}}
Group={{.RunAs}}
{{- end}}
Restart=always
RestartSec=2s
{{- if .StateDirectory}}
StateDirectory={{.StateDirectory}}
StateDirectoryMode=0700
{{- end}}
UMask=0077
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={{.StateDir}}
{{- if not .User}}
ProtectHome=yes
{{- end}}
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
CapabilityBoundingSet=
AmbientCapabilities=
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
SystemCallArchitectures=native
SystemCallFilter=@system-service

[Install]
WantedBy={{if .User}}default.target{{else}}multi-user.target{{end}}
`))

func quoteArg(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\$%") {
		return s
	}
	return strconv.Quote(s)
}

func unitFile(s Spec) (string, string) {
	args := []string{quoteArg(s.Executable)}
	for _, a := range s.Arguments() {
		args = append(args, quoteArg(a))
	}
	stateDirectory := ""
	if !s.User && strings.HasPrefix(s.StateDir, "/var/lib/") && filepath.Dir(s.StateDir) == "/var/lib" {
		stateDirectory = filepath.Base(s.StateDir)
	}
	unit := render(systemdUnit, map[string]any{
		"Name":           s.Name,
		"Description":    s.Description,
		"Exec":           strings.Join(args, " "),
		"RunAs":          s.RunAs,
		"StateDir":       s.StateDir,
		"StateDirectory": stateDirectory,
		"User":           s.User,
	})
	path := "/etc/systemd/system/" + s.Name + ".service"
	if s.User {
		home, _ := os.UserHomeDir()
		path = filepath.Join(home, ".config", "systemd", "user", s.Name+".service")
	}
	return path, unit
}

func options(s Spec, unit string) service.KeyValue {
	kv := service.KeyValue{"UserService": s.User, "Restart": "always"}
	if unit != "" {
		// Pre-rendered: no template keys left for kardianos to fill.
		kv["SystemdScript"] = unit
	}
	return kv
}

func managerCommands(s Spec) []string {
	if s.User {
		return []string{"systemctl --user daemon-reload", "systemctl --user enable " + s.Name, "systemctl --user start " + s.Name}
	}
	return []string{"systemctl daemon-reload", "systemctl enable " + s.Name, "systemctl start " + s.Name}
}

// ensureAccount creates the system account the service runs as.
func ensureAccount(name, home string) error {
	if _, err := user.Lookup(name); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("creating the service account %q needs root (or use --user)", name)
	}
	out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", home,
		"--shell", "/usr/sbin/nologin", "--user-group", name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("useradd %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func chownTree(dir, account string) error {
	u, err := user.Lookup(account)
	if err != nil {
		return fmt.Errorf("service account: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}
