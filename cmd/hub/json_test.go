// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/internal/cliutil"
)

// TestPrintJSONTimes: every --json list prints times as RFC 3339, drops
// unset ones, and never shows a ticket's hash.
func TestPrintJSONTimes(t *testing.T) {
	var out bytes.Buffer
	c := &cliutil.Call{Stdout: &out}
	recs := []enroll.TicketRecord{{ID: "T1", Hash: [32]byte{1}, CreatedAt: 1_800_000_000, ExpiresAt: 1_800_003_600, UsesLeft: 1}}
	if err := printJSON(c, recs); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got[0]["created_at"] != "2027-01-15T08:00:00Z" || got[0]["expires_at"] != "2027-01-15T09:00:00Z" {
		t.Errorf("times: %s", out.String())
	}
	if _, ok := got[0]["hash"]; ok || strings.Contains(out.String(), "Hash") {
		t.Errorf("the hash is shown: %s", out.String())
	}
	out.Reset()
	printJSON(c, []enroll.Member{{ID: "I1", EnrolledAt: 1_800_000_000}})
	if strings.Contains(out.String(), "last_seen") || !strings.Contains(out.String(), `"enrolled_at": "2027-01-15T08:00:00Z"`) {
		t.Errorf("member: %s", out.String())
	}
}
