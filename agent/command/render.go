// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package command

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteTable prints audit records as an aligned table, one line per
// record. Every field is escaped (Escape), so a peer-chosen outlet name
// or reason cannot add lines, move columns or send terminal escape codes,
// and a long one is cut short. COUNT is how many identical denials a
// record stands for.
func WriteTable(w io.Writer, entries []Entry) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "N\tTIME\tKIND\tPEER/SEQ\tOUTLET/OP\tDECISION\tCOUNT\tREASON\tBYTES\tMS")
	for _, e := range entries {
		who, what := e.Peer, e.Outlet
		if e.Kind == "command" {
			who, what = fmt.Sprintf("seq %d", e.Seq), e.Op
		}
		count := e.Count
		if count == 0 {
			count = 1
		}
		when := Escape(e.Time)
		if e.Count > 1 && e.First != "" {
			when = Escape(e.First) + ".." + when
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\n", e.N, when, orDash(e.Kind), orDash(who), orDash(what),
			orDash(e.Decision), count, orDash(e.Reason), e.BytesIn+e.BytesOut, e.DurationMS)
	}
	return tw.Flush()
}

// orDash escapes s, or shows "-" for an empty one.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return Escape(s)
}
