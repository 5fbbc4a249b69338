// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !windows

package installer

func needsServiceHandshake() bool { return false }
