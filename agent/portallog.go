// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"log/slog"
	"slices"
)

// portalLog is a logger for one portal whose attributes are kept, not
// formatted, until a record is written at an enabled level. slog's With
// formats its attributes at once; a portal builds its logger on every
// connection and, at the default level, writes nothing when all goes
// well, so the formatting was CPU on the portal's path for nothing.
type portalLog struct {
	l     *slog.Logger
	attrs []any
}

func newPortalLog(l *slog.Logger, args ...any) portalLog { return portalLog{l: l, attrs: args} }

// with returns a logger with args added; p is unchanged.
func (p portalLog) with(args ...any) portalLog {
	return portalLog{l: p.l, attrs: append(slices.Clip(p.attrs), args...)}
}

func (p portalLog) log(level slog.Level, msg string, args []any) {
	ctx := context.Background()
	if !p.l.Enabled(ctx, level) {
		return
	}
	p.l.Log(ctx, level, msg, append(slices.Clip(p.attrs), args...)...)
}

func (p portalLog) Debug(msg string, args ...any) { p.log(slog.LevelDebug, msg, args) }
func (p portalLog) Info(msg string, args ...any)  { p.log(slog.LevelInfo, msg, args) }
func (p portalLog) Warn(msg string, args ...any)  { p.log(slog.LevelWarn, msg, args) }
