// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

// The hub route: how every connection to the hub leaves this machine
// (control, channels, the authority's, updates, the install preflight,
// doctor): directly or through an HTTP CONNECT proxy, as plain TCP or as
// TLS (agent/egress). The config's hub section says which; `install
// --proxy` stores its settings in the state directory (RouteFile), and
// they apply over the config's.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/agent/egress"
	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/buildinfo"
)

// dialFunc opens a connection to the hub at addr, ready for the hub
// protocol; nil dials plain TCP directly.
type dialFunc = func(ctx context.Context, addr string) (net.Conn, error)

// Route is how a node reaches the hub.
type Route = egress.Dialer

// NewRoute returns the hub route of cfg (nil: the defaults, HTTPS_PROXY
// and NO_PROXY from the environment). It reads the proxy-auth file and
// the CA bundle now; errors are one line and name the setting.
func NewRoute(cfg *config.Config, log *slog.Logger) (*Route, error) {
	var h config.Hub
	if cfg != nil {
		h = cfg.Hub
	}
	o := egress.Options{
		Proxy: h.Proxy, ProxyAuthFile: h.ProxyAuthFile, NoProxy: h.NoProxy,
		TLS: h.TLS, ServerName: h.ServerName, CAFile: h.CAFile,
		UserAgent: brand.AgentBinary() + "/" + buildinfo.Version(),
		Logger:    log,
	}
	switch h.Proxy {
	case "", config.ProxyFromEnvironment:
		o.Proxy = egress.ProxyFromEnvironment
	case config.ProxyDirect:
		o.Proxy = ""
	}
	r, err := egress.New(o)
	if err != nil {
		return nil, fmt.Errorf("hub route: %s", strings.TrimPrefix(err.Error(), "egress: "))
	}
	return r, nil
}

// dialer returns r's dial function (nil r: plain TCP, direct).
func dialer(r *Route) dialFunc {
	if r == nil {
		return dialTCP
	}
	return r.DialContext
}

// RouteSettings are what `install --proxy` stores in the state directory.
// The auth file is copied there (the service's account must read it, and
// the admin's copy may be in a home directory it cannot reach).
type RouteSettings struct {
	Proxy   string `json:"proxy,omitempty"`
	NoProxy string `json:"no_proxy,omitempty"`
	// ProxyAuth is true when the state directory holds statedir.ProxyAuth.
	ProxyAuth bool `json:"proxy_auth,omitempty"`
}

// loadRouteSettings reads the settings an install stored (zero, nil when
// there are none).
func loadRouteSettings(stateDir string) (RouteSettings, error) {
	var s RouteSettings
	b, err := os.ReadFile(filepath.Join(stateDir, statedir.Route))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", filepath.Join(stateDir, statedir.Route), err)
	}
	return s, nil
}

// routeOverrides are the stored install settings as config overrides, so
// they go through the config's checks and errors name them.
func routeOverrides(stateDir string) ([]config.Override, error) {
	s, err := loadRouteSettings(stateDir)
	if err != nil {
		return nil, err
	}
	var out []config.Override
	if s.Proxy != "" {
		out = append(out, config.Override{Key: "hub.proxy", Value: s.Proxy, Source: "install --proxy (" + statedir.Route + ")"})
	}
	if s.NoProxy != "" {
		out = append(out, config.Override{Key: "hub.no-proxy", Value: s.NoProxy, Source: "install --no-proxy (" + statedir.Route + ")"})
	}
	if s.ProxyAuth {
		out = append(out, config.Override{Key: "hub.proxy-auth-file", Value: filepath.Join(stateDir, statedir.ProxyAuth),
			Source: "install --proxy-auth-file (" + statedir.Route + ")"})
	}
	return out, nil
}
