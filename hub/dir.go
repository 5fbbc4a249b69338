// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/internal/atomicfile"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/wire/key"
)

// Files in a hub directory.
const (
	ConfigFile       = "hub.json"
	HubKeyFile       = "hub.key"       // Noise static key
	AuthorityKeyFile = "authority.key" // signs credentials and ticket grants
	CommandKeyFile   = "command.key"   // signs vendor commands
	ReleaseKeyFile   = "release.key"   // signs release manifests
	DBFile           = "hub.db"
	AdminSocket      = "admin.sock"
)

// DirConfig is the hub's configuration (hub.json).
type DirConfig struct {
	Project       string   `json:"project"`
	Vendor        string   `json:"vendor"`
	Listen        string   `json:"listen"`                   // address serve listens on
	Public        []string `json:"public,omitempty"`         // addresses written into tickets; default: Listen
	CredentialTTL string   `json:"credential_ttl,omitempty"` // e.g. "12h"
}

// Dir is a loaded hub directory.
type Dir struct {
	Path         string
	Config       DirConfig
	HubKey       key.NodePrivate
	AuthorityKey key.SigningPrivate
	CommandKey   key.SigningPrivate
	ReleaseKey   key.SigningPrivate
}

// Init creates a hub directory: keys (0600) and config, in a directory
// with mode 0700. It refuses to overwrite an existing hub.
func Init(dir, listen string) (*Dir, error) {
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return nil, fmt.Errorf("init: --addr %q: want host:port: %w", listen, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err == nil {
		return nil, fmt.Errorf("init: %s already holds a hub (found %s); refusing to overwrite its keys", dir, ConfigFile)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	var pid [8]byte
	rand.Read(pid[:])
	d := &Dir{
		Path: dir,
		Config: DirConfig{
			Project: "P" + hex.EncodeToString(pid[:]),
			Vendor:  brand.Vendor(),
			Listen:  listen,
		},
		HubKey:       key.NewNodePrivate(),
		AuthorityKey: key.NewSigningPrivate(),
		CommandKey:   key.NewSigningPrivate(),
		ReleaseKey:   key.NewSigningPrivate(),
	}
	for _, f := range []struct {
		name string
		k    interface{ MarshalText() ([]byte, error) }
	}{{HubKeyFile, d.HubKey}, {AuthorityKeyFile, d.AuthorityKey}, {CommandKeyFile, d.CommandKey}, {ReleaseKeyFile, d.ReleaseKey}} {
		if err := key.WriteFile(filepath.Join(dir, f.name), f.k); err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
	}
	if err := d.SaveConfig(); err != nil {
		return nil, err
	}
	return d, nil
}

// SaveConfig writes hub.json atomically.
func (d *Dir) SaveConfig() error {
	b, err := json.MarshalIndent(d.Config, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(d.Path, ConfigFile), append(b, '\n'), 0o600)
}

// LoadDir loads a hub directory made by Init.
func LoadDir(dir string) (*Dir, error) {
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is not a hub directory (no %s); run init first", dir, ConfigFile)
	}
	if err != nil {
		return nil, err
	}
	d := &Dir{Path: dir}
	if err := json.Unmarshal(b, &d.Config); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ConfigFile), err)
	}
	if err := key.ReadFile(filepath.Join(dir, HubKeyFile), &d.HubKey); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		k    *key.SigningPrivate
	}{{AuthorityKeyFile, &d.AuthorityKey}, {CommandKeyFile, &d.CommandKey}, {ReleaseKeyFile, &d.ReleaseKey}} {
		if err := key.ReadFile(filepath.Join(dir, f.name), f.k); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// PublicAddrs are the addresses written into tickets.
func (d *Dir) PublicAddrs() []string {
	if len(d.Config.Public) > 0 {
		return d.Config.Public
	}
	return []string{d.Config.Listen}
}

// Authority returns the enrollment authority of this hub over store.
func (d *Dir) Authority(store enroll.Store) (*enroll.Authority, error) {
	var ttl time.Duration
	if d.Config.CredentialTTL != "" {
		var err error
		if ttl, err = time.ParseDuration(d.Config.CredentialTTL); err != nil || ttl <= 0 {
			return nil, fmt.Errorf("%s: credential_ttl %q: want a positive duration like 12h", ConfigFile, d.Config.CredentialTTL)
		}
	}
	return &enroll.Authority{
		Project:       d.Config.Project,
		Vendor:        d.Config.Vendor,
		Hubs:          d.PublicAddrs(),
		HubKey:        d.HubKey.Public(),
		Signer:        d.AuthorityKey,
		CommandKey:    d.CommandKey.Public(),
		ReleaseKey:    d.ReleaseKey.Public(),
		Store:         store,
		CredentialTTL: ttl,
	}, nil
}
