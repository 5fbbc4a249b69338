// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/installer"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/cliutil"
	"github.com/edgeportal/connect/internal/cliutil/clitest"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/key"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){brand.AgentBinary(): func() { os.Exit(Main()) }})
}

// hubBin builds the hub once per test run: the scripts make their
// tickets with it, and start a relay and an authority where a row needs
// a running hub.
var hubBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "agent-cli-test-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, brand.HubBinary())
	cmd := exec.Command("go", "build", "-o", bin, "github.com/edgeportal/connect/cmd/hub")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", errors.New(string(b))
	}
	return bin, nil
})

func TestScripts(t *testing.T) {
	bin, err := hubBin()
	if err != nil {
		t.Fatalf("build the hub: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(bin)); clitest.Cleanup() })
	cmds := clitest.Cmds()
	cmds["editticket"] = editTicket
	cmds["await-node"] = awaitNode
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("PATH", filepath.Dir(bin)+string(os.PathListSeparator)+e.Getenv("PATH"))
			// Never the machine's service or its state.
			e.Setenv(brand.EnvPrefix()+"STATE_DIR", filepath.Join(e.WorkDir, "default-state"))
			e.Setenv(brand.EnvPrefix()+installer.InsecureFakeManagerEnv, filepath.Join(e.WorkDir, "services"))
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "hidden-exe":
				// The commands run from a copy of the test binary: is it
				// where the hardened unit cannot run it?
				p, err := exec.LookPath(brand.AgentBinary())
				if err != nil || runtime.GOOS != "linux" {
					return false, err
				}
				return installer.CheckExecutable(installer.Spec{Executable: p}) != nil, nil
			}
			return false, errors.New("unknown condition " + cond)
		},
		Cmds: cmds,
	})
}

// editTicket rewrites a ticket file with one field changed (the checksum
// recomputed, so only the authority's signature can tell):
//
//	editticket FILE hubs ADDR | relay-key | authority-key | authority-noise-key | command-key | release-key
//	editticket FILE damage     (one character changed: the checksum tells)
func editTicket(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: editticket FILE FIELD [VALUE]")
	}
	path := ts.MkAbs(args[0])
	text := strings.TrimSpace(ts.ReadFile(args[0]))
	if args[1] == "damage" {
		b := []byte(text)
		i := len(enroll.TicketPrefix) + 20
		b[i] = map[bool]byte{true: 'B', false: 'A'}[b[i] == 'A']
		ts.Check(os.WriteFile(path, append(b, '\n'), 0o600))
		return
	}
	body64, _, ok := strings.Cut(strings.TrimPrefix(text, enroll.TicketPrefix), ":")
	if !ok {
		ts.Fatalf("%s: not a ticket", args[0])
	}
	body, err := base64.RawURLEncoding.DecodeString(body64)
	ts.Check(err)
	var t enroll.Ticket
	ts.Check(wire.UnmarshalStrict(body, &t))
	node := func() [32]byte { return key.NewNodePrivate().Public().Raw32() }
	sig := func() [32]byte { return key.NewSigningPrivate().Public().Raw32() }
	switch args[1] {
	case "hubs":
		if len(args) != 3 {
			ts.Fatalf("usage: editticket FILE hubs ADDR")
		}
		t.Hubs = []string{args[2]}
	case "relay-key":
		t.HubKey = node()
	case "authority-key":
		t.AuthorityKey = sig()
	case "authority-noise-key":
		t.AuthorityNoiseKey = node()
	case "command-key":
		t.CommandKey = sig()
	case "release-key":
		t.ReleaseKey = sig()
	default:
		ts.Fatalf("editticket: unknown field %q", args[1])
	}
	out, err := t.Encode()
	ts.Check(err)
	ts.Check(os.WriteFile(path, []byte(out+"\n"), 0o600))
}

// awaitNode waits (at most clitest.AwaitTimeout) until the node on the
// state directory answers and is connected to its hub (and its relay, if
// it has one, is up).
func awaitNode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: await-node DIR")
	}
	dir := ts.MkAbs(args[0])
	deadline := time.Now().Add(clitest.AwaitTimeout)
	var last error
	for time.Now().Before(deadline) {
		if c, err := localapi.Dial(dir); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, err := c.Status(ctx)
			cancel()
			if err == nil && st.HubConnected && (st.Relay.Name == "" || st.Relay.Connected) {
				return
			}
			last = err
		} else {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	ts.Fatalf("the node in %s did not come up within %s (%v)", dir, clitest.AwaitTimeout, last)
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
				t.Errorf("help %s differs from --help (%v):\n%s\n---\n%s", cmd.Name, err, viaHelp.String(), out.String())
			}
			if errb.Len() > 0 {
				t.Errorf("help wrote to stderr: %q", errb.String())
			}
			text := out.String()
			if !strings.HasPrefix(text, "Usage: "+p.Name+" "+cmd.Name) || !strings.Contains(text, "\nExample:\n  "+p.Name+" ") {
				t.Errorf("help lacks usage or example:\n%s", text)
			}
			// Every flag the command defines is listed with a default.
			c := &cliutil.Call{Prog: p.Name, Cmd: cmd, Args: []string{"--help"}, Stdout: &strings.Builder{}, Stderr: &strings.Builder{}}
			cmd.Run(context.Background(), c)
			c.Flags().VisitAll(func(f *flag.Flag) {
				i := strings.Index(text, "  --"+f.Name)
				if i < 0 {
					t.Errorf("flag --%s is not in the help", f.Name)
					return
				}
				if rest := text[i:]; !strings.Contains(strings.SplitN(rest, "\n  --", 2)[0], "(default") {
					t.Errorf("flag --%s has no default in the help", f.Name)
				}
			})
		})
	}
}

// TestTicketChecksum: editticket's re-encoding is what a careful attacker
// would do; it must still parse up to the signature check (else the
// scripts would test the checksum, not the signature).
func TestTicketChecksum(t *testing.T) {
	a := &enroll.Authority{Project: "p", Vendor: "v", Hubs: []string{"127.0.0.1:1"}, HubKey: key.NewNodePrivate().Public(),
		Signer: key.NewSigningPrivate(), NoiseKey: key.NewNodePrivate().Public(), Store: putOnly{}}
	text, _, err := a.CreateTicket(context.Background(), enroll.TicketOptions{Uses: 1, ExpiresIn: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	body64, sum, _ := strings.Cut(strings.TrimPrefix(text, enroll.TicketPrefix), ":")
	body, _ := base64.RawURLEncoding.DecodeString(body64)
	s := sha256.Sum256(body)
	if hex.EncodeToString(s[:4]) != sum {
		t.Fatalf("the ticket's checksum is not what editticket assumes")
	}
}

type putOnly struct{ enroll.Store }

func (putOnly) PutTicket(context.Context, enroll.TicketRecord) error { return nil }
