// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package cliutil holds the small pieces both command-line programs share:
// repeatable flags, attribute parsing, logger construction and the usage
// error type. It is a leaf (stdlib, enroll for attribute checks) imported
// only by cmd/*.
package cliutil

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/edgeportal/connect/enroll"
)

// Strings is a repeatable string flag.
type Strings []string

func (s *Strings) String() string { return strings.Join(*s, ",") }

// Set implements flag.Value.
func (s *Strings) Set(v string) error { *s = append(*s, v); return nil }

// UsageError is a command-line mistake; main prints it with a hint and
// exits 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error { return &UsageError{Msg: fmt.Sprintf(format, args...)} }

// Attributes parses --attribute NAME or NAME=VALUE flags.
func Attributes(flags []string) (map[string]string, error) {
	m := map[string]string{}
	for _, a := range flags {
		name, value, hasValue := strings.Cut(a, "=")
		if !hasValue {
			value = "true"
		}
		if name == "" {
			return nil, fmt.Errorf("--attribute %q: the attribute name is empty", a)
		}
		if err := enroll.ValidateAttribute(name, value); err != nil {
			return nil, fmt.Errorf("--attribute %q: %w", a, err)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("--attribute %q: attribute %q given twice", a, name)
		}
		m[name] = value
	}
	return m, nil
}

// Duration parses a positive duration flag value, accepting a "d" suffix
// for days.
func Duration(flagName, s string) (time.Duration, error) {
	orig := s
	mult := time.Duration(1)
	if strings.HasSuffix(s, "d") {
		s, mult = strings.TrimSuffix(s, "d")+"h", 24
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("--%s %q: not a duration (examples: 30m, 24h, 7d)", flagName, orig)
	}
	d *= mult
	if d <= 0 {
		return 0, fmt.Errorf("--%s %q: must be positive", flagName, orig)
	}
	return d, nil
}

// Logger builds the process logger: human text on a terminal, JSON when
// asked (or when format is "json").
func Logger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// Parse parses args into fs, turning flag errors into UsageErrors and
// refusing stray positional arguments when maxArgs is 0.
func Parse(fs *flag.FlagSet, args []string, maxArgs int) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &UsageError{Msg: err.Error()}
	}
	if fs.NArg() > maxArgs {
		return Usagef("unexpected argument %q", fs.Arg(maxArgs))
	}
	return nil
}

// PrintDefaults writes a flag set's usage.
func PrintDefaults(w io.Writer, fs *flag.FlagSet) {
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// Exit prints err the way both programs do and returns the exit code.
func Exit(prog string, err error) int {
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		fmt.Fprintf(os.Stderr, "%s: %s (see %s help)\n", prog, ue.Msg, prog)
		return 2
	}
	fmt.Fprintf(os.Stderr, "%s: %s\n", prog, err)
	return 1
}
