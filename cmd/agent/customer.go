// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/edgeportal/connect/agent/command"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/internal/cliutil"
)

// cmdAudit lists the node's audit log. It reads the state directory, so
// it works whether or not the node runs.
// flushAudit asks a running node to write the audit records it holds
// back (allowed portals are written in groups), so what is read is
// current. A stopped node holds none.
func flushAudit(ctx context.Context, dir string) {
	if cl, err := localapi.Dial(dir); err == nil {
		cl.FlushAudit(ctx)
	}
}

func cmdAudit(ctx context.Context, c *cliutil.Call) error {
	d := stateDirFlag(c)
	asJSON := c.Flags().Bool("json", false, "print JSON lines (for a SIEM)")
	if err := c.Parse(0); err != nil {
		return err
	}
	dir, err := d.path()
	if err != nil {
		return err
	}
	flushAudit(ctx, dir)
	entries, err := command.ReadAudit(dir)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(c.Stdout)
		for _, e := range entries {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(c.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "N\tTIME\tKIND\tPEER/SEQ\tOUTLET/OP\tDECISION\tREASON\tBYTES\tMS")
	for _, e := range entries {
		who, what := e.Peer, e.Outlet
		if e.Kind == "command" {
			who, what = fmt.Sprintf("seq %d", e.Seq), e.Op
		}
		// Peer-chosen text (an outlet name a peer asked for, a reason) is
		// shown escaped: it never moves the cursor or fakes a line.
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", e.N, e.Time, e.Kind, orDash(command.Escape(who)), orDash(command.Escape(what)), command.Escape(e.Decision),
			orDash(command.Escape(e.Reason)), e.BytesIn+e.BytesOut, e.DurationMS)
	}
	return tw.Flush()
}

// cmdAuditVerify checks the audit log's hash chain.
func cmdAuditVerify(ctx context.Context, c *cliutil.Call) error {
	d := stateDirFlag(c)
	if err := c.Parse(0); err != nil {
		return err
	}
	dir, err := d.path()
	if err != nil {
		return err
	}
	flushAudit(ctx, dir)
	n, err := command.VerifyAudit(dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "audit log intact: %d records, hash chain verified\n", n)
	return nil
}

func cmdExplain(ctx context.Context, c *cliutil.Call) error {
	d := stateDirFlag(c)
	asJSON := c.Flags().Bool("json", false, "print JSON")
	cl, err := d.parseDial(c)
	if err != nil {
		return err
	}
	ex, err := cl.Explain(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(c.Stdout).Encode(ex)
	}
	if len(ex) == 0 {
		fmt.Fprintln(c.Stdout, "this node serves no outlet: the vendor can reach nothing through it")
		return nil
	}
	tw := tabwriter.NewWriter(c.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "OUTLET\tTARGET\tORIGIN\tWHO MAY USE IT")
	for _, e := range ex {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Outlet, e.To, e.Origin, e.Admits)
	}
	return tw.Flush()
}

func cmdPause(ctx context.Context, c *cliutil.Call) error  { return pause(ctx, c, true) }
func cmdResume(ctx context.Context, c *cliutil.Call) error { return pause(ctx, c, false) }

// pause is the customer's kill switch: it works on a running node at
// once, and on a stopped one through the state directory.
func pause(ctx context.Context, c *cliutil.Call, paused bool) error {
	d := stateDirFlag(c)
	if err := c.Parse(0); err != nil {
		return err
	}
	dir, err := d.path()
	if err != nil {
		return err
	}
	if cl, err := localapi.Dial(dir); err == nil {
		if err := cl.SetPaused(ctx, paused); err != nil {
			return err
		}
	} else {
		if err := statedir.Ensure(dir, false); err != nil {
			return err
		}
		path := filepath.Join(dir, statedir.Paused)
		if paused {
			if err := os.WriteFile(path, []byte("paused while stopped\n"), 0o600); err != nil {
				return err
			}
		} else if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	if paused {
		fmt.Fprintln(c.Stdout, "paused: no outlet is served and vendor commands are refused until you resume")
	} else {
		fmt.Fprintln(c.Stdout, "resumed")
	}
	return nil
}

func cmdUpdate(ctx context.Context, c *cliutil.Call) error {
	d := stateDirFlag(c)
	check := c.Flags().Bool("check", false, "only report whether a newer release is available")
	version := c.Flags().String("version", "", "update to exactly this `VERSION` (allows a downgrade) (default: the newest on the node's channel)")
	cl, err := d.parseDial(c)
	if err != nil {
		return err
	}
	res, err := cl.Update(ctx, localapi.UpdateRequest{Check: *check, Version: *version})
	if err != nil {
		return err
	}
	fmt.Fprintln(c.Stdout, res.Message)
	return nil
}
