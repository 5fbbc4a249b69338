// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package command is the node's side of the vendor's signed commands: it
// verifies a command (wire/command), checks it against the customer's
// remote-outlets allow-list, and keeps the hash-chained audit log of every
// command and portal. Nothing here applies a command: the agent does, after
// the checks pass.
//
// The audit log is written for a hostile peer: repeated denials fold into
// one record with a count (no fsync per attempt), peer-chosen fields are
// clipped when stored and escaped when shown (Escape, WriteTable), a
// missing or mismatched head is tampering (ErrAuditTampered), and each
// record can also go to the system journal, syslog or the Windows Event
// Log (NewForwarder), where the agent's account cannot rewrite it.
//
// Imported by agent.
package command

import (
	"fmt"
	"time"

	"github.com/edgeportal/connect/policy"
	wcommand "github.com/edgeportal/connect/wire/command"
	"github.com/edgeportal/connect/wire/key"
)

// Command is a verified vendor command.
type Command = wcommand.Command

// Verify checks a received command (signature, project, target, expiry,
// sequence above lastSeq, shape) and parses its allow expression.
func Verify(commandKey key.SigningPublic, project, self string, data []byte, lastSeq uint64, now time.Time) (*Command, error) {
	c, err := wcommand.Verify(commandKey, project, self, data, lastSeq, now)
	if err != nil {
		return c, err
	}
	if c.Outlet != nil && c.Outlet.Allow != "" {
		if _, err := policy.Parse(c.Outlet.Allow); err != nil {
			return c, fmt.Errorf("malformed allow expression: %w", err)
		}
	}
	return c, nil
}
