// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/hub/authority"
	"github.com/edgeportal/connect/hub/store/boltstore"
	"github.com/edgeportal/connect/hub/store/pgstore"
	"github.com/edgeportal/connect/internal/cliutil"
)

// The --store flag and `store migrate`: where a relay's or an authority's
// state lives. The default is the single file in the process's directory;
// `--store postgres://…` puts it in PostgreSQL (several relay nodes share
// one database; the authority needs a database of its own). The URL is
// recorded in the directory's config, so later commands find the state.

const storeUsage = "the state's database: postgres://[USER@]HOST[:PORT]/DB (password in PGPASSWORD or ~/.pgpass, never in the URL); default: the file in the directory (or the store the directory's config names). A database that is down at start is tried for 30s"

func storeFlag(c *cliutil.Call) *string { return c.Flags().String("store", "", storeUsage) }

// openRelayStore opens the relay's store: url, else the one d's config
// names, else the file in d.
func openRelayStore(ctx context.Context, d *hub.Dir, url string, log *slog.Logger) (hub.Store, error) {
	if url == "" {
		url = d.Config.Store
	}
	if url == "" {
		return boltstore.Open(filepath.Join(d.Path, hub.DBFile))
	}
	return pgstore.Open(ctx, pgstore.Options{URL: url, Kind: pgstore.Relay, Logger: log})
}

// openAuthorityStore is openRelayStore for the authority.
func openAuthorityStore(ctx context.Context, d *authority.Dir, url string, log *slog.Logger) (enroll.Store, func() error, error) {
	if url == "" {
		url = d.Config.Store
	}
	if url == "" {
		s, err := boltstore.Open(filepath.Join(d.Path, authority.DBFile))
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	}
	s, err := pgstore.Open(ctx, pgstore.Options{URL: url, Kind: pgstore.Authority, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	return s, s.Close, nil
}

// initRelay makes a relay directory; with a store URL it also lists the
// relay node in the cluster's database (which it creates or migrates).
func initRelay(ctx context.Context, dir string, o hub.InitOptions) (*hub.Dir, error) {
	if o.Store != "" {
		if err := pgstore.CheckURL(o.Store); err != nil {
			return nil, fmt.Errorf("init: --store: %w", err)
		}
		// Reach the database before anything is written to disk.
		st, err := pgstore.Open(ctx, pgstore.Options{URL: o.Store, Kind: pgstore.Relay})
		if err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
		defer st.Close()
		d, err := hub.InitWith(dir, o)
		if err != nil {
			return nil, err
		}
		if err := listRelayNode(ctx, st, d); err != nil {
			os.RemoveAll(dir) // nothing half-made: the directory is new
			return nil, fmt.Errorf("init: %w", err)
		}
		return d, nil
	}
	return hub.InitWith(dir, o)
}

func listRelayNode(ctx context.Context, st hub.ClusterStore, d *hub.Dir) error {
	return st.PutRelayNode(ctx, hub.RelayNode{ID: d.NodeID(), Key: d.RelayKey.Public(), Addrs: d.PublicAddrs()})
}

func cmdStoreMigrate(ctx context.Context, c *cliutil.Call) error {
	from := c.Flags().String("from", "", "a relay's or an authority's directory (which one is read from it)")
	to := c.Flags().String("to", "", "the database to move its state to: postgres://…")
	if err := c.Parse(0); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		return cliutil.Usagef("store migrate needs --from DIR and --to postgres://…")
	}
	if err := pgstore.CheckURL(*to); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	_, errRelay := os.Stat(filepath.Join(*from, hub.ConfigFile))
	_, errAuth := os.Stat(filepath.Join(*from, authority.ConfigFile))
	switch {
	case errRelay == nil:
		return migrateRelay(ctx, c, *from, *to)
	case errAuth == nil:
		return migrateAuthority(ctx, c, *from, *to)
	}
	return fmt.Errorf("store migrate: %s is neither a relay's directory (no %s) nor an authority's (no %s)", *from, hub.ConfigFile, authority.ConfigFile)
}

// errMigrated is returned for a directory whose state already moved.
var errMigrated = errors.New("its state is already in a database")

func openTarget(ctx context.Context, to string, k pgstore.Kind) (*pgstore.Store, error) {
	dst, err := pgstore.Open(ctx, pgstore.Options{URL: to, Kind: k})
	if err != nil {
		return nil, fmt.Errorf("store migrate: %w", err)
	}
	empty, err := dst.Empty(ctx)
	if err == nil && !empty {
		err = fmt.Errorf("store migrate: %s already holds %s state; refusing to merge into it (give an empty database)", pgstore.Redact(to), k)
	}
	if err != nil {
		dst.Close()
		return nil, err
	}
	return dst, nil
}

func migrateRelay(ctx context.Context, c *cliutil.Call, dir, to string) error {
	d, err := hub.LoadDir(dir)
	if err != nil {
		return err
	}
	if d.Config.Store != "" {
		return fmt.Errorf("store migrate: %s: %w (%s)", dir, errMigrated, pgstore.Redact(d.Config.Store))
	}
	src, err := boltstore.Open(filepath.Join(dir, hub.DBFile))
	if err != nil {
		return fmt.Errorf("store migrate: %w", err)
	}
	defer src.Close()
	dst, err := openTarget(ctx, to, pgstore.Relay)
	if err != nil {
		return err
	}
	defer dst.Close()
	n, err := dst.ImportRelay(ctx, src)
	if err != nil {
		return fmt.Errorf("store migrate: nothing moved: %w", err)
	}
	if err := listRelayNode(ctx, dst, d); err != nil {
		return fmt.Errorf("store migrate: the state moved but listing relay node %s failed (run the migration's listing again with `init`): %w", d.NodeID(), err)
	}
	d.Config.Store = to
	if err := d.SaveConfig(); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "moved the relay's state in %s (%d records) to %s; relay node %s is listed there\nthe file %s stays as it was, as a backup\n",
		dir, n, pgstore.Redact(to), d.NodeID(), filepath.Join(dir, hub.DBFile))
	return nil
}

func migrateAuthority(ctx context.Context, c *cliutil.Call, dir, to string) error {
	d, err := authority.LoadDir(dir)
	if err != nil {
		return err
	}
	if d.Config.Store != "" {
		return fmt.Errorf("store migrate: %s: %w (%s)", dir, errMigrated, pgstore.Redact(d.Config.Store))
	}
	src, err := boltstore.Open(filepath.Join(dir, authority.DBFile))
	if err != nil {
		return fmt.Errorf("store migrate: %w", err)
	}
	defer src.Close()
	dst, err := openTarget(ctx, to, pgstore.Authority)
	if err != nil {
		return err
	}
	defer dst.Close()
	n, err := dst.ImportAuthority(ctx, src)
	if err != nil {
		return fmt.Errorf("store migrate: nothing moved: %w", err)
	}
	d.Config.Store = to
	if err := d.SaveConfig(); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "moved the authority's state in %s (%d records) to %s\nthe file %s stays as it was, as a backup\n",
		dir, n, pgstore.Redact(to), filepath.Join(dir, authority.DBFile))
	return nil
}

// checkAuthorityStore reaches (and migrates) the authority's database
// before `authority init` writes anything.
func checkAuthorityStore(ctx context.Context, url string) error {
	if url == "" {
		return nil
	}
	st, err := pgstore.Open(ctx, pgstore.Options{URL: url, Kind: pgstore.Authority})
	if err != nil {
		return fmt.Errorf("authority init: %w", err)
	}
	return st.Close()
}
