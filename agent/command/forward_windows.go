// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package command

import (
	"errors"
	"strings"

	"golang.org/x/sys/windows/svc/eventlog"
)

// eventID of an audit record in the Application log.
const eventID = 100

func newForwarder(kind, tag string) (Forwarder, error) {
	if kind != ForwardEventLog {
		return nil, errors.New("Windows has no " + kind + " (use eventlog)")
	}
	l, err := eventlog.Open(tag)
	if err != nil {
		return nil, err
	}
	return &eventLog{l: l}, nil
}

// eventLog writes each record as an Information event. Only the
// administrators can clear the log; no account can edit an event.
type eventLog struct{ l *eventlog.Log }

func (e *eventLog) Forward(rec []byte) error { return e.l.Info(eventID, string(rec)) }
func (e *eventLog) Close() error             { return e.l.Close() }

// InstallEventSource registers tag as an Event Log source of the
// Application log (at install, as an administrator), so the records show
// without "the description cannot be found". Registering again is fine.
func InstallEventSource(tag string) error {
	err := eventlog.InstallAsEventCreate(tag, eventlog.Info|eventlog.Warning|eventlog.Error)
	if err != nil && strings.Contains(err.Error(), "registry key already exists") {
		return nil
	}
	return err
}

// RemoveEventSource unregisters the source (at uninstall).
func RemoveEventSource(tag string) error { return eventlog.Remove(tag) }
