// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build whitelabel

package brand

// name is set with -ldflags -X by the vendor's build (scripts/build.sh).
var name string
