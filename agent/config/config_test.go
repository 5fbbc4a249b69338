// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/policy"
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
		{name: "unknown top key", yaml: "relya: r\n", wantErr: `config: line 1: unknown key "relya" (known: audit, hub, log, policy, relay, remote-outlets, tcp-inlet, tcp-outlet, update)`},
		{name: "duplicate key", yaml: "relay: a\nrelay: b\n", wantErr: `config: line 2: key "relay" given twice`},
		{name: "bad policy", yaml: "tcp-outlet:\n  from: a\n  to: a:1\n  allow: a and (b\n", wantErr: `config: line 2: tcp-outlet "a": allow: policy: at offset`},
		{name: "bad resource type", yaml: "policy:\n  resource-type: relay\n  allow: x\n", wantErr: `resource-type "relay"`},
		{name: "bad port", yaml: "tcp-outlet:\n  from: a\n  to: a.local:99999\n", wantErr: "port must be 1-65535"},
		{name: "bad outlet name", yaml: "tcp-outlet:\n  from: a b\n  to: a:1\n", wantErr: "outlet name"},
		{name: "duplicate outlet", yaml: "tcp-outlet:\n  - {from: a, to: a:1}\n  - {from: a, to: b:1}\n", wantErr: `tcp-outlet "a" defined twice`},
		{name: "inlet listen name", yaml: "tcp-inlet:\n  from: example.com:80\n  via: r\n  to: o\n", wantErr: "listen on an IP address"},
		{name: "bad allow entry", yaml: "remote-outlets:\n  allow: [\"nope\"]\n", wantErr: "want HOST:PORT"},
		{name: "remote entry with its own allow", yaml: "remote-outlets:\n  allow:\n    - github.local:80\n    - to: \"*.acme.internal:443\"\n      allow: tier = gold\n",
			check: func(c *Config) bool {
				e := c.RemoteOutlets.Entries
				return len(e) == 2 && e[0].AllowExpr == nil && e[1].To == "*.acme.internal:443" && e[1].AllowExpr.String() == "tier = gold" &&
					len(c.RemoteOutlets.Allow) == 2 && c.RemoteOutlets.Allow[1] == "*.acme.internal:443"
			}},
		{name: "remote entry bad allow", yaml: "remote-outlets:\n  allow:\n    - to: a.local:1\n      allow: a and (\n", wantErr: "config: line 3: remote-outlets allow a.local:1: allow: policy: at offset"},
		{name: "remote entry without to", yaml: "remote-outlets:\n  allow:\n    - allow: x\n", wantErr: "config: line 3: remote-outlets allow: an entry with keys needs to: HOST:PORT"},
		{name: "remote entry unknown key", yaml: "remote-outlets:\n  allow:\n    - {to: a.local:1, policy: x}\n", wantErr: `unknown key "policy"`},
		{name: "remote entry bad destination", yaml: "remote-outlets:\n  allow:\n    - {to: nope, allow: x}\n", wantErr: "want HOST:PORT"},
		{name: "injection stays a value", yaml: "relay: $R\n", wantErr: "relay \"x\\ny: z\""},
		{name: "not a mapping", yaml: "- a\n", wantErr: "must be a mapping"},
		{name: "audit default", yaml: "relay: r\n", check: func(c *Config) bool { return c.Audit.Forward == "" }},
		{name: "hub default", yaml: "relay: r\n", check: func(c *Config) bool { return c.Hub == Hub{Proxy: ProxyFromEnvironment} }},
		{name: "hub proxy", yaml: "hub:\n  proxy: http://proxy.acme:3128\n  proxy-auth-file: /etc/initech/proxy-auth\n  no-proxy: .internal\n",
			check: func(c *Config) bool {
				return c.Hub == Hub{Proxy: "http://proxy.acme:3128", ProxyAuthFile: "/etc/initech/proxy-auth", NoProxy: ".internal"}
			}},
		{name: "hub tls", yaml: "hub: {proxy: direct, tls: true, server-name: hub.example.com, ca-file: /etc/ssl/acme.pem}\n",
			check: func(c *Config) bool {
				return c.Hub == Hub{Proxy: ProxyDirect, TLS: true, ServerName: "hub.example.com", CAFile: "/etc/ssl/acme.pem"}
			}},
		{name: "hub proxy with password", yaml: "hub:\n  proxy: http://bob:hunter2@proxy:3128\n", wantErr: "config: line 2: hub proxy: the URL holds credentials: put user:password in a proxy-auth-file instead"},
		{name: "hub proxy socks", yaml: "hub:\n  proxy: socks5://proxy:1080\n", wantErr: "only http:// proxies are supported, not socks5://"},
		{name: "hub proxy path", yaml: "hub:\n  proxy: http://proxy:3128/x\n", wantErr: "a proxy URL has no path or query"},
		{name: "hub tls not bool", yaml: "hub:\n  tls: maybe\n", wantErr: `config: line 2: hub tls "maybe": want true or false`},
		{name: "hub ca without tls", yaml: "hub:\n  ca-file: /x.pem\n", wantErr: "hub ca-file is set but tls is not"},
		{name: "hub server name without tls", yaml: "hub:\n  server-name: h\n", wantErr: "hub server-name is set but tls is not"},
		{name: "hub auth without proxy", yaml: "hub:\n  proxy: direct\n  proxy-auth-file: /x\n", wantErr: "hub proxy-auth-file is set but proxy is direct"},
		{name: "hub unknown key", yaml: "hub:\n  proxi: x\n", wantErr: `unknown key "proxi" in hub`},
		{name: "audit none", yaml: "audit:\n  forward: none\n", check: func(c *Config) bool { return c.Audit.Forward == "" }},
		{name: "audit journal", yaml: "audit:\n  forward: journal\n", check: func(c *Config) bool { return c.Audit.Forward == ForwardJournal }},
		{name: "audit syslog", yaml: "audit: {forward: syslog}\n", check: func(c *Config) bool { return c.Audit.Forward == ForwardSyslog }},
		{name: "audit eventlog", yaml: "audit: {forward: eventlog}\n", check: func(c *Config) bool { return c.Audit.Forward == ForwardEventLog }},
		{name: "audit bad forward", yaml: "relay: r\naudit:\n  forward: splunk\n", wantErr: `config: line 3: audit forward "splunk": want journal, syslog, eventlog or none`},
		{name: "audit unknown key", yaml: "audit:\n  forwrd: journal\n", wantErr: `config: line 2: unknown key "forwrd" in audit (known: forward)`},
		{name: "audit not a mapping", yaml: "audit: journal\n", wantErr: "audit must be a mapping of keys (known: forward)"},
		{name: "window", yaml: "update:\n  window: Sat 02:00-04:00\n", check: func(c *Config) bool {
			w := c.Update.MaintenanceWindow
			return c.Update.Window == "Sat 02:00-04:00" && w != nil && !w.AnyDay && w.Day == time.Saturday && w.Start == 120 && w.End == 240
		}},
		{name: "window any day", yaml: "update: {window: '22:00-01:30'}\n", check: func(c *Config) bool {
			w := c.Update.MaintenanceWindow
			return w != nil && w.AnyDay && w.Start == 22*60 && w.End == 90
		}},
		{name: "no window", yaml: "update: {auto: true}\n", check: func(c *Config) bool { return c.Update.MaintenanceWindow == nil }},
		{name: "bad window day", yaml: "relay: r\nupdate:\n  window: Caturday 02:00-04:00\n", wantErr: `config: line 3: update window "Caturday 02:00-04:00": unknown day "Caturday"`},
		{name: "bad window time", yaml: "update:\n  window: 25:00-26:00\n", wantErr: `config: line 2: update window "25:00-26:00": bad time "25:00"`},
		{name: "bad window form", yaml: "update:\n  window: weekends\n", wantErr: `config: line 2: update window "weekends": want [DAY] HH:MM-HH:MM`},
		{name: "empty window", yaml: "update:\n  window: 02:00-02:00\n", wantErr: "the window is empty"},
		{name: "bad pin", yaml: "update:\n  pin: latest\n", wantErr: `config: line 2: update pin "latest"`},
		{name: "pin", yaml: "update:\n  pin: v1.4.0\n", check: func(c *Config) bool { return c.Update.Pin == "v1.4.0" }},
		{name: "bad channel", yaml: "update:\n  channel: Stable!\n", wantErr: `config: line 2: update channel "Stable!"`},
		{name: "check too often", yaml: "update:\n  check-every: 1s\n", wantErr: `config: line 2: update check-every "1s": at least 1m0s`},
		{name: "bad auto", yaml: "update:\n  auto: sometimes\n", wantErr: `config: line 2: update auto "sometimes": want true or false`},
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

func TestSources(t *testing.T) {
	file := []byte("relay: file-relay\nlog:\n  level: info\n  format: json\nupdate:\n  channel: stable\n")
	environ := []string{
		"TESTX_LOG_LEVEL=warn", "TESTX_UPDATE_CHECK_EVERY=2h", "TESTX_RELAY=env-relay",
		// The brand's other variables are not config: ignored.
		"TESTX_STATE_DIR=/x", "TESTX_UPDATE_LAUNCHER=1", "TESTX_BOGUS=1", "OTHER_LOG_LEVEL=error",
	}
	tests := []struct {
		name    string
		opts    LoadOptions
		wantErr string
		check   func(*Config) bool
	}{
		{name: "file only", check: func(c *Config) bool {
			return c.Relay == "file-relay" && c.Log.Level == "info" && c.Log.Format == "json" && c.Update.CheckEvery == 0
		}},
		{name: "environment over the file", opts: LoadOptions{EnvPrefix: "TESTX_", Environ: environ}, check: func(c *Config) bool {
			return c.Relay == "env-relay" && c.Log.Level == "warn" && c.Log.Format == "json" && c.Update.CheckEvery == 2*time.Hour && c.Update.Channel == "stable"
		}},
		{name: "no environ, no environment", opts: LoadOptions{EnvPrefix: "TESTX_"}, check: func(c *Config) bool { return c.Log.Level == "info" }},
		{name: "flags over the environment", opts: LoadOptions{EnvPrefix: "TESTX_", Environ: environ,
			Flags: []Override{{Key: "log.level", Value: "debug", Source: "--log-level"}}},
			check: func(c *Config) bool { return c.Log.Level == "debug" && c.Relay == "env-relay" }},
		{name: "bad environment value names the variable", opts: LoadOptions{EnvPrefix: "TESTX_", Environ: []string{"TESTX_UPDATE_WINDOW=Funday 01:00-02:00"}},
			wantErr: `config: environment variable TESTX_UPDATE_WINDOW: update window "Funday 01:00-02:00": unknown day`},
		{name: "bad flag value names the flag", opts: LoadOptions{Flags: []Override{{Key: "log.format", Value: "xml", Source: "--log-format"}}},
			wantErr: `config: --log-format: log format "xml": want text or json`},
		{name: "flag for a list key", opts: LoadOptions{Flags: []Override{{Key: "tcp-inlet", Value: "x", Source: "--inlet"}}},
			wantErr: `not a single-valued config key`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadWith(file, nil, tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
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
	// A file error still names its line when the environment is read.
	if _, err := LoadWith([]byte("log:\n  level: loud\n"), nil, LoadOptions{EnvPrefix: "TESTX_", Environ: []string{"TESTX_UPDATE_AUTO=true"}}); err == nil ||
		err.Error() != `config: line 2: log level "loud": want debug, info, warn or error` {
		t.Errorf("file error: %v", err)
	}
	// The environment alone, without a file.
	if c, err := LoadWith(nil, nil, LoadOptions{EnvPrefix: "TESTX_", Environ: []string{"TESTX_LOG_FORMAT=json"}}); err != nil || c.Log.Format != "json" {
		t.Errorf("environment without a file: %+v %v", c, err)
	}
}

func TestLoadFileNamesOnlyTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(path, []byte("update:\n  window: nope\n"), 0o600)
	if _, err := LoadFile(path, nil); err == nil || !strings.HasPrefix(err.Error(), path+": config: line 2: update window") {
		t.Errorf("file error: %v", err)
	}
	os.WriteFile(path, []byte("relay: r\n"), 0o600)
	_, err := LoadFileWith(path, nil, LoadOptions{EnvPrefix: "X_", Environ: []string{"X_LOG_LEVEL=loud"}})
	if err == nil || err.Error() != `config: environment variable X_LOG_LEVEL: log level "loud": want debug, info, warn or error` {
		t.Errorf("environment error: %v", err)
	}
}

func TestEnvNames(t *testing.T) {
	m := EnvNames("INITECH_")
	for name, key := range map[string]string{
		"INITECH_RELAY": "relay", "INITECH_LOG_LEVEL": "log.level", "INITECH_UPDATE_CHECK_EVERY": "update.check-every",
		"INITECH_UPDATE_WINDOW": "update.window", "INITECH_AUDIT_FORWARD": "audit.forward",
	} {
		if m[name] != key {
			t.Errorf("%s sets %q, want %q", name, m[name], key)
		}
	}
	for name := range m {
		for _, k := range []string{"TCP_", "POLICY", "REMOTE_OUTLETS"} {
			if strings.HasPrefix(name, "INITECH_"+k) {
				t.Errorf("%s: list keys are not set from the environment", name)
			}
		}
	}
}

func TestWindow(t *testing.T) {
	at := func(day time.Weekday, hhmm string) time.Time {
		tm, _ := time.Parse("15:04", hhmm)
		// 2026-11-29 is a Sunday.
		return time.Date(2026, 11, 29+int(day), tm.Hour(), tm.Minute(), 0, 0, time.Local)
	}
	tests := []struct {
		window string
		t      time.Time
		in     bool
	}{
		{"Sat 02:00-04:00", at(time.Saturday, "02:00"), true},
		{"Sat 02:00-04:00", at(time.Saturday, "03:59"), true},
		{"Sat 02:00-04:00", at(time.Saturday, "04:00"), false},
		{"Sat 02:00-04:00", at(time.Friday, "03:00"), false},
		{"saturday 02:00-04:00", at(time.Saturday, "03:00"), true},
		{"22:00-02:00", at(time.Monday, "23:00"), true},
		{"22:00-02:00", at(time.Monday, "01:00"), true},
		{"22:00-02:00", at(time.Monday, "12:00"), false},
		// Over midnight: the window belongs to the day it starts on.
		{"Sat 23:00-01:00", at(time.Saturday, "23:30"), true},
		{"Sat 23:00-01:00", at(time.Sunday, "00:30"), true},
		{"Sat 23:00-01:00", at(time.Saturday, "00:30"), false},
	}
	for _, tt := range tests {
		w, err := ParseWindow(tt.window)
		if err != nil {
			t.Fatalf("%q: %v", tt.window, err)
		}
		if got := w.Contains(tt.t); got != tt.in {
			t.Errorf("%q contains %s = %v, want %v", tt.window, tt.t.Format("Mon 15:04"), got, tt.in)
		}
	}
	for _, bad := range []string{"Satur 02:00-04:00", "Sa 02:00-04:00", "Sat 2-4", "Sat 02:00", "Sat Sun 02:00-04:00", "02:00-24:00", "02:60-03:00"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("ParseWindow(%q) accepted", bad)
		}
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

// checkConfig checks what Load promises of a config it accepts: every
// name, address and expression is valid (validating it again changes
// nothing), names are unique, the allow expressions are parsed from the
// allow text, and the agent-only keys hold known values.
func checkConfig(t *testing.T, c *Config) {
	t.Helper()
	if c.Relay != "" && ValidName(c.Relay) != nil {
		t.Fatalf("accepted relay %q", c.Relay)
	}
	sameExpr := func(what, allow string, e policy.Expr) {
		if (allow == "") != (e == nil) {
			t.Fatalf("%s: allow %q parsed as %v", what, allow, e)
		}
		if e != nil {
			p, err := policy.Parse(allow)
			if err != nil || p.String() != e.String() {
				t.Fatalf("%s: allow %q parsed as %q (%v)", what, allow, e, err)
			}
		}
	}
	seen := map[string]bool{}
	for _, o := range c.Outlets {
		again := Outlet{From: o.From, To: o.To, Allow: o.Allow}
		if err := ValidateOutlet(&again); err != nil || seen[o.From] {
			t.Fatalf("accepted outlet %+v (%v, duplicate %v)", o, err, seen[o.From])
		}
		seen[o.From] = true
		sameExpr("tcp-outlet "+o.From, o.Allow, o.AllowExpr)
	}
	seen = map[string]bool{}
	for _, in := range c.Inlets {
		again := Inlet{From: in.From, Via: in.Via, To: in.To, Allow: in.Allow}
		if err := ValidateInlet(&again); err != nil || seen[in.From] {
			t.Fatalf("accepted inlet %+v (%v, duplicate %v)", in, err, seen[in.From])
		}
		seen[in.From] = true
		sameExpr("tcp-inlet "+in.From, in.Allow, in.AllowExpr)
	}
	seen = map[string]bool{}
	for _, p := range c.Policies {
		if !policy.ValidResourceType(p.ResourceType) || seen[p.ResourceType] || p.AllowExpr == nil {
			t.Fatalf("accepted policy %+v", p)
		}
		seen[p.ResourceType] = true
		sameExpr("policy "+p.ResourceType, p.Allow, p.AllowExpr)
	}
	if c.RemoteOutlets != nil {
		if len(c.RemoteOutlets.Allow) != len(c.RemoteOutlets.Entries) {
			t.Fatalf("remote-outlets: %d destinations, %d entries", len(c.RemoteOutlets.Allow), len(c.RemoteOutlets.Entries))
		}
		for i, a := range c.RemoteOutlets.Allow {
			if err := ValidateAllowEntry(a); err != nil {
				t.Fatalf("accepted remote-outlets entry %q: %v", a, err)
			}
			if e := c.RemoteOutlets.Entries[i]; e.To != a || (e.Allow == "") != (e.AllowExpr == nil) {
				t.Fatalf("remote-outlets entry %d: %+v for %q", i, e, a)
			}
		}
	}
	if c.Update.CheckEvery < 0 {
		t.Fatalf("accepted update check-every %s", c.Update.CheckEvery)
	}
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		t.Fatalf("accepted log level %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "", "text", "json":
	default:
		t.Fatalf("accepted log format %q", c.Log.Format)
	}
	switch c.Audit.Forward {
	case "", ForwardJournal, ForwardSyslog, ForwardEventLog:
	default:
		t.Fatalf("accepted audit forward %q", c.Audit.Forward)
	}
}

// FuzzLoad: Load returns a config or a one-line error naming the config,
// never both; an accepted config keeps Load's promises (checkConfig) and
// loading the same bytes again gives the same config.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"saas.yaml", "customer.yaml"} {
		b, _ := os.ReadFile(filepath.Join("..", "..", "examples", name))
		f.Add(b)
	}
	f.Add([]byte("tcp-outlet: [{from: a, to: 'b:1', allow: 'x or (y and not z)'}]"))
	f.Add([]byte("a: &x [1]\nb: *x\n"))
	f.Add([]byte("tcp-inlet:\n  - {from: '127.0.0.1:0', via: r, to: o, allow: a}\n  - {from: '[::1]:7', via: r, to: o}\n"))
	f.Add([]byte("policy: {resource-type: tcp-outlet, allow: 'tier != trial'}\nremote-outlets: {allow: ['*.acme.internal:443', '10.0.0.0/8:*']}\n"))
	f.Add([]byte("remote-outlets:\n  allow:\n    - a.local:1\n    - {to: '10.0.0.0/8:*', allow: 'x and not y'}\n"))
	f.Add([]byte("update: {auto: yes, check-every: 6h, channel: beta, pin: v1.2.3, window: '02:00-04:00'}\nlog: {level: debug, format: json}\naudit: {forward: syslog}\n"))
	f.Add([]byte("relay: ${RELAY}\ntcp-outlet: {from: $$x, to: $GITHUB_ADDRESS}\n"))
	f.Add([]byte("relay: [a, b]\n"))
	f.Add([]byte("\t- x"))
	vars := map[string]string{"RELAY": "r", "GITHUB_ADDRESS": "g:1", "SAAS_ADDRESS": "s:1"}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Load(b, vars)
		if err != nil {
			if c != nil {
				t.Fatalf("Load returned %+v with error %v", c, err)
			}
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("error %q does not name the config", err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if c == nil {
			t.Fatal("nil config without error")
		}
		checkConfig(t, c)
		again, err := Load(b, vars)
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("loading again gave %+v, %v; first %+v", again, err, c)
		}
	})
}

// FuzzVariables: a --variable value is only ever a value. Substituted
// into a scalar it arrives byte for byte (never parsed as YAML, never
// interpolated again), or the config is refused with one line.
func FuzzVariables(f *testing.F) {
	f.Add("acme-relay", "github.local:80")
	f.Add("x\ny: z", "a:1\ntcp-inlet: {}")
	f.Add("$RELAY", "${TO}:80")
	f.Add("", "'quoted':1")
	f.Add("r", "[::1]:22")
	const doc = "relay: $R\ntcp-outlet:\n  from: o\n  to: ${TO}\n  allow: 'tag = \"$R\"'\n"
	f.Fuzz(func(t *testing.T, relay, to string) {
		c, err := Load([]byte(doc), map[string]string{"R": relay, "TO": to})
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		checkConfig(t, c)
		if c.Relay != relay || len(c.Outlets) != 1 || c.Outlets[0].To != to || c.Outlets[0].Allow != `tag = "`+relay+`"` {
			t.Fatalf("variables %q %q gave %+v", relay, to, c)
		}
	})
}

func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"Sat 02:00-04:00", "22:00-01:30", "", "Funday 1:00-2:00", "monday 00:00-23:59"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWindow(s)
		if err != nil || w == nil {
			return
		}
		if w.Start == w.End || w.Start < 0 || w.Start >= 24*60 || w.End < 0 || w.End >= 24*60 || w.Day < time.Sunday || w.Day > time.Saturday {
			t.Fatalf("ParseWindow(%q) = %+v", s, w)
		}
		// Inside the window at its start, outside a minute before it.
		start := time.Date(2026, 11, 29+int(w.Day), w.Start/60, w.Start%60, 0, 0, time.UTC)
		if !w.Contains(start) || w.Contains(start.Add(-time.Minute)) {
			t.Fatalf("%q: start %s not the window's first minute", s, start)
		}
	})
}
