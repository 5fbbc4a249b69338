// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

// Warnings for outlets and inlets that are created fine but cannot work
// yet: an inlet via a relay no node has registered, an outlet whose
// target's name does not resolve, an allow policy naming attributes no
// connected member has. They are warnings, not refusals (things may come
// later): shown when the CLI creates one, logged once the node is
// connected for the config's, and listed by doctor.

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/policy"
	"github.com/edgeportal/connect/wire/control"
)

// portalCheckTimeout bounds one check (DNS and the relay's answer).
const portalCheckTimeout = 3 * time.Second

// portalWarnings checks what an inlet (relay set) or an outlet (target
// set) refers to.
func (n *Node) portalWarnings(ctx context.Context, relay, target string, allow policy.Expr) []string {
	ctx, cancel := context.WithTimeout(ctx, portalCheckTimeout)
	defer cancel()
	var out []string
	if target != "" {
		if host, _, err := net.SplitHostPort(target); err == nil && net.ParseIP(host) == nil {
			if _, err := net.DefaultResolver.LookupHost(ctx, host); err != nil {
				out = append(out, fmt.Sprintf("target host %s does not resolve (%v): portals to it fail until it does", host, shortDNS(err)))
			}
		}
	}
	var names []string
	if allow != nil {
		names = policy.Names(allow)
	}
	if relay == "" && len(names) == 0 {
		return out
	}
	h, err := n.currentHub(ctx, time.Second)
	if err != nil {
		return append(out, "not connected to the hub: the relay and the policy's attributes could not be checked")
	}
	var res control.PortalCheckResult
	if err := h.Call(ctx, control.TypePortalCheck, control.PortalCheck{Relay: relay, Attributes: names}, &res); err != nil {
		return append(out, fmt.Sprintf("the hub could not check the relay and the policy's attributes: %v", err))
	}
	switch {
	case relay == "":
	case !res.RelayKnown:
		out = append(out, fmt.Sprintf("relay %q is not known to the hub: no node has registered it (yet)", relay))
	case !res.RelayUp:
		out = append(out, fmt.Sprintf("relay %q is known but its node is not connected now", relay))
	}
	have := map[string]bool{}
	for _, a := range res.Attributes {
		have[a] = true
	}
	var missing []string
	for _, a := range names {
		if !have[a] {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		out = append(out, fmt.Sprintf("no member connected to the hub now has attribute %s, which the allow policy names", strings.Join(missing, ", ")))
	}
	return out
}

// shortDNS is a DNS error without the resolver's address.
func shortDNS(err error) string {
	if de, ok := err.(*net.DNSError); ok {
		if de.IsNotFound {
			return "no such host"
		}
		return de.Err
	}
	return err.Error()
}

// Check implements localapi.Backend: the warnings of every outlet and
// inlet, outlets first, each in name order.
func (n *Node) Check(ctx context.Context) []localapi.Warning {
	type item struct {
		kind, name, relay, target string
		allow                     policy.Expr
	}
	var items []item
	n.mu.Lock()
	for _, o := range n.outlets {
		items = append(items, item{"outlet", o.name, "", o.to, o.effectiveAllow(n.cfg)})
	}
	for _, in := range n.inlets {
		name := in.from
		if in.ln != nil {
			name = in.ln.Addr().String()
		}
		items = append(items, item{"inlet", name, in.via, "", in.effectiveAllow(n.cfg)})
	}
	n.mu.Unlock()
	sort.Slice(items, func(i, j int) bool {
		if items[i].kind != items[j].kind {
			return items[i].kind == "outlet"
		}
		return items[i].name < items[j].name
	})
	out := []localapi.Warning{}
	for _, it := range items {
		for _, w := range n.portalWarnings(ctx, it.relay, it.target, it.allow) {
			out = append(out, localapi.Warning{Kind: it.kind, Name: it.name, Message: w})
		}
	}
	return out
}

// logPortalWarnings logs the warnings of the config's outlets and inlets
// once, after the first connection to the hub.
func (n *Node) logPortalWarnings(ctx context.Context) {
	for _, w := range n.Check(ctx) {
		n.log.Warn(w.Kind+" may not work", w.Kind, w.Name, "reason", w.Message)
	}
}
