// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package vendor holds the vendor's own signing keys: the command key
// (signs outlet and update commands) and the release key (signs release
// manifests). They live in a directory on the vendor's admin side
// (`keys create --dir VENDOR`), never in the relay's or the authority's:
// the relay only queues and serves what they signed. Each private key
// has a public twin (.pub) that the authority puts into tickets.
//
// Imported by cmd/hub and hub/authority.
package vendor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/edgeportal/connect/wire/key"
)

// Files in a vendor key directory.
const (
	CommandKeyFile = "command.key"
	CommandPubFile = "command.pub"
	ReleaseKeyFile = "release.key"
	ReleasePubFile = "release.pub"
)

// Create makes a vendor key directory (0700) with a new command key and
// release key (0600) and their public halves. It refuses to overwrite.
func Create(dir string) (command, release key.SigningPublic, err error) {
	if _, err := os.Stat(filepath.Join(dir, CommandKeyFile)); err == nil {
		return command, release, fmt.Errorf("keys create: %s already holds vendor keys; refusing to overwrite them", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return command, release, fmt.Errorf("keys create: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return command, release, fmt.Errorf("keys create: %w", err)
	}
	for _, k := range []struct {
		priv, pub string
		out       *key.SigningPublic
	}{{CommandKeyFile, CommandPubFile, &command}, {ReleaseKeyFile, ReleasePubFile, &release}} {
		p := key.NewSigningPrivate()
		if err := key.WriteFile(filepath.Join(dir, k.priv), p); err != nil {
			return command, release, fmt.Errorf("keys create: %w", err)
		}
		if err := key.WriteFile(filepath.Join(dir, k.pub), p.Public()); err != nil {
			return command, release, fmt.Errorf("keys create: %w", err)
		}
		*k.out = p.Public()
	}
	return command, release, nil
}

// LoadPrivate reads a private signing key file (command.key, release.key).
func LoadPrivate(path string) (key.SigningPrivate, error) {
	var k key.SigningPrivate
	if err := key.ReadFile(path, &k); err != nil {
		return k, fmt.Errorf("signing key %s: %w", path, err)
	}
	return k, nil
}

// LoadPublic reads the public halves in a vendor key directory; a missing
// file gives a zero key.
func LoadPublic(dir string) (command, release key.SigningPublic, err error) {
	for _, k := range []struct {
		file string
		out  *key.SigningPublic
	}{{CommandPubFile, &command}, {ReleasePubFile, &release}} {
		err := key.ReadFile(filepath.Join(dir, k.file), k.out)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return command, release, fmt.Errorf("vendor keys: %w", err)
		}
	}
	if command.IsZero() && release.IsZero() {
		return command, release, fmt.Errorf("%s holds no vendor public keys (%s, %s): run keys create --dir %s", dir, CommandPubFile, ReleasePubFile, dir)
	}
	return command, release, nil
}
