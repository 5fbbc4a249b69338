// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/hub/authority"
	"github.com/edgeportal/connect/hub/vendor"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/internal/cliutil"
	"github.com/edgeportal/connect/internal/metrics"
	"github.com/edgeportal/connect/wire/command"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/outer"
)

// dirFlag defines the --dir flag every command has: the relay's,
// the authority's or the vendor keys' directory.
func dirFlag(c *cliutil.Call, what string) *string {
	return c.Flags().String("dir", "", "the "+what+" directory `DIR` (required)")
}

// parseDir is how every command starts: parse its flags (at most maxArgs
// positional arguments) and require --dir.
func parseDir(c *cliutil.Call, dir *string, maxArgs int) error {
	if err := c.Parse(maxArgs); err != nil {
		return err
	}
	return requireDir(*dir)
}

// parseDirExact is parseDir for a command with exactly one positional
// argument, named by what.
func parseDirExact(c *cliutil.Call, dir *string, what string) error {
	if err := c.ParseExact(1, what); err != nil {
		return err
	}
	return requireDir(*dir)
}

func requireDir(dir string) error {
	if dir == "" {
		return cliutil.Usagef("--dir is required")
	}
	return nil
}

func cmdInit(ctx context.Context, c *cliutil.Call) error {
	dir := dirFlag(c, "relay")
	addr := c.Flags().String("addr", "", "`HOST:PORT` to listen on")
	var public cliutil.Strings
	c.Flags().Var(&public, "public", "`HOST:PORT` nodes dial (written into tickets); repeatable; required when --addr is 0.0.0.0 (default: --addr)")
	store := storeFlag(c)
	keyFrom := c.Flags().String("key-from", "", "another relay node's `DIR` on this machine: share its Noise key and trust (every relay node of a cluster answers nodes with the key their tickets pin)")
	if err := parseDir(c, dir, 0); err != nil {
		return err
	}
	if *addr == "" {
		return cliutil.Usagef("--addr is required")
	}
	d, err := initRelay(ctx, *dir, hub.InitOptions{Listen: *addr, Public: public, Store: *store, KeyFrom: *keyFrom})
	if errors.Is(err, hub.ErrUnspecifiedAddr) {
		return cliutil.Usagef("--addr %s listens on all interfaces, which cannot go into tickets: give the address nodes dial with --public HOST:PORT", *addr)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "initialized relay in %s\n  listen:     %s\n  public:     %s\n  relay key:  %s\n",
		*dir, d.Config.Listen, strings.Join(d.PublicAddrs(), ", "), d.RelayKey.Public())
	fmt.Fprintf(c.Stdout, "next: %s authority init --dir AUTH --hub-dir %s\n", brand.HubBinary(), *dir)
	return nil
}

func cmdTrust(ctx context.Context, c *cliutil.Call) error {
	dir := dirFlag(c, "relay")
	ak := c.Flags().String("authority-key", "", "the authority's public key (sigkey:…), as `authority init` printed it")
	vdir := c.Flags().String("vendor-dir", "", "a directory `VENDOR` with the vendor's public keys (command.pub, release.pub)")
	if err := parseDir(c, dir, 0); err != nil {
		return err
	}
	k, err := key.ParseSigningPublic(*ak)
	if err != nil {
		return fmt.Errorf("--authority-key: %w", err)
	}
	d, err := hub.LoadDir(*dir)
	if err != nil {
		return err
	}
	var cmdKey, relKey key.SigningPublic
	if *vdir != "" {
		if cmdKey, relKey, err = vendor.LoadPublic(*vdir); err != nil {
			return err
		}
	}
	if err := authority.Trust(d, k, cmdKey, relKey); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "the relay in %s trusts authority %s (project %s)\n", *dir, k, d.Project())
	return nil
}

func cmdServe(ctx context.Context, c *cliutil.Call) error {
	fs := c.Flags()
	dir := dirFlag(c, "relay")
	listen := fs.String("addr", "", "override the listen `HOST:PORT` from hub.json (default: hub.json's)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text or json")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics on `[HOST]:PORT` (loopback when HOST is empty)")
	clockOffset := fs.Duration("insecure-clock-offset", 0, "shift the relay's clock (tests of clock skew only; not for production)")
	tlsCert := fs.String("tls-cert", "", "also serve TLS with this certificate `FILE` (PEM, leaf first) on the same port, told apart by the first byte, for nodes behind networks that let only TLS to 443 through; nodes still pin the relay's Noise key")
	tlsKey := fs.String("tls-key", "", "the TLS certificate's private key `FILE` (PEM)")
	tlsAddr := fs.String("tls-addr", "", "serve TLS only, on this extra `HOST:PORT` (e.g. :443), instead of on the plain address (default: the plain address serves both)")
	storeURL := storeFlag(c)
	if err := parseDir(c, dir, 0); err != nil {
		return err
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return cliutil.Usagef("--tls-cert and --tls-key go together")
	}
	if *tlsAddr != "" && *tlsCert == "" {
		return cliutil.Usagef("--tls-addr needs --tls-cert and --tls-key")
	}
	maddr, err := metrics.ListenAddr(*metricsAddr)
	if err != nil {
		return cliutil.Usagef("%v", err)
	}
	log, err := cliutil.Logger(c.Stderr, *level, *format)
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
	store, err := openRelayStore(ctx, d, *storeURL, log)
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
		log.Warn("the relay's clock is shifted for testing", "offset", *clockOffset)
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
	var more []net.Listener
	if *tlsCert != "" {
		cfg, err := outer.ServerConfig(*tlsCert, *tlsKey)
		if err != nil {
			ln.Close()
			return err
		}
		if *tlsAddr == "" {
			ln = outer.NewDualListener(ln, cfg)
		} else {
			tln, err := net.Listen("tcp", *tlsAddr)
			if err != nil {
				ln.Close()
				return fmt.Errorf("listen --tls-addr: %w", err)
			}
			more = append(more, outer.NewListener(tln, cfg))
		}
		log.Info("serving TLS (the outer layer; the Noise key is what nodes trust)", "cert", *tlsCert, "addr", orDefault(*tlsAddr, d.Config.Listen))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	adminDone := make(chan error, 1)
	go func() { adminDone <- srv.ServeAdmin(ctx) }()
	err = srv.Serve(ctx, ln, more...)
	cancel()
	if aerr := <-adminDone; aerr != nil && err == nil {
		err = aerr
	}
	return err
}

// relayAdmin returns the running relay's admin API, or its store directly
// when none runs in dir.
func relayAdmin(dir string) (hub.Admin, func(), error) {
	d, err := hub.LoadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	if c, err := hub.DialAdmin(dir); err == nil {
		return c, func() {}, nil
	}
	store, err := openRelayStore(context.Background(), d, "", nil)
	if err != nil {
		return nil, nil, err
	}
	return &hub.Offline{Dir: d, Store: store}, func() { store.Close() }, nil
}

func cmdRelayList(ctx context.Context, c *cliutil.Call) error {
	dir := dirFlag(c, "relay")
	asJSON := c.Flags().Bool("json", false, "print JSON")
	if err := parseDir(c, dir, 0); err != nil {
		return err
	}
	a, done, err := relayAdmin(*dir)
	if err != nil {
		return err
	}
	defer done()
	rs, err := a.Relays(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c, rs)
	}
	tw := tabwriter.NewWriter(c.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "RELAY\tOWNER\tSINCE\tUP\tSERVED-BY")
	for _, r := range rs {
		name := r.Name
		if r.Replicas {
			name += " (replicas)"
		}
		var by []string
		for _, o := range r.Owners {
			h := strings.TrimPrefix(healthText(o.Paused, o.Draining, o.Down), ", ")
			if h != "" {
				h = " (" + h + ")"
			}
			by = append(by, o.ID+h)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, r.Owner, ts(r.Since), yesNo(r.Up), orDash(strings.Join(by, ", ")))
	}
	return tw.Flush()
}

func cmdRelayRelease(ctx context.Context, c *cliutil.Call) error {
	dir := dirFlag(c, "relay")
	if err := parseDirExact(c, dir, "the relay NAME"); err != nil {
		return err
	}
	a, done, err := relayAdmin(*dir)
	if err != nil {
		return err
	}
	defer done()
	b, err := a.ReleaseRelay(ctx, c.Flags().Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "released relay %s (owned by %s since %s); the next identity to register it owns it\n", b.Name, b.Owner, ts(b.Since))
	return nil
}

// pushFlags are the flags every signed command shares.
type pushFlags struct {
	dir, keyFile, relay *string
	wait                *time.Duration
}

func addPushFlags(c *cliutil.Call) pushFlags {
	fs := c.Flags()
	return pushFlags{
		dir:     dirFlag(c, "relay"),
		keyFile: fs.String("command-key", "", "the vendor's command key `FILE` (keys create wrote it; it never goes to the relay)"),
		relay:   fs.String("relay", "", "the `RELAY` of the node to command"),
		wait:    fs.Duration("wait", 0, "wait this long for the node's answer (0: just queue)"),
	}
}

// push signs req with the command key and submits it, printing the result.
func push(ctx context.Context, c *cliutil.Call, f pushFlags, req hub.PushRequest) error {
	if err := requireDir(*f.dir); err != nil {
		return err
	}
	if *f.keyFile == "" {
		return cliutil.Usagef("--command-key FILE is required: commands are signed on the admin's side")
	}
	if *f.relay == "" {
		return cliutil.Usagef("--relay RELAY is required")
	}
	k, err := vendor.LoadPrivate(*f.keyFile)
	if err != nil {
		return err
	}
	a, done, err := relayAdmin(*f.dir)
	if err != nil {
		return err
	}
	defer done()
	req.Relay, req.Wait = *f.relay, *f.wait
	res, err := hub.Push(ctx, a, hub.KeySigner{Key: k}, req, time.Now())
	if err != nil {
		return err
	}
	return printPush(c, res, *f.wait)
}

func printPush(c *cliutil.Call, res hub.PushResult, wait time.Duration) error {
	switch {
	case res.State == hub.CommandApplied:
		fmt.Fprintf(c.Stdout, "applied (command %d to %s)\n", res.Seq, res.Target)
		return nil
	case res.State == hub.CommandRefused:
		fmt.Fprintf(c.Stdout, "refused: %s\n", res.Reason)
		return fmt.Errorf("command %d refused by the node: %s", res.Seq, res.Reason)
	case wait > 0:
		fmt.Fprintf(c.Stdout, "queued (command %d to %s)\n", res.Seq, res.Target)
		return fmt.Errorf("command %d not acknowledged within %s; it stays queued and is delivered when the node connects", res.Seq, wait)
	}
	fmt.Fprintf(c.Stdout, "queued (command %d to %s)\n", res.Seq, res.Target)
	return nil
}

func cmdOutletPush(ctx context.Context, c *cliutil.Call) error {
	f := addPushFlags(c)
	from := c.Flags().String("from", "", "outlet `NAME`")
	to := c.Flags().String("to", "", "target `HOST:PORT`")
	allow := c.Flags().String("allow", "", "policy `EXPR`ession; the customer's policy still applies on top of it")
	if err := c.Parse(0); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		return cliutil.Usagef("outlet push needs --from NAME and --to HOST:PORT")
	}
	return push(ctx, c, f, hub.PushRequest{Op: command.OpOutletAdd, Outlet: command.OutletArgs{Name: *from, To: *to, Allow: *allow}})
}

func cmdOutletRemove(ctx context.Context, c *cliutil.Call) error {
	f := addPushFlags(c)
	from := c.Flags().String("from", "", "outlet `NAME`")
	if err := c.Parse(0); err != nil {
		return err
	}
	if *from == "" {
		return cliutil.Usagef("outlet remove needs --from NAME")
	}
	return push(ctx, c, f, hub.PushRequest{Op: command.OpOutletRemove, Outlet: command.OutletArgs{Name: *from}})
}

func cmdUpdatePush(ctx context.Context, c *cliutil.Call) error {
	f := addPushFlags(c)
	if err := c.Parse(0); err != nil {
		return err
	}
	return push(ctx, c, f, hub.PushRequest{Op: command.OpUpdateCheck})
}

func cmdCommandsList(ctx context.Context, c *cliutil.Call) error {
	dir := dirFlag(c, "relay")
	relay := c.Flags().String("relay", "", "only commands for this `RELAY`")
	asJSON := c.Flags().Bool("json", false, "print JSON")
	if err := parseDir(c, dir, 0); err != nil {
		return err
	}
	a, done, err := relayAdmin(*dir)
	if err != nil {
		return err
	}
	defer done()
	cs, err := a.Commands(ctx, *relay)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c, cs)
	}
	tw := tabwriter.NewWriter(c.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tRELAY\tNODE\tOP\tSTATE\tREASON")
	for _, r := range cs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Relay, r.Target, r.Summary, r.State, orDash(r.Reason))
	}
	return tw.Flush()
}

// cmdSendRaw delivers a file's bytes as a command, unchanged: a diagnostic
// to check that a node refuses tampered, replayed or foreign commands.
func cmdSendRaw(ctx context.Context, c *cliutil.Call) error {
	dir := dirFlag(c, "relay")
	relay := c.Flags().String("relay", "", "the `RELAY` of the node")
	file := c.Flags().String("file", "", "the `FILE` whose bytes to deliver")
	wait := c.Flags().Duration("wait", 0, "wait this long for the node's answer")
	if err := parseDir(c, dir, 0); err != nil {
		return err
	}
	if *relay == "" || *file == "" {
		return cliutil.Usagef("commands send-raw needs --relay RELAY and --file FILE")
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	a, err := hub.DialAdmin(*dir)
	if err != nil {
		return fmt.Errorf("send-raw needs the running relay: %w", err)
	}
	res, err := a.SubmitCommand(ctx, hub.SubmitRequest{Relay: *relay, Data: data, Wait: *wait, Raw: true})
	if err != nil {
		return err
	}
	if res.State == hub.CommandRefused {
		fmt.Fprintf(c.Stdout, "refused: %s\n", res.Reason)
		return fmt.Errorf("command %d refused by the node: %s", res.Seq, res.Reason)
	}
	fmt.Fprintf(c.Stdout, "%s (command %d to %s)\n", res.State, res.Seq, res.Target)
	return nil
}

func cmdReleasePublish(ctx context.Context, c *cliutil.Call) error {
	dir := dirFlag(c, "relay")
	keyFile := c.Flags().String("release-key", "", "the vendor's release key `FILE` (keys create wrote it; it never goes to the relay)")
	version := c.Flags().String("version", "", "release `VERSION` (vMAJOR.MINOR.PATCH); each binary must say it is this version")
	channel := c.Flags().String("channel", "stable", "release `CHANNEL`")
	var files cliutil.Strings
	c.Flags().Var(&files, "file", "`OS/ARCH=PATH` of a binary; repeatable")
	if err := parseDir(c, dir, 0); err != nil {
		return err
	}
	if *keyFile == "" {
		return cliutil.Usagef("--release-key FILE is required: releases are signed on the admin's side")
	}
	if *version == "" {
		return cliutil.Usagef("--version V is required")
	}
	if len(files) == 0 {
		return cliutil.Usagef("--file OS/ARCH=PATH is required (repeatable)")
	}
	m := map[string]string{}
	for _, f := range files {
		p, path, ok := strings.Cut(f, "=")
		if !ok || p == "" || path == "" {
			return cliutil.Usagef("--file %q: want OS/ARCH=PATH", f)
		}
		if _, dup := m[p]; dup {
			return cliutil.Usagef("--file %q: platform %s given twice", f, p)
		}
		m[p] = path
	}
	// A binary that reports another version than the one published makes
	// every auto-updating node "update" into the same version again and
	// again: refuse it before anything is written.
	for _, f := range files {
		if err := checkBinaryVersion(f, *version); err != nil {
			return err
		}
	}
	k, err := vendor.LoadPrivate(*keyFile)
	if err != nil {
		return err
	}
	d, err := hub.LoadDir(*dir)
	if err != nil {
		return err
	}
	man, err := d.Publish(hub.PublishOptions{Version: *version, Channel: *channel, Files: m, Key: k})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "published %s on channel %s:\n", man.Version, man.Channel)
	for _, p := range sortedKeys(man.Files) {
		f := man.Files[p]
		fmt.Fprintf(c.Stdout, "  %-14s %10d bytes  sha256 %x\n", p, f.Size, f.SHA256)
	}
	return nil
}

// checkBinaryVersion refuses the binary of --file spec (OS/ARCH=PATH)
// unless the version embedded in it is version.
func checkBinaryVersion(spec, version string) error {
	_, path, _ := strings.Cut(spec, "=")
	if fi, err := os.Stat(path); err != nil {
		return fmt.Errorf("--file %s: %w", spec, errors.Unwrap(err))
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("--file %s: not a regular file", spec)
	}
	v, src, err := buildinfo.ReadVersion(path)
	if err != nil {
		// ReadVersion's errors start with the path; say it once.
		return fmt.Errorf("--file %s: %s; refusing to publish it", spec, strings.TrimPrefix(err.Error(), path+": "))
	}
	if v != version {
		return fmt.Errorf("--file %s: the binary says it is %s (%s), not %s; refusing to publish it", spec, v, src, version)
	}
	return nil
}

func cmdReleaseList(ctx context.Context, c *cliutil.Call) error {
	dir := dirFlag(c, "relay")
	if err := parseDir(c, dir, 0); err != nil {
		return err
	}
	d, err := hub.LoadDir(*dir)
	if err != nil {
		return err
	}
	rs, err := d.Releases()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tVERSION\tPUBLISHED\tPLATFORMS")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Channel, r.Version, ts(r.Created), strings.Join(sortedKeys(r.Files), " "))
	}
	return tw.Flush()
}

func cmdVersion(ctx context.Context, c *cliutil.Call) error {
	if err := c.Parse(0); err != nil {
		return err
	}
	fmt.Fprintln(c.Stdout, buildinfo.String(brand.HubBinary()))
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// printJSON prints v as indented JSON with every time as RFC 3339 UTC
// (the stores keep Unix seconds; people and scripts read one form).
func printJSON(c *cliutil.Call, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var tree any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&tree); err != nil {
		return err
	}
	enc := json.NewEncoder(c.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(rfc3339Times(tree))
}

// timeKeys are the JSON keys that hold Unix seconds.
var timeKeys = map[string]bool{"created_at": true, "expires_at": true, "enrolled_at": true, "last_seen": true,
	"revoked_at": true, "acked_at": true, "since": true, "issued_at": true}

// rfc3339Times rewrites the Unix seconds under timeKeys as RFC 3339 (0:
// no time, dropped).
func rfc3339Times(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if n, ok := x.(json.Number); ok && timeKeys[k] {
				if s, err := n.Int64(); err == nil {
					if s == 0 {
						delete(v, k)
					} else {
						v[k] = time.Unix(s, 0).UTC().Format(time.RFC3339)
					}
					continue
				}
			}
			v[k] = rfc3339Times(x)
		}
	case []any:
		for i := range v {
			v[i] = rfc3339Times(v[i])
		}
	}
	return v
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// ts prints a Unix time as RFC 3339 (the one form every list uses).
func ts(unix int64) string {
	if unix == 0 {
		return "-"
	}
	return time.Unix(unix, 0).UTC().Format(time.RFC3339)
}

func orDefault(s, def string) string {
	if s != "" {
		return s
	}
	return def
}
