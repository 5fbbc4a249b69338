// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package pgstore

// Migrations exposes the schema migrations to the tests of a database
// left at an older version.
var Migrations = migrations
