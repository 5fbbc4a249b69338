// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub/authority"
	"github.com/edgeportal/connect/hub/vendor"
	"github.com/edgeportal/connect/internal/atomicfile"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/cliutil"
	"github.com/edgeportal/connect/internal/escape"
	"github.com/edgeportal/connect/wire/key"
)

func cmdKeysCreate(ctx context.Context, c *cliutil.Call) error {
	dir := dirFlag(c, "vendor key")
	if err := parseDir(c, dir, 0); err != nil {
		return err
	}
	cmd, rel, err := vendor.Create(*dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "created the vendor's keys in %s (keep them on the admin side; the relay never needs them)\n  command key: %s\n  release key: %s\n",
		*dir, cmd, rel)
	return nil
}

func cmdAuthorityInit(ctx context.Context, c *cliutil.Call) error {
	fs := c.Flags()
	dir := dirFlag(c, "authority")
	hubDir := fs.String("hub-dir", "", "the relay's directory `HUB` on this machine (its address and key are read, and it is told to trust this authority)")
	var hubs cliutil.Strings
	fs.Var(&hubs, "hub", "a relay `ADDRESS` nodes dial, for a relay on another machine; repeatable")
	hubKey := fs.String("hub-key", "", "the relay's `KEY` (nodekey:…), for a relay on another machine")
	vdir := fs.String("vendor-dir", "", "the vendor's key directory `VENDOR`: its public keys (command.pub, release.pub) go into tickets")
	store := storeFlag(c)
	if err := parseDir(c, dir, 0); err != nil {
		return err
	}
	o := authority.InitOptions{HubDir: *hubDir, Hubs: hubs, VendorDir: *vdir, Store: *store}
	if err := checkAuthorityStore(ctx, *store); err != nil {
		return err
	}
	if *hubKey != "" {
		k, err := key.ParseNodePublic(*hubKey)
		if err != nil {
			return fmt.Errorf("--hub-key: %w", err)
		}
		o.HubKey = k
	}
	if (*hubDir == "") == (len(hubs) == 0) {
		return cliutil.Usagef("authority init needs --hub-dir HUB, or --hub ADDR with --hub-key KEY")
	}
	d, err := authority.Init(*dir, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "initialized authority in %s\n  project:        %s\n  relays:         %s\n  authority key:  %s\n  noise key:      %s\n",
		*dir, d.Config.Project, strings.Join(d.Config.Hubs, ", "), d.Signer.Public(), d.NoiseKey.Public())
	if *hubDir != "" {
		fmt.Fprintf(c.Stdout, "the relay in %s now trusts this authority\n", *hubDir)
	} else {
		fmt.Fprintf(c.Stdout, "on the relay's machine run: %s trust --dir HUB --authority-key %s\n", brand.HubBinary(), d.Signer.Public())
	}
	return nil
}

func cmdAuthorityServe(ctx context.Context, c *cliutil.Call) error {
	fs := c.Flags()
	dir := dirFlag(c, "authority")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text or json")
	clockOffset := fs.Duration("insecure-clock-offset", 0, "shift the authority's clock (tests of clock skew only; not for production)")
	storeURL := storeFlag(c)
	if err := parseDir(c, dir, 0); err != nil {
		return err
	}
	log, err := cliutil.Logger(c.Stderr, *level, *format)
	if err != nil {
		return cliutil.Usagef("%v", err)
	}
	var now func() time.Time
	if *clockOffset != 0 {
		log.Warn("the authority's clock is shifted for testing", "offset", *clockOffset)
		now = func() time.Time { return time.Now().Add(*clockOffset) }
	}
	d, err := authority.LoadDir(*dir)
	if err != nil {
		return err
	}
	store, closeStore, err := openAuthorityStore(ctx, d, *storeURL, log)
	if err != nil {
		return err
	}
	defer closeStore()
	srv, err := authority.New(authority.Options{Dir: d, Store: store, Logger: log, Now: now})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	adminDone := make(chan error, 1)
	go func() { adminDone <- srv.ServeAdmin(ctx) }()
	err = srv.Run(ctx)
	cancel()
	if aerr := <-adminDone; aerr != nil && err == nil {
		err = aerr
	}
	return err
}

// authorityAdmin returns the running authority's admin API, or its store
// directly when none runs in dir.
func authorityAdmin(dir string) (authority.Admin, func(), error) {
	d, err := authority.LoadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	if c, err := authority.DialAdmin(dir); err == nil {
		return c, func() {}, nil
	}
	store, closeStore, err := openAuthorityStore(context.Background(), d, "", nil)
	if err != nil {
		return nil, nil, err
	}
	a, err := d.Authority(store)
	if err != nil {
		closeStore()
		return nil, nil, err
	}
	return &authority.Offline{Auth: a}, func() { closeStore() }, nil
}

func cmdTicketCreate(ctx context.Context, c *cliutil.Call) error {
	fs := c.Flags()
	dir := dirFlag(c, "authority")
	expires := fs.String("expires-in", "24h", "how long the ticket can be redeemed (30m, 24h, 7d)")
	uses := fs.Int("usage-count", 1, "how many nodes may redeem it")
	var attrs cliutil.Strings
	fs.Var(&attrs, "attribute", "`NAME` or NAME=VALUE the node is granted; repeatable")
	relay := fs.String("relay", "", "relay `NAME` the node may register")
	replica := fs.Bool("replica", false, "the node serves --relay as one of its replicas: several nodes with replica tickets share the name (never beside a sole owner)")
	enroller := fs.Bool("enroller", false, "the node may create tickets, within the scope below (never the enroller role itself)")
	var mayGrant, relays cliutil.Strings
	fs.Var(&mayGrant, "enroller-may-grant", "`ATTR[,ATTR…]` (or NAME=VALUE) an enroller may grant; repeatable")
	fs.Var(&relays, "enroller-relays", "`PATTERN[,PATTERN…]` of relay names an enroller may grant ('*' matches any characters); repeatable")
	maxLife := fs.String("enroller-max-lifetime", enroll.DefaultScopeLifetime.String(), "the longest lifetime of an enroller's tickets")
	maxUses := fs.Int("enroller-max-uses", enroll.DefaultScopeUses, "the most uses of an enroller's tickets")
	mayReplicas := fs.Bool("enroller-replicas", false, "an enroller may grant replica tickets (--replica) for the relays it may grant")
	out := fs.String("out", "", "write the ticket to this `FILE` (mode 0600) instead of stdout")
	if err := parseDir(c, dir, 0); err != nil {
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
	o := enroll.TicketOptions{Attributes: m, Relay: *relay, Replica: *replica, Enroller: *enroller, ExpiresIn: d, Uses: *uses, CreatedBy: "admin"}
	if *enroller {
		life, err := cliutil.Duration("enroller-max-lifetime", *maxLife)
		if err != nil {
			return err
		}
		o.Scope = &enroll.Scope{Attributes: splitList(mayGrant), Relays: splitList(relays), MaxLifetime: int64(life / time.Second), MaxUses: *maxUses,
			Replicas: *mayReplicas}
	} else if len(mayGrant)+len(relays) > 0 {
		return cliutil.Usagef("--enroller-may-grant and --enroller-relays need --enroller")
	} else if *mayReplicas {
		return cliutil.Usagef("--enroller-replicas needs --enroller")
	}
	if *replica && *relay == "" {
		return cliutil.Usagef("--replica needs --relay NAME: a replica serves a relay name beside its other replicas")
	}
	if err := o.Validate(); err != nil {
		return err
	}
	if *out != "" {
		// Refuse an existing file first: nothing is created on the
		// authority for a ticket that could not be written.
		if _, err := os.Stat(*out); err == nil {
			return fmt.Errorf("--out %s: the file exists; refusing to overwrite it", *out)
		}
	}
	a, done, err := authorityAdmin(*dir)
	if err != nil {
		return err
	}
	defer done()
	text, err := a.CreateTicket(ctx, o)
	if err != nil {
		return err
	}
	if *out != "" {
		if err := atomicfile.WriteFile(*out, []byte(text+"\n"), 0o600); err != nil {
			return fmt.Errorf("--out: %w (the ticket exists at the authority: withdraw it with ticket revoke)", err)
		}
		_, g, _ := enroll.ParseTicket(text)
		fmt.Fprintf(c.Stdout, "ticket %s written to %s (0600)\n", g.TicketID, *out)
		return nil
	}
	fmt.Fprintln(c.Stdout, text)
	return nil
}

// splitList splits repeatable, comma-separated flag values.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// authorityList is the start of ticket list and members list: the flags,
// the authority's admin (its running process, else its store), the rows.
// printed is true when it has printed them (--json).
func authorityList[T any](ctx context.Context, c *cliutil.Call, get func(authority.Admin, context.Context) ([]T, error)) (rows []T, printed bool, err error) {
	dir := dirFlag(c, "authority")
	asJSON := c.Flags().Bool("json", false, "print JSON")
	if err := parseDir(c, dir, 0); err != nil {
		return nil, false, err
	}
	a, done, err := authorityAdmin(*dir)
	if err != nil {
		return nil, false, err
	}
	defer done()
	if rows, err = get(a, ctx); err != nil {
		return nil, false, err
	}
	if *asJSON {
		return rows, true, printJSON(c, rows)
	}
	return rows, false, nil
}

func cmdTicketList(ctx context.Context, c *cliutil.Call) error {
	ts0, printed, err := authorityList(ctx, c, authority.Admin.Tickets)
	if err != nil || printed {
		return err
	}
	tw := tabwriter.NewWriter(c.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TICKET\tATTRIBUTES\tRELAY\tCREATED\tEXPIRES\tUSES-LEFT\tSTATE\tBY")
	now := time.Now().Unix()
	for _, t := range ts0 {
		state := "valid"
		switch {
		case t.Revoked:
			state = "withdrawn"
		case t.UsesLeft <= 0:
			state = "used up"
		case now >= t.ExpiresAt:
			state = "expired"
		}
		attrs := attrList(t.Attributes)
		if t.Enroller {
			attrs += " (enroller: " + t.Scope.String() + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", t.ID, orDash(attrs), orDash(relayText(t.Relay, t.Replica)), ts(t.CreatedAt), ts(t.ExpiresAt), max(t.UsesLeft, 0), state, orDash(t.CreatedBy))
	}
	return tw.Flush()
}

func cmdTicketRevoke(ctx context.Context, c *cliutil.Call) error {
	dir := dirFlag(c, "authority")
	if err := parseDirExact(c, dir, "the TICKET identifier (ticket list shows it)"); err != nil {
		return err
	}
	a, done, err := authorityAdmin(*dir)
	if err != nil {
		return err
	}
	defer done()
	t, err := a.RevokeTicket(ctx, c.Flags().Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "withdrew ticket %s: it can no longer be redeemed (nodes it admitted stay members)\n", t.ID)
	return nil
}

func attrList(m map[string]string) string {
	var attrs []string
	for _, k := range enroll.SortedAttributes(m) {
		if v := m[k]; v == "true" {
			attrs = append(attrs, k)
		} else {
			attrs = append(attrs, k+"="+v)
		}
	}
	return strings.Join(attrs, ",")
}

func cmdMembersList(ctx context.Context, c *cliutil.Call) error {
	ms, printed, err := authorityList(ctx, c, authority.Admin.Members)
	if err != nil || printed {
		return err
	}
	tw := tabwriter.NewWriter(c.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTIFIER\tATTRIBUTES\tRELAY\tENROLLED-AT\tLAST-SEEN\tSTATE\tVERSION\tLAST-UPDATE")
	for _, m := range ms {
		attrs := attrList(m.Attributes)
		if m.Enroller {
			attrs += ",(enroller)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, orDash(strings.TrimPrefix(attrs, ",")), orDash(relayText(m.Relay, m.Replica)),
			ts(m.EnrolledAt), ts(m.LastSeen), memberState(m), orDash(m.Version), orDash(m.LastUpdate))
	}
	return tw.Flush()
}

// relayText is a relay name as the lists show it, marked when the node
// serves it as a replica.
func relayText(relay string, replica bool) string {
	if relay != "" && replica {
		return relay + " (replica)"
	}
	return relay
}

// memberState is a member's STATE column: offline, online, paused,
// draining, and the outlets it reports down.
func memberState(m authority.MemberStatus) string {
	switch {
	case m.Revoked:
		return "revoked"
	case !m.Live:
		return "unknown (authority not running)"
	case !m.Connected:
		return "offline"
	}
	return "online" + healthText(m.Paused, m.Draining, m.Down)
}

// healthText is what a node reports of itself, for a list: "" when all
// is well, else ", paused", ", draining", ", down: web,db".
func healthText(paused, draining bool, down []string) string {
	var out string
	if paused {
		out += ", paused"
	}
	if draining {
		out += ", draining"
	}
	if len(down) > 0 {
		esc := make([]string, len(down))
		for i, d := range down {
			esc[i] = escape.String(d)
		}
		out += ", down: " + strings.Join(esc, ",")
	}
	return out
}

func cmdMembersRevoke(ctx context.Context, c *cliutil.Call) error {
	dir := dirFlag(c, "authority")
	if err := parseDirExact(c, dir, "the member's IDENTIFIER (members list shows it)"); err != nil {
		return err
	}
	a, done, err := authorityAdmin(*dir)
	if err != nil {
		return err
	}
	defer done()
	m, err := a.Revoke(ctx, c.Flags().Arg(0))
	if err != nil {
		return err
	}
	if _, offline := a.(*authority.Offline); offline {
		fmt.Fprintf(c.Stdout, "revoked %s (the authority is not running: the relay hears of it when the authority next connects)\n", m.ID)
		return nil
	}
	fmt.Fprintf(c.Stdout, "revoked %s\n", m.ID)
	return nil
}
