// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"crypto/rand"
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
	// NodeID names this relay node in a cluster's listing (random, made
	// by init; older directories derive one from the key and address).
	NodeID string `json:"node_id,omitempty"`
	// Store is where the relay's state lives: empty for the file in this
	// directory, or a postgres:// URL (never with a password in it).
	Store string `json:"store,omitempty"`
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
	return InitWith(dir, InitOptions{Listen: listen, Public: public})
}

// InitOptions describe a relay directory to create.
type InitOptions struct {
	Listen string
	Public []string
	// KeyFrom, if set, is another relay node's directory on this machine
	// whose Noise key this one shares: every relay node of a cluster then
	// answers nodes with the one key their tickets pin (today's nodes pin
	// one relay key for all of a ticket's addresses).
	KeyFrom string
	// Store is the relay's store URL ("" for the file in the directory).
	Store string
}

// InitWith creates a relay directory as o says.
func InitWith(dir string, o InitOptions) (*Dir, error) {
	listen, public := o.Listen, o.Public
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
		Config:   DirConfig{Vendor: brand.Vendor(), Listen: listen, Public: public, NodeID: newNodeID(), Store: o.Store},
		RelayKey: key.NewNodePrivate(),
	}
	if o.KeyFrom != "" {
		src, err := LoadDir(o.KeyFrom)
		if err != nil {
			return nil, fmt.Errorf("init: --key-from: %w", err)
		}
		d.RelayKey = src.RelayKey
		d.Config.AuthorityKey, d.Config.CommandKey, d.Config.ReleaseKey = src.Config.AuthorityKey, src.Config.CommandKey, src.Config.ReleaseKey
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
	return atomicfile.WriteJSON(filepath.Join(d.Path, ConfigFile), d.Config)
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

func newNodeID() string {
	var b [6]byte
	rand.Read(b[:])
	return "R" + hex.EncodeToString(b[:])
}

// NodeID names this relay node in a cluster.
func (d *Dir) NodeID() string {
	if d.Config.NodeID != "" {
		return d.Config.NodeID
	}
	pub := d.RelayKey.Public().Raw32()
	h := sha256.Sum256(append(pub[:], d.Config.Listen...))
	return "R" + hex.EncodeToString(h[:6])
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
