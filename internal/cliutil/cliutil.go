// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package cliutil holds what both command-line programs share: the
// command table (Program, Command, Call) with `--help` for every command
// and `help CMD`, repeatable flags, attribute and duration parsing, logger
// construction, and the exit-code convention:
//
//   - 0: success, and help (-h, --help, help, help CMD);
//   - 2: a usage error (UsageError: an unknown command or flag, a missing
//     or contradictory flag), printed as one line with a pointer to the
//     command's help;
//   - 1: any other error, printed as one line (prog: message);
//   - ExitError: a code passed on from a child process, printed by it.
//
// Imported only by cmd/*.
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

// UsageError is a command-line mistake; main prints it with a pointer to
// the command's help and exits 2.
type UsageError struct {
	Msg string
	Cmd string // the command's words, when known ("ticket create")
}

func (e *UsageError) Error() string { return e.Msg }

// ExitError passes on the exit code of a child process that already
// printed its own output (the agent's commands run again as the service
// account); Exit prints nothing for it.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

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

// PrintDefaults writes every flag of fs, in the --name form the docs
// use, with its usage text and its default ("none" for an empty one). A
// usage text that already says "(default…" or "(required)" keeps its own
// words. A name in
// `backquotes` in the usage text names the flag's value.
func PrintDefaults(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		def := f.DefValue
		if def == "" || def == "[]" {
			def = "none"
		}
		if !strings.Contains(usage, "(default") && !strings.Contains(usage, "(required)") {
			usage += " (default: " + def + ")"
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, usage)
	})
}

// Exit prints err the way both programs do, on os.Stderr, and returns the
// exit code (see the package doc).
func Exit(prog string, err error) int { return ExitTo(os.Stderr, prog, err) }

// ExitTo is Exit printing on w.
func ExitTo(w io.Writer, prog string, err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var xe *ExitError
	if errors.As(err, &xe) {
		return xe.Code
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		help := prog + " help"
		if ue.Cmd != "" {
			help = prog + " " + ue.Cmd + " --help"
		}
		fmt.Fprintf(w, "%s: %s (see %s)\n", prog, oneLine(ue.Msg), help)
		return 2
	}
	fmt.Fprintf(w, "%s: %s\n", prog, oneLine(err.Error()))
	return 1
}

// oneLine keeps an error on one line unless it is a diagnosis that
// says so itself (a line that ends with ':' introduces the lines that
// follow, as the install's "diagnosis:" does).
func oneLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if !strings.Contains(s, "\n") {
		return s
	}
	if first, _, _ := strings.Cut(s, "\n"); strings.HasSuffix(first, ":") {
		return s
	}
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}
