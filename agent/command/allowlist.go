// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package command

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
)

// AllowList is the customer's remote-outlets allow-list. A nil *AllowList
// means the vendor may not add outlets at all.
type AllowList struct {
	entries []entry
}

type entry struct {
	text    string
	host    string       // exact host name (lower case) or "" for CIDR/IP entries
	suffix  string       // for "*.domain": ".domain"
	prefix  netip.Prefix // for CIDR and IP entries
	anyPort bool
	port    int
}

// ParseAllowList parses the config's entries ("github.local:80",
// "*.acme.internal:443", "10.20.0.0/16:5432", "[fd00::/8]:*").
func ParseAllowList(items []string) (*AllowList, error) {
	al := &AllowList{}
	for _, s := range items {
		i := strings.LastIndexByte(s, ':')
		if i <= 0 {
			return nil, fmt.Errorf("allow-list entry %q: want HOST:PORT", s)
		}
		e := entry{text: s}
		host, port := s[:i], s[i+1:]
		if port == "*" {
			e.anyPort = true
		} else {
			n, err := strconv.Atoi(port)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("allow-list entry %q: bad port", s)
			}
			e.port = n
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		switch {
		case strings.Contains(host, "/"):
			p, err := netip.ParsePrefix(host)
			if err != nil {
				return nil, fmt.Errorf("allow-list entry %q: %v", s, err)
			}
			e.prefix = p.Masked()
		case isIP(host):
			a, _ := netip.ParseAddr(host)
			e.prefix = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		case strings.HasPrefix(host, "*."):
			e.suffix = strings.ToLower(host[1:])
		default:
			e.host = strings.ToLower(strings.TrimSuffix(host, "."))
		}
		al.entries = append(al.entries, e)
	}
	return al, nil
}

func isIP(s string) bool { _, err := netip.ParseAddr(s); return err == nil }

func (e entry) portOK(p int) bool { return e.anyPort || e.port == p }

// ErrNotAllowed means a destination is outside the customer's allow-list.
var ErrNotAllowed = errors.New("destination outside the customer's remote-outlets allow-list")

// Resolver looks up a host name's addresses (net.DefaultResolver.LookupNetIP
// in production).
type Resolver func(host string) ([]netip.Addr, error)

// CheckDestination decides at command time whether host:port may become a
// vendor outlet. A host name passes when a name pattern matches it, or when
// it resolves now into a CIDR entry with its port (and then every dial is
// checked again with DialControl). An IP literal must fall in a CIDR entry.
func (al *AllowList) CheckDestination(dest string, resolve Resolver) error {
	if al == nil {
		return errors.New("remote outlets are disabled on this node (its config has no remote-outlets section)")
	}
	host, ps, err := net.SplitHostPort(dest)
	if err != nil {
		return fmt.Errorf("destination %q: want host:port", dest)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return fmt.Errorf("destination %q: bad port", dest)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if al.allowsAddr(a, port) {
			return nil
		}
		return fmt.Errorf("%w: %s", ErrNotAllowed, dest)
	}
	if al.allowsName(host, port) {
		return nil
	}
	cidr := false
	for _, e := range al.entries {
		cidr = cidr || e.prefix.IsValid() && e.portOK(port)
	}
	if !cidr || resolve == nil {
		return fmt.Errorf("%w: %s", ErrNotAllowed, dest)
	}
	addrs, err := resolve(host)
	if err != nil || len(addrs) == 0 {
		return fmt.Errorf("%w: %s matches no name pattern and does not resolve (%v)", ErrNotAllowed, dest, err)
	}
	for _, a := range addrs {
		if !al.allowsAddr(a, port) {
			return fmt.Errorf("%w: %s resolves to %s", ErrNotAllowed, dest, a)
		}
	}
	return nil
}

func (al *AllowList) allowsName(host string, port int) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	for _, e := range al.entries {
		if !e.portOK(port) {
			continue
		}
		if e.host != "" && e.host == h || e.suffix != "" && strings.HasSuffix(h, e.suffix) && len(h) > len(e.suffix) {
			return true
		}
	}
	return false
}

func (al *AllowList) allowsAddr(a netip.Addr, port int) bool {
	a = a.Unmap()
	for _, e := range al.entries {
		if e.prefix.IsValid() && e.portOK(port) && e.prefix.Contains(a) {
			return true
		}
	}
	return false
}

// Governing returns the indices of the entries whose policy ceilings
// govern a vendor outlet to dest (see config.RemoteEntry): the first
// name pattern that matches a host name (every dial then passes by
// name); for an IP literal, the first CIDR entry that contains it; for a
// name that only CIDR entries can admit, every CIDR entry with its port
// (the address dialled is known only at each dial, so the outlet is held
// to all of their ceilings). None: dest is outside the list.
func (al *AllowList) Governing(dest string) []int {
	if al == nil {
		return nil
	}
	host, ps, err := net.SplitHostPort(dest)
	if err != nil {
		return nil
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		for i, e := range al.entries {
			if e.prefix.IsValid() && e.portOK(port) && e.prefix.Contains(a) {
				return []int{i}
			}
		}
		return nil
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	for i, e := range al.entries {
		if e.portOK(port) && (e.host != "" && e.host == h || e.suffix != "" && strings.HasSuffix(h, e.suffix) && len(h) > len(e.suffix)) {
			return []int{i}
		}
	}
	var out []int
	for i, e := range al.entries {
		if e.prefix.IsValid() && e.portOK(port) {
			out = append(out, i)
		}
	}
	return out
}

// DialControl returns a net.Dialer Control function for a vendor outlet
// to dest: when dest's name matched a name pattern every address is fine;
// otherwise the address actually dialled must be in a CIDR entry. So a name
// that later resolves elsewhere cannot slip through.
func (al *AllowList) DialControl(dest string) func(network, address string, c syscall.RawConn) error {
	host, ps, _ := net.SplitHostPort(dest)
	port, _ := strconv.Atoi(ps)
	byName := al != nil && !isIP(host) && al.allowsName(host, port)
	return func(network, address string, _ syscall.RawConn) error {
		if al == nil {
			return errors.New("remote outlets are disabled on this node")
		}
		if byName {
			return nil
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("dial %s: %w", address, err)
		}
		if !al.allowsAddr(ap.Addr(), int(ap.Port())) {
			return fmt.Errorf("%w: %s resolved to %s", ErrNotAllowed, dest, address)
		}
		return nil
	}
}
