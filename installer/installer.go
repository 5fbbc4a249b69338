// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package installer turns the agent into an OS service (systemd, launchd,
// the Windows service manager) through kardianos/service, and places its
// state files with owner-only permissions.
//
// It installs a command line, not a node: the service runs
// `<brand>-agent run --state-dir DIR`, and everything secret (the ticket,
// variables) is a file in DIR, never an argument, unit line or environment
// variable. Unit files are rendered here from templates-as-data so
// --dry-run and --root show and write exactly what a real install does.
//
// On a machine that systemd runs, status, start, stop and restart of the
// system service go to systemctl directly (a missing unit is "not
// installed", not a failure, and a failure carries systemctl's reason);
// RunAsServiceAccount lets root's commands read the service's private state
// directory as its account. The unit needs nothing for self-update: the
// agent stages releases in its state directory (agent/update).
//
// Platform specifics live in installer_<os>.go. Imported by cmd/agent and
// agent. Never imports hub.
package installer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/kardianos/service"

	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/internal/atomicfile"
	"github.com/edgeportal/connect/internal/brand"
)

// Spec describes the service to install.
type Spec struct {
	Name        string // service name ("initech-agent")
	DisplayName string
	Description string
	Executable  string // absolute path of the agent binary
	StateDir    string // absolute
	User        bool   // a per-user service instead of a system one
	RunAs       string // unix account the system service runs as ("" = root/LocalSystem)
	Root        string // alternate filesystem root (package builders, tests)
	// Packaged: a deb/rpm/msi owns the service definition; install only
	// places the state files and restarts the service.
	Packaged bool

	source string // the binary to copy into Root
}

// RootedExecutable is where a --root install puts the agent binary (its
// usual path on a packaged system).
const RootedExecutable = "/usr/bin/"

// NewSpec returns the spec for this brand with the platform defaults. With
// a root, the service runs the binary from its usual path inside the root.
func NewSpec(exe string, user bool, stateDir, root string) (Spec, error) {
	if stateDir == "" {
		stateDir = DefaultStateDir(user)
	}
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return Spec{}, err
	}
	s := Spec{
		Name:        brand.ServiceName(),
		DisplayName: brand.DisplayName(),
		Description: brand.DisplayName() + ": connects " + brand.Vendor() + " to the services you allow",
		Executable:  exe,
		StateDir:    abs,
		User:        user,
		Root:        root,
	}
	if !user && serviceAccountSupported {
		s.RunAs = brand.ServiceName()
	}
	if !user && root == "" {
		if _, err := os.Stat(PackagedMarker()); err == nil {
			s.Packaged = true
		}
	}
	if root != "" {
		s.source = exe
		s.Executable = RootedExecutable + brand.AgentBinary()
	}
	return s, nil
}

// installBinary copies the running agent into the alternate root.
func (p *Plan) installBinary() error {
	if p.Spec.source == "" {
		return nil
	}
	b, err := os.ReadFile(p.Spec.source)
	if err != nil {
		return err
	}
	dst := p.Spec.Rooted(p.Spec.Executable)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(dst, b, 0o755)
}

// Arguments is the service's command line after the executable. It holds
// no secret. An unenrolled service waits for its ticket instead of failing.
func (s Spec) Arguments() []string {
	return []string{"run", "--state-dir", s.StateDir, "--wait-for-ticket"}
}

// PackagedMarker is the file a deb/rpm package installs to say it owns the
// service (see packaging/).
func PackagedMarker() string { return "/usr/lib/" + brand.AgentBinary() + "/packaged" }

// RenderUnit returns the service definition (systemd unit or launchd
// plist) for spec, and where it goes; Windows has none.
func RenderUnit(s Spec) (path, unit string) { return unitFile(s) }

// Rooted prefixes p with the alternate root, if any.
func (s Spec) Rooted(p string) string {
	if s.Root == "" {
		return p
	}
	return filepath.Join(s.Root, p)
}

// File is one file the installer writes.
type File struct {
	Path   string // without the root
	Mode   fs.FileMode
	Data   []byte
	Secret bool // content is not printed by --dry-run
}

// Plan is everything an install does, for --dry-run to print and Apply to
// carry out.
type Plan struct {
	Spec     Spec
	Files    []File // in the state directory
	UnitPath string // "" when the platform has no unit file (Windows)
	Unit     string
}

// NewPlan builds the plan for spec with the given state files.
func NewPlan(spec Spec, files []File) (*Plan, error) {
	p := &Plan{Spec: spec, Files: files}
	p.UnitPath, p.Unit = unitFile(spec)
	return p, nil
}

// Describe prints exactly what Apply would write and run.
func (p *Plan) Describe(w io.Writer) {
	s := p.Spec
	fmt.Fprintf(w, "service      %s (%s)\n", s.Name, map[bool]string{true: "per-user", false: "system"}[s.User])
	fmt.Fprintf(w, "command      %s %s\n", s.Executable, strings.Join(s.Arguments(), " "))
	if s.RunAs != "" {
		fmt.Fprintf(w, "runs as      %s (system user, created if missing)\n", s.RunAs)
	}
	fmt.Fprintf(w, "state dir    %s (0700)\n", s.Rooted(s.StateDir))
	for _, f := range p.Files {
		note := ""
		if f.Secret {
			note = " (secret, not shown)"
		}
		fmt.Fprintf(w, "write        %s (%04o, %d bytes)%s\n", s.Rooted(f.Path), f.Mode, len(f.Data), note)
	}
	if p.UnitPath != "" {
		fmt.Fprintf(w, "write        %s (0644):\n", s.Rooted(p.UnitPath))
		for _, line := range strings.Split(strings.TrimRight(p.Unit, "\n"), "\n") {
			fmt.Fprintf(w, "    %s\n", line)
		}
	} else {
		fmt.Fprintf(w, "register     Windows service %q, start automatic, restart on failure after 5s\n", s.Name)
	}
	if s.Root != "" {
		fmt.Fprintf(w, "copy         %s to %s (0755)\n", s.source, s.Rooted(s.Executable))
		fmt.Fprintf(w, "no service manager is contacted (--root %s)\n", s.Root)
		return
	}
	for _, c := range managerCommands(s) {
		fmt.Fprintf(w, "run          %s\n", c)
	}
}

// WriteState creates the state directory and writes the plan's files,
// owned by the service account when there is one.
func (p *Plan) WriteState() error {
	s := p.Spec
	dir := s.Rooted(s.StateDir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	// Private before anything is written into it (Windows: a protected
	// DACL for SYSTEM and the Administrators, nothing inherited).
	if err := statedir.Secure(dir); err != nil {
		return err
	}
	for _, f := range p.Files {
		if err := atomicfile.WriteFile(s.Rooted(f.Path), f.Data, f.Mode); err != nil {
			return err
		}
	}
	if s.RunAs != "" && s.Root == "" {
		if err := chownTree(dir, s.RunAs); err != nil {
			return err
		}
	}
	// Again, for the files just written (on Windows it hands them to the
	// Administrators, which the service's start check requires).
	return statedir.Secure(dir)
}

// WriteUnit writes the unit file (for --root installs and packages).
func (p *Plan) WriteUnit() error {
	if p.UnitPath == "" {
		return nil
	}
	path := p.Spec.Rooted(p.UnitPath)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, []byte(p.Unit), 0o644)
}

// Apply carries the plan out: the service account, the state files, then
// (unless Root is set) the service manager's install and start.
func (p *Plan) Apply(ctx context.Context, out io.Writer) error {
	s := p.Spec
	if s.Root != "" {
		if err := p.WriteState(); err != nil {
			return err
		}
		if err := p.installBinary(); err != nil {
			return err
		}
		return p.WriteUnit()
	}
	if s.RunAs != "" {
		if err := ensureAccount(s.RunAs, s.StateDir); err != nil {
			return err
		}
	}
	if err := p.WriteState(); err != nil {
		return err
	}
	if s.Packaged {
		fmt.Fprintf(out, "packaged     the package owns service %s; restarting it\n", s.Name)
		if err := Control(s, "restart"); err != nil {
			return fmt.Errorf("restart service: %w", err)
		}
		fmt.Fprintf(out, "started      service %s\n", s.Name)
		return nil
	}
	svc, err := New(s, p.Unit)
	if err != nil {
		return err
	}
	if err := svc.Install(); err != nil {
		return fmt.Errorf("install service: %w", err)
	}
	fmt.Fprintf(out, "installed    service %s\n", s.Name)
	if err := svc.Start(); err != nil {
		return fmt.Errorf("start service: %w", err)
	}
	fmt.Fprintf(out, "started      service %s\n", s.Name)
	return nil
}

// program is the kardianos Interface for control operations (never run).
type program struct{}

func (program) Start(service.Service) error { return nil }
func (program) Stop(service.Service) error  { return nil }

// New returns the kardianos service for spec. unit, when not empty, is the
// pre-rendered systemd unit or launchd plist.
func New(s Spec, unit string) (service.Service, error) {
	if dir := os.Getenv(brand.EnvPrefix() + InsecureFakeManagerEnv); dir != "" {
		return newFakeService(dir, s)
	}
	cfg := &service.Config{
		Name:        s.Name,
		DisplayName: s.DisplayName,
		Description: s.Description,
		Executable:  s.Executable,
		Arguments:   s.Arguments(),
		Option:      options(s, unit),
	}
	return service.New(program{}, cfg)
}

// ErrNotInstalled means no service is installed.
var ErrNotInstalled = errors.New("the service is not installed")

// RestartExitCode is the agent's "restart me into the new version" exit
// status (agent.RestartExitCode); the unit does not count it as a failure.
const RestartExitCode = 75

// fakeManager reports whether tests replaced the service manager.
func fakeManager() bool { return os.Getenv(brand.EnvPrefix()+InsecureFakeManagerEnv) != "" }

// Control runs start, stop or restart through the service manager.
func Control(spec Spec, action string) error {
	if !fakeManager() {
		if ok, err := platformControl(spec, action); ok {
			return err
		}
	}
	svc, err := New(spec, "")
	if err != nil {
		return err
	}
	return service.Control(svc, action)
}

// Status reports the service state as a word (running, stopped,
// not installed, unknown).
func Status(spec Spec) (string, error) {
	if !fakeManager() {
		if st, ok, err := platformStatus(spec); ok {
			return st, err
		}
	}
	svc, err := New(spec, "")
	if err != nil {
		return "unknown", err
	}
	st, err := svc.Status()
	switch {
	case errors.Is(err, service.ErrNotInstalled):
		return "not installed", nil
	case err != nil:
		return "unknown", err
	case st == service.StatusRunning:
		return "running", nil
	case st == service.StatusStopped:
		return "stopped", nil
	}
	return "unknown", nil
}

// Uninstall stops and removes the service; with purge it also removes the
// state directory.
func Uninstall(spec Spec, purge bool, out io.Writer) error {
	if spec.Root != "" {
		path, _ := unitFile(spec)
		if path != "" {
			os.Remove(spec.Rooted(path))
		}
	} else {
		svc, err := New(spec, "")
		if err != nil {
			return err
		}
		if _, err := svc.Status(); errors.Is(err, service.ErrNotInstalled) {
			fmt.Fprintf(out, "no service   %s is not installed\n", spec.Name)
		} else {
			svc.Stop()
			if err := svc.Uninstall(); err != nil {
				return fmt.Errorf("uninstall service: %w", err)
			}
			fmt.Fprintf(out, "removed      service %s\n", spec.Name)
		}
	}
	if purge {
		if err := os.RemoveAll(spec.Rooted(spec.StateDir)); err != nil {
			return err
		}
		fmt.Fprintf(out, "removed      %s (identity and state)\n", spec.Rooted(spec.StateDir))
	} else {
		fmt.Fprintf(out, "kept         %s (identity; --purge removes it)\n", spec.Rooted(spec.StateDir))
	}
	return nil
}

func render(t *template.Template, v any) string {
	var b bytes.Buffer
	if err := t.Execute(&b, v); err != nil {
		panic(err)
	}
	return b.String()
}
