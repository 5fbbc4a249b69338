// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package command

import "fmt"

// A Forwarder sends each audit record, as one JSON line, to a system log
// the agent's account cannot rewrite (the systemd journal, syslog, the
// Windows Event Log), so the customer keeps a copy that survives a
// compromised node. Forward must not block for long: it is called with
// every record.
type Forwarder interface {
	Forward(record []byte) error
	Close() error
}

// Forwarding destinations: the values of the config key audit.forward.
const (
	ForwardNone     = "none"
	ForwardJournal  = "journal"  // systemd journal, native protocol (Linux)
	ForwardSyslog   = "syslog"   // the local syslog socket (Unix), facility authpriv
	ForwardEventLog = "eventlog" // the Windows Event Log (Application)
)

// NewForwarder connects to the destination kind ("" or "none": no
// forwarding, a nil Forwarder), under the identifier tag (the service's
// name, e.g. "initech-agent"). A destination this OS does not have, or
// that does not answer, is an error naming it.
func NewForwarder(kind, tag string) (Forwarder, error) {
	switch kind {
	case "", ForwardNone:
		return nil, nil
	case ForwardJournal, ForwardSyslog, ForwardEventLog:
		f, err := newForwarder(kind, tag)
		if err != nil {
			return nil, fmt.Errorf("audit forward %s: %w", kind, err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("audit forward %s: want %s, %s, %s or %s", Escape(kind), ForwardJournal, ForwardSyslog, ForwardEventLog, ForwardNone)
}
