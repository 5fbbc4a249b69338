// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/edgeportal/connect/agent"
	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/installer"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/cliutil"
)

// serviceArgs are the flags every service command shares.
type serviceArgs struct {
	user           *bool
	stateDir, root *string
}

func serviceFlags(c *cliutil.Call) serviceArgs {
	fs := c.Flags()
	return serviceArgs{
		user:     fs.Bool("user", false, "the per-user service (and its per-user state directory) instead of the system one"),
		stateDir: fs.String("state-dir", "", "the service's state `DIR` (default: the platform's)"),
		root:     fs.String("root", "", "an alternate filesystem `ROOT` (package builds, images): no service manager is contacted"),
	}
}

// spec is the service the flags name, for the running binary.
func (a serviceArgs) spec() (installer.Spec, error) {
	exe, err := executable()
	if err != nil {
		return installer.Spec{}, err
	}
	return installer.NewSpec(exe, *a.user, *a.stateDir, *a.root)
}

func cmdInstall(ctx context.Context, c *cliutil.Call) error {
	fs := c.Flags()
	var ticket string
	fs.StringVar(&ticket, "ticket", "", "enrollment ticket `FILE` (copied into the state directory until the node redeems it)")
	fs.StringVar(&ticket, "enrollment-ticket", "", "the same as --ticket `FILE`")
	cfgPath := fs.String("config", "", "node config `FILE` (YAML), copied into the state directory")
	var vars cliutil.Strings
	fs.Var(&vars, "variable", "`NAME=VALUE` for the config; repeatable (stored in the state directory, never on a command line)")
	sa := serviceFlags(c)
	dryRun := fs.Bool("dry-run", false, "run every check (the hub's preflight too, which uses nothing), print what would be written and run, change nothing")
	reconfigure := fs.Bool("reconfigure", false, "on an installed node, replace its config and variables and restart it")
	proxy := fs.String("proxy", "", "reach the hub through this HTTP CONNECT proxy (`URL` http://host:port; \"direct\" ignores HTTPS_PROXY); stored in the state directory, over the config's hub.proxy (default: the config's, else HTTPS_PROXY)")
	proxyAuth := fs.String("proxy-auth-file", "", "`FILE` with one line user:password for the proxy's Basic authentication (not readable by others); copied into the state directory")
	noProxy := fs.String("no-proxy", "", "hubs to reach directly, NO_PROXY's syntax (`LIST`); stored in the state directory")
	wait := fs.Duration("wait", agent.DefaultInstallWait, "how long to wait for the node to come up")
	printUnit := fs.Bool("print-unit", false, "print the service definition for a package build and exit")
	packaged := fs.Bool("packaged", false, "a package (deb, rpm, msi) owns the service: only place the files and restart it")
	if err := c.Parse(0); err != nil {
		return err
	}
	if *printUnit {
		// Package builds: the unit the deb/rpm ships, for the binary at
		// its packaged path and the default state directory.
		spec, err := installer.NewSpec(installer.RootedExecutable+brand.AgentBinary(), false, "", "")
		if err != nil {
			return err
		}
		_, unit := installer.RenderUnit(spec)
		fmt.Fprint(c.Stdout, unit)
		return nil
	}
	if ticket == "" && !*reconfigure {
		return cliutil.Usagef("install needs --ticket FILE")
	}
	vm, err := config.ParseVariables(vars)
	if err != nil {
		return cliutil.Usagef("%v", err)
	}
	if len(vm) > 0 && *cfgPath == "" {
		return cliutil.Usagef("--variable needs --config")
	}
	spec, err := sa.spec()
	if err != nil {
		return err
	}
	spec.Packaged = spec.Packaged || *packaged
	res, err := agent.Install(ctx, agent.InstallOptions{
		Spec: spec, TicketFile: ticket, ConfigFile: *cfgPath, Variables: vm,
		Proxy: *proxy, ProxyAuthFile: *proxyAuth, NoProxy: *noProxy,
		Reconfigure: *reconfigure, DryRun: *dryRun, Wait: *wait, Progress: c.Stdout,
	})
	if err != nil {
		return installErr(err, "--ticket")
	}
	switch {
	case res.AlreadyInstalled:
		what := "an installed node"
		if res.ServiceState != "" {
			what = "the " + res.ServiceState + " service"
		}
		fmt.Fprintf(c.Stdout, "already installed: %s is enrolled in %s (state in %s); nothing changed (use --reconfigure to replace its config)\n", what, res.Project, res.StateDir)
	case res.DryRun:
		fmt.Fprintln(c.Stdout, "dry run: nothing was changed")
	case *sa.root != "":
		fmt.Fprintf(c.Stdout, "installed into %s (no service manager contacted)\n", *sa.root)
	default:
		fmt.Fprintf(c.Stdout, "the node is up; `%s status` shows it\n", brand.AgentBinary())
	}
	return nil
}

func cmdUninstall(ctx context.Context, c *cliutil.Call) error {
	sa := serviceFlags(c)
	purge := c.Flags().Bool("purge", false, "also remove the state directory (identity, config)")
	revoke := c.Flags().Bool("revoke", false, "first ask the hub to revoke this node's membership (nothing is uninstalled if that fails)")
	if err := c.Parse(0); err != nil {
		return err
	}
	spec, err := sa.spec()
	if err != nil {
		return err
	}
	if *revoke {
		dir := spec.Rooted(spec.StateDir)
		route, err := nodeRoute(dir)
		if err != nil {
			return fmt.Errorf("revoke: %w (nothing was uninstalled)", err)
		}
		rctx, cancel := context.WithTimeout(ctx, agent.PreflightTimeout)
		err = agent.Leave(rctx, route, dir)
		cancel()
		if err != nil {
			return fmt.Errorf("revoke: %w (nothing was uninstalled)", err)
		}
		fmt.Fprintln(c.Stdout, "revoked      this node's membership at the hub")
	}
	return installer.Uninstall(spec, *purge, c.Stdout)
}

// cmdControl is start, stop or restart of the installed service; a
// failure carries the service manager's reason.
func cmdControl(action string) func(context.Context, *cliutil.Call) error {
	done := map[string]string{"start": "started", "stop": "stopped", "restart": "restarted"}[action]
	return func(ctx context.Context, c *cliutil.Call) error {
		sa := serviceFlags(c)
		if err := c.Parse(0); err != nil {
			return err
		}
		spec, err := sa.spec()
		if err != nil {
			return err
		}
		if err := installer.Control(spec, action); err != nil {
			return fmt.Errorf("%s %s: %w", action, spec.Name, err)
		}
		fmt.Fprintf(c.Stdout, "%s: %s\n", spec.Name, done)
		return nil
	}
}

func cmdDoctor(ctx context.Context, c *cliutil.Call) error {
	sa := serviceFlags(c)
	cfgPath := c.Flags().String("config", "", "the node's config `FILE`, for a node run in the foreground with --config (default: the one an install placed)")
	if err := c.Parse(0); err != nil {
		return err
	}
	if *sa.stateDir == "" && !*sa.user {
		*sa.stateDir = defaultStateDir()
	}
	spec, err := sa.spec()
	if err != nil {
		return err
	}
	// Root reads the installed service's private state as its account.
	if ran, err := asServiceAccount(ctx, c, spec); ran {
		return err
	}
	dir := spec.Rooted(spec.StateDir)
	// The node's own config, for its hub route (a bad one is a check).
	cfg, cfgErr := nodeConfig(dir, *cfgPath)
	checks := agent.Doctor(ctx, dir, cfg, func() (string, error) { return serviceState(spec, dir) })
	if cfgErr != nil {
		checks = append([]agent.Check{{What: "config", Detail: cfgErr.Error()}}, checks...)
	}
	if !agent.PrintChecks(c.Stdout, checks) {
		return errors.New("doctor found problems (see the FAIL lines)")
	}
	return nil
}

// nodeConfig loads the config of the node in dir as it runs: path, else
// the file an install placed (with its variables), the hub route an
// install stored, and this environment.
func nodeConfig(dir, path string) (*config.Config, error) {
	return agent.LoadConfig(dir, path, nil, config.LoadOptions{EnvPrefix: brand.EnvPrefix(), Environ: os.Environ()})
}

// nodeRoute is how the node in dir reaches the hub.
func nodeRoute(dir string) (*agent.Route, error) {
	cfg, err := nodeConfig(dir, "")
	if err != nil {
		return nil, err
	}
	return agent.NewRoute(cfg, nil)
}

// serviceState is the state of the service that runs the node in dir:
// "not installed" for a node an install did not place (one run in the
// foreground), whatever else this machine runs; otherwise the service
// manager's word for the service the install marker names.
func serviceState(spec installer.Spec, dir string) (string, error) {
	m, err := statedir.ReadMarker(dir)
	if err != nil {
		return "unknown", err
	}
	if m == nil {
		return "not installed", nil
	}
	spec.User = m.User
	return installer.Status(spec)
}
