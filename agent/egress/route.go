// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package egress

import (
	"net"
	"net/netip"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpproxy"
)

// route decides, per hub address, whether to go through the proxy.
type route struct {
	mode     string   // "direct", "env" or "explicit"
	proxy    *url.URL // the proxy (nil: none configured or found)
	noProxy  string   // NO_PROXY syntax
	noSource string   // where noProxy came from: "no-proxy" or "NO_PROXY"
	fn       func(*url.URL) (*url.URL, error)
}

func newRoute(mode string, proxy *url.URL, noProxy, noSource string) *route {
	r := &route{mode: mode, proxy: proxy, noProxy: noProxy, noSource: noSource}
	if proxy != nil {
		r.fn = (&httpproxy.Config{HTTPSProxy: proxy.String(), NoProxy: noProxy}).ProxyFunc()
	}
	return r
}

// proxyFor returns the proxy for a hub at addr (host:port), or nil to dial
// it directly.
//
// With the proxy from the environment, this is exactly net/http's
// ProxyFromEnvironment for an https URL to addr (golang.org/x/net's
// httpproxy, which net/http vendors): NO_PROXY is honoured, and a hub at
// localhost or a loopback address is always dialled directly.
//
// With an explicit proxy every hub goes through it, as with
// http.ProxyURL, except those NoProxy matches (same syntax and matching);
// that includes loopback hubs, which net/http would never proxy, so a
// proxy in front of a local hub can be tested.
func (r *route) proxyFor(addr string) *url.URL {
	if r.proxy == nil {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	if r.mode == "explicit" && isLoopback(host) {
		if matchNoProxyLoopback(r.noProxy, host, port) {
			return nil
		}
		return r.proxy
	}
	p, err := r.fn(&url.URL{Scheme: "https", Host: addr})
	if err != nil {
		return nil
	}
	return p
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// matchNoProxyLoopback applies NO_PROXY matching, as httpproxy does it, to
// a loopback host, which httpproxy exempts before it looks at NO_PROXY:
// "*", an IP with or without port, a CIDR, or the name localhost.
func matchNoProxyLoopback(noProxy, host, port string) bool {
	host = strings.ToLower(host)
	ip := net.ParseIP(host)
	for _, p := range strings.Split(noProxy, ",") {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == "" {
			continue
		}
		if p == "*" {
			return true
		}
		if _, cidr, err := net.ParseCIDR(p); err == nil {
			if ip != nil && cidr.Contains(ip) {
				return true
			}
			continue
		}
		phost, pport := p, ""
		if h, pp, err := net.SplitHostPort(p); err == nil {
			phost, pport = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), pp
		}
		if pport != "" && pport != port {
			continue
		}
		if pip := net.ParseIP(phost); pip != nil {
			if ip != nil && pip.Equal(ip) {
				return true
			}
			continue
		}
		if ip == nil && phost == host { // ".localhost" and "*.localhost" name only subdomains
			return true
		}
	}
	return false
}
