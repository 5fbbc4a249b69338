// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !whitelabel

package brand

// name is the brand's short name, overridable with -ldflags -X.
var name = "initech"
