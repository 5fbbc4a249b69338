// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/edgeportal/connect/internal/atomicfile"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/wire/key"
)

// Files in a relay directory. The relay key is the only private key in
// it, and the only one the relay process ever reads.
const (
	ConfigFile   = "hub.json"
	RelayKeyFile = "relay.key" // Noise static key
	DBFile       = "relay.db"
	AdminSocket  = "admin.sock"
)

// DirConfig is the relay's configuration (hub.json). Every key in it is
// public.
type DirConfig struct {
	Vendor string   `json:"vendor"`
	Listen string   `json:"listen"`           // address serve listens on
	Public []string `json:"public,omitempty"` // addresses written into tickets; default: Listen
	// AuthorityKey is the authority's public signing key: the relay admits
	// a member only with a credential it signed. Set by `authority init
	// --hub-dir` or `trust --authority-key`.
	AuthorityKey key.SigningPublic `json:"authority_key"`
	// CommandKey and ReleaseKey, when set, let the relay refuse a command
	// or a release not signed by the project before queueing or listing
	// it. Nodes check them either way.
	CommandKey key.SigningPublic `json:"command_key"`
	ReleaseKey key.SigningPublic `json:"release_key"`
}

// Dir is a loaded relay directory.
type Dir struct {
	Path     string
	Config   DirConfig
	RelayKey key.NodePrivate
}

// ProjectOf is a project's identifier: it names the authority key, so a
// relay and an authority agree on it without being told.
func ProjectOf(authority key.SigningPublic) string {
	raw := authority.Raw32()
	h := sha256.Sum256(raw[:])
	return "P" + hex.EncodeToString(h[:8])
}

// Project is the identifier of the project whose authority this relay
// trusts ("" before it trusts one).
func (d *Dir) Project() string {
	if d.Config.AuthorityKey.IsZero() {
		return ""
	}
	return ProjectOf(d.Config.AuthorityKey)
}

// ErrUnspecifiedAddr is returned by Init for a listen address such as
// 0.0.0.0 with no public address to write into tickets.
var ErrUnspecifiedAddr = errors.New("a listen address of all interfaces cannot go into tickets: give the address nodes dial as a public address")

// Init creates a relay directory: its key (0600) and config, in a
// directory with mode 0700. It refuses to overwrite an existing one.
func Init(dir, listen string, public []string) (*Dir, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("init: listen address %q: want host:port: %w", listen, err)
	}
	for _, p := range public {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return nil, fmt.Errorf("init: public address %q: want host:port", p)
		}
	}
	if ip, err := netip.ParseAddr(host); (host == "" || err == nil && ip.IsUnspecified()) && len(public) == 0 {
		return nil, fmt.Errorf("init: %q: %w", listen, ErrUnspecifiedAddr)
	}
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err == nil {
		return nil, fmt.Errorf("init: %s already holds a relay (found %s); refusing to overwrite its key", dir, ConfigFile)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	d := &Dir{
		Path:     dir,
		Config:   DirConfig{Vendor: brand.Vendor(), Listen: listen, Public: public},
		RelayKey: key.NewNodePrivate(),
	}
	if err := key.WriteFile(filepath.Join(dir, RelayKeyFile), d.RelayKey); err != nil {
		return nil, fmt.Errorf("init: %w", err)
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

// LoadDir loads a relay directory made by Init.
func LoadDir(dir string) (*Dir, error) {
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is not a relay directory (no %s); run init first", dir, ConfigFile)
	}
	if err != nil {
		return nil, err
	}
	d := &Dir{Path: dir}
	if err := json.Unmarshal(b, &d.Config); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ConfigFile), err)
	}
	if err := key.ReadFile(filepath.Join(dir, RelayKeyFile), &d.RelayKey); err != nil {
		return nil, err
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

// ErrNoAuthority means the relay trusts no authority yet.
var ErrNoAuthority = errors.New("this relay trusts no authority yet: run `authority init --hub-dir` on the same machine, or `trust --authority-key KEY`")
