// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"log/slog"
	"strings"

	"github.com/edgeportal/connect/enroll"
)

// attrsValue logs an attribute map as one readable value, "a=b,c=d" in
// name order, instead of Go's map[a:b c:d].
type attrsValue map[string]string

// LogValue implements slog.LogValuer.
func (a attrsValue) LogValue() slog.Value {
	parts := make([]string, 0, len(a))
	for _, k := range enroll.SortedAttributes(a) {
		parts = append(parts, k+"="+a[k])
	}
	return slog.StringValue(strings.Join(parts, ","))
}
