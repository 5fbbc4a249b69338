// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Command initech-agent is the node: it enrolls with a ticket, keeps a
// control connection to the vendor's hub, registers its relay and serves
// outlets and inlets. The binary's name follows the brand
// (internal/brand).
//
// This package parses flags, calls the agent and installer packages,
// prints, and sets the exit code (internal/cliutil: 0 success or help, 2
// a usage error, 1 any other error, each one line). The command table is
// program(); the workflows (install, doctor, the node itself) live in
// agent. Testscript files in testdata/ pin what a user sees.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/edgeportal/connect/agent"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/installer"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/internal/cliutil"
)

func main() { os.Exit(Main()) }

// Main runs the program with os.Args and returns the exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cliutil.Exit(brand.AgentBinary(), program().Run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// program is the command table.
func program() *cliutil.Program {
	return &cliutil.Program{
		Name:  brand.AgentBinary(),
		Title: "the " + brand.DisplayName(),
		Commands: []*cliutil.Command{
			{Name: "run", Synopsis: "[--state-dir DIR] [--enrollment-ticket FILE] [--config FILE] [--variable NAME=VALUE]... [flags]", Run: cmdRun,
				Summary: "run the node in the foreground (the service runs this too)",
				Example: "run --state-dir ~/." + brand.Name() + " --enrollment-ticket acme.ticket --config customer.yaml --variable GITHUB_ADDRESS=github.local:80"},
			{Name: "status", Synopsis: "[--state-dir DIR] [--json]", Run: cmdStatus,
				Summary: "show the running node: identity, hub, relay, outlets and inlets",
				Example: "status --json"},
			{Name: "ticket create", Synopsis: "[--state-dir DIR] [--attribute NAME[=VALUE]]... [--relay NAME [--replica]] [--expires-in 24h] [--usage-count 1] [--out FILE]", Run: cmdTicketCreate,
				Summary: "create a ticket through the authority (an enroller node, within its scope)",
				Example: "ticket create --attribute inlet-to-saas --relay acme-relay --out acme.ticket"},
			{Name: "ticket inspect", Synopsis: "[--json] FILE", Run: cmdTicketInspect,
				Summary: "show every field of a ticket, offline, without using it",
				Example: "ticket inspect acme.ticket"},
			{Name: "tcp-outlet create", Synopsis: "--from NAME --to HOST:PORT [--allow EXPR] [--state-dir DIR]", Run: cmdOutletCreate,
				Summary: "serve a TCP target as a named outlet",
				Example: "tcp-outlet create --from jira --to jira.local:443 --allow inlet-from-saas"},
			{Name: "tcp-outlet list", Synopsis: "[--state-dir DIR] [--json]", Run: cmdOutletList,
				Summary: "list the node's outlets and where each came from",
				Example: "tcp-outlet list"},
			{Name: "tcp-outlet delete", Synopsis: "--from NAME [--state-dir DIR]", Run: cmdOutletDelete,
				Summary: "delete an outlet created from the command line",
				Example: "tcp-outlet delete --from jira"},
			{Name: "tcp-inlet create", Synopsis: "--from HOST:PORT --via RELAY --to OUTLET [--allow EXPR] [--state-dir DIR]", Run: cmdInletCreate,
				Summary: "listen locally and carry connections to an outlet behind a relay",
				Example: "tcp-inlet create --from 127.0.0.1:8000 --via acme-relay --to github"},
			{Name: "tcp-inlet list", Synopsis: "[--state-dir DIR] [--json]", Run: cmdInletList,
				Summary: "list the node's inlets",
				Example: "tcp-inlet list --json"},
			{Name: "tcp-inlet delete", Synopsis: "--from HOST:PORT [--state-dir DIR]", Run: cmdInletDelete,
				Summary: "delete an inlet created from the command line",
				Example: "tcp-inlet delete --from 127.0.0.1:8000"},
			{Name: "update", Synopsis: "[--check] [--version V] [--state-dir DIR]", Run: cmdUpdate,
				Summary: "update the running node from the hub's signed releases now",
				Example: "update --check\nupdate --version v1.4.0"},
			{Name: "audit", Synopsis: "[--state-dir DIR] [--json]", Run: cmdAudit,
				Summary: "list the audit log: vendor commands and portals, accepted or refused, with the reason",
				Example: "audit --json"},
			{Name: "audit verify", Synopsis: "[--state-dir DIR]", Run: cmdAuditVerify,
				Summary: "check the audit log's hash chain (a record edited or removed is found)",
				Example: "audit verify"},
			{Name: "explain", Synopsis: "[--state-dir DIR] [--json]", Run: cmdExplain,
				Summary: "say what the vendor can reach through this node, and who may use each outlet",
				Example: "explain"},
			{Name: "pause", Synopsis: "[--state-dir DIR]", Run: cmdPause,
				Summary: "stop serving every outlet and refuse vendor commands until resume (works stopped too)",
				Example: "pause"},
			{Name: "resume", Synopsis: "[--state-dir DIR]", Run: cmdResume,
				Summary: "undo pause",
				Example: "resume"},
			{Name: "drain", Synopsis: "[--state-dir DIR] [--deadline 5m]", Run: cmdDrain,
				Summary: "stop new portals to this node (they go to the relay's other replicas), let open ones finish, then close its channels; for a maintenance restart, after which it serves again",
				Example: "drain --deadline 10m && sudo systemctl restart " + brand.ServiceName()},
			{Name: "install", Synopsis: "--ticket FILE [--config FILE] [--variable NAME=VALUE]... [--user] [--state-dir DIR] [--dry-run] [flags]", Run: cmdInstall,
				Summary: "check everything, then install the node as an OS service and wait until it is up",
				Example: "install --ticket acme.ticket --config customer.yaml --variable GITHUB_ADDRESS=github.local:80\n" +
					"install --ticket acme.ticket --dry-run"},
			{Name: "uninstall", Synopsis: "[--purge] [--revoke] [--user] [--state-dir DIR]", Run: cmdUninstall,
				Summary: "remove the service (--purge: and its identity; --revoke: leave the hub first)",
				Example: "uninstall --purge --revoke"},
			{Name: "start", Synopsis: "[--user] [--state-dir DIR]", Run: cmdControl("start"),
				Summary: "start the installed service", Example: "start"},
			{Name: "stop", Synopsis: "[--user] [--state-dir DIR]", Run: cmdControl("stop"),
				Summary: "stop the installed service", Example: "stop"},
			{Name: "restart", Synopsis: "[--user] [--state-dir DIR]", Run: cmdControl("restart"),
				Summary: "restart the installed service", Example: "restart"},
			{Name: "doctor", Synopsis: "[--user] [--state-dir DIR]", Run: cmdDoctor,
				Summary: "diagnose the node: state directory, identity, credential, hub, authority, relay, outlets, service",
				Example: "doctor\nsudo " + brand.AgentBinary() + " doctor"},
			{Name: "version", Aliases: []string{"--version"}, Run: cmdVersion,
				Summary: "print the version", Example: "version"},
		},
	}
}

func cmdVersion(ctx context.Context, c *cliutil.Call) error {
	if err := c.Parse(0); err != nil {
		return err
	}
	fmt.Fprintln(c.Stdout, buildinfo.String(brand.AgentBinary()))
	return nil
}

// nodeDir is the --state-dir flag every command on a node shares.
type nodeDir struct{ dir string }

// stateDirFlag defines --state-dir on c.
func stateDirFlag(c *cliutil.Call) *nodeDir {
	d := &nodeDir{}
	c.Flags().StringVar(&d.dir, "state-dir", "", "the node's state `DIR` (default: $"+brand.EnvPrefix()+"STATE_DIR, else the installed service's)")
	return d
}

// path returns the state directory (defaulted), refusing one that is a
// file.
func (d *nodeDir) path() (string, error) {
	if d.dir == "" {
		d.dir = defaultStateDir()
	}
	if fi, err := os.Stat(d.dir); err == nil && !fi.IsDir() {
		return "", fmt.Errorf("--state-dir %s: not a directory", d.dir)
	}
	return d.dir, nil
}

// dial connects to the node running on the state directory.
func (d *nodeDir) dial() (*localapi.Client, error) {
	dir, err := d.path()
	if err != nil {
		return nil, err
	}
	cl, err := localapi.Dial(dir)
	if err != nil {
		return nil, fmt.Errorf("%w (start it with %s run --state-dir DIR, or name its directory with --state-dir)", err, brand.AgentBinary())
	}
	return cl, nil
}

// parseDial is what every command on a running node starts with: parse
// the flags (no positional arguments), run the offline checks of the
// flags' values, then dial the node.
func (d *nodeDir) parseDial(c *cliutil.Call, checks ...func() error) (*localapi.Client, error) {
	if err := c.Parse(0); err != nil {
		return nil, err
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return nil, err
		}
	}
	return d.dial()
}

// defaultStateDir is the installed service's state directory (system,
// else per-user), unless the environment names one.
func defaultStateDir() string {
	if d := os.Getenv(brand.EnvPrefix() + "STATE_DIR"); d != "" {
		return d
	}
	if d := installer.DefaultStateDir(false); exists(d) {
		return d
	}
	return installer.DefaultStateDir(true)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(exe)
}

// asServiceAccount runs this command again as the system service's
// account, the supported way for root to read the installed node's
// private state directory (installer.RunAsServiceAccount). ran is false,
// having done nothing, when that does not apply (not root, a per-user or
// foreground node) or the child could not start; then the caller goes on
// itself.
func asServiceAccount(ctx context.Context, c *cliutil.Call, spec installer.Spec) (ran bool, err error) {
	exe, err := executable()
	if err != nil {
		return false, nil
	}
	args := append(strings.Fields(c.Cmd.Name), c.Args...)
	args = append(args, "--state-dir", spec.StateDir) // the child's working directory is the state directory
	ran, code, err := installer.RunAsServiceAccount(ctx, spec, exe, args, nil, c.Stdout, c.Stderr)
	if !ran || err != nil {
		return false, nil
	}
	if code != 0 {
		return true, &cliutil.ExitError{Code: code}
	}
	return true, nil
}

// installErr maps the agent's install refusals to the flags they concern.
// ticketFlag is the flag that named the ticket.
func installErr(err error, ticketFlag string) error {
	var ie *agent.InstallError
	if !errors.As(err, &ie) {
		return err
	}
	inner := ie.Err.Error()
	name := ""
	switch ie.Field {
	case agent.FieldTicket:
		if errors.Is(err, agent.ErrNoTicket) {
			return cliutil.Usagef("%s FILE is required", ticketFlag)
		}
		name = ticketFlag
	case agent.FieldConfig:
		name = "--config"
	case agent.FieldVariables:
		return cliutil.Usagef("--variable needs --config")
	case agent.FieldStateDir:
		name = "--state-dir"
	case agent.FieldService:
		if errors.Is(err, installer.ErrNeedsRoot) {
			return fmt.Errorf("%s: run it with sudo, or add --user for a per-user service", inner)
		}
		return err
	case agent.FieldHub:
		return fmt.Errorf("preflight: %s", inner)
	default:
		return err
	}
	if ie.Path != "" && !strings.Contains(inner, ie.Path) {
		name += " " + ie.Path
	}
	return fmt.Errorf("%s: %s", name, inner)
}
