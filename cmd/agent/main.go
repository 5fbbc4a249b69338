// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Command initech-agent is the node: it enrolls with a ticket, keeps a
// control connection to the vendor's hub, registers its relay and serves
// outlets and inlets. The binary's name follows the brand
// (internal/brand).
//
// This package only parses flags, calls the agent packages and sets the
// exit code.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/edgeportal/connect/agent"
	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/installer"
	"github.com/edgeportal/connect/internal/atomicfile"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/internal/cliutil"
	"github.com/edgeportal/connect/internal/metrics"
)

func main() { os.Exit(Main()) }

// Main runs the program with os.Args and returns the exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cliutil.Exit(brand.AgentBinary(), run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `%s: the %s

Usage:
  %[1]s run --state-dir DIR [--enrollment-ticket FILE] [--config FILE] [--variable K=V]...
  %[1]s status --state-dir DIR [--json]
  %[1]s ticket create --state-dir DIR [--expires-in 24h] [--usage-count 1] [--attribute NAME[=VALUE]]... [--relay NAME]
  %[1]s ticket inspect FILE
  %[1]s tcp-outlet create --state-dir DIR --from NAME --to HOST:PORT [--allow EXPR]
  %[1]s tcp-outlet list|delete --state-dir DIR [--from NAME]
  %[1]s tcp-inlet create --state-dir DIR --from HOST:PORT --via RELAY --to OUTLET [--allow EXPR]
  %[1]s tcp-inlet list|delete --state-dir DIR [--from HOST:PORT]
  %[1]s update [--check] [--version V] --state-dir DIR
  %[1]s audit [verify] --state-dir DIR [--json]
  %[1]s explain --state-dir DIR
  %[1]s pause | resume --state-dir DIR
  %[1]s install --ticket FILE [--config FILE] [--variable K=V]... [--user] [--state-dir DIR] [--dry-run] [--root DIR]
  %[1]s uninstall [--purge] [--revoke]
  %[1]s start | stop | restart
  %[1]s doctor [--state-dir DIR]
  %[1]s version
`, brand.AgentBinary(), brand.DisplayName())
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return cliutil.Usagef("missing command")
	}
	cmd, args := args[0], args[1:]
	sub := func() (string, []string, error) {
		if len(args) == 0 {
			return "", nil, cliutil.Usagef("%s needs a subcommand", cmd)
		}
		return args[0], args[1:], nil
	}
	switch cmd {
	case "run":
		return cmdRun(ctx, args, stderr)
	case "status":
		return cmdStatus(ctx, args, stdout)
	case "ticket":
		s, rest, err := sub()
		if err != nil {
			return err
		}
		switch s {
		case "create":
			return cmdTicketCreate(ctx, rest, stdout)
		case "inspect":
			return cmdTicketInspect(rest, stdout)
		}
		return cliutil.Usagef("unknown ticket command %q (want create or inspect)", s)
	case "tcp-outlet":
		s, rest, err := sub()
		if err != nil {
			return err
		}
		return cmdOutlet(ctx, s, rest, stdout)
	case "tcp-inlet":
		s, rest, err := sub()
		if err != nil {
			return err
		}
		return cmdInlet(ctx, s, rest, stdout)
	case "audit":
		return cmdAudit(args, stdout)
	case "update":
		return cmdUpdate(ctx, args, stdout)
	case "explain":
		return cmdExplain(ctx, args, stdout)
	case "pause", "resume":
		return cmdPause(ctx, cmd == "pause", args, stdout)
	case "install":
		return cmdInstall(ctx, args, stdout)
	case "uninstall":
		return cmdUninstall(ctx, args, stdout)
	case "start", "stop", "restart":
		return cmdControl(cmd, args, stdout)
	case "doctor":
		return cmdDoctor(ctx, args, stdout)
	case "version", "--version":
		fmt.Fprintln(stdout, buildinfo.String(brand.AgentBinary()))
		return nil
	case "help", "-h", "--help":
		usage(stdout)
		return nil
	}
	usage(stderr)
	return cliutil.Usagef("unknown command %q", cmd)
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

func stateDirFlag(fs *flag.FlagSet) *string {
	return fs.String("state-dir", "", "the node's state directory (default: the installed service's)")
}

func requireStateDir(dir *string) error {
	if *dir == "" {
		*dir = defaultStateDir()
	}
	return nil
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	dir := stateDirFlag(fs)
	var ticket string
	fs.StringVar(&ticket, "enrollment-ticket", "", "ticket file (read only until the node has enrolled)")
	fs.StringVar(&ticket, "ticket", "", "alias of --enrollment-ticket")
	cfgPath := fs.String("config", "", "node config (YAML)")
	var vars cliutil.Strings
	fs.Var(&vars, "variable", "NAME=VALUE interpolated as $NAME in the config; repeatable")
	hubAddr := fs.String("hub", "", "override the hub address")
	trial := fs.Bool("update-trial", false, "internal: the trial an updated binary runs before the old one hands over")
	waitTicket := fs.Bool("wait-for-ticket", false, "when not enrolled, wait for a ticket in the state directory")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics on [HOST]:PORT (loopback when HOST is empty)")
	keepalive := fs.Duration("keepalive", agent.DefaultKeepAlive, "ping the hub this often; a silent path is replaced within twice this")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text or json")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := requireStateDir(dir); err != nil {
		return err
	}
	var cfg *config.Config
	vm, err := config.ParseVariables(vars)
	if err != nil {
		return err
	}
	if *cfgPath != "" {
		if cfg, err = config.LoadFile(*cfgPath, vm); err != nil {
			return err
		}
	} else if cfg, err = agent.LoadInstalledConfig(*dir, vm); err != nil {
		return err
	} else if cfg == nil && len(vars) > 0 {
		return cliutil.Usagef("--variable needs --config")
	}
	if cfg != nil {
		if *level == "info" && cfg.Log.Level != "" {
			*level = cfg.Log.Level
		}
		if *format == "text" && cfg.Log.Format != "" {
			*format = cfg.Log.Format
		}
	}
	log, err := cliutil.Logger(stderr, *level, *format)
	if err != nil {
		return cliutil.Usagef("%v", err)
	}
	opts := agent.Options{StateDir: *dir, TicketFile: ticket, Config: cfg, Logger: log, HubAddr: *hubAddr, WaitForTicket: *waitTicket, KeepAlive: *keepalive}
	maddr, err := metrics.ListenAddr(*metricsAddr)
	if err != nil {
		return cliutil.Usagef("%v", err)
	}
	if maddr != "" && !*trial {
		opts.Metrics = metrics.NewRegistry("agent")
		if err := metrics.Serve(ctx, maddr, opts.Metrics, log); err != nil {
			return err
		}
	}
	if *trial {
		tctx, cancel := context.WithTimeout(ctx, agent.TrialTimeout)
		defer cancel()
		return agent.RunTrial(tctx, opts)
	}
	err = installer.RunAsService(ctx, agent.New(opts).Run)
	if errors.Is(err, agent.ErrRestart) {
		return agent.Reexec()
	}
	return err
}

func dial(dir string) (*localapi.Client, error) {
	c, err := localapi.Dial(dir)
	if err != nil {
		return nil, fmt.Errorf("%w (start it with %s run)", err, brand.AgentBinary())
	}
	return c, nil
}

func cmdStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	dir := stateDirFlag(fs)
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := requireStateDir(dir); err != nil {
		return err
	}
	c, err := dial(*dir)
	if err != nil {
		return err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(stdout, st)
	return nil
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

func printStatus(w io.Writer, st localapi.Status) {
	fmt.Fprintf(w, "Node        %s\n", st.Identifier)
	var attrs []string
	for _, k := range enroll.SortedAttributes(st.Attributes) {
		attrs = append(attrs, k+"="+st.Attributes[k])
	}
	fmt.Fprintf(w, "Attributes  %s\n", strings.Join(attrs, ", "))
	fmt.Fprintf(w, "Enroller    %s\n", yesNo(st.Enroller, "yes", "no"))
	hub := yesNo(st.HubConnected, "connected", "not connected")
	if st.HubError != "" && !st.HubConnected {
		hub += " (" + st.HubError + ")"
	}
	fmt.Fprintf(w, "Hub         %s, %s\n", st.Hub, hub)
	if st.Relay.Name != "" {
		r := yesNo(st.Relay.Connected, "connected", "not connected")
		if st.Relay.Error != "" {
			r += " (" + st.Relay.Error + ")"
		}
		fmt.Fprintf(w, "Relay       %s, %s\n", st.Relay.Name, r)
	} else {
		fmt.Fprintf(w, "Relay       none\n")
	}
	fmt.Fprintf(w, "Credential  valid until %s\n", st.CredentialExpires.Format(time.RFC3339))
	fmt.Fprintf(w, "Version     %s\n", st.Version)
	if st.Paused {
		fmt.Fprintf(w, "PAUSED      no outlet is served until resumed\n")
	}
	for _, o := range st.Outlets {
		fmt.Fprintf(w, "Outlet      %s → %s  allow: %s  (%s)\n", o.Name, o.To, orNone(o.Allow), o.Origin)
	}
	for _, in := range st.Inlets {
		fmt.Fprintf(w, "Inlet       %s → %s → %s  allow: %s  (%s)\n", in.Listening, in.Via, in.To, orNone(in.Allow), in.Origin)
	}
}

func orNone(s string) string {
	if s == "" {
		return "nothing (no policy)"
	}
	return s
}

func cmdTicketCreate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ticket create", flag.ContinueOnError)
	dir := stateDirFlag(fs)
	expires := fs.String("expires-in", "24h", "how long the ticket can be redeemed")
	uses := fs.Int("usage-count", 1, "how many nodes may redeem it")
	var attrs cliutil.Strings
	fs.Var(&attrs, "attribute", "NAME or NAME=VALUE; repeatable")
	relay := fs.String("relay", "", "relay name the new node may register")
	out := fs.String("out", "", "write the ticket to this file (mode 0600) instead of stdout")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if *out != "" {
		if _, err := os.Stat(*out); err == nil {
			return fmt.Errorf("--out %s: the file exists; refusing to overwrite it", *out)
		}
	}
	if err := requireStateDir(dir); err != nil {
		return err
	}
	d, err := cliutil.Duration("expires-in", *expires)
	if err != nil {
		return err
	}
	m, err := cliutil.Attributes(attrs)
	if err != nil {
		return err
	}
	o := enroll.TicketOptions{Attributes: m, Relay: *relay, ExpiresIn: d, Uses: *uses}
	if err := o.Validate(); err != nil {
		return err
	}
	c, err := dial(*dir)
	if err != nil {
		return err
	}
	text, err := c.CreateTicket(ctx, localapi.TicketRequest{Attributes: m, Relay: *relay, ExpiresIn: d, Uses: *uses})
	if err != nil {
		return err
	}
	if *out != "" {
		if err := atomicfile.WriteFile(*out, []byte(text+"\n"), 0o600); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		_, g, _ := enroll.ParseTicket(text)
		fmt.Fprintf(stdout, "ticket %s written to %s (0600)\n", g.TicketID, *out)
		return nil
	}
	fmt.Fprintln(stdout, text)
	return nil
}

func cmdTicketInspect(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ticket inspect", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := cliutil.Parse(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return cliutil.Usagef("usage: %s ticket inspect FILE", brand.AgentBinary())
	}
	b, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	t, g, err := enroll.ParseTicket(string(b))
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	state := "valid"
	if time.Now().After(g.Expires()) {
		state = "EXPIRED"
	}
	info := map[string]any{
		"vendor": t.Vendor, "project": t.Project, "hubs": t.Hubs,
		"hub_key": t.HubPublic().String(), "hub_key_fingerprint": t.HubPublic().Fingerprint(),
		"authority_key_fingerprint": t.AuthorityPublic().Fingerprint(),
		"ticket":                    g.TicketID, "expires": g.Expires().UTC(), "state": state, "uses": g.Uses,
		"attributes": g.Attributes, "relay": g.Relay, "enroller": g.Enroller,
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "Ticket\t%s (%s)\n", g.TicketID, state)
	fmt.Fprintf(tw, "Vendor\t%s\n", t.Vendor)
	fmt.Fprintf(tw, "Hub\t%s\n", strings.Join(t.Hubs, ", "))
	fmt.Fprintf(tw, "Hub key\t%s\n", t.HubPublic().Fingerprint())
	fmt.Fprintf(tw, "Expires\t%s\n", g.Expires().UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "Uses\t%d\n", g.Uses)
	var attrs []string
	for _, k := range enroll.SortedAttributes(g.Attributes) {
		attrs = append(attrs, k+"="+g.Attributes[k])
	}
	fmt.Fprintf(tw, "Attributes\t%s\n", strings.Join(attrs, ", "))
	fmt.Fprintf(tw, "Relay\t%s\n", orDash(g.Relay))
	fmt.Fprintf(tw, "Enroller\t%s\n", yesNo(g.Enroller, "yes", "no"))
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdOutlet(ctx context.Context, sub string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tcp-outlet "+sub, flag.ContinueOnError)
	dir := stateDirFlag(fs)
	from := fs.String("from", "", "outlet name")
	to := fs.String("to", "", "target host:port")
	allow := fs.String("allow", "", "policy expression; default: the node's tcp-outlet policy")
	asJSON := fs.Bool("json", false, "print JSON (list)")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := requireStateDir(dir); err != nil {
		return err
	}
	c, err := dial(*dir)
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		if *from == "" || *to == "" {
			return cliutil.Usagef("tcp-outlet create needs --from NAME and --to HOST:PORT")
		}
		if err := c.AddOutlet(ctx, localapi.Outlet{Name: *from, To: *to, Allow: *allow}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "outlet %s → %s created\n", *from, *to)
		return nil
	case "delete":
		if *from == "" {
			return cliutil.Usagef("tcp-outlet delete needs --from NAME")
		}
		if err := c.RemoveOutlet(ctx, *from); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "outlet %s deleted\n", *from)
		return nil
	case "list":
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(st.Outlets)
		}
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tTO\tALLOW\tORIGIN")
		sort.Slice(st.Outlets, func(i, j int) bool { return st.Outlets[i].Name < st.Outlets[j].Name })
		for _, o := range st.Outlets {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Name, o.To, orDash(o.Allow), o.Origin)
		}
		return tw.Flush()
	}
	return cliutil.Usagef("unknown tcp-outlet command %q (want create, list or delete)", sub)
}

func cmdInlet(ctx context.Context, sub string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tcp-inlet "+sub, flag.ContinueOnError)
	dir := stateDirFlag(fs)
	from := fs.String("from", "", "listen address host:port")
	via := fs.String("via", "", "relay of the node with the outlet")
	to := fs.String("to", "", "outlet name")
	allow := fs.String("allow", "", "policy expression; default: the node's tcp-inlet policy")
	asJSON := fs.Bool("json", false, "print JSON (list)")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := requireStateDir(dir); err != nil {
		return err
	}
	c, err := dial(*dir)
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		if *from == "" || *via == "" || *to == "" {
			return cliutil.Usagef("tcp-inlet create needs --from HOST:PORT, --via RELAY and --to OUTLET")
		}
		in, err := c.AddInlet(ctx, localapi.Inlet{From: *from, Via: *via, To: *to, Allow: *allow})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "inlet %s → %s → %s listening\n", in.Listening, in.Via, in.To)
		return nil
	case "delete":
		if *from == "" {
			return cliutil.Usagef("tcp-inlet delete needs --from HOST:PORT")
		}
		if err := c.RemoveInlet(ctx, *from); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "inlet %s deleted\n", *from)
		return nil
	case "list":
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(st.Inlets)
		}
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "FROM\tVIA\tTO\tALLOW\tORIGIN")
		for _, in := range st.Inlets {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", in.Listening, in.Via, in.To, orDash(in.Allow), in.Origin)
		}
		return tw.Flush()
	}
	return cliutil.Usagef("unknown tcp-inlet command %q (want create, list or delete)", sub)
}
