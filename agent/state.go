// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/wire/key"
)

// Enrollment is what a node keeps after redeeming its ticket: every key
// comes from the ticket's authority-signed grant (or the build).
type Enrollment struct {
	Vendor            string            `json:"vendor"`
	Project           string            `json:"project"`
	Hubs              []string          `json:"hubs"`
	HubKey            key.NodePublic    `json:"relay_key"`
	AuthorityKey      key.SigningPublic `json:"authority_key"`
	AuthorityNoiseKey key.NodePublic    `json:"authority_noise_key"`
	CommandKey        key.SigningPublic `json:"command_key"`
	ReleaseKey        key.SigningPublic `json:"release_key"`
	TicketID          string            `json:"ticket_id"`
	EnrolledAt        time.Time         `json:"enrolled_at"`
	Credential        []byte            `json:"credential"`
	// RevokedAt is set once the project revoked this node: the identity
	// never works again.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// authority returns how this enrollment reaches the authority.
func (e *Enrollment) authority(hubs []string) authorityKeys {
	return authorityKeys{hubs: hubs, noise: e.AuthorityNoiseKey}
}

// RevokedError is the error of a node whose membership was revoked.
type RevokedError struct{ At time.Time }

func (e *RevokedError) Error() string {
	at := "at an unknown time"
	if !e.At.IsZero() {
		at = "at " + e.At.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("this node's membership was revoked %s; it needs a new identity and ticket (uninstall --purge, then install with a new ticket)", at)
}

func (e *RevokedError) Unwrap() error { return ErrRevoked }

func loadOrCreateKey(dir string) (key.NodePrivate, bool, error) {
	path := filepath.Join(dir, statedir.NodeKey)
	var k key.NodePrivate
	err := key.ReadFile(path, &k)
	if err == nil {
		if err := statedir.CheckFile(path); err != nil {
			return k, false, err
		}
		return k, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return k, false, fmt.Errorf("node key: %w", err)
	}
	k = key.NewNodePrivate()
	if err := key.WriteFile(path, k); err != nil {
		return k, false, fmt.Errorf("node key: %w", err)
	}
	return k, true, nil
}

// LoadEnrollment reads the enrollment, or returns (nil, nil) when the node
// has not enrolled yet.
func LoadEnrollment(dir string) (*Enrollment, error) {
	b, err := os.ReadFile(filepath.Join(dir, statedir.Enrollment))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var e Enrollment
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, statedir.Enrollment), err)
	}
	return &e, nil
}

// savedPortals are the outlets and inlets made from the CLI.
type savedPortals struct {
	Outlets []savedOutlet `json:"outlets"`
	Inlets  []savedInlet  `json:"inlets"`
}

type savedOutlet struct {
	Name  string `json:"name"`
	To    string `json:"to"`
	Allow string `json:"allow,omitempty"`
}

type savedInlet struct {
	From  string `json:"from"`
	Via   string `json:"via"`
	To    string `json:"to"`
	Allow string `json:"allow,omitempty"`
}

func loadPortals(dir string) (savedPortals, error) {
	var p savedPortals
	b, err := os.ReadFile(filepath.Join(dir, statedir.Portals))
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("%s: %w", filepath.Join(dir, statedir.Portals), err)
	}
	return p, nil
}

// PeekCredentialOf decodes an enrollment's stored credential.
func PeekCredentialOf(e *Enrollment) (*enroll.Credential, error) {
	c, err := enroll.PeekCredential(e.Credential)
	if err != nil {
		return nil, fmt.Errorf("stored credential: %w", err)
	}
	return c, nil
}
