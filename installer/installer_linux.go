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
// 2 s after any exit (kardianos' default waits 120 s). Self-update needs no
// more than that: releases are staged in the state directory and the
// installed binary launches them (agent/update). Exit status 75 is the
// node asking for that restart after handing over to a new version; it is
// not a failure.
var systemdUnit = template.Must(template.New("unit").Parse(`[Unit]
Description={{.Description}}
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
SuccessExitStatus={{.RestartExitCode}}
RestartForceExitStatus={{.RestartExitCode}}
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
		"Name":            s.Name,
		"Description":     s.Description,
		"Exec":            strings.Join(args, " "),
		"RunAs":           s.RunAs,
		"StateDir":        s.StateDir,
		"StateDirectory":  stateDirectory,
		"User":            s.User,
		"RestartExitCode": RestartExitCode,
	})
	path := "/etc/systemd/system/" + s.Name + ".service"
	if s.User {
		home, _ := os.UserHomeDir()
		path = filepath.Join(home, ".config", "systemd", "user", s.Name+".service")
	}
	return path, unit
}

// unitPaths are where a system unit of this name can be installed: by
// `install` (/etc) or by a package (/usr/lib, /lib).
func unitPaths(name string) []string {
	return []string{"/etc/systemd/system/" + name + ".service", "/usr/lib/systemd/system/" + name + ".service", "/lib/systemd/system/" + name + ".service"}
}

// systemdRunning reports whether systemd manages this machine (sd_booted).
func systemdRunning() bool {
	_, err := os.Stat("/run/systemd/system")
	return err == nil
}

// platformStatus answers Status for a system service from systemd itself:
// no unit file is "not installed" (a foreground node, whatever the init
// system), and a failed unit says why. handled is false for per-user
// services, which kardianos answers.
func platformStatus(s Spec) (state string, handled bool, err error) {
	if s.User {
		return "", false, nil
	}
	unit := ""
	for _, p := range unitPaths(s.Name) {
		if _, err := os.Stat(p); err == nil {
			unit = p
			break
		}
	}
	if unit == "" {
		return "not installed", true, nil
	}
	if !systemdRunning() {
		return "unknown", true, fmt.Errorf("the unit %s is installed, but systemd is not running on this machine", unit)
	}
	out, _ := exec.Command("systemctl", "is-active", s.Name+".service").Output()
	switch st := strings.TrimSpace(string(out)); st {
	case "active", "activating", "reloading":
		return "running", true, nil
	case "inactive", "deactivating":
		return "stopped", true, nil
	case "failed":
		res, _ := exec.Command("systemctl", "show", "-p", "Result", "--value", s.Name+".service").Output()
		return "failed", true, fmt.Errorf("the service failed (result: %s); `journalctl -u %s` says why", strings.TrimSpace(string(res)), s.Name)
	default:
		return "unknown", true, fmt.Errorf("systemctl is-active %s: %q", s.Name, st)
	}
}

// platformControl runs start, stop or restart through systemctl, so a
// failure carries systemctl's own reason. handled is false when systemd
// does not run the service (per-user services, other init systems).
func platformControl(s Spec, action string) (handled bool, err error) {
	if s.User || !systemdRunning() {
		return false, nil
	}
	out, err := exec.Command("systemctl", action, s.Name+".service").CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			msg = err.Error()
		}
		return true, fmt.Errorf("systemctl %s %s: %s", action, s.Name, msg)
	}
	return true, nil
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
