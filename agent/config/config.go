// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package config loads a node's YAML config: the seed-compatible keys
// (relay, tcp-inlet, tcp-outlet, policy; single objects or lists) and the
// agent-only keys beside them (remote-outlets, update, log, audit, hub).
//
// Loading is strict and precise: the YAML is parsed into a node tree so
// every error names its line; unknown keys and duplicate keys are errors;
// `$NAME` and `${NAME}` in scalar values are interpolated from --variable
// values after parsing (so a value can never inject YAML structure), and an
// unset variable is an error naming it; allow expressions are parsed with
// the policy package when the config loads.
//
// # Sources
//
// The checked tree is loaded through koanf, which merges three sources,
// later ones winning: the file, then the environment, then flags
// (LoadOptions). The environment may set every single-valued key that is
// not in a list (relay, update.*, log.*, audit.*, hub.*), named by the brand's
// prefix, the section and the key in capitals with '_' for '-' and '.':
// INITECH_LOG_LEVEL, INITECH_UPDATE_CHECK_EVERY, INITECH_RELAY
// (EnvName). Every value is validated once merged, whatever its source,
// and an error names where the value came from: the file's line, the
// environment variable, or the flag.
//
// Imported by agent and cmd.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/v2"
	"go.yaml.in/yaml/v3"

	"github.com/edgeportal/connect/policy"
	"github.com/edgeportal/connect/wire/release"
)

// Config is a loaded, validated node config.
type Config struct {
	Relay         string
	Inlets        []Inlet
	Outlets       []Outlet
	Policies      []Policy
	RemoteOutlets *RemoteOutlets // nil: the vendor may not add outlets at all
	Update        Update
	Log           Log
	Audit         Audit
	Hub           Hub
}

// Hub is how the node reaches the hub (agent/egress): directly, or
// through an HTTP CONNECT proxy, as plain TCP or as TLS.
type Hub struct {
	// Proxy is ProxyFromEnvironment (HTTPS_PROXY and NO_PROXY, the
	// default when the key is absent), ProxyDirect (ignore them), or a
	// proxy URL http://host:port (never with credentials in it).
	Proxy string
	// ProxyAuthFile holds one line user:password for Basic proxy
	// authentication ("": none). Readable by the node's account only.
	ProxyAuthFile string
	// NoProxy lists hubs to dial directly (NO_PROXY's syntax).
	NoProxy string
	// TLS dials the hub as TLS (the hub serves --tls-cert): for networks
	// that pass only TLS to 443. The relay's pinned Noise key stays what
	// the node trusts.
	TLS bool
	// ServerName is the TLS server name ("": the hub address's host).
	ServerName string
	// CAFile is a PEM bundle of extra CAs for the outer TLS: a
	// TLS-inspecting proxy's CA, or a private CA of the hub.
	CAFile string
}

// Values of hub.proxy besides a URL.
const (
	ProxyFromEnvironment = "env"
	ProxyDirect          = "direct"
)

// Inlet listens on From and carries connections via a relay to an outlet.
type Inlet struct {
	From, Via, To, Allow string
	AllowExpr            policy.Expr // nil when Allow is empty
}

// Outlet is a named TCP target.
type Outlet struct {
	From, To, Allow string
	AllowExpr       policy.Expr
}

// Policy is the node's default allow for a resource type.
type Policy struct {
	ResourceType, Allow string
	AllowExpr           policy.Expr
}

// RemoteOutlets is the customer's allow-list for vendor-pushed outlets.
type RemoteOutlets struct {
	Allow   []string      // every entry's destination pattern, in order
	Entries []RemoteEntry // the same entries with their own policies
}

// RemoteEntry is one destination the vendor may add outlets to, and the
// customer's ceiling on who may use them: AllowExpr when given, else the
// node's tcp-outlet default (no default: nobody). A vendor outlet's
// effective policy is the vendor's allow AND that ceiling.
type RemoteEntry struct {
	To        string      // HOST:PORT, *.DOMAIN:PORT or CIDR:PORT
	Allow     string      // the entry's own allow, as written ("" = the default)
	AllowExpr policy.Expr // nil when Allow is empty
}

// Update configures self-update.
type Update struct {
	Auto       *bool
	Channel    string
	CheckEvery time.Duration
	Pin        string
	Window     string // as written; MaintenanceWindow is its parsed form
	// MaintenanceWindow is when scheduled checks may run (nil: any time).
	MaintenanceWindow *Window
}

// Log configures logging.
type Log struct {
	Level  string
	Format string
}

// Audit configures the audit log.
//
//	audit:
//	  forward: journal   # or syslog, eventlog, none (the default)
type Audit struct {
	// Forward names where each audit record also goes, as one JSON line,
	// so the customer keeps a copy the agent's account cannot rewrite:
	// ForwardJournal, ForwardSyslog, ForwardEventLog, or "" (none).
	Forward string
}

// Values of audit.forward (the same words as agent/command's Forward…).
const (
	ForwardNone     = "none"
	ForwardJournal  = "journal"
	ForwardSyslog   = "syslog"
	ForwardEventLog = "eventlog"
)

// DefaultAllow returns the default policy for a resource type, or nil.
func (c *Config) DefaultAllow(resourceType string) policy.Expr {
	if c == nil {
		return nil
	}
	for _, p := range c.Policies {
		if p.ResourceType == resourceType {
			return p.AllowExpr
		}
	}
	return nil
}

// LineError is a config error at a line of the file, or in a value from
// another source (an environment variable, a flag).
type LineError struct {
	Line   int    // in the file; 0 when the value came from elsewhere
	Source string // "environment variable INITECH_LOG_LEVEL", "--log-level"; "" for the file
	Msg    string
}

func (e *LineError) Error() string {
	switch {
	case e.Source != "":
		return "config: " + e.Source + ": " + e.Msg
	case e.Line > 0:
		return fmt.Sprintf("config: line %d: %s", e.Line, e.Msg)
	}
	return "config: " + e.Msg
}

// fromFile reports whether err concerns the file (not another source).
func fromFile(err error) bool {
	var le *LineError
	return !errors.As(err, &le) || le.Source == ""
}

type field struct {
	// "scalar", "object", "objects" (object or list of objects), "scalars"
	// (list), "entries" (list of scalars or objects with keys)
	kind string
	keys map[string]field
}

var (
	scalar = field{kind: "scalar"}
	schema = field{kind: "object", keys: map[string]field{
		"relay":      scalar,
		"tcp-inlet":  {kind: "objects", keys: map[string]field{"from": scalar, "via": scalar, "to": scalar, "allow": scalar}},
		"tcp-outlet": {kind: "objects", keys: map[string]field{"from": scalar, "to": scalar, "allow": scalar}},
		"policy":     {kind: "objects", keys: map[string]field{"resource-type": scalar, "allow": scalar}},
		"remote-outlets": {kind: "object", keys: map[string]field{
			"allow": {kind: "entries", keys: map[string]field{"to": scalar, "allow": scalar}},
		}},
		"update": {kind: "object", keys: map[string]field{"auto": scalar, "channel": scalar, "check-every": scalar, "pin": scalar, "window": scalar}},
		"log":    {kind: "object", keys: map[string]field{"level": scalar, "format": scalar}},
		"audit":  {kind: "object", keys: map[string]field{"forward": scalar}},
		"hub": {kind: "object", keys: map[string]field{"proxy": scalar, "proxy-auth-file": scalar, "no-proxy": scalar,
			"tls": scalar, "server-name": scalar, "ca-file": scalar}},
	}}
)

func knownKeys(f field) string {
	var ks []string
	for k := range f.keys {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

var varRE = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

func interpolate(s string, line int, vars map[string]string) (string, error) {
	var err error
	out := varRE.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		name := strings.Trim(m, "${}")
		v, ok := vars[name]
		if !ok && err == nil {
			err = &LineError{Line: line, Msg: fmt.Sprintf("variable $%s is not set (pass --variable %s=...)", name, name)}
		}
		return v
	})
	return out, err
}

type walker struct {
	vars    map[string]string
	lines   map[string]int    // koanf path → line in the file
	sources map[string]string // koanf path → the source that set it last, when not the file
}

// at returns a LineError for the value at koanf path p, naming its source.
func (w *walker) at(p, msg string) *LineError {
	if src, ok := w.sources[p]; ok {
		return &LineError{Source: src, Msg: msg}
	}
	return &LineError{Line: w.lines[p], Msg: msg}
}

// walk checks n against f, interpolates scalars and returns the plain value.
func (w *walker) walk(n *yaml.Node, f field, path, what string) (any, error) {
	if n.Kind == yaml.AliasNode {
		return nil, &LineError{Line: n.Line, Msg: fmt.Sprintf("%s: YAML aliases are not supported", what)}
	}
	w.lines[path] = n.Line
	switch f.kind {
	case "scalar":
		if n.Kind != yaml.ScalarNode {
			return nil, &LineError{Line: n.Line, Msg: fmt.Sprintf("%s must be a single value", what)}
		}
		if n.Tag == "!!null" {
			return "", nil
		}
		return interpolate(n.Value, n.Line, w.vars)
	case "scalars":
		if n.Kind != yaml.SequenceNode {
			return nil, &LineError{Line: n.Line, Msg: fmt.Sprintf("%s must be a list", what)}
		}
		out := []any{}
		for i, c := range n.Content {
			v, err := w.walk(c, scalar, fmt.Sprintf("%s[%d]", path, i), what)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case "entries":
		if n.Kind != yaml.SequenceNode {
			return nil, &LineError{Line: n.Line, Msg: fmt.Sprintf("%s must be a list", what)}
		}
		out := []any{}
		for i, c := range n.Content {
			sub := scalar
			if c.Kind == yaml.MappingNode {
				sub = field{kind: "object", keys: f.keys}
			}
			v, err := w.walk(c, sub, fmt.Sprintf("%s[%d]", path, i), what)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case "objects":
		if n.Kind == yaml.SequenceNode {
			out := []any{}
			for i, c := range n.Content {
				v, err := w.walk(c, field{kind: "object", keys: f.keys}, fmt.Sprintf("%s[%d]", path, i), what)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
			return out, nil
		}
		v, err := w.walk(n, field{kind: "object", keys: f.keys}, path+"[0]", what)
		if err != nil {
			return nil, err
		}
		w.lines[path+"[0]"] = n.Line
		return []any{v}, nil
	case "object":
		if n.Kind != yaml.MappingNode {
			return nil, &LineError{Line: n.Line, Msg: fmt.Sprintf("%s must be a mapping of keys (known: %s)", what, knownKeys(f))}
		}
		out := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			sub, ok := f.keys[k.Value]
			if !ok {
				in := ""
				if what != "" {
					in = " in " + what
				}
				return nil, &LineError{Line: k.Line, Msg: fmt.Sprintf("unknown key %q%s (known: %s)", k.Value, in, knownKeys(f))}
			}
			if _, dup := out[k.Value]; dup {
				return nil, &LineError{Line: k.Line, Msg: fmt.Sprintf("key %q given twice", k.Value)}
			}
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			name := k.Value
			if what != "" && sub.kind == "scalar" {
				name = what + " " + k.Value
			}
			val, err := w.walk(v, sub, p, name)
			if err != nil {
				return nil, err
			}
			out[k.Value] = val
		}
		return out, nil
	}
	return nil, errors.New("config: bad schema")
}

// LoadOptions add the sources beyond the file (see the package doc).
type LoadOptions struct {
	// EnvPrefix is the brand's prefix of environment variables
	// ("INITECH_"); with Environ, EnvName(EnvPrefix, key) overrides key.
	EnvPrefix string
	// Environ is the environment to read (os.Environ()); nil reads none.
	Environ []string
	// Flags override the file and the environment.
	Flags []Override
}

// Override is a value given outside the file, on the command line.
type Override struct {
	Key    string // the config key: "log.level"
	Value  string
	Source string // names it in errors: "--log-level"
}

// Load parses and validates a config.
func Load(data []byte, vars map[string]string) (*Config, error) {
	return LoadWith(data, vars, LoadOptions{})
}

// LoadFile is Load on a file; errors name the file.
func LoadFile(path string, vars map[string]string) (*Config, error) {
	return LoadFileWith(path, vars, LoadOptions{})
}

// LoadFileWith is LoadWith on a file; errors about the file name it.
func LoadFileWith(path string, vars map[string]string, opts LoadOptions) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := LoadWith(b, vars, opts)
	if err != nil && fromFile(err) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, err
}

// envKeys are the keys the environment may set: every scalar that is
// not in a list.
func envKeys() []string {
	var out []string
	for name, f := range schema.keys {
		switch f.kind {
		case "scalar":
			out = append(out, name)
		case "object":
			for sub, sf := range f.keys {
				if sf.kind == "scalar" {
					out = append(out, name+"."+sub)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// EnvName is the environment variable that sets key: the prefix, then the
// key in capitals with '_' for '.' and '-' ("INITECH_UPDATE_CHECK_EVERY").
func EnvName(prefix, key string) string {
	return prefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
}

// EnvNames lists, for prefix, every environment variable the config
// reads, with the key it sets.
func EnvNames(prefix string) map[string]string {
	m := map[string]string{}
	for _, k := range envKeys() {
		m[EnvName(prefix, k)] = k
	}
	return m
}

type rawConfig struct {
	Relay   string         `koanf:"relay"`
	Inlets  []rawInlet     `koanf:"tcp-inlet"`
	Outlets []rawOutlet    `koanf:"tcp-outlet"`
	Policy  []rawPolicy    `koanf:"policy"`
	Remote  *rawRemote     `koanf:"remote-outlets"`
	Update  map[string]any `koanf:"update"`
	Log     struct {
		Level  string `koanf:"level"`
		Format string `koanf:"format"`
	} `koanf:"log"`
	Audit struct {
		Forward string `koanf:"forward"`
	} `koanf:"audit"`
	Hub struct {
		Proxy         string `koanf:"proxy"`
		ProxyAuthFile string `koanf:"proxy-auth-file"`
		NoProxy       string `koanf:"no-proxy"`
		TLS           string `koanf:"tls"`
		ServerName    string `koanf:"server-name"`
		CAFile        string `koanf:"ca-file"`
	} `koanf:"hub"`
}

type rawInlet struct {
	From  string `koanf:"from"`
	Via   string `koanf:"via"`
	To    string `koanf:"to"`
	Allow string `koanf:"allow"`
}

type rawOutlet struct {
	From  string `koanf:"from"`
	To    string `koanf:"to"`
	Allow string `koanf:"allow"`
}

type rawPolicy struct {
	ResourceType string `koanf:"resource-type"`
	Allow        string `koanf:"allow"`
}

type rawRemote struct {
	// Allow's items are "HOST:PORT" or {to: HOST:PORT, allow: POLICY}.
	Allow []any `koanf:"allow"`
}

// LoadWith is Load with the environment and flags of opts over the file.
func LoadWith(data []byte, vars map[string]string, opts LoadOptions) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	w := &walker{vars: vars, lines: map[string]int{}, sources: map[string]string{}}
	tree := map[string]any{}
	if len(doc.Content) > 0 && !(doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null") {
		v, err := w.walk(doc.Content[0], schema, "", "")
		if err != nil {
			return nil, err
		}
		tree = v.(map[string]any)
	}
	k := koanf.New(".")
	if err := k.Load(confmap.Provider(tree, "."), nil); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if opts.Environ != nil && opts.EnvPrefix != "" {
		names := EnvNames(opts.EnvPrefix)
		p := env.Provider(".", env.Opt{
			Prefix:      opts.EnvPrefix,
			EnvironFunc: func() []string { return opts.Environ },
			TransformFunc: func(name, v string) (string, any) {
				key, ok := names[name]
				if !ok {
					return "", nil // another of the brand's variables
				}
				w.sources[key] = "environment variable " + name
				return key, v
			},
		})
		if err := k.Load(p, nil); err != nil {
			return nil, fmt.Errorf("config: environment: %w", err)
		}
	}
	if len(opts.Flags) > 0 {
		m := map[string]any{}
		for _, f := range opts.Flags {
			if !slicesContains(envKeys(), f.Key) {
				return nil, fmt.Errorf("config: %s: %q is not a single-valued config key", f.Source, f.Key)
			}
			m[f.Key] = f.Value
			w.sources[f.Key] = f.Source
		}
		if err := k.Load(confmap.Provider(m, "."), nil); err != nil {
			return nil, fmt.Errorf("config: flags: %w", err)
		}
	}
	var raw rawConfig
	err := k.UnmarshalWithConf("", &raw, koanf.UnmarshalConf{Tag: "koanf", DecoderConfig: &mapstructure.DecoderConfig{
		WeaklyTypedInput: true, ErrorUnused: true, Result: &raw, TagName: "koanf",
	}})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return w.validate(&raw)
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// MaxNameLen bounds a name: an outlet or relay name in the config, from
// the CLI, or from a peer at the protocol boundary.
const MaxNameLen = 64

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ValidName checks an outlet or relay name: 1 to MaxNameLen ASCII
// letters, digits, '.', '_' and '-'. The config uses it for its names;
// the node uses it where a peer names an outlet, before the name is
// looked up, logged or audited. The error shows the name escaped and cut
// short, so a hostile 16 KB name with newlines or escape codes stays one
// short line.
func ValidName(s string) error {
	if nameRE.MatchString(s) {
		return nil
	}
	if s == "" {
		return errors.New("empty name")
	}
	return fmt.Errorf("name %s: use letters, digits, '.', '_' and '-', at most %d", quoteName(s), MaxNameLen)
}

// quoteName quotes s for an error message: Go-escaped (no control
// characters, no invalid UTF-8) and cut after MaxNameLen bytes.
func quoteName(s string) string {
	if len(s) <= MaxNameLen {
		return strconv.Quote(s)
	}
	return strconv.Quote(strings.ToValidUTF8(s[:MaxNameLen], "")) + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

func (w *walker) validate(raw *rawConfig) (*Config, error) {
	c := &Config{Relay: raw.Relay, Log: Log{Level: raw.Log.Level, Format: raw.Log.Format}}
	if c.Relay != "" && ValidName(c.Relay) != nil {
		return nil, w.at("relay", fmt.Sprintf("relay %q: use letters, digits, '.', '_' and '-', at most 64", c.Relay))
	}
	seenOut := map[string]bool{}
	for i, ro := range raw.Outlets {
		o := Outlet{From: ro.From, To: ro.To, Allow: ro.Allow}
		p := fmt.Sprintf("tcp-outlet[%d]", i)
		if err := ValidateOutlet(&o); err != nil {
			return nil, w.at(p, err.Error())
		}
		if seenOut[o.From] {
			return nil, w.at(p, fmt.Sprintf("tcp-outlet %q defined twice", o.From))
		}
		seenOut[o.From] = true
		c.Outlets = append(c.Outlets, o)
	}
	seenIn := map[string]bool{}
	for i, ri := range raw.Inlets {
		in := Inlet{From: ri.From, Via: ri.Via, To: ri.To, Allow: ri.Allow}
		p := fmt.Sprintf("tcp-inlet[%d]", i)
		if err := ValidateInlet(&in); err != nil {
			return nil, w.at(p, err.Error())
		}
		if seenIn[in.From] {
			return nil, w.at(p, fmt.Sprintf("two tcp-inlets listen on %s", in.From))
		}
		seenIn[in.From] = true
		c.Inlets = append(c.Inlets, in)
	}
	seenType := map[string]bool{}
	for i, rp := range raw.Policy {
		p := fmt.Sprintf("policy[%d]", i)
		if !policy.ValidResourceType(rp.ResourceType) {
			return nil, w.at(p, fmt.Sprintf("policy resource-type %q: want %s or %s", rp.ResourceType, policy.TCPInlet, policy.TCPOutlet))
		}
		if seenType[rp.ResourceType] {
			return nil, w.at(p, fmt.Sprintf("two policies for resource-type %s", rp.ResourceType))
		}
		seenType[rp.ResourceType] = true
		e, err := policy.Parse(rp.Allow)
		if err != nil {
			return nil, w.at(p, fmt.Sprintf("policy %s: allow: %v", rp.ResourceType, err))
		}
		c.Policies = append(c.Policies, Policy{ResourceType: rp.ResourceType, Allow: rp.Allow, AllowExpr: e})
	}
	if raw.Remote != nil {
		c.RemoteOutlets = &RemoteOutlets{}
		for i, item := range raw.Remote.Allow {
			p := fmt.Sprintf("remote-outlets.allow[%d]", i)
			var e RemoteEntry
			switch v := item.(type) {
			case string:
				e.To = v
			case map[string]any:
				e.To, _ = v["to"].(string)
				e.Allow, _ = v["allow"].(string)
				if e.To == "" {
					return nil, w.at(p, "remote-outlets allow: an entry with keys needs to: HOST:PORT")
				}
			default:
				return nil, w.at(p, "remote-outlets allow: want HOST:PORT or {to: HOST:PORT, allow: POLICY}")
			}
			if err := ValidateAllowEntry(e.To); err != nil {
				return nil, w.at(p, "remote-outlets allow: "+err.Error())
			}
			if e.Allow != "" {
				x, err := policy.Parse(e.Allow)
				if err != nil {
					return nil, w.at(p, fmt.Sprintf("remote-outlets allow %s: allow: %v", e.To, err))
				}
				e.AllowExpr = x
			}
			c.RemoteOutlets.Allow = append(c.RemoteOutlets.Allow, e.To)
			c.RemoteOutlets.Entries = append(c.RemoteOutlets.Entries, e)
		}
	}
	for key, v := range raw.Update {
		s := fmt.Sprint(v)
		at := func(msg string, args ...any) error { return w.at("update."+key, fmt.Sprintf(msg, args...)) }
		switch key {
		case "auto":
			b, err := strconv.ParseBool(s)
			if err != nil {
				return nil, at("update auto %q: want true or false", s)
			}
			c.Update.Auto = &b
		case "channel":
			if s != "" && !channelRE.MatchString(s) {
				return nil, at("update channel %q: use lower-case letters, digits and '-', at most 32", s)
			}
			c.Update.Channel = s
		case "check-every":
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return nil, at("update check-every %q: want a positive duration like 6h", s)
			}
			if d < MinCheckEvery {
				return nil, at("update check-every %q: at least %s", s, MinCheckEvery)
			}
			c.Update.CheckEvery = d
		case "pin":
			if s != "" {
				if _, err := release.ParseVersion(s); err != nil {
					return nil, at("update pin %q: %v", s, err)
				}
			}
			c.Update.Pin = s
		case "window":
			win, err := ParseWindow(s)
			if err != nil {
				return nil, at("update window %q: %v", s, err)
			}
			c.Update.Window, c.Update.MaintenanceWindow = s, win
		}
	}
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		return nil, w.at("log.level", fmt.Sprintf("log level %q: want debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "", "text", "json":
	default:
		return nil, w.at("log.format", fmt.Sprintf("log format %q: want text or json", c.Log.Format))
	}
	switch f := raw.Audit.Forward; f {
	case "", ForwardNone:
	case ForwardJournal, ForwardSyslog, ForwardEventLog:
		c.Audit.Forward = f
	default:
		return nil, w.at("audit.forward", fmt.Sprintf("audit forward %q: want %s, %s, %s or %s", f, ForwardJournal, ForwardSyslog, ForwardEventLog, ForwardNone))
	}
	if err := w.hub(raw, c); err != nil {
		return nil, err
	}
	return c, nil
}

// hub checks the hub section. The files it names are read when the node
// starts (agent/egress), not here: a config is checked where it is
// written, the files where the node runs.
func (w *walker) hub(raw *rawConfig, c *Config) error {
	h := raw.Hub
	c.Hub = Hub{Proxy: strings.TrimSpace(h.Proxy), ProxyAuthFile: h.ProxyAuthFile, NoProxy: h.NoProxy, ServerName: h.ServerName, CAFile: h.CAFile}
	switch p := c.Hub.Proxy; {
	case p == "":
		c.Hub.Proxy = ProxyFromEnvironment
	case p == ProxyFromEnvironment || p == ProxyDirect:
	default:
		if err := CheckProxy(p); err != nil {
			return w.at("hub.proxy", "hub proxy: "+err.Error())
		}
	}
	if c.Hub.ProxyAuthFile != "" && c.Hub.Proxy == ProxyDirect {
		return w.at("hub.proxy-auth-file", "hub proxy-auth-file is set but proxy is direct")
	}
	if h.TLS != "" {
		b, err := strconv.ParseBool(h.TLS)
		if err != nil {
			return w.at("hub.tls", fmt.Sprintf("hub tls %q: want true or false", h.TLS))
		}
		c.Hub.TLS = b
	}
	if c.Hub.ServerName != "" && !c.Hub.TLS {
		return w.at("hub.server-name", "hub server-name is set but tls is not")
	}
	if c.Hub.CAFile != "" && !c.Hub.TLS {
		return w.at("hub.ca-file", "hub ca-file is set but tls is not")
	}
	if n := c.Hub.ServerName; n != "" && !hostRE.MatchString(n) {
		return w.at("hub.server-name", fmt.Sprintf("hub server-name %q is not a host name", n))
	}
	return nil
}

// CheckProxy checks a hub.proxy value: ProxyFromEnvironment,
// ProxyDirect, or http://host[:port] (or host:port) without credentials,
// path or query. Its errors never echo the value: it may hold a password.
func CheckProxy(raw string) error {
	if raw == ProxyFromEnvironment || raw == ProxyDirect {
		return nil
	}
	u, err := url.Parse(raw)
	if !strings.Contains(raw, "://") && (err != nil || u.Scheme == "" || u.Host == "") {
		u, err = url.Parse("http://" + raw)
	}
	switch {
	case err != nil:
		return errors.New("not a valid URL (want http://host:port)")
	case u.Scheme != "http":
		return fmt.Errorf("only http:// proxies are supported, not %s://", u.Scheme)
	case u.User != nil:
		return errors.New("the URL holds credentials: put user:password in a proxy-auth-file instead")
	case u.Hostname() == "":
		return errors.New("the URL has no host")
	case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "":
		return errors.New("a proxy URL has no path or query")
	}
	return nil
}

// MinCheckEvery is the shortest update.check-every: a node does not ask
// the hub for releases more often than this.
const MinCheckEvery = time.Minute

// channelRE is a release channel's name: the hub's rule for the channels
// it publishes on (hub/releases.go).
var channelRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// Window is a weekly maintenance window in local time: on Day (or every
// day when AnyDay) from Start to End, in minutes after midnight. An End
// before Start runs over midnight.
type Window struct {
	Day        time.Weekday
	AnyDay     bool
	Start, End int
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// ParseWindow parses "[DAY] HH:MM-HH:MM" (DAY: Mon…Sun, or the whole
// name, in any case); "" is no window (nil). The error says which part
// is wrong.
func ParseWindow(s string) (*Window, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, nil
	}
	w := &Window{AnyDay: true}
	if len(fields) == 2 {
		day := strings.ToLower(fields[0])
		d, ok := weekdays[day]
		if !ok && len(day) > 3 {
			if d, ok = weekdays[day[:3]]; ok && day != strings.ToLower(d.String()) {
				ok = false
			}
		}
		if !ok {
			return nil, fmt.Errorf("unknown day %q (want Mon, Tue, … Sun)", fields[0])
		}
		w.Day, w.AnyDay = d, false
		fields = fields[1:]
	}
	if len(fields) != 1 {
		return nil, errors.New("want [DAY] HH:MM-HH:MM, e.g. Sat 02:00-04:00")
	}
	a, b, ok := strings.Cut(fields[0], "-")
	if !ok {
		return nil, errors.New("want [DAY] HH:MM-HH:MM, e.g. Sat 02:00-04:00")
	}
	var err error
	if w.Start, err = clockMinutes(a); err != nil {
		return nil, err
	}
	if w.End, err = clockMinutes(b); err != nil {
		return nil, err
	}
	if w.Start == w.End {
		return nil, errors.New("the window is empty: it starts when it ends")
	}
	return w, nil
}

func clockMinutes(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("bad time %q (want HH:MM, 00:00 to 23:59)", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// Contains reports whether t (in its location) falls inside the window.
// A window over midnight belongs to the day it starts on.
func (w *Window) Contains(t time.Time) bool {
	m := t.Hour()*60 + t.Minute()
	if w.End > w.Start {
		return w.Start <= m && m < w.End && (w.AnyDay || t.Weekday() == w.Day)
	}
	switch {
	case m >= w.Start:
		return w.AnyDay || t.Weekday() == w.Day
	case m < w.End:
		return w.AnyDay || t.Weekday() == (w.Day+1)%7
	}
	return false
}

func validHostPort(s string, listen bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q: want host:port", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || n == 0 && !listen {
		return fmt.Errorf("%q: port must be 1-65535", s)
	}
	if host == "" {
		if listen {
			return nil
		}
		return fmt.Errorf("%q: host is empty", s)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if listen {
		if host == "localhost" {
			return nil
		}
		return fmt.Errorf("%q: listen on an IP address (e.g. 127.0.0.1:%s)", s, port)
	}
	if !hostRE.MatchString(host) {
		return fmt.Errorf("%q: %q is not a valid host name", s, host)
	}
	return nil
}

var hostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.?$`)

// ValidateOutlet checks an outlet and parses its allow expression.
func ValidateOutlet(o *Outlet) error {
	if ValidName(o.From) != nil {
		return fmt.Errorf("tcp-outlet from %q: an outlet name uses letters, digits, '.', '_' and '-', at most 64", o.From)
	}
	if err := validHostPort(o.To, false); err != nil {
		return fmt.Errorf("tcp-outlet %q: to %w", o.From, err)
	}
	o.AllowExpr = nil
	if o.Allow != "" {
		e, err := policy.Parse(o.Allow)
		if err != nil {
			return fmt.Errorf("tcp-outlet %q: allow: %w", o.From, err)
		}
		o.AllowExpr = e
	}
	return nil
}

// ValidateInlet checks an inlet and parses its allow expression.
func ValidateInlet(in *Inlet) error {
	if err := validHostPort(in.From, true); err != nil {
		return fmt.Errorf("tcp-inlet from %w", err)
	}
	if ValidName(in.Via) != nil {
		return fmt.Errorf("tcp-inlet %s: via %q: want a relay name", in.From, in.Via)
	}
	if ValidName(in.To) != nil {
		return fmt.Errorf("tcp-inlet %s: to %q: want an outlet name", in.From, in.To)
	}
	in.AllowExpr = nil
	if in.Allow != "" {
		e, err := policy.Parse(in.Allow)
		if err != nil {
			return fmt.Errorf("tcp-inlet %s: allow: %w", in.From, err)
		}
		in.AllowExpr = e
	}
	return nil
}

// ValidateAllowEntry checks one remote-outlets allow-list entry: a host
// name, a "*." wildcard pattern, an IP or a CIDR, then ":" and a port or
// "*".
func ValidateAllowEntry(s string) error {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return fmt.Errorf("%q: want HOST:PORT, *.DOMAIN:PORT or CIDR:PORT", s)
	}
	host, port := s[:i], s[i+1:]
	if port != "*" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port must be 1-65535 or *", s)
		}
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.Contains(host, "/") {
		if _, err := netip.ParsePrefix(host); err != nil {
			return fmt.Errorf("%q: bad CIDR: %v", s, err)
		}
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	name := strings.TrimPrefix(host, "*.")
	if !hostRE.MatchString(name) || strings.Contains(name, "*") {
		return fmt.Errorf("%q: %q is not a host name or *.domain pattern", s, host)
	}
	return nil
}

var varNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ParseVariables parses --variable NAME=VALUE flags.
func ParseVariables(kv []string) (map[string]string, error) {
	m := map[string]string{}
	for _, s := range kv {
		name, val, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("--variable %q: want NAME=VALUE", s)
		}
		if !varNameRE.MatchString(name) {
			return nil, fmt.Errorf("--variable %q: %q is not a variable name (letters, digits, _)", s, name)
		}
		m[name] = val
	}
	return m, nil
}
