// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package statedir owns the layout of a node's state directory: the name
// of every file in it, the install marker the installer leaves there, and
// the checks that keep the directory private to the service.
//
// Privacy, per OS:
//
//   - Linux and other Unix systems: the directory is mode 0700 and owned
//     by the account the node runs as (the service account under systemd,
//     whose StateDirectory= creates it), its files 0600. Check refuses
//     anything else.
//   - macOS: the same; the system service runs as root from launchd, so
//     its directory under /Library/Application Support is root-owned 0700.
//   - Windows: %ProgramData% lets every local user read, and create
//     folders and files, so inheriting its ACL would expose node.key and
//     let a user plant a ticket. Secure gives the directory an explicit,
//     protected DACL (WindowsDescriptor: SYSTEM and the Administrators
//     have full control, inherited by everything inside; nothing is
//     inherited from above; the Administrators own it) and refuses a
//     directory that a local user created or planted files in. Check,
//     at start, refuses a directory or file that is not owned by SYSTEM,
//     the Administrators or the service's own account, or whose ACL gives
//     anyone else access.
//
// The Windows rules are data (Descriptor, with its SDDL form) checked by
// portable code, so the unit tests run on any OS; statedir_windows.go only
// reads and writes security descriptors through golang.org/x/sys/windows.
//
// This package is a leaf (stdlib, golang.org/x/sys, internal/atomicfile);
// agent, agent/command, installer and cmd may import it.
package statedir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/edgeportal/connect/internal/atomicfile"
)

// The files and directories in a node's state directory.
const (
	NodeKey      = "node.key"          // X25519 static key: the node's identity (secret)
	Enrollment   = "enrollment.json"   // hub, project keys and the current credential
	Portals      = "portals.json"      // outlets and inlets created from the CLI
	Ticket       = "enrollment.ticket" // the ticket an install placed; removed once redeemed (secret)
	Config       = "agent.yaml"        // the config an install placed
	Variables    = "variables.json"    // --variable values an install placed (may be secret)
	LastError    = "last-error"        // why the node last stopped, for status and install
	Commands     = "commands.json"     // last command sequence, vendor outlets, recent outcomes
	Paused       = "paused"            // present: the customer paused the node
	UpdateMarker = "update.json"       // an update handed over to a new binary
	UpdateDir    = "update"            // downloads of an update in progress
	Installed    = "installed.json"    // the install marker (Marker)
	AuditLog     = "audit.log"         // hash-chained audit records, JSON lines
	AuditHead    = "audit.head"        // count and hash of the last audit record
	Socket       = "agent.sock"        // the local API's owner-only socket
	ServiceLog   = "agent.log"         // the launchd service's stderr (macOS)
	Route        = "hub-route.json"    // the hub route an install set (install --proxy)
	ProxyAuth    = "proxy-auth"        // the proxy's user:password an install copied (secret)
)

// Names lists every name above, in the order above.
var Names = []string{NodeKey, Enrollment, Portals, Ticket, Config, Variables, LastError, Commands, Paused,
	UpdateMarker, UpdateDir, Installed, AuditLog, AuditHead, Socket, ServiceLog, Route, ProxyAuth}

// Marker is what the installer records in Installed: how the service was
// installed, so the node knows (for example) that a package manager owns
// its updates.
type Marker struct {
	Service   string `json:"service"`
	User      bool   `json:"user"`
	UnitPath  string `json:"unit_path,omitempty"`
	Packaged  bool   `json:"packaged,omitempty"`
	Installed string `json:"installed"` // RFC 3339
	Version   string `json:"version"`
}

// Encode returns the marker file's content.
func (m Marker) Encode() []byte {
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}

// WriteMarker writes the install marker into dir (atomically, 0600).
func WriteMarker(dir string, m Marker) error {
	return atomicfile.WriteFile(filepath.Join(dir, Installed), m.Encode(), 0o600)
}

// ReadMarker reads the install marker of dir; it returns (nil, nil) when
// the node was not installed as a service (run in the foreground).
func ReadMarker(dir string) (*Marker, error) {
	b, err := os.ReadFile(filepath.Join(dir, Installed))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("install marker: %w", err)
	}
	var m Marker
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("install marker %s: %w", filepath.Join(dir, Installed), err)
	}
	return &m, nil
}

// Ensure makes sure dir exists (with create, making it private with
// Secure when it does not) and is private (Check).
func Ensure(dir string, create bool) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) && create {
		return Secure(dir)
	}
	return Check(dir)
}

// Secure creates dir if needed and makes it private to the service (see
// the package doc for what that means on each OS). The installer calls it
// before writing the state files; it needs the rights the install has
// (root, or an administrator on Windows).
func Secure(dir string) error {
	if err := secure(dir); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	return nil
}

// Check reports whether dir is a directory private to the service, with
// an error that says what is wrong and how to fix it. The node calls it at
// start, as it does for every secret file (CheckFile).
func Check(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("state directory %s is not a directory", dir)
	}
	return checkDir(dir, fi)
}

// CheckFile reports whether the file at path is private to the service.
func CheckFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return checkFile(path, fi)
}
