// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func example(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExamples(t *testing.T) {
	c, err := Load(example(t, "saas.yaml"), map[string]string{"SAAS_ADDRESS": "127.0.0.1:9001"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Relay != "saas-relay" || len(c.Outlets) != 1 || c.Outlets[0].From != "saas" || c.Outlets[0].To != "127.0.0.1:9001" ||
		c.Outlets[0].AllowExpr.String() != "inlet-to-saas" || c.DefaultAllow("tcp-inlet").String() != "outlet-from-saas" || c.DefaultAllow("tcp-outlet") != nil {
		t.Errorf("saas.yaml = %+v", c)
	}
	c, err = Load(example(t, "customer.yaml"), map[string]string{"RELAY": "acme-relay", "GITHUB_ADDRESS": "github.local:80"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Relay != "acme-relay" || len(c.Inlets) != 1 || c.Inlets[0].From != "127.0.0.1:7000" || c.Inlets[0].Via != "saas-relay" ||
		c.Inlets[0].To != "saas" || c.Outlets[0].To != "github.local:80" || c.DefaultAllow("tcp-outlet").String() != "inlet-from-saas" {
		t.Errorf("customer.yaml = %+v", c)
	}
	if _, err := Load(example(t, "customer.yaml"), map[string]string{"RELAY": "acme-relay"}); err == nil ||
		err.Error() != "config: line 11: variable $GITHUB_ADDRESS is not set (pass --variable GITHUB_ADDRESS=...)" {
		t.Errorf("missing variable: %v", err)
	}
	// The seed's own form, with no variables.
	seed := strings.Replace(string(example(t, "saas.yaml")), "$SAAS_ADDRESS", "http-server:80", 1)
	if _, err := Load([]byte(seed), nil); err != nil {
		t.Errorf("seed form: %v", err)
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name, yaml, wantErr string
		check               func(*Config) bool
	}{
		{name: "empty", yaml: "# nothing\n", check: func(c *Config) bool { return c.Relay == "" && c.RemoteOutlets == nil }},
		{name: "lists", yaml: "tcp-outlet:\n  - from: a\n    to: a.local:1\n  - from: b\n    to: '[::1]:2'\n    allow: x and not y\n",
			check: func(c *Config) bool { return len(c.Outlets) == 2 && c.Outlets[1].AllowExpr.String() == "x and not y" }},
		{name: "braced var and dollar", yaml: "tcp-outlet:\n  from: a\n  to: ${HOST}:80\n  allow: 'tag = \"$$x\"'\n",
			check: func(c *Config) bool {
				return c.Outlets[0].To == "h.local:80" && c.Outlets[0].AllowExpr.String() == "tag = \"$x\""
			}},
		{name: "remote outlets", yaml: "remote-outlets:\n  allow:\n    - github.local:80\n    - \"*.acme.internal:443\"\n    - 10.20.0.0/16:5432\n    - \"[fd00::/8]:*\"\n",
			check: func(c *Config) bool { return c.RemoteOutlets != nil && len(c.RemoteOutlets.Allow) == 4 }},
		{name: "remote outlets empty", yaml: "remote-outlets:\n  allow: []\n", check: func(c *Config) bool { return c.RemoteOutlets != nil && len(c.RemoteOutlets.Allow) == 0 }},
		{name: "update", yaml: "update:\n  auto: false\n  check-every: 6h\n  channel: stable\n", check: func(c *Config) bool {
			return c.Update.Auto != nil && !*c.Update.Auto && c.Update.CheckEvery.Hours() == 6
		}},
		{name: "unknown key", yaml: "relay: r\ntcp-outlet:\n  from: a\n  targt: x\n", wantErr: `config: line 4: unknown key "targt" in tcp-outlet (known: allow, from, to)`},
		{name: "unknown top key", yaml: "relya: r\n", wantErr: `config: line 1: unknown key "relya" (known: audit, log, policy, relay, remote-outlets, tcp-inlet, tcp-outlet, update)`},
		{name: "duplicate key", yaml: "relay: a\nrelay: b\n", wantErr: `config: line 2: key "relay" given twice`},
		{name: "bad policy", yaml: "tcp-outlet:\n  from: a\n  to: a:1\n  allow: a and (b\n", wantErr: `config: line 2: tcp-outlet "a": allow: policy: at offset`},
		{name: "bad resource type", yaml: "policy:\n  resource-type: relay\n  allow: x\n", wantErr: `resource-type "relay"`},
		{name: "bad port", yaml: "tcp-outlet:\n  from: a\n  to: a.local:99999\n", wantErr: "port must be 1-65535"},
		{name: "bad outlet name", yaml: "tcp-outlet:\n  from: a b\n  to: a:1\n", wantErr: "outlet name"},
		{name: "duplicate outlet", yaml: "tcp-outlet:\n  - {from: a, to: a:1}\n  - {from: a, to: b:1}\n", wantErr: `tcp-outlet "a" defined twice`},
		{name: "inlet listen name", yaml: "tcp-inlet:\n  from: example.com:80\n  via: r\n  to: o\n", wantErr: "listen on an IP address"},
		{name: "bad allow entry", yaml: "remote-outlets:\n  allow: [\"nope\"]\n", wantErr: "want HOST:PORT"},
		{name: "injection stays a value", yaml: "relay: $R\n", wantErr: "relay \"x\\ny: z\""},
		{name: "not a mapping", yaml: "- a\n", wantErr: "must be a mapping"},
		{name: "audit default", yaml: "relay: r\n", check: func(c *Config) bool { return c.Audit.Forward == "" }},
		{name: "audit none", yaml: "audit:\n  forward: none\n", check: func(c *Config) bool { return c.Audit.Forward == "" }},
		{name: "audit journal", yaml: "audit:\n  forward: journal\n", check: func(c *Config) bool { return c.Audit.Forward == ForwardJournal }},
		{name: "audit syslog", yaml: "audit: {forward: syslog}\n", check: func(c *Config) bool { return c.Audit.Forward == ForwardSyslog }},
		{name: "audit eventlog", yaml: "audit: {forward: eventlog}\n", check: func(c *Config) bool { return c.Audit.Forward == ForwardEventLog }},
		{name: "audit bad forward", yaml: "relay: r\naudit:\n  forward: splunk\n", wantErr: `config: line 3: audit forward "splunk": want journal, syslog, eventlog or none`},
		{name: "audit unknown key", yaml: "audit:\n  forwrd: journal\n", wantErr: `config: line 2: unknown key "forwrd" in audit (known: forward)`},
		{name: "audit not a mapping", yaml: "audit: journal\n", wantErr: "audit must be a mapping of keys (known: forward)"},
	}
	vars := map[string]string{"HOST": "h.local", "R": "x\ny: z"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load([]byte(tt.yaml), vars)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "\n") && tt.name != "injection stays a value" {
					t.Errorf("multi-line error %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("config = %+v", c)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	for _, s := range []string{"a", "github", "acme-relay", "x.y_z-1", strings.Repeat("a", MaxNameLen)} {
		if err := ValidName(s); err != nil {
			t.Errorf("ValidName(%q) = %v", s, err)
		}
	}
	// What a hostile peer sends as an outlet name: each is refused with
	// one short line that shows no raw control character.
	hostile := []string{"", "a b", "a/b", "a\nb", "evil\x1b[31mred", "\x00", "é", "a\u202eb",
		strings.Repeat("A", MaxNameLen+1), strings.Repeat("x\n", 8<<10), "outlet\nlevel=ERROR msg=forged"}
	for _, s := range hostile {
		err := ValidName(s)
		if err == nil {
			t.Errorf("ValidName(%.40q) accepted", s)
			continue
		}
		msg := err.Error()
		if strings.ContainsAny(msg, "\n\r\x00\x1b\u202e") || len(msg) > 200 {
			t.Errorf("ValidName(%.40q): error is not one short escaped line: %q", s, msg)
		}
	}
	if err := ValidName(strings.Repeat("x", 16<<10)); err == nil || !strings.Contains(err.Error(), "(16384 bytes)") {
		t.Errorf("long name: %v", err)
	}
	// The config uses the same rule.
	if _, err := Load([]byte("tcp-outlet:\n  from: "+strings.Repeat("a", MaxNameLen+1)+"\n  to: a:1\n"), nil); err == nil {
		t.Error("config accepted a name longer than MaxNameLen")
	}
}

func TestEnvOverride(t *testing.T) {
	t.Setenv("TESTX_LOG__LEVEL", "debug")
	t.Setenv("TESTX_BOGUS", "ignored")
	c, err := LoadWith([]byte("log:\n  level: info\n"), nil, LoadOptions{EnvPrefix: "TESTX_"})
	if err != nil || c.Log.Level != "debug" {
		t.Fatalf("env override: %+v %v", c, err)
	}
}

func TestParseVariables(t *testing.T) {
	m, err := ParseVariables([]string{"A=1", "B_2=x=y", "C="})
	if err != nil || m["A"] != "1" || m["B_2"] != "x=y" || m["C"] != "" {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range []string{"noequals", "1A=x", "A B=x"} {
		if _, err := ParseVariables([]string{bad}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func FuzzLoad(f *testing.F) {
	for _, name := range []string{"saas.yaml", "customer.yaml"} {
		b, _ := os.ReadFile(filepath.Join("..", "..", "examples", name))
		f.Add(b)
	}
	f.Add([]byte("tcp-outlet: [{from: a, to: 'b:1', allow: 'x or (y and not z)'}]"))
	f.Add([]byte("a: &x [1]\nb: *x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Load(b, map[string]string{"RELAY": "r", "GITHUB_ADDRESS": "g:1", "SAAS_ADDRESS": "s:1"})
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
	})
}
