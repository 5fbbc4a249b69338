// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeportal/connect/agent"
	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/installer"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/internal/cliutil"
)

func executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(exe)
}

func cmdInstall(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	var ticket string
	fs.StringVar(&ticket, "ticket", "", "enrollment ticket file")
	fs.StringVar(&ticket, "enrollment-ticket", "", "alias of --ticket")
	cfgPath := fs.String("config", "", "node config (YAML), copied into the state directory")
	var vars cliutil.Strings
	fs.Var(&vars, "variable", "NAME=VALUE for the config; repeatable (stored in the state directory, not on the command line)")
	user := fs.Bool("user", false, "install a per-user service with a per-user state directory")
	stateDir := fs.String("state-dir", "", "state directory (default: the platform's)")
	dryRun := fs.Bool("dry-run", false, "print what would be written and run; change nothing")
	root := fs.String("root", "", "install into this alternate filesystem root; contact no service manager")
	reconfigure := fs.Bool("reconfigure", false, "on an installed node, replace its config and variables and restart it")
	wait := fs.Duration("wait", 60*time.Second, "how long to wait for the node to come up")
	printUnit := fs.Bool("print-unit", false, "print the service definition for a package build and exit")
	packaged := fs.Bool("packaged", false, "a package (deb, rpm, msi) owns the service: only place the files and restart it")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if *printUnit {
		// Package builds: the unit the deb/rpm ships, for the binary at
		// its packaged path and the default state directory.
		spec, err := installer.NewSpec("/usr/bin/"+brand.AgentBinary(), false, "", "")
		if err != nil {
			return err
		}
		spec.Executable = "/usr/bin/" + brand.AgentBinary()
		_, unit := installer.RenderUnit(spec)
		fmt.Fprint(stdout, unit)
		return nil
	}
	if ticket == "" && !*reconfigure {
		return cliutil.Usagef("install needs --ticket FILE")
	}
	exe, err := executable()
	if err != nil {
		return err
	}
	spec, err := installer.NewSpec(exe, *user, *stateDir, *root)
	if err != nil {
		return err
	}
	spec.Packaged = spec.Packaged || *packaged
	// 1. Everything that can be checked offline, before touching anything.
	vm, err := config.ParseVariables(vars)
	if err != nil {
		return err
	}
	var cfg *config.Config
	var cfgBytes []byte
	if *cfgPath != "" {
		if cfg, err = config.LoadFile(*cfgPath, vm); err != nil {
			return err
		}
		if cfgBytes, err = os.ReadFile(*cfgPath); err != nil {
			return err
		}
	} else if len(vars) > 0 {
		return cliutil.Usagef("--variable needs --config")
	}
	dir := spec.Rooted(spec.StateDir)
	enr, _ := agent.LoadEnrollment(dir)
	if enr != nil && !*reconfigure {
		c := "an installed node"
		if st, err := installer.Status(spec); err == nil {
			c = "the " + st + " service"
		}
		fmt.Fprintf(stdout, "already installed: %s is enrolled in %s (state in %s); nothing changed (use --reconfigure to replace its config)\n", c, enr.Project, dir)
		return nil
	}
	var ticketText []byte
	if ticket != "" && enr == nil {
		if ticketText, err = os.ReadFile(ticket); err != nil {
			return fmt.Errorf("read ticket: %w", err)
		}
		t, g, err := agent.CheckTicket(string(ticketText), cfg)
		if err != nil {
			return fmt.Errorf("%s: %w", ticket, err)
		}
		// 2. The hub is reachable, has the ticket's key and would accept
		// it: checked without consuming the ticket.
		if !*dryRun && *root == "" {
			relay := g.Relay
			if cfg != nil && cfg.Relay != "" {
				relay = cfg.Relay
			}
			pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			err := agent.Preflight(pctx, t, relay)
			cancel()
			if err != nil {
				return fmt.Errorf("preflight: %w", err)
			}
			fmt.Fprintf(stdout, "checked      hub %s accepts ticket %s\n", strings.Join(t.Hubs, ", "), g.TicketID)
		}
	}
	// 3. Place the files and install the service.
	var files []installer.File
	if ticketText != nil {
		files = append(files, installer.File{Path: filepath.Join(spec.StateDir, statedir.Ticket), Mode: 0o600, Data: ticketText, Secret: true})
	}
	if cfgBytes != nil {
		files = append(files, installer.File{Path: filepath.Join(spec.StateDir, statedir.Config), Mode: 0o600, Data: cfgBytes})
		vb, _ := json.Marshal(vm)
		files = append(files, installer.File{Path: filepath.Join(spec.StateDir, statedir.Variables), Mode: 0o600, Data: vb, Secret: true})
	}
	mb := statedir.Marker{Service: spec.Name, User: spec.User, Packaged: spec.Packaged, Installed: time.Now().UTC().Format(time.RFC3339), Version: buildinfo.Version()}.Encode()
	files = append(files, installer.File{Path: filepath.Join(spec.StateDir, statedir.Installed), Mode: 0o600, Data: mb})
	plan, err := installer.NewPlan(spec, files)
	if err != nil {
		return err
	}
	if *dryRun {
		plan.Describe(stdout)
		fmt.Fprintln(stdout, "dry run: nothing was changed")
		return nil
	}
	if *reconfigure && enr != nil {
		if err := plan.WriteState(); err != nil {
			return err
		}
		if err := installer.Control(spec, "restart"); err != nil {
			return fmt.Errorf("restart service: %w", err)
		}
		fmt.Fprintf(stdout, "reconfigured and restarted %s\n", spec.Name)
	} else if err := plan.Apply(ctx, stdout); err != nil {
		return err
	}
	if *root != "" {
		fmt.Fprintf(stdout, "installed into %s (no service manager contacted)\n", *root)
		return nil
	}
	return awaitNode(ctx, dir, *wait, stdout)
}

// awaitNode shows progress until the node is enrolled, its relay is up and
// its outlets are listed, or explains why not.
func awaitNode(ctx context.Context, dir string, wait time.Duration, out io.Writer) error {
	deadline := time.Now().Add(wait)
	said := map[string]bool{}
	say := func(k, format string, args ...any) {
		if !said[k] {
			said[k] = true
			fmt.Fprintf(out, format+"\n", args...)
		}
	}
	for time.Now().Before(deadline) {
		if c, err := localapi.Dial(dir); err == nil {
			if st, err := c.Status(ctx); err == nil {
				say("enrolled", "enrolled     as %s", st.Identifier)
				if st.HubConnected {
					say("hub", "connected    to hub %s", st.Hub)
				}
				done := st.HubConnected
				if st.Relay.Name != "" {
					if st.Relay.Connected {
						say("relay", "relay        %s connected", st.Relay.Name)
					} else {
						done = false
					}
				}
				if done {
					for _, o := range st.Outlets {
						say("outlet "+o.Name, "outlet       %s → %s ready", o.Name, o.To)
					}
					fmt.Fprintf(out, "the node is up; `%s status` shows it\n", brand.AgentBinary())
					return nil
				}
			}
		} else if le := agent.LastError(dir); le != "" {
			return fmt.Errorf("the node stopped: %s", le)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	var b strings.Builder
	agent.PrintChecks(&b, agent.Doctor(ctx, dir, nil))
	return fmt.Errorf("the node did not come up within %s; diagnosis:\n%s", wait, strings.TrimRight(b.String(), "\n"))
}

func serviceFlags(fs *flag.FlagSet) (user *bool, stateDir, root *string) {
	user = fs.Bool("user", false, "the per-user service")
	stateDir = fs.String("state-dir", "", "state directory (default: the platform's)")
	root = fs.String("root", "", "alternate filesystem root")
	return
}

func cmdUninstall(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("uninstall", flag.ContinueOnError)
	user, stateDir, root := serviceFlags(fs)
	purge := fs.Bool("purge", false, "also remove the state directory (identity, config)")
	revoke := fs.Bool("revoke", false, "also ask the hub to revoke this node's membership")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	exe, err := executable()
	if err != nil {
		return err
	}
	spec, err := installer.NewSpec(exe, *user, *stateDir, *root)
	if err != nil {
		return err
	}
	if *revoke {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := agent.Leave(rctx, spec.Rooted(spec.StateDir))
		cancel()
		if err != nil {
			return fmt.Errorf("revoke: %w (nothing was uninstalled)", err)
		}
		fmt.Fprintln(stdout, "revoked      this node's membership at the hub")
	}
	return installer.Uninstall(spec, *purge, stdout)
}

func cmdControl(action string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(action, flag.ContinueOnError)
	user, stateDir, root := serviceFlags(fs)
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	exe, err := executable()
	if err != nil {
		return err
	}
	spec, err := installer.NewSpec(exe, *user, *stateDir, *root)
	if err != nil {
		return err
	}
	if err := installer.Control(spec, action); err != nil {
		return fmt.Errorf("%s %s: %w", action, spec.Name, err)
	}
	fmt.Fprintf(stdout, "%s: %s\n", spec.Name, map[string]string{"start": "started", "stop": "stopped", "restart": "restarted"}[action])
	return nil
}

func cmdDoctor(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	user, dir, root := serviceFlags(fs)
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if *dir == "" && !*user {
		*dir = defaultStateDir()
	}
	exe, err := executable()
	if err != nil {
		return err
	}
	spec, err := installer.NewSpec(exe, *user, *dir, *root)
	if err != nil {
		return err
	}
	checks := agent.Doctor(ctx, spec.Rooted(spec.StateDir), func() (string, error) { return installer.Status(spec) })
	if !agent.PrintChecks(stdout, checks) {
		return errors.New("doctor found problems (see the FAIL lines)")
	}
	return nil
}
