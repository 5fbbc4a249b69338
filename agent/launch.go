// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"log/slog"
	"os"
	"strings"

	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/agent/update"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/buildinfo"
)

// launcherEnv names the environment variable a launcher sets for the
// staged binary it execs: the launcher's own path. Its presence also tells
// the staged binary not to act as a launcher itself.
func launcherEnv() string { return brand.EnvPrefix() + "UPDATE_LAUNCHER" }

// Launch is the launcher (see package agent/update): the installed binary,
// starting `run` on stateDir, execs the verified staged version the node
// runs now, or gives a version on trial its next attempt, or rolls one
// back. It returns only when this binary itself should run; it never
// fails the start (what it cannot do it logs, and the installed binary
// runs). It must run before the config is parsed: a newer version may
// accept config a launcher does not know.
func Launch(stateDir string, log *slog.Logger) {
	if !launcherSupported || os.Getenv(launcherEnv()) != "" || stateDir == "" {
		return
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Only the state directory's owner may change it (a root shell on
	// the service's directory would leave root-owned files behind); the
	// node reports a bad state directory itself.
	if statedir.Ensure(stateDir, false) != nil {
		return
	}
	enr, err := LoadEnrollment(stateDir)
	if err != nil || enr == nil {
		return // not enrolled: nothing can have been staged
	}
	dir := UpdateDir(stateDir)
	opts := update.LaunchOptions{
		Dir:        dir,
		Binary:     brand.AgentBinary(),
		Self:       buildinfo.Version(),
		Project:    enr.Project,
		Platform:   buildinfo.Platform(),
		ReleaseKey: releaseKeyFor(enr),
	}
	for range 2 { // a second round when an exec failed and a rollback follows
		d, err := update.Decide(opts)
		for _, note := range d.Notes {
			log.Info("launcher: " + note)
		}
		if err != nil {
			log.Error("launcher: update state", "err", err)
		}
		if d.Exe == "" {
			return
		}
		self, _ := executable()
		env := append(withoutEnv(os.Environ(), launcherEnv()), launcherEnv()+"="+self)
		err = execBinary(d.Exe, env)
		// Only a failed exec returns.
		log.Error("launcher: cannot start the staged binary; running the installed one", "version", d.Version, "err", err)
		if !d.Trial {
			return
		}
		update.FailTrial(dir, d.Version, "the launcher could not start it: "+err.Error())
	}
}

// launchStateDir is the state directory of a `run` command line, if args
// are one that the launcher serves (not a trial run).
func launchStateDir(args []string) (string, bool) {
	if len(args) < 2 || args[1] != "run" {
		return "", false
	}
	dir := ""
	for i := 2; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") {
			continue
		}
		switch name {
		case "update-trial":
			if !hasValue || value == "true" {
				return "", false
			}
		case "state-dir":
			if !hasValue && i+1 < len(args) {
				i++
				value = args[i]
			}
			dir = value
		}
	}
	if dir == "" {
		dir = os.Getenv(brand.EnvPrefix() + "STATE_DIR")
	}
	return dir, dir != ""
}

// The launcher runs at process start, before main parses flags or config,
// for every `run` of this binary. (cmd may call Launch itself at the top
// of `run` instead; then this hook goes.)
func init() {
	if dir, ok := launchStateDir(os.Args); ok {
		Launch(dir, slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "launcher"))
	}
}

func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
