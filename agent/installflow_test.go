// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/installer"
	"github.com/edgeportal/connect/wire/key"
)

// putOnly is the part of the authority's store that minting a ticket uses.
type putOnly struct{ enroll.Store }

func (putOnly) PutTicket(context.Context, enroll.TicketRecord) error { return nil }

// testTicket mints a ticket for a relay at hub (nothing listens there) and
// writes it to dir/name.
func testTicket(t *testing.T, dir, name, hub string, o enroll.TicketOptions) string {
	t.Helper()
	a := &enroll.Authority{Project: "p1", Vendor: "Initech", Hubs: []string{hub}, HubKey: key.NewNodePrivate().Public(),
		Signer: key.NewSigningPrivate(), NoiseKey: key.NewNodePrivate().Public(), Store: putOnly{}}
	if o.Uses == 0 {
		o.Uses = 1
	}
	if o.ExpiresIn == 0 {
		o.ExpiresIn = time.Hour
	}
	text, _, err := a.CreateTicket(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// unreachable is a loopback address where nothing listens.
func unreachable(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestInstallRefusals(t *testing.T) {
	t.Setenv("INITECH_"+installer.InsecureFakeManagerEnv, t.TempDir())
	tmp := t.TempDir()
	hub := unreachable(t)
	good := testTicket(t, tmp, "good.ticket", hub, enroll.TicketOptions{Relay: "acme-relay"})
	expired := testTicket(t, tmp, "expired.ticket", hub, enroll.TicketOptions{ExpiresIn: time.Second})
	b, _ := os.ReadFile(good)
	damaged := filepath.Join(tmp, "damaged.ticket")
	b = bytes.Clone(b)
	// Another base64url character: the checksum catches it.
	if b[40] == 'A' {
		b[40] = 'B'
	} else {
		b[40] = 'A'
	}
	os.WriteFile(damaged, b, 0o600)
	write := func(name, data string) string {
		p := filepath.Join(tmp, name)
		os.WriteFile(p, []byte(data), 0o600)
		return p
	}
	badCfg := write("bad.yaml", "relay: acme-relay\ntcp-outlet:\n  from: github\n  targt: x\n")
	wrongRelay := write("wrong.yaml", "relay: other-relay\n")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyCfg := write("busy.yaml", "tcp-inlet:\n  from: "+busy.Addr().String()+"\n  via: saas-relay\n  to: saas\n")
	aFile := write("a-file", "x")
	time.Sleep(1100 * time.Millisecond) // expired is now

	state := filepath.Join(tmp, "state")
	userSpec := installer.Spec{Name: "initech-agent", StateDir: state, User: true, Executable: "/usr/local/bin/initech-agent"}
	tests := []struct {
		name  string
		o     InstallOptions
		field string
		want  string
		check error // errors.Is target, if any
	}{
		{name: "no ticket", o: InstallOptions{}, field: FieldTicket, check: ErrNoTicket},
		{name: "variables without config", o: InstallOptions{TicketFile: good, Variables: map[string]string{"A": "b"}}, field: FieldVariables, check: ErrVariablesWithoutConfig},
		{name: "missing ticket file", o: InstallOptions{TicketFile: filepath.Join(tmp, "nope")}, field: FieldTicket, want: "no such file"},
		{name: "damaged ticket", o: InstallOptions{TicketFile: damaged}, field: FieldTicket, want: "ticket checksum"},
		{name: "damaged ticket, dry run", o: InstallOptions{TicketFile: damaged, DryRun: true}, field: FieldTicket, want: "ticket checksum"},
		{name: "expired ticket", o: InstallOptions{TicketFile: expired}, field: FieldTicket, want: "expired at"},
		{name: "expired ticket, dry run", o: InstallOptions{TicketFile: expired, DryRun: true}, field: FieldTicket, want: "expired at"},
		{name: "unknown config key", o: InstallOptions{TicketFile: good, ConfigFile: badCfg}, field: FieldConfig, want: `line 4: unknown key "targt"`},
		{name: "relay not granted", o: InstallOptions{TicketFile: good, ConfigFile: wrongRelay}, field: FieldTicket, want: `relay name "other-relay" refused`},
		{name: "inlet port in use", o: InstallOptions{TicketFile: good, ConfigFile: busyCfg}, field: FieldConfig, want: "cannot listen"},
		{name: "state dir is a file", o: InstallOptions{TicketFile: good, Spec: installer.Spec{StateDir: aFile, User: true}}, field: FieldStateDir, want: "is a file, not a directory"},
		{name: "unreachable hub", o: InstallOptions{TicketFile: good}, field: FieldHub},
		{name: "unreachable hub, dry run", o: InstallOptions{TicketFile: good, DryRun: true}, field: FieldHub},
		{name: "reconfigure nothing", o: InstallOptions{Reconfigure: true}, field: FieldStateDir, check: ErrNotInstalled},
	}
	if runtime.GOOS == "linux" {
		tests = append(tests, struct {
			name  string
			o     InstallOptions
			field string
			want  string
			check error
		}{name: "binary under /tmp", o: InstallOptions{TicketFile: good, Spec: installer.Spec{Name: "initech-agent", StateDir: state, Executable: "/tmp/initech-agent"}},
			field: FieldExecutable, check: installer.ErrHiddenExecutable})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.o.Spec.StateDir == "" {
				tt.o.Spec = userSpec
			}
			var out bytes.Buffer
			tt.o.Progress = &out
			res, err := Install(context.Background(), tt.o)
			var ie *InstallError
			if !errors.As(err, &ie) {
				t.Fatalf("Install = %+v, %v; want an *InstallError", res, err)
			}
			if ie.Field != tt.field || !strings.Contains(err.Error(), tt.want) || tt.check != nil && !errors.Is(err, tt.check) {
				t.Errorf("error %q (field %q), want field %q saying %q", err, ie.Field, tt.field, tt.want)
			}
			if strings.Contains(err.Error(), "--") {
				t.Errorf("a library error names a flag: %q", err)
			}
			if _, err := os.Stat(state); err == nil {
				t.Errorf("a refused install left %s behind", state)
			}
			if out.Len() > 0 {
				t.Errorf("a refused install reported progress: %q", out.String())
			}
		})
	}
}

func TestInstallDryRunIntoRoot(t *testing.T) {
	tmp := t.TempDir()
	tk := testTicket(t, tmp, "t.ticket", unreachable(t), enroll.TicketOptions{})
	root := filepath.Join(tmp, "root")
	spec, err := installer.NewSpec("/usr/local/bin/initech-agent", false, "", root)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := Install(context.Background(), InstallOptions{Spec: spec, TicketFile: tk, DryRun: true, Progress: &out})
	if err != nil || !res.DryRun {
		t.Fatalf("dry run into a root (no preflight: it contacts nobody): %+v %v", res, err)
	}
	if !strings.Contains(out.String(), "(secret, not shown)") || strings.Contains(out.String(), "ticket-v1:") {
		t.Errorf("plan:\n%s", out.String())
	}
	if _, err := os.Stat(root); err == nil {
		t.Error("a dry run wrote files")
	}
}

func TestInstallAlreadyInstalled(t *testing.T) {
	tmp := t.TempDir()
	state := filepath.Join(tmp, "state")
	os.Mkdir(state, 0o700)
	os.WriteFile(filepath.Join(state, statedir.Enrollment), []byte(`{"project":"p7"}`), 0o600)
	before, _ := os.ReadDir(state)
	// Even with a ticket that would be refused: it is not read.
	res, err := Install(context.Background(), InstallOptions{TicketFile: filepath.Join(tmp, "stale.ticket"),
		Spec: installer.Spec{Name: "initech-agent", StateDir: state, User: true}})
	if err != nil || !res.AlreadyInstalled || res.Project != "p7" {
		t.Fatalf("%+v %v", res, err)
	}
	if after, _ := os.ReadDir(state); len(after) != len(before) {
		t.Errorf("files changed: %v → %v", before, after)
	}
}

func TestCheckStart(t *testing.T) {
	tmp := t.TempDir()
	hub := unreachable(t)
	good := testTicket(t, tmp, "good.ticket", hub, enroll.TicketOptions{Relay: "r1"})
	expired := testTicket(t, tmp, "expired.ticket", hub, enroll.TicketOptions{ExpiresIn: time.Second})
	time.Sleep(1100 * time.Millisecond)
	busy, _ := net.Listen("tcp", "127.0.0.1:0")
	defer busy.Close()
	cfg, err := config.Load([]byte("relay: r1\ntcp-inlet: {from: '"+busy.Addr().String()+"', via: x, to: y}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(tmp, "fresh")
	if err := CheckStart(fresh, good, nil); err != nil {
		t.Errorf("good ticket: %v", err)
	}
	if err := CheckStart(fresh, expired, nil); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired ticket: %v", err)
	}
	if err := CheckStart(fresh, good, cfg); err == nil || !strings.Contains(err.Error(), "cannot listen") {
		t.Errorf("busy inlet: %v", err)
	}
	// An enrolled node does not read its ticket.
	enrolled := filepath.Join(tmp, "enrolled")
	os.Mkdir(enrolled, 0o700)
	os.WriteFile(filepath.Join(enrolled, statedir.Enrollment), []byte(`{}`), 0o600)
	if err := CheckStart(enrolled, expired, nil); err != nil {
		t.Errorf("enrolled: %v", err)
	}
	// The ticket an install placed counts too.
	placed := filepath.Join(tmp, "placed")
	os.Mkdir(placed, 0o700)
	b, _ := os.ReadFile(expired)
	os.WriteFile(filepath.Join(placed, statedir.Ticket), b, 0o600)
	if err := CheckStart(placed, "", nil); err == nil {
		t.Error("an expired installed ticket passed")
	}
	if _, err := os.Stat(fresh); err == nil {
		t.Error("the check created the state directory")
	}
	// Another node answers on the state directory's socket.
	running := filepath.Join(tmp, "running")
	os.Mkdir(running, 0o700)
	ln, err := net.Listen("unix", filepath.Join(running, statedir.Socket))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := CheckStart(running, "", nil); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("running node: %v", err)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	env := config.LoadOptions{EnvPrefix: "INITECH_", Environ: []string{"INITECH_LOG_LEVEL=debug"}}
	// No file at all: the environment still applies.
	c, err := LoadConfig(dir, "", nil, env)
	if err != nil || c == nil || c.Log.Level != "debug" {
		t.Fatalf("no file: %+v %v", c, err)
	}
	if _, err := LoadConfig(dir, "", map[string]string{"A": "1"}, env); !errors.Is(err, ErrVariablesWithoutConfig) {
		t.Errorf("variables without a file: %v", err)
	}
	// The installed one with its saved variables; given ones win.
	os.WriteFile(filepath.Join(dir, statedir.Config), []byte("relay: $R\nlog: {level: warn, format: json}\n"), 0o600)
	os.WriteFile(filepath.Join(dir, statedir.Variables), []byte(`{"R":"saved-relay"}`), 0o600)
	c, err = LoadConfig(dir, "", nil, env)
	if err != nil || c.Relay != "saved-relay" || c.Log.Level != "debug" || c.Log.Format != "json" {
		t.Fatalf("installed: %+v %v", c, err)
	}
	c, err = LoadConfig(dir, "", map[string]string{"R": "given-relay"}, config.LoadOptions{})
	if err != nil || c.Relay != "given-relay" || c.Log.Level != "warn" {
		t.Fatalf("given variables: %+v %v", c, err)
	}
	// An explicit file wins over the installed one.
	other := filepath.Join(t.TempDir(), "other.yaml")
	os.WriteFile(other, []byte("relay: explicit\n"), 0o600)
	if c, err = LoadConfig(dir, other, nil, config.LoadOptions{}); err != nil || c.Relay != "explicit" {
		t.Fatalf("explicit: %+v %v", c, err)
	}
}

func TestAttrsLogValue(t *testing.T) {
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("enrolled", "attributes", attrsValue{"z": "1", "a": "true"})
	if !strings.Contains(b.String(), `attributes="a=true,z=1"`) || strings.Contains(b.String(), "map[") {
		t.Errorf("log line: %s", b.String())
	}
}
