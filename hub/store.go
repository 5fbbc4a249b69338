// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"github.com/edgeportal/connect/enroll"
)

// Store is the hub's durable state: tickets and members (through
// enroll.Store). The default implementation is hub/store/boltstore (one
// crash-safe file); a database-backed store can implement the same
// interface to let several hub nodes share state.
type Store interface {
	enroll.Store
	Close() error
}
