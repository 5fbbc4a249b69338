// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package authority is the project's enrollment authority as a process of
// its own (`initech-hub authority serve --dir AUTH`): the only holder of
// the authority signing key. It dials out to the relay like a node (it
// needs no listening port, so the vendor can keep it in a private
// network), proves itself with a statement signed by that key, and serves
// what nodes ask it end to end through the relay: redemption, credential
// refresh, tickets made by enrollers, and leaving. The relay splices those
// connections without reading them, so it never sees a ticket secret.
// Revocations reach the relay as notices signed by the authority.
//
// The workflows (tickets, members, revocation) live in package enroll;
// this package is the process around them: its directory, its
// connection to the relay, its admin socket.
//
// Imported by cmd/hub. Never imports agent or portal.
package authority

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/hub/vendor"
	"github.com/edgeportal/connect/internal/atomicfile"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/wire/key"
)

// Files in an authority directory.
const (
	ConfigFile   = "authority.json"
	SignerFile   = "authority.key"       // Ed25519: signs credentials, tickets, revocations
	NoiseKeyFile = "authority-noise.key" // X25519: the end-to-end identity nodes pin
	DBFile       = "authority.db"
	AdminSocket  = "admin.sock"
)

// Config is the authority's configuration (authority.json).
type Config struct {
	Project    string            `json:"project"`
	Vendor     string            `json:"vendor"`
	Hubs       []string          `json:"hubs"`      // relay addresses: written into tickets, dialled by the authority
	RelayKey   key.NodePublic    `json:"relay_key"` // the relay's Noise key
	CommandKey key.SigningPublic `json:"command_key"`
	ReleaseKey key.SigningPublic `json:"release_key"`
	// CredentialTTL is how long credentials are valid (default 1h).
	CredentialTTL string `json:"credential_ttl,omitempty"`
	// Store is where tickets and members live: empty for the file in
	// this directory, or a postgres:// URL of a database of the
	// authority's own (never the relays').
	Store string `json:"store,omitempty"`
}

// Dir is a loaded authority directory.
type Dir struct {
	Path     string
	Config   Config
	Signer   key.SigningPrivate
	NoiseKey key.NodePrivate
}

// InitOptions say which relay the authority serves and which vendor keys
// its tickets name.
type InitOptions struct {
	// HubDir is the relay's directory on this machine: its addresses and
	// key are read from it, and it is told to trust this authority.
	HubDir string
	// Hubs and HubKey name a relay on another machine (then run `trust
	// --authority-key` there).
	Hubs   []string
	HubKey key.NodePublic
	// VendorDir holds the vendor's public keys (command.pub, release.pub);
	// or give CommandKey and ReleaseKey directly. Both are optional.
	VendorDir              string
	CommandKey, ReleaseKey key.SigningPublic
	// Store is the authority's store URL ("" for the file in the directory).
	Store string
}

// Init creates an authority directory: its keys (0600) and config in a
// 0700 directory. With HubDir it also writes the authority's public key
// (and the vendor's) into the relay's config.
func Init(dir string, o InitOptions) (*Dir, error) {
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err == nil {
		return nil, fmt.Errorf("authority init: %s already holds an authority (found %s); refusing to overwrite its keys", dir, ConfigFile)
	}
	if o.VendorDir != "" {
		c, r, err := vendor.LoadPublic(o.VendorDir)
		if err != nil {
			return nil, fmt.Errorf("authority init: %w", err)
		}
		o.CommandKey, o.ReleaseKey = c, r
	}
	var hd *hub.Dir
	if o.HubDir != "" {
		var err error
		if hd, err = hub.LoadDir(o.HubDir); err != nil {
			return nil, fmt.Errorf("authority init: %w", err)
		}
		if !hd.Config.AuthorityKey.IsZero() {
			return nil, fmt.Errorf("authority init: the relay in %s already trusts authority %s; refusing to replace it", o.HubDir, hd.Config.AuthorityKey.String())
		}
		o.Hubs, o.HubKey = hd.PublicAddrs(), hd.RelayKey.Public()
	}
	if len(o.Hubs) == 0 || o.HubKey.IsZero() {
		return nil, errors.New("authority init: name the relay: --hub-dir HUB on its machine, or --hub ADDR and --hub-key KEY")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("authority init: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("authority init: %w", err)
	}
	d := &Dir{Path: dir, Signer: key.NewSigningPrivate(), NoiseKey: key.NewNodePrivate()}
	d.Config = Config{
		Project:    hub.ProjectOf(d.Signer.Public()),
		Vendor:     brand.Vendor(),
		Hubs:       o.Hubs,
		RelayKey:   o.HubKey,
		CommandKey: o.CommandKey,
		ReleaseKey: o.ReleaseKey,
		Store:      o.Store,
	}
	if err := key.WriteFile(filepath.Join(dir, SignerFile), d.Signer); err != nil {
		return nil, fmt.Errorf("authority init: %w", err)
	}
	if err := key.WriteFile(filepath.Join(dir, NoiseKeyFile), d.NoiseKey); err != nil {
		return nil, fmt.Errorf("authority init: %w", err)
	}
	if err := d.SaveConfig(); err != nil {
		return nil, err
	}
	if hd != nil {
		if err := Trust(hd, d.Signer.Public(), o.CommandKey, o.ReleaseKey); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Trust makes a relay trust an authority (and, when given, the vendor's
// command and release keys).
func Trust(hd *hub.Dir, authorityKey, commandKey, releaseKey key.SigningPublic) error {
	if cur := hd.Config.AuthorityKey; !cur.IsZero() && !cur.Equal(authorityKey) {
		return fmt.Errorf("trust: the relay in %s already trusts authority %s; refusing to replace it", hd.Path, cur.String())
	}
	hd.Config.AuthorityKey = authorityKey
	if !commandKey.IsZero() {
		hd.Config.CommandKey = commandKey
	}
	if !releaseKey.IsZero() {
		hd.Config.ReleaseKey = releaseKey
	}
	return hd.SaveConfig()
}

// SaveConfig writes authority.json atomically.
func (d *Dir) SaveConfig() error {
	return atomicfile.WriteJSON(filepath.Join(d.Path, ConfigFile), d.Config)
}

// LoadDir loads an authority directory made by Init.
func LoadDir(dir string) (*Dir, error) {
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is not an authority directory (no %s); run authority init first", dir, ConfigFile)
	}
	if err != nil {
		return nil, err
	}
	d := &Dir{Path: dir}
	if err := json.Unmarshal(b, &d.Config); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ConfigFile), err)
	}
	if err := key.ReadFile(filepath.Join(dir, SignerFile), &d.Signer); err != nil {
		return nil, err
	}
	if err := key.ReadFile(filepath.Join(dir, NoiseKeyFile), &d.NoiseKey); err != nil {
		return nil, err
	}
	return d, nil
}

// Authority returns the enrollment authority of this directory over store.
func (d *Dir) Authority(store enroll.Store) (*enroll.Authority, error) {
	var ttl time.Duration
	if d.Config.CredentialTTL != "" {
		var err error
		if ttl, err = time.ParseDuration(d.Config.CredentialTTL); err != nil || ttl <= 0 {
			return nil, fmt.Errorf("%s: credential_ttl %q: want a positive duration like 1h", ConfigFile, d.Config.CredentialTTL)
		}
	}
	return &enroll.Authority{
		Project:       d.Config.Project,
		Vendor:        d.Config.Vendor,
		Hubs:          d.Config.Hubs,
		HubKey:        d.Config.RelayKey,
		Signer:        d.Signer,
		NoiseKey:      d.NoiseKey.Public(),
		CommandKey:    d.Config.CommandKey,
		ReleaseKey:    d.Config.ReleaseKey,
		Store:         store,
		CredentialTTL: ttl,
	}, nil
}
