// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package installer

import (
	"context"
	"io"
)

// RunAsServiceAccount is Linux only: elsewhere it reports ran=false.
func RunAsServiceAccount(context.Context, Spec, string, []string, io.Reader, io.Writer, io.Writer) (bool, int, error) {
	return false, 0, nil
}
