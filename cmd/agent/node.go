// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgeportal/connect/agent"
	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/installer"
	"github.com/edgeportal/connect/internal/atomicfile"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/cliutil"
	"github.com/edgeportal/connect/internal/metrics"
	"github.com/edgeportal/connect/wire/key"
)

// configFlags are the run flags that are also config keys: given on the
// command line, they win over the file and the environment.
var configFlags = map[string]string{"log-level": "log.level", "log-format": "log.format"}

func cmdRun(ctx context.Context, c *cliutil.Call) error {
	fs := c.Flags()
	d := stateDirFlag(c)
	var ticket string
	fs.StringVar(&ticket, "enrollment-ticket", "", "ticket `FILE` (read only until the node has enrolled)")
	fs.StringVar(&ticket, "ticket", "", "the same as --enrollment-ticket `FILE`")
	cfgPath := fs.String("config", "", "node config `FILE` (YAML) (default: the one install placed in the state directory)")
	var vars cliutil.Strings
	fs.Var(&vars, "variable", "`NAME=VALUE` interpolated as $NAME in the config; repeatable")
	hubAddr := fs.String("hub", "", "override the hub `ADDRESS` from the enrollment")
	trial := fs.Bool("update-trial", false, "internal: the trial an updated binary runs before the old one hands over")
	waitTicket := fs.Bool("wait-for-ticket", false, "when not enrolled, wait for a ticket in the state directory")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics on `[HOST]:PORT` (loopback when HOST is empty)")
	keepalive := fs.Duration("keepalive", agent.DefaultKeepAlive, "ping the hub this often; a silent path is replaced within twice this")
	level := fs.String("log-level", "info", "debug, info, warn or error (or log.level in the config, or $"+config.EnvName(brand.EnvPrefix(), "log.level")+")")
	format := fs.String("log-format", "text", "text or json (or log.format in the config, or $"+config.EnvName(brand.EnvPrefix(), "log.format")+")")
	if err := c.Parse(0); err != nil {
		return err
	}
	dir, err := d.path()
	if err != nil {
		return err
	}
	vm, err := config.ParseVariables(vars)
	if err != nil {
		return cliutil.Usagef("%v", err)
	}
	var overrides []config.Override
	set := c.Set()
	for _, name := range []string{"log-level", "log-format"} {
		if set[name] {
			overrides = append(overrides, config.Override{Key: configFlags[name], Value: fs.Lookup(name).Value.String(), Source: "--" + name})
		}
	}
	cfg, err := agent.LoadConfig(dir, *cfgPath, vm, config.LoadOptions{EnvPrefix: brand.EnvPrefix(), Environ: os.Environ(), Flags: overrides})
	var le *config.LineError
	if errors.As(err, &le) && strings.HasPrefix(le.Source, "--") {
		return cliutil.Usagef("%v", err) // a flag's value
	}
	if err != nil {
		return installErr(err, "--enrollment-ticket")
	}
	*level, *format = orDefault(cfg.Log.Level, "info"), orDefault(cfg.Log.Format, "text")
	log, err := cliutil.Logger(c.Stderr, *level, *format)
	if err != nil {
		return cliutil.Usagef("%v", err)
	}
	maddr, err := metrics.ListenAddr(*metricsAddr)
	if err != nil {
		return cliutil.Usagef("--metrics: %v", err)
	}
	opts := agent.Options{StateDir: dir, TicketFile: ticket, Config: cfg, Logger: log, HubAddr: *hubAddr, WaitForTicket: *waitTicket, KeepAlive: *keepalive}
	if *trial {
		tctx, cancel := context.WithTimeout(ctx, agent.TrialTimeout)
		defer cancel()
		return agent.RunTrial(tctx, opts)
	}
	// Refuse, before anything is created or touched, a second node on
	// this state directory, and what would make a first start fail after
	// it redeemed the ticket.
	if err := agent.CheckStart(dir, ticket, cfg); err != nil {
		if !errors.Is(err, agent.ErrAlreadyRunning) {
			agent.RecordError(dir, err)
		}
		return installErr(err, "--enrollment-ticket")
	}
	if maddr != "" {
		opts.Metrics = metrics.NewRegistry("agent")
		if err := metrics.Serve(ctx, maddr, opts.Metrics, log); err != nil {
			return err
		}
	}
	err = installer.RunAsService(ctx, agent.New(opts).Run)
	if errors.Is(err, agent.ErrRestart) {
		return agent.Reexec()
	}
	return err
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func cmdStatus(ctx context.Context, c *cliutil.Call) error {
	d := stateDirFlag(c)
	asJSON := c.Flags().Bool("json", false, "print one JSON object")
	if err := c.Parse(0); err != nil {
		return err
	}
	dir, err := d.path()
	if err != nil {
		return err
	}
	if exe, err := executable(); err == nil {
		if spec, err := installer.NewSpec(exe, false, dir, ""); err == nil {
			if ran, err := asServiceAccount(ctx, c, spec); ran {
				return err
			}
		}
	}
	cl, err := d.dial()
	if err != nil {
		return err
	}
	st, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c.Stdout, st)
	}
	printStatus(c.Stdout, st)
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

func printStatus(w io.Writer, st localapi.Status) {
	fmt.Fprintf(w, "Node        %s\n", st.Identifier)
	fmt.Fprintf(w, "Attributes  %s\n", attrList(st.Attributes, ", "))
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
		fmt.Fprintf(w, "Replica     %s\n", yesNo(st.Replica, "yes: one of several nodes serving "+st.Relay.Name, "no"))
	} else {
		fmt.Fprintf(w, "Relay       none\n")
	}
	fmt.Fprintf(w, "Credential  valid until %s\n", st.CredentialExpires.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "Version     %s\n", st.Version)
	if st.Paused {
		fmt.Fprintf(w, "PAUSED      no outlet is served until resumed\n")
	}
	if st.Draining {
		fmt.Fprintf(w, "DRAINING    no new portal is served; open ones finish; a restart serves again\n")
	}
	if len(st.Outlets) > 0 && st.Relay.Name != "" {
		h := "every outlet's target answers"
		if len(st.Down) > 0 {
			h = "reported to the relay as down: " + strings.Join(st.Down, ", ")
		}
		fmt.Fprintf(w, "Health      %s\n", h)
	}
	for _, o := range st.Outlets {
		origin := o.Origin
		if o.Origin == "vendor" {
			origin = "vendor, within the customer's " + orNone(o.Ceiling)
			if o.VendorAllow != "" {
				origin = fmt.Sprintf("vendor's allow %s, within the customer's %s", o.VendorAllow, orNone(o.Ceiling))
			}
		}
		down := ""
		if o.Down != "" {
			down = "  TARGET DOWN: " + o.Down
		}
		fmt.Fprintf(w, "Outlet      %s → %s  allow: %s  (%s)%s\n", o.Name, o.To, orNone(o.Allow), origin, down)
	}
	for _, in := range st.Inlets {
		fmt.Fprintf(w, "Inlet       %s → %s → %s  allow: %s  (%s)\n", in.Listening, in.Via, in.To, orNone(in.Allow), in.Origin)
	}
	for _, ch := range st.Channels {
		dir := "to"
		if ch.Direction == "in" {
			dir = "from"
		}
		rtt := ""
		if ch.RTT != "" {
			rtt = ", rtt " + ch.RTT
		}
		marks := ""
		if ch.Draining {
			marks += ", peer draining"
		}
		if len(ch.Refused) > 0 {
			marks += ", refused lately: " + strings.Join(ch.Refused, ",")
		}
		fmt.Fprintf(w, "Channel     %s %s (relay %s), %d portals, %s, up since %s%s%s\n", dir, ch.Peer, ch.Relay, ch.Streams, ch.Suite,
			ch.Since.UTC().Format(time.RFC3339), rtt, marks)
	}
}

// attrList prints attributes as name=value in name order.
func attrList(m map[string]string, sep string) string {
	var attrs []string
	for _, k := range enroll.SortedAttributes(m) {
		attrs = append(attrs, k+"="+m[k])
	}
	return strings.Join(attrs, sep)
}

// printWarnings prints what was created but may not work yet, one line
// each, on stderr (the command still succeeds).
func printWarnings(w io.Writer, ws []string) {
	for _, m := range ws {
		fmt.Fprintf(w, "%s: warning: %s\n", brand.AgentBinary(), m)
	}
}

func orNone(s string) string {
	if s == "" {
		return "nothing (no policy)"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdTicketCreate(ctx context.Context, c *cliutil.Call) error {
	fs := c.Flags()
	d := stateDirFlag(c)
	expires := fs.String("expires-in", "24h", "how long the ticket can be redeemed (30m, 24h, 7d)")
	uses := fs.Int("usage-count", 1, "how many nodes may redeem it")
	var attrs cliutil.Strings
	fs.Var(&attrs, "attribute", "`NAME` or NAME=VALUE the new node is granted; repeatable")
	relay := fs.String("relay", "", "relay `NAME` the new node may register")
	replica := fs.Bool("replica", false, "the new node serves --relay as one of its replicas (if this enroller's scope allows replicas)")
	out := fs.String("out", "", "write the ticket to this `FILE` (mode 0600) instead of stdout")
	var o enroll.TicketOptions
	cl, err := d.parseDial(c, func() error {
		if *out != "" {
			if _, err := os.Stat(*out); err == nil {
				return fmt.Errorf("--out %s: the file exists; refusing to overwrite it", *out)
			}
		}
		dur, err := cliutil.Duration("expires-in", *expires)
		if err != nil {
			return err
		}
		m, err := cliutil.Attributes(attrs)
		if err != nil {
			return err
		}
		if *replica && *relay == "" {
			return cliutil.Usagef("--replica needs --relay NAME: a replica serves a relay name beside its other replicas")
		}
		o = enroll.TicketOptions{Attributes: m, Relay: *relay, Replica: *replica, ExpiresIn: dur, Uses: *uses}
		return o.Validate()
	})
	if err != nil {
		return err
	}
	text, err := cl.CreateTicket(ctx, localapi.TicketRequest{Attributes: o.Attributes, Relay: o.Relay, Replica: o.Replica, ExpiresIn: o.ExpiresIn, Uses: o.Uses})
	if err != nil {
		return err
	}
	if *out != "" {
		if err := atomicfile.WriteFile(*out, []byte(text+"\n"), 0o600); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		_, g, _ := enroll.ParseTicket(text)
		fmt.Fprintf(c.Stdout, "ticket %s written to %s (0600)\n", g.TicketID, *out)
		return nil
	}
	fmt.Fprintln(c.Stdout, text)
	return nil
}

// ticketInfo is what `ticket inspect --json` prints: every field of the
// ticket but its secret, keys in their full text form.
type ticketInfo struct {
	Ticket            string            `json:"ticket"`
	State             string            `json:"state"` // valid or expired
	Vendor            string            `json:"vendor"`
	Project           string            `json:"project"`
	Hubs              []string          `json:"hubs"`
	RelayKey          string            `json:"relay_key"`
	AuthorityKey      string            `json:"authority_key"`
	AuthorityNoiseKey string            `json:"authority_noise_key"`
	CommandKey        string            `json:"command_key,omitempty"`
	ReleaseKey        string            `json:"release_key,omitempty"`
	Issued            time.Time         `json:"issued"`
	Expires           time.Time         `json:"expires"`
	Uses              int               `json:"uses"`
	Attributes        map[string]string `json:"attributes"`
	Relay             string            `json:"relay,omitempty"`
	Replica           bool              `json:"replica"`
	Enroller          bool              `json:"enroller"`
	Scope             *enroll.Scope     `json:"enroller_scope,omitempty"`
}

func signingKey(k key.SigningPublic) string {
	if k.IsZero() {
		return ""
	}
	return k.String()
}

func cmdTicketInspect(ctx context.Context, c *cliutil.Call) error {
	asJSON := c.Flags().Bool("json", false, "print JSON")
	if err := c.ParseExact(1, "the ticket FILE"); err != nil {
		return err
	}
	path := c.Flags().Arg(0)
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	t, g, err := enroll.ParseTicket(string(b))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	info := ticketInfo{
		Ticket: g.TicketID, State: "valid", Vendor: t.Vendor, Project: t.Project, Hubs: t.Hubs,
		RelayKey: t.HubPublic().String(), AuthorityKey: t.AuthorityPublic().String(), AuthorityNoiseKey: t.AuthorityNoisePublic().String(),
		CommandKey: signingKey(t.CommandPublic()), ReleaseKey: signingKey(t.ReleasePublic()),
		Issued: time.Unix(g.IssuedAt, 0).UTC(), Expires: g.Expires().UTC(), Uses: g.Uses,
		Attributes: g.Attributes, Relay: g.Relay, Replica: g.Replica, Enroller: g.Enroller, Scope: g.Scope,
	}
	if info.Attributes == nil {
		info.Attributes = map[string]string{}
	}
	if time.Now().After(g.Expires()) {
		info.State = "expired"
	}
	if *asJSON {
		return printJSON(c.Stdout, info)
	}
	tw := tabwriter.NewWriter(c.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "Ticket\t%s (%s)\n", info.Ticket, strings.ToUpper(info.State[:1])+info.State[1:])
	fmt.Fprintf(tw, "Vendor\t%s\n", info.Vendor)
	fmt.Fprintf(tw, "Project\t%s\n", info.Project)
	fmt.Fprintf(tw, "Hub addresses\t%s\n", strings.Join(info.Hubs, ", "))
	fmt.Fprintf(tw, "Relay key\t%s\n", info.RelayKey)
	fmt.Fprintf(tw, "Authority key\t%s\n", info.AuthorityKey)
	fmt.Fprintf(tw, "Authority Noise key\t%s\n", info.AuthorityNoiseKey)
	fmt.Fprintf(tw, "Command key\t%s\n", orWord(info.CommandKey, "none (the project signs no commands)"))
	fmt.Fprintf(tw, "Release key\t%s\n", orWord(info.ReleaseKey, "none (the build's own, if any)"))
	fmt.Fprintf(tw, "Issued\t%s\n", info.Issued.Format(time.RFC3339))
	fmt.Fprintf(tw, "Expires\t%s\n", info.Expires.Format(time.RFC3339))
	fmt.Fprintf(tw, "Uses\t%d\n", info.Uses)
	fmt.Fprintf(tw, "Attributes\t%s\n", orWord(attrList(info.Attributes, ", "), "none"))
	fmt.Fprintf(tw, "Relay\t%s\n", orDash(info.Relay))
	if info.Relay != "" {
		fmt.Fprintf(tw, "Replica\t%s\n", yesNo(info.Replica, "yes: served together with its other replicas", "no: its sole owner"))
	}
	if info.Enroller {
		fmt.Fprintf(tw, "Enroller\tyes: may grant %s\n", info.Scope)
	} else {
		fmt.Fprintf(tw, "Enroller\tno\n")
	}
	return tw.Flush()
}

func orWord(s, word string) string {
	if s == "" {
		return word
	}
	return s
}

func cmdOutletCreate(ctx context.Context, c *cliutil.Call) error {
	d := stateDirFlag(c)
	from := c.Flags().String("from", "", "outlet `NAME`")
	to := c.Flags().String("to", "", "target `HOST:PORT`")
	allow := c.Flags().String("allow", "", "policy `EXPR`ession (default: the node's tcp-outlet policy)")
	cl, err := d.parseDial(c, func() error {
		if *from == "" || *to == "" {
			return cliutil.Usagef("tcp-outlet create needs --from NAME and --to HOST:PORT")
		}
		o := config.Outlet{From: *from, To: *to, Allow: *allow}
		return config.ValidateOutlet(&o)
	})
	if err != nil {
		return err
	}
	o, err := cl.AddOutlet(ctx, localapi.Outlet{Name: *from, To: *to, Allow: *allow})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "outlet %s → %s created\n", *from, *to)
	printWarnings(c.Stderr, o.Warnings)
	return nil
}

// cmdOutletDelete and cmdInletDelete remove one outlet or inlet by its
// --from.
var (
	cmdOutletDelete = deleteCommand("outlet", "outlet `NAME`", "NAME", (*localapi.Client).RemoveOutlet)
	cmdInletDelete  = deleteCommand("inlet", "the inlet's listen address `HOST:PORT`", "HOST:PORT", (*localapi.Client).RemoveInlet)
)

func deleteCommand(kind, usage, want string, remove func(*localapi.Client, context.Context, string) error) func(context.Context, *cliutil.Call) error {
	return func(ctx context.Context, c *cliutil.Call) error {
		d := stateDirFlag(c)
		from := c.Flags().String("from", "", usage)
		cl, err := d.parseDial(c, func() error {
			if *from == "" {
				return cliutil.Usagef("tcp-%s delete needs --from %s", kind, want)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := remove(cl, ctx, *from); err != nil {
			return err
		}
		fmt.Fprintf(c.Stdout, "%s %s deleted\n", kind, *from)
		return nil
	}
}

// listStatus is the start of tcp-outlet list and tcp-inlet list: the
// flags, then the node's status.
func listStatus(ctx context.Context, c *cliutil.Call) (st localapi.Status, asJSON bool, err error) {
	d := stateDirFlag(c)
	j := c.Flags().Bool("json", false, "print JSON")
	cl, err := d.parseDial(c)
	if err != nil {
		return st, false, err
	}
	st, err = cl.Status(ctx)
	return st, *j, err
}

func cmdOutletList(ctx context.Context, c *cliutil.Call) error {
	st, asJSON, err := listStatus(ctx, c)
	if err != nil {
		return err
	}
	sort.Slice(st.Outlets, func(i, j int) bool { return st.Outlets[i].Name < st.Outlets[j].Name })
	if asJSON {
		return json.NewEncoder(c.Stdout).Encode(st.Outlets)
	}
	tw := tabwriter.NewWriter(c.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTO\tALLOW\tORIGIN")
	for _, o := range st.Outlets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Name, o.To, orDash(o.Allow), o.Origin)
	}
	return tw.Flush()
}

func cmdInletCreate(ctx context.Context, c *cliutil.Call) error {
	d := stateDirFlag(c)
	from := c.Flags().String("from", "", "listen address `HOST:PORT` (port 0: any free port)")
	via := c.Flags().String("via", "", "`RELAY` of the node with the outlet")
	to := c.Flags().String("to", "", "`OUTLET` name")
	allow := c.Flags().String("allow", "", "policy `EXPR`ession (default: the node's tcp-inlet policy)")
	cl, err := d.parseDial(c, func() error {
		if *from == "" || *via == "" || *to == "" {
			return cliutil.Usagef("tcp-inlet create needs --from HOST:PORT, --via RELAY and --to OUTLET")
		}
		in := config.Inlet{From: *from, Via: *via, To: *to, Allow: *allow}
		return config.ValidateInlet(&in)
	})
	if err != nil {
		return err
	}
	in, err := cl.AddInlet(ctx, localapi.Inlet{From: *from, Via: *via, To: *to, Allow: *allow})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "inlet %s → %s → %s listening\n", in.Listening, in.Via, in.To)
	printWarnings(c.Stderr, in.Warnings)
	return nil
}

func cmdInletList(ctx context.Context, c *cliutil.Call) error {
	st, asJSON, err := listStatus(ctx, c)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(c.Stdout).Encode(st.Inlets)
	}
	tw := tabwriter.NewWriter(c.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tVIA\tTO\tALLOW\tORIGIN")
	for _, in := range st.Inlets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", in.Listening, in.Via, in.To, orDash(in.Allow), in.Origin)
	}
	return tw.Flush()
}
