// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/edgeportal/connect/agent/command"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/internal/cliutil"
)

// cmdAudit lists (or verifies) the node's audit log. It reads the state
// directory, so it works whether or not the node runs.
func cmdAudit(args []string, stdout io.Writer) error {
	verify := len(args) > 0 && args[0] == "verify"
	if verify {
		args = args[1:]
	}
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	dir := stateDirFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON lines (for a SIEM)")
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := requireStateDir(dir); err != nil {
		return err
	}
	if verify {
		n, err := command.VerifyAudit(*dir)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "audit log intact: %d records, hash chain verified\n", n)
		return nil
	}
	entries, err := command.ReadAudit(*dir)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, e := range entries {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "N\tTIME\tKIND\tPEER/SEQ\tOUTLET/OP\tDECISION\tREASON\tBYTES\tMS")
	for _, e := range entries {
		who, what := e.Peer, e.Outlet
		if e.Kind == "command" {
			who, what = fmt.Sprintf("seq %d", e.Seq), e.Op
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", e.N, e.Time, e.Kind, orDash(who), orDash(what), e.Decision,
			orDash(e.Reason), e.BytesIn+e.BytesOut, e.DurationMS)
	}
	return tw.Flush()
}

func cmdExplain(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	dir := stateDirFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
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
	ex, err := c.Explain(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(ex)
	}
	if len(ex) == 0 {
		fmt.Fprintln(stdout, "this node serves no outlet: the vendor can reach nothing through it")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "OUTLET\tTARGET\tORIGIN\tWHO MAY USE IT")
	for _, e := range ex {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Outlet, e.To, e.Origin, e.Admits)
	}
	return tw.Flush()
}

// cmdPause is the customer's kill switch: it works on a running node at
// once, and on a stopped one through the state directory.
func cmdPause(ctx context.Context, pause bool, args []string, stdout io.Writer) error {
	name := map[bool]string{true: "pause", false: "resume"}[pause]
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	dir := stateDirFlag(fs)
	if err := cliutil.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := requireStateDir(dir); err != nil {
		return err
	}
	if c, err := localapi.Dial(*dir); err == nil {
		if err := c.SetPaused(ctx, pause); err != nil {
			return err
		}
	} else {
		if err := statedir.Ensure(*dir, false); err != nil {
			return err
		}
		path := filepath.Join(*dir, statedir.Paused)
		if pause {
			if err := os.WriteFile(path, []byte("paused while stopped\n"), 0o600); err != nil {
				return err
			}
		} else if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	if pause {
		fmt.Fprintln(stdout, "paused: no outlet is served and vendor commands are refused until you resume")
	} else {
		fmt.Fprintln(stdout, "resumed")
	}
	return nil
}

func cmdUpdate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("update", flag.ContinueOnError)
	dir := stateDirFlag(fs)
	check := fs.Bool("check", false, "only report whether a newer release is available")
	version := fs.String("version", "", "update to exactly this version (allows a downgrade)")
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
	res, err := c.Update(ctx, localapi.UpdateRequest{Check: *check, Version: *version})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.Message)
	return nil
}
