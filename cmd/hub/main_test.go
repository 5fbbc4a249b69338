// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/cliutil"
	"github.com/edgeportal/connect/internal/cliutil/clitest"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){brand.HubBinary(): func() { os.Exit(Main()) }})
}

func TestScripts(t *testing.T) {
	t.Cleanup(clitest.Cleanup)
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		Cmds:                clitest.Cmds(),
	})
}

// TestEveryCommandHelp: every command's --help (and help CMD) prints its
// usage, every flag it defines with a default, and an example, exits 0
// and runs nothing.
func TestEveryCommandHelp(t *testing.T) {
	p := program()
	for _, cmd := range p.Commands {
		t.Run(strings.ReplaceAll(cmd.Name, " ", "_"), func(t *testing.T) {
			var out, errb strings.Builder
			words := strings.Fields(cmd.Name)
			err := p.Run(context.Background(), append(append([]string{}, words...), "--help"), &out, &errb)
			if !errors.Is(err, flag.ErrHelp) || cliutil.ExitTo(&errb, "x", err) != 0 {
				t.Fatalf("%s --help: %v", cmd.Name, err)
			}
			var viaHelp strings.Builder
			if err := p.Run(context.Background(), append([]string{"help"}, words...), &viaHelp, &errb); err != nil || viaHelp.String() != out.String() {
				t.Errorf("help %s differs from --help (%v)", cmd.Name, err)
			}
			if errb.Len() > 0 {
				t.Errorf("help wrote to stderr: %q", errb.String())
			}
			text := out.String()
			if !strings.HasPrefix(text, "Usage: "+p.Name+" "+cmd.Name) || !strings.Contains(text, "\nExample:\n  "+p.Name+" ") {
				t.Errorf("help lacks usage or example:\n%s", text)
			}
			c := &cliutil.Call{Prog: p.Name, Cmd: cmd, Args: []string{"--help"}, Stdout: &strings.Builder{}, Stderr: &strings.Builder{}}
			cmd.Run(context.Background(), c)
			c.Flags().VisitAll(func(f *flag.Flag) {
				i := strings.Index(text, "  --"+f.Name)
				if i < 0 {
					t.Errorf("flag --%s is not in the help", f.Name)
					return
				}
				if rest := strings.SplitN(text[i:], "\n  --", 2)[0]; !strings.Contains(rest, "(default") && !strings.Contains(rest, "(required)") {
					t.Errorf("flag --%s has neither a default nor \"(required)\" in the help", f.Name)
				}
			})
		})
	}
}
