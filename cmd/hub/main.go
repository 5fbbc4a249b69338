// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Command initech-hub is the vendor's hub: it makes the project's keys,
// serves the authority and relay on one port, and administers tickets and
// members. The binary's name follows the brand (internal/brand).
//
// This package only parses flags, calls the hub package and sets the exit
// code.
package main

import (
	"context"

	"encoding/json"
	"flag"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/hub/store/boltstore"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/internal/cliutil"
	"github.com/edgeportal/connect/internal/metrics"
	"github.com/edgeportal/connect/wire/command"
	"github.com/edgeportal/connect/wire/minisig"
)

func main() { os.Exit(Main()) }

// Main runs the program with os.Args and returns the exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cliutil.Exit(brand.HubBinary(), run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	p := brand.HubBinary()
	fmt.Fprintf(w, `%s: the %s (authority + relay on one port)

Usage:
  %[1]s init --dir DIR --addr HOST:PORT [--public HOST:PORT]...
  %[1]s serve --dir DIR [--log-level info] [--log-format text|json]
  %[1]s ticket create --dir DIR [--expires-in 24h] [--usage-count 1] [--attribute NAME[=VALUE]]... [--relay NAME] [--enroller]
  %[1]s members list --dir DIR [--json]
  %[1]s members revoke --dir DIR IDENTIFIER
  %[1]s outlet push --dir DIR --relay RELAY --from NAME --to HOST:PORT [--allow EXPR] [--wait 30s]
  %[1]s outlet remove --dir DIR --relay RELAY --from NAME [--wait 30s]
  %[1]s commands list --dir DIR [--relay RELAY] [--json]
  %[1]s release keygen --dir DIR
  %[1]s release publish --dir DIR --version V [--channel stable] --file OS/ARCH=PATH...
  %[1]s release list --dir DIR
  %[1]s update push --dir DIR --relay RELAY [--wait 30s]
  %[1]s commands send-raw --dir DIR --relay RELAY --file FILE [--wait 30s]   (diagnostic)
  %[1]s version
`, p, brand.HubDisplayName())
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return cliutil.Usagef("missing command")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "init":
		return cmdInit(args, stdout)
	case "serve":
		return cmdServe(ctx, args, stderr)
	case "ticket":
		if len(args) == 0 || args[0] != "create" {
			return cliutil.Usagef("usage: %s ticket create --dir DIR ...", brand.HubBinary())
		}
		return cmdTicketCreate(ctx, args[1:], stdout)
	case "members":
		if len(args) == 0 {
			return cliutil.Usagef("usage: %s members list|revoke --dir DIR", brand.HubBinary())
		}
		switch args[0] {
		case "list":
			return cmdMembersList(ctx, args[1:], stdout)
		case "revoke":
			return cmdMembersRevoke(ctx, args[1:], stdout)
		}
		return cliutil.Usagef("unknown members command %q (want list or revoke)", args[0])
	case "release":
		if len(args) == 0 {
			return cliutil.Usagef("usage: %s release keygen|publish|list --dir DIR", brand.HubBinary())
		}
		return cmdRelease(args[0], args[1:], stdout)
	case "update":
		if len(args) == 0 || args[0] != "push" {
			return cliutil.Usagef("usage: %s update push --dir DIR --relay RELAY", brand.HubBinary())
		}
		return cmdUpdatePush(ctx, args[1:], stdout)
	case "outlet":
		if len(args) == 0 || (args[0] != "push" && args[0] != "remove") {
			return cliutil.Usagef("usage: %s outlet push|remove --dir DIR --relay RELAY --from NAME ...", brand.HubBinary())
		}
		return cmdOutlet(ctx, args[0], args[1:], stdout)
	case "commands":
		if len(args) > 0 && args[0] == "send-raw" {
			return cmdSendRaw(ctx, args[1:], stdout)
		}
		if len(args) == 0 || args[0] != "list" {
			return cliutil.Usagef("usage: %s commands list --dir DIR [--relay RELAY]", brand.HubBinary())
		}
		return cmdCommandsList(ctx, args[1:], stdout)
	case "version", "--version":
		fmt.Fprintln(stdout, buildinfo.String(brand.HubBinary()))
		return nil
	case "help", "-h", "--help":
		usage(stdout)
		return nil
	}
	usage(stderr)
	return cliutil.Usagef("unknown command %q", cmd)
}

func requireDir(dir string) error {
	if dir == "" {
		return cliutil.Usagef("--dir is required")
	}
	return nil
}

func cmdInit(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	dir := fs.String("dir", "", "hub directory to create")
	addr := fs.String("addr", "", "address to listen on, host:port")
	var public cliutil.Strings
	fs.Var(&public, "public", "address nodes dial (written into tickets); repeatable; default --addr")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := requireDir(*dir); err != nil {
		return err
	}
	if *addr == "" {
		return cliutil.Usagef("--addr is required")
	}
	for _, p := range public {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return fmt.Errorf("--public %q: want host:port", p)
		}
	}
	d, err := hub.Init(*dir, *addr)
	if err != nil {
		return err
	}
	if len(public) > 0 {
		d.Config.Public = public
		if err := d.SaveConfig(); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "initialized hub in %s\n  project:       %s\n  listen:        %s\n  hub key:       %s\n  authority key: %s\n  command key:   %s\n  release key:   %s\n",
		*dir, d.Config.Project, d.Config.Listen, d.HubKey.Public(), d.AuthorityKey.Public(), d.CommandKey.Public(), d.ReleaseKey.Public())
	return nil
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dir := fs.String("dir", "", "hub directory")
	listen := fs.String("addr", "", "override the listen address from hub.json")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text or json")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics on [HOST]:PORT (loopback when HOST is empty)")
	clockOffset := fs.Duration("insecure-clock-offset", 0, "shift the hub's clock (tests of clock skew only; not for production)")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := requireDir(*dir); err != nil {
		return err
	}
	maddr, err := metrics.ListenAddr(*metricsAddr)
	if err != nil {
		return cliutil.Usagef("%v", err)
	}
	log, err := cliutil.Logger(stderr, *level, *format)
	if err != nil {
		return cliutil.Usagef("%v", err)
	}
	d, err := hub.LoadDir(*dir)
	if err != nil {
		return err
	}
	if *listen != "" {
		d.Config.Listen = *listen
	}
	store, err := boltstore.Open(filepath.Join(*dir, hub.DBFile))
	if err != nil {
		return err
	}
	defer store.Close()
	var reg *prometheus.Registry
	if maddr != "" {
		reg = metrics.NewRegistry("hub")
	}
	var now func() time.Time
	if *clockOffset != 0 {
		log.Warn("the hub's clock is shifted for testing", "offset", *clockOffset)
		now = func() time.Time { return time.Now().Add(*clockOffset) }
	}
	srv, err := hub.New(hub.Options{Dir: d, Store: store, Logger: log, Metrics: reg, Now: now})
	if err != nil {
		return err
	}
	if reg != nil {
		if err := metrics.Serve(ctx, maddr, reg, log); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", d.Config.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	go func() {
		if err := srv.ServeAdmin(ctx); err != nil {
			log.Error("admin socket failed", "err", err)
		}
	}()
	return srv.Serve(ctx, ln)
}

// admin returns the running hub's admin API, or the store directly when no
// hub runs in dir.
func admin(dir string) (hub.Admin, func(), error) {
	d, err := hub.LoadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	if c, err := hub.DialAdmin(dir); err == nil {
		return c, func() {}, nil
	}
	store, err := boltstore.Open(filepath.Join(dir, hub.DBFile))
	if err != nil {
		return nil, nil, err
	}
	auth, err := d.Authority(store)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	return &hub.Offline{Auth: auth, Dir: d, Store: store}, func() { store.Close() }, nil
}

func cmdTicketCreate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ticket create", flag.ContinueOnError)
	dir := fs.String("dir", "", "hub directory")
	expires := fs.String("expires-in", "24h", "how long the ticket can be redeemed")
	uses := fs.Int("usage-count", 1, "how many nodes may redeem it")
	var attrs cliutil.Strings
	fs.Var(&attrs, "attribute", "NAME or NAME=VALUE the node is granted; repeatable")
	relay := fs.String("relay", "", "relay name the node may register")
	enroller := fs.Bool("enroller", false, "the node may create tickets (never the enroller role itself)")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := requireDir(*dir); err != nil {
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
	o := enroll.TicketOptions{Attributes: m, Relay: *relay, Enroller: *enroller, ExpiresIn: d, Uses: *uses, CreatedBy: "admin"}
	if err := o.Validate(); err != nil {
		return err
	}
	a, done, err := admin(*dir)
	if err != nil {
		return err
	}
	defer done()
	text, err := a.CreateTicket(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, text)
	return nil
}

func cmdMembersList(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("members list", flag.ContinueOnError)
	dir := fs.String("dir", "", "hub directory")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := requireDir(*dir); err != nil {
		return err
	}
	a, done, err := admin(*dir)
	if err != nil {
		return err
	}
	defer done()
	ms, err := a.Members(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ms)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTIFIER\tATTRIBUTES\tRELAY\tENROLLED-AT\tLAST-SEEN\tSTATE\tVERSION\tLAST-UPDATE")
	for _, m := range ms {
		var attrs []string
		for _, k := range enroll.SortedAttributes(m.Attributes) {
			if v := m.Attributes[k]; v == "true" {
				attrs = append(attrs, k)
			} else {
				attrs = append(attrs, k+"="+v)
			}
		}
		if m.Enroller {
			attrs = append(attrs, "(enroller)")
		}
		state := "offline"
		switch {
		case m.Revoked:
			state = "revoked"
		case m.Paused:
			state = "paused"
		case m.Connected:
			state = "online"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, orDash(strings.Join(attrs, ",")), orDash(m.Relay),
			ts(m.EnrolledAt), ts(m.LastSeen), state, orDash(m.Version), orDash(m.LastUpdate))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ts(unix int64) string {
	if unix == 0 {
		return "-"
	}
	return time.Unix(unix, 0).UTC().Format(time.RFC3339)
}

func cmdMembersRevoke(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("members revoke", flag.ContinueOnError)
	dir := fs.String("dir", "", "hub directory")
	if err := cliutil.Parse(fs, args, 1); err != nil {
		return err
	}
	if err := requireDir(*dir); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return cliutil.Usagef("usage: %s members revoke --dir DIR IDENTIFIER", brand.HubBinary())
	}
	a, done, err := admin(*dir)
	if err != nil {
		return err
	}
	defer done()
	m, err := a.Revoke(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked %s\n", m.ID)
	return nil
}

func cmdOutlet(ctx context.Context, op string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("outlet "+op, flag.ContinueOnError)
	dir := fs.String("dir", "", "hub directory")
	relay := fs.String("relay", "", "the relay of the node to command")
	from := fs.String("from", "", "outlet name")
	to := fs.String("to", "", "target host:port (push)")
	allow := fs.String("allow", "", "policy expression (push); default: the node's tcp-outlet policy")
	wait := fs.Duration("wait", 0, "wait this long for the node's answer (0: just queue)")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := requireDir(*dir); err != nil {
		return err
	}
	if *relay == "" || *from == "" {
		return cliutil.Usagef("outlet %s needs --relay RELAY and --from NAME", op)
	}
	req := hub.PushRequest{Relay: *relay, Outlet: command.OutletArgs{Name: *from, To: *to, Allow: *allow}, Wait: *wait}
	if op == "push" {
		req.Op = command.OpOutletAdd
		if *to == "" {
			return cliutil.Usagef("outlet push needs --to HOST:PORT")
		}
	} else {
		req.Op = command.OpOutletRemove
	}
	a, done, err := admin(*dir)
	if err != nil {
		return err
	}
	defer done()
	res, err := a.Push(ctx, req)
	if err != nil {
		return err
	}
	switch {
	case res.State == hub.CommandApplied:
		fmt.Fprintf(stdout, "applied (command %d to %s)\n", res.Seq, res.Target)
		return nil
	case res.State == hub.CommandRefused:
		fmt.Fprintf(stdout, "refused: %s\n", res.Reason)
		return fmt.Errorf("command %d refused by the node: %s", res.Seq, res.Reason)
	case *wait > 0:
		fmt.Fprintf(stdout, "queued (command %d to %s)\n", res.Seq, res.Target)
		return fmt.Errorf("command %d not acknowledged within %s; it stays queued and is delivered when the node connects", res.Seq, *wait)
	}
	fmt.Fprintf(stdout, "queued (command %d to %s)\n", res.Seq, res.Target)
	return nil
}

func cmdCommandsList(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("commands list", flag.ContinueOnError)
	dir := fs.String("dir", "", "hub directory")
	relay := fs.String("relay", "", "only commands for this relay")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := requireDir(*dir); err != nil {
		return err
	}
	a, done, err := admin(*dir)
	if err != nil {
		return err
	}
	defer done()
	cs, err := a.Commands(ctx, *relay)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(cs)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tRELAY\tNODE\tOP\tSTATE\tREASON")
	for _, c := range cs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", c.Seq, c.Relay, c.Target, c.Summary, c.State, orDash(c.Reason))
	}
	return tw.Flush()
}

// cmdSendRaw delivers a file's bytes as a command, unchanged: a diagnostic
// to check that a node refuses tampered, replayed or foreign commands.
func cmdSendRaw(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("commands send-raw", flag.ContinueOnError)
	dir := fs.String("dir", "", "hub directory")
	relay := fs.String("relay", "", "the relay of the node")
	file := fs.String("file", "", "the bytes to deliver")
	wait := fs.Duration("wait", 0, "wait this long for the node's answer")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := requireDir(*dir); err != nil {
		return err
	}
	if *relay == "" || *file == "" {
		return cliutil.Usagef("commands send-raw needs --relay RELAY and --file FILE")
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	c, err := hub.DialAdmin(*dir)
	if err != nil {
		return fmt.Errorf("send-raw needs the running hub: %w", err)
	}
	res, err := c.PushRaw(ctx, hub.RawRequest{Relay: *relay, Data: data, Wait: *wait})
	if err != nil {
		return err
	}
	if res.State == hub.CommandRefused {
		fmt.Fprintf(stdout, "refused: %s\n", res.Reason)
		return fmt.Errorf("command %d refused by the node: %s", res.Seq, res.Reason)
	}
	fmt.Fprintf(stdout, "%s (command %d to %s)\n", res.State, res.Seq, res.Target)
	return nil
}

func cmdRelease(sub string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("release "+sub, flag.ContinueOnError)
	dir := fs.String("dir", "", "hub directory")
	version := fs.String("version", "", "release version (vMAJOR.MINOR.PATCH)")
	channel := fs.String("channel", "stable", "release channel")
	var files cliutil.Strings
	fs.Var(&files, "file", "OS/ARCH=PATH of a binary; repeatable")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := requireDir(*dir); err != nil {
		return err
	}
	d, err := hub.LoadDir(*dir)
	if err != nil {
		return err
	}
	switch sub {
	case "keygen":
		// init makes the release key; keygen prints its public forms.
		pub := d.ReleaseKey.Public()
		fmt.Fprintf(stdout, "release key:          %s\nminisign public key:  %s\n", pub, minisig.PublicKey(pub))
		return nil
	case "publish":
		m := map[string]string{}
		for _, f := range files {
			p, path, ok := strings.Cut(f, "=")
			if !ok {
				return cliutil.Usagef("--file %q: want OS/ARCH=PATH", f)
			}
			m[p] = path
		}
		man, err := d.Publish(hub.PublishOptions{Version: *version, Channel: *channel, Files: m})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "published %s on channel %s:\n", man.Version, man.Channel)
		for p, f := range man.Files {
			fmt.Fprintf(stdout, "  %-14s %10d bytes  sha256 %x\n", p, f.Size, f.SHA256)
		}
		return nil
	case "list":
		rs, err := d.Releases()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "CHANNEL\tVERSION\tPUBLISHED\tPLATFORMS")
		for _, r := range rs {
			var ps []string
			for p := range r.Files {
				ps = append(ps, p)
			}
			sort.Strings(ps)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Channel, r.Version, ts(r.Created), strings.Join(ps, " "))
		}
		return tw.Flush()
	}
	return cliutil.Usagef("unknown release command %q (want keygen, publish or list)", sub)
}

func cmdUpdatePush(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("update push", flag.ContinueOnError)
	dir := fs.String("dir", "", "hub directory")
	relay := fs.String("relay", "", "the relay of the node")
	wait := fs.Duration("wait", 0, "wait this long for the node's answer")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := requireDir(*dir); err != nil {
		return err
	}
	if *relay == "" {
		return cliutil.Usagef("update push needs --relay RELAY")
	}
	a, done, err := admin(*dir)
	if err != nil {
		return err
	}
	defer done()
	res, err := a.Push(ctx, hub.PushRequest{Relay: *relay, Op: command.OpUpdateCheck, Wait: *wait})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s (command %d to %s)\n", res.State, res.Seq, res.Target)
	if res.State == hub.CommandRefused {
		return fmt.Errorf("refused: %s", res.Reason)
	}
	return nil
}
