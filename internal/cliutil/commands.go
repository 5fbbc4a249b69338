// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package cliutil

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// Command is one row of a program's command table. Run defines the
// command's flags on the Call, calls Call.Parse (which answers -h/--help)
// before it does anything else, and then does its work: that is what
// lets `help CMD` print every flag without running the command.
type Command struct {
	Name     string   // the words that name it: "ticket create"
	Aliases  []string // other words that name it ("--version")
	Synopsis string   // the arguments, for the usage line: "--dir AUTH [flags]"
	Summary  string   // one line for the program's command list
	Example  string   // shown by --help; lines without the program's name
	Run      func(ctx context.Context, c *Call) error
}

// Call is one run of a command: its arguments and where to print.
type Call struct {
	Prog   string
	Cmd    *Command
	Args   []string
	Stdout io.Writer
	Stderr io.Writer
	fs     *flag.FlagSet
}

// Flags returns the command's flag set (one per call).
func (c *Call) Flags() *flag.FlagSet {
	if c.fs == nil {
		c.fs = flag.NewFlagSet(c.Cmd.Name, flag.ContinueOnError)
		c.fs.SetOutput(io.Discard)
	}
	return c.fs
}

// Parse parses the arguments into the flag set, allowing at most maxArgs
// positional arguments. -h/--help prints the command's help to stdout
// and returns flag.ErrHelp (exit 0).
func (c *Call) Parse(maxArgs int) error {
	fs := c.Flags()
	err := Parse(fs, c.Args, maxArgs)
	if errors.Is(err, flag.ErrHelp) {
		c.PrintHelp(c.Stdout)
	}
	var ue *UsageError
	if errors.As(err, &ue) && ue.Cmd == "" {
		ue.Cmd = c.Cmd.Name
	}
	return err
}

// ParseExact is Parse for a command that takes exactly n positional
// arguments; what names them for the error ("FILE").
func (c *Call) ParseExact(n int, what string) error {
	if err := c.Parse(n); err != nil {
		return err
	}
	if c.Flags().NArg() != n {
		return &UsageError{Cmd: c.Cmd.Name, Msg: fmt.Sprintf("%s needs %s", c.Cmd.Name, what)}
	}
	return nil
}

// Set reports the flags given on the command line, by name.
func (c *Call) Set() map[string]bool {
	set := map[string]bool{}
	c.Flags().Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// PrintHelp writes the command's usage, every flag with its default and
// the example.
func (c *Call) PrintHelp(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s %s %s\n\n%s.\n", c.Prog, c.Cmd.Name, c.Cmd.Synopsis, capitalize(c.Cmd.Summary))
	fs := c.Flags()
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nFlags:")
		PrintDefaults(w, fs)
	}
	if c.Cmd.Example != "" {
		fmt.Fprintf(w, "\nExample:\n")
		for _, l := range strings.Split(strings.TrimRight(c.Cmd.Example, "\n"), "\n") {
			fmt.Fprintf(w, "  %s %s\n", c.Prog, l)
		}
	}
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Program is a binary's command table.
type Program struct {
	Name     string // the binary's name
	Title    string // one line: what it is
	Commands []*Command
}

// words returns the names a command answers to, each as words.
func (c *Command) words() [][]string {
	out := [][]string{strings.Fields(c.Name)}
	for _, a := range c.Aliases {
		out = append(out, strings.Fields(a))
	}
	return out
}

// lookup finds the command named by the longest prefix of args' words.
func (p *Program) lookup(args []string) (*Command, []string) {
	var best *Command
	var rest []string
	bestLen := 0
	for _, c := range p.Commands {
		for _, words := range c.words() {
			if len(words) > len(args) || len(words) <= bestLen {
				continue
			}
			match := true
			for i, w := range words {
				if args[i] != w {
					match = false
					break
				}
			}
			if match {
				best, rest, bestLen = c, args[len(words):], len(words)
			}
		}
	}
	return best, rest
}

// Usage writes the program's command list.
func (p *Program) Usage(w io.Writer) {
	fmt.Fprintf(w, "%s: %s\n\nUsage:\n", p.Name, p.Title)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, c := range p.Commands {
		fmt.Fprintf(tw, "  %s %s\t%s\n", p.Name, c.Name, c.Summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun %s help COMMAND (or %[1]s COMMAND --help) for a command's flags and an example.\n", p.Name)
}

// Run dispatches args to the command they name. `help`, `-h` and
// `--help` print the command list, `help CMD` a command's help.
func (p *Program) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		p.Usage(stderr)
		return Usagef("missing command")
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) == 1 {
			p.Usage(stdout)
			return nil
		}
		c, rest := p.lookup(args[1:])
		if c == nil || len(rest) > 0 {
			return p.unknown(args[1:])
		}
		err := c.Run(ctx, &Call{Prog: p.Name, Cmd: c, Args: []string{"--help"}, Stdout: stdout, Stderr: stderr})
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	c, rest := p.lookup(args)
	if c == nil {
		return p.unknown(args)
	}
	err := c.Run(ctx, &Call{Prog: p.Name, Cmd: c, Args: rest, Stdout: stdout, Stderr: stderr})
	var ue *UsageError
	if errors.As(err, &ue) && ue.Cmd == "" {
		ue.Cmd = c.Name
	}
	return err
}

// unknown explains a command line that names no command: an unknown
// word, or a group ("ticket") missing its subcommand.
func (p *Program) unknown(args []string) error {
	var subs []string
	for _, c := range p.Commands {
		words := strings.Fields(c.Name)
		if len(words) > 1 && words[0] == args[0] {
			subs = append(subs, words[1])
		}
	}
	if len(subs) > 0 {
		sort.Strings(subs)
		if len(args) == 1 {
			return Usagef("%s needs a subcommand: %s", args[0], strings.Join(subs, ", "))
		}
		return Usagef("unknown %s command %q (want %s)", args[0], args[1], strings.Join(subs, ", "))
	}
	return Usagef("unknown command %q", args[0])
}
