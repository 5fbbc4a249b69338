// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package cliutil

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// testProgram records which command ran with which arguments.
func testProgram(ran *[]string) *Program {
	cmd := func(name string) func(context.Context, *Call) error {
		return func(ctx context.Context, c *Call) error {
			dir := c.Flags().String("dir", "", "the `DIR`")
			n := c.Flags().Int("count", 3, "how many")
			if err := c.Parse(1); err != nil {
				return err
			}
			if *dir == "bad" {
				return Usagef("--dir bad is refused")
			}
			if *dir == "fail" {
				return errors.New("it failed\nover two lines")
			}
			*ran = append(*ran, name+" "+strings.Join(c.Args, " "))
			_ = n
			return nil
		}
	}
	return &Program{Name: "prog", Title: "a test", Commands: []*Command{
		{Name: "ticket create", Synopsis: "--dir DIR", Summary: "make one", Example: "ticket create --dir d", Run: cmd("ticket create")},
		{Name: "ticket list", Synopsis: "--dir DIR", Summary: "list them", Example: "ticket list --dir d", Run: cmd("ticket list")},
		{Name: "version", Aliases: []string{"--version"}, Summary: "print it", Example: "version", Run: cmd("version")},
	}}
}

func TestProgram(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		ran        string
		stdout     string // a substring, or "" for empty
		stderr     string // the exact stderr, or a substring with "~" in front
		wantStdout bool
	}{
		{args: []string{"ticket", "create", "--dir", "d"}, code: 0, ran: "ticket create --dir d"},
		{args: []string{"ticket", "list", "x"}, code: 0, ran: "ticket list x"},
		{args: []string{"--version"}, code: 0, ran: "version "},
		{args: []string{"help"}, code: 0, stdout: "prog ticket create  make one"},
		{args: []string{"--help"}, code: 0, stdout: "Run prog help COMMAND"},
		{args: []string{"help", "ticket", "create"}, code: 0, stdout: "  --count int\n      how many (default: 3)\n  --dir DIR\n      the DIR (default: none)\n"},
		{args: []string{"ticket", "list", "-h"}, code: 0, stdout: "Example:\n  prog ticket list --dir d\n"},
		{args: []string{}, code: 2, stderr: "~prog: missing command (see prog help)\n"},
		{args: []string{"frob"}, code: 2, stderr: "prog: unknown command \"frob\" (see prog help)\n"},
		{args: []string{"ticket"}, code: 2, stderr: "prog: ticket needs a subcommand: create, list (see prog help)\n"},
		{args: []string{"ticket", "burn"}, code: 2, stderr: "prog: unknown ticket command \"burn\" (want create, list) (see prog help)\n"},
		{args: []string{"help", "frob"}, code: 2, stderr: "prog: unknown command \"frob\" (see prog help)\n"},
		{args: []string{"ticket", "create", "--nope"}, code: 2, stderr: "prog: flag provided but not defined: -nope (see prog ticket create --help)\n"},
		{args: []string{"ticket", "create", "a", "b"}, code: 2, stderr: "prog: unexpected argument \"b\" (see prog ticket create --help)\n"},
		{args: []string{"ticket", "create", "--dir", "bad"}, code: 2, stderr: "prog: --dir bad is refused (see prog ticket create --help)\n"},
		{args: []string{"ticket", "create", "--dir", "fail"}, code: 1, stderr: "prog: it failed; over two lines\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, "_"), func(t *testing.T) {
			var ran []string
			var out, errb strings.Builder
			err := testProgram(&ran).Run(context.Background(), tt.args, &out, &errb)
			code := ExitTo(&errb, "prog", err)
			if code != tt.code {
				t.Errorf("exit %d, want %d (%v)", code, tt.code, err)
			}
			if got := strings.Join(ran, ";"); got != tt.ran {
				t.Errorf("ran %q, want %q", got, tt.ran)
			}
			if tt.stdout == "" && out.Len() > 0 && tt.code != 0 {
				t.Errorf("stdout %q", out.String())
			}
			if !strings.Contains(out.String(), tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, out.String())
			}
			switch {
			case strings.HasPrefix(tt.stderr, "~"):
				if !strings.HasSuffix(errb.String(), tt.stderr[1:]) {
					t.Errorf("stderr %q, want it to end with %q", errb.String(), tt.stderr[1:])
				}
			case errb.String() != tt.stderr:
				t.Errorf("stderr %q, want %q", errb.String(), tt.stderr)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	var b strings.Builder
	if c := ExitTo(&b, "p", &ExitError{Code: 3}); c != 3 || b.Len() != 0 {
		t.Errorf("ExitError: %d %q", c, b.String())
	}
	// A diagnosis says it is one ("…:" then lines): kept as it is.
	b.Reset()
	ExitTo(&b, "p", errors.New("did not come up; diagnosis:\nFAIL a\nFAIL b"))
	if b.String() != "p: did not come up; diagnosis:\nFAIL a\nFAIL b\n" {
		t.Errorf("diagnosis: %q", b.String())
	}
}

func TestAttributesAndDuration(t *testing.T) {
	m, err := Attributes([]string{"a", "b=c"})
	if err != nil || m["a"] != "true" || m["b"] != "c" {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range [][]string{{"="}, {"a", "a=x"}, {"has space"}} {
		if _, err := Attributes(bad); err == nil || !strings.HasPrefix(err.Error(), "--attribute ") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if d, err := Duration("x", "7d"); err != nil || d.Hours() != 168 {
		t.Errorf("7d: %v %v", d, err)
	}
	for _, bad := range []string{"soon", "-1h", "0s"} {
		if _, err := Duration("x", bad); err == nil || !strings.HasPrefix(err.Error(), "--x ") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
