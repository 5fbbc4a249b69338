// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"sort"
	"time"

	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/wire/control"
)

// The local API's backend: what `status`, `tcp-outlet`, `tcp-inlet` and
// `ticket create` ask a running node (outlet and inlet changes are in
// outlets.go and inlets.go, pause and explain in commands.go, drain in
// drain.go).

// Status implements localapi.Backend.
func (n *Node) Status(ctx context.Context) localapi.Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := localapi.Status{
		Identifier:        n.cred.ID,
		Attributes:        n.cred.Attributes,
		Enroller:          n.cred.Enroller,
		Project:           n.enr.Project,
		Vendor:            n.enr.Vendor,
		HubConnected:      n.hub != nil,
		HubError:          n.hubErr,
		Relay:             localapi.RelayStatus{Name: n.relayName(), Connected: n.relayUp, Error: n.relayErr},
		CredentialExpires: n.cred.Expires().UTC(),
		Version:           buildinfo.Version(),
		StateDir:          n.opts.StateDir,
		Outlets:           []localapi.Outlet{},
		Inlets:            []localapi.Inlet{},
		Paused:            n.paused,
		Replica:           n.cred.Replica,
		Draining:          n.drain != nil,
	}
	if st.Attributes == nil {
		st.Attributes = map[string]string{}
	}
	if n.hub != nil {
		st.Hub = n.hub.Addr()
	} else if a := n.hubAddrs(); len(a) > 0 {
		st.Hub = a[0]
	}
	for _, o := range n.outlets {
		lo := localapi.Outlet{Name: o.name, To: o.to, Allow: o.effectiveAllowText(n.cfg), Origin: o.origin, Down: n.down[o.name]}
		if lo.Down != "" {
			st.Down = append(st.Down, o.name)
		}
		if o.origin == OriginVendor {
			lo.VendorAllow = o.allow
			if o.ceiling != nil {
				lo.Ceiling = o.ceiling.String()
			}
		}
		st.Outlets = append(st.Outlets, lo)
	}
	for _, in := range n.inlets {
		li := localapi.Inlet{From: in.from, Via: in.via, To: in.to, Allow: in.effectiveAllowText(n.cfg), Origin: in.origin}
		if in.ln != nil {
			li.Listening = in.ln.Addr().String()
		}
		st.Inlets = append(st.Inlets, li)
	}
	st.Channels = n.channels.status() // takes only the channels' lock
	sort.Slice(st.Outlets, func(i, j int) bool { return st.Outlets[i].Name < st.Outlets[j].Name })
	sort.Strings(st.Down)
	sort.Slice(st.Inlets, func(i, j int) bool { return st.Inlets[i].From < st.Inlets[j].From })
	return st
}

// FlushAudit implements localapi.Backend.
func (n *Node) FlushAudit(ctx context.Context) error { return n.audit.Flush() }

// CreateTicket implements localapi.Backend: an enroller node asks the
// authority, end to end, which grants only what the node's own ticket
// lets it (its scope). The node checks the scope first for a quick
// answer; the authority decides.
func (n *Node) CreateTicket(ctx context.Context, r localapi.TicketRequest) (string, error) {
	n.mu.Lock()
	cred, enr := n.cred, n.enr
	n.mu.Unlock()
	if !cred.Enroller {
		return "", enroll.ErrNotEnroller
	}
	o := enroll.TicketOptions{Attributes: r.Attributes, Relay: r.Relay, Replica: r.Replica, ExpiresIn: r.ExpiresIn, Uses: r.Uses}
	if err := o.Validate(); err != nil {
		return "", err
	}
	if err := cred.Scope.Check(o); err != nil {
		return "", err
	}
	var resp control.CreateTicketResponse
	err := askAuthority(ctx, n.dial(), n.static, enr.authority(n.hubAddrs()), func(h *hubConn) error {
		return h.Call(ctx, control.TypeCreateTicket, control.CreateTicketRequest{
			Attributes: r.Attributes, Relay: r.Relay, Replica: r.Replica, ExpiresIn: int64(r.ExpiresIn / time.Second), Uses: r.Uses,
		}, &resp)
	})
	if err != nil {
		return "", err
	}
	return resp.Ticket, nil
}
