// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub"
	"github.com/edgeportal/connect/hub/store/boltstore"
	"github.com/edgeportal/connect/hub/store/storetest"
)

func open(t *testing.T) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRelayConformance(t *testing.T) {
	storetest.Relay(t, func(t *testing.T) hub.Store { return open(t) })
}

func TestAuthorityConformance(t *testing.T) {
	storetest.Authority(t, func(t *testing.T) enroll.Store { return open(t) })
}
