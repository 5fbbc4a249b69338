// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package authority

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/internal/unixhttp"
	"github.com/edgeportal/connect/wire/control"
)

// Admin is what `ticket` and `members` do against an authority directory.
// A running authority serves it on an owner-only socket in its directory
// (so a revocation reaches the relay at once); with none running, the CLI
// uses the store directly (Offline), and the relay hears of a revocation
// when the authority next connects.
type Admin interface {
	CreateTicket(ctx context.Context, o enroll.TicketOptions) (string, error)
	Tickets(ctx context.Context) ([]enroll.TicketRecord, error)
	RevokeTicket(ctx context.Context, id string) (enroll.TicketRecord, error)
	Members(ctx context.Context) ([]MemberStatus, error)
	Revoke(ctx context.Context, id string) (enroll.Member, error)
}

// MemberStatus is a member as `members list` shows it: the authority's
// record and what the relay knows of it now.
type MemberStatus struct {
	enroll.Member
	Live      bool   `json:"live_known"` // the relay answered: Connected and RelayUp are current
	Connected bool   `json:"connected"`
	RelayUp   string `json:"relay_up,omitempty"`
	Paused    bool   `json:"paused,omitempty"`
	// Draining and Down are the node's last report to the relay: it is
	// draining for maintenance; these outlets cannot reach their target.
	Draining bool     `json:"draining,omitempty"`
	Down     []string `json:"down,omitempty"`
}

var (
	_ Admin = (*Server)(nil)
	_ Admin = (*Offline)(nil)
	_ Admin = (*AdminClient)(nil)
)

// Offline is the Admin of an authority that is not running.
type Offline struct {
	Auth *enroll.Authority
}

// CreateTicket implements Admin.
func (o *Offline) CreateTicket(ctx context.Context, opts enroll.TicketOptions) (string, error) {
	text, _, err := o.Auth.CreateTicket(ctx, opts)
	return text, err
}

// Tickets implements Admin.
func (o *Offline) Tickets(ctx context.Context) ([]enroll.TicketRecord, error) {
	return o.Auth.Store.ListTickets(ctx)
}

// RevokeTicket implements Admin.
func (o *Offline) RevokeTicket(ctx context.Context, id string) (enroll.TicketRecord, error) {
	return o.Auth.RevokeTicket(ctx, id)
}

// Members implements Admin.
func (o *Offline) Members(ctx context.Context) ([]MemberStatus, error) {
	return members(ctx, o.Auth, nil)
}

// Revoke implements Admin.
func (o *Offline) Revoke(ctx context.Context, id string) (enroll.Member, error) {
	m, _, err := o.Auth.Revoke(ctx, id)
	return m, err
}

func members(ctx context.Context, a *enroll.Authority, live map[string]control.NodeLive) ([]MemberStatus, error) {
	ms, err := a.Store.ListMembers(ctx)
	out := make([]MemberStatus, 0, len(ms))
	for _, m := range ms {
		st := MemberStatus{Member: m, Live: live != nil}
		if n, ok := live[m.ID]; ok {
			st.Connected, st.RelayUp, st.Paused = n.Connected, n.Relay, n.Paused
			st.Draining, st.Down = n.Draining, n.Down
			if n.Version != "" {
				st.Version, st.Platform = n.Version, n.Platform
			}
			st.LastSeen, st.LastUpdate = max(st.LastSeen, n.LastSeen), n.LastUpdate
		}
		out = append(out, st)
	}
	return out, err
}

// CreateTicket implements Admin for a running authority.
func (s *Server) CreateTicket(ctx context.Context, o enroll.TicketOptions) (string, error) {
	text, g, err := s.ticketAuthority().CreateTicket(ctx, o)
	if err == nil {
		s.log.Info("ticket created", "ticket", g.TicketID, "relay", g.Relay, "replica", g.Replica, "enroller", g.Enroller, "uses", g.Uses,
			"expires", g.Expires().UTC().Format(time.RFC3339))
	}
	return text, err
}

// Tickets implements Admin.
func (s *Server) Tickets(ctx context.Context) ([]enroll.TicketRecord, error) {
	return s.auth.Store.ListTickets(ctx)
}

// RevokeTicket implements Admin.
func (s *Server) RevokeTicket(ctx context.Context, id string) (enroll.TicketRecord, error) {
	t, err := s.auth.RevokeTicket(ctx, id)
	if err == nil {
		s.log.Info("ticket withdrawn", "ticket", id)
	}
	return t, err
}

// Members implements Admin for a running authority: its records with
// what the relay knows of each node now.
func (s *Server) Members(ctx context.Context) ([]MemberStatus, error) {
	return members(ctx, s.auth, s.live(ctx))
}

// ServeAdmin serves the Admin API on the authority directory's socket
// until ctx is done.
func (s *Server) ServeAdmin(ctx context.Context) error {
	mux := http.NewServeMux()
	handle := func(pattern string, f func(r *http.Request) (any, error)) { unixhttp.Handle(mux, pattern, f) }
	handle("POST /v1/tickets", func(r *http.Request) (any, error) {
		var o enroll.TicketOptions
		if err := unixhttp.DecodeBody(r, &o); err != nil {
			return nil, err
		}
		text, err := s.CreateTicket(r.Context(), o)
		return map[string]string{"ticket": text}, err
	})
	handle("GET /v1/tickets", func(r *http.Request) (any, error) { return s.Tickets(r.Context()) })
	handle("POST /v1/tickets/{id}/revoke", func(r *http.Request) (any, error) {
		return s.RevokeTicket(r.Context(), r.PathValue("id"))
	})
	handle("GET /v1/members", func(r *http.Request) (any, error) { return s.Members(r.Context()) })
	handle("POST /v1/members/{id}/revoke", func(r *http.Request) (any, error) {
		return s.Revoke(r.Context(), r.PathValue("id"))
	})
	srv, err := unixhttp.Listen(ctx, filepath.Join(s.dir.Path, AdminSocket), mux, slog.NewLogLogger(s.log.Handler(), slog.LevelDebug))
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	<-ctx.Done()
	return srv.Stop()
}

// AdminClient talks to a running authority's admin socket.
type AdminClient struct{ c *unixhttp.Client }

// DialAdmin returns a client for the running authority in dir, or an
// error when none is listening there.
func DialAdmin(dir string) (*AdminClient, error) {
	c, err := unixhttp.Dial(filepath.Join(dir, AdminSocket), "authority admin socket")
	if err != nil {
		return nil, err
	}
	return &AdminClient{c: c}, nil
}

// CreateTicket implements Admin.
func (a *AdminClient) CreateTicket(ctx context.Context, o enroll.TicketOptions) (string, error) {
	var out struct{ Ticket string }
	err := a.c.Do(ctx, "POST", "/v1/tickets", o, &out)
	return out.Ticket, err
}

// Tickets implements Admin.
func (a *AdminClient) Tickets(ctx context.Context) ([]enroll.TicketRecord, error) {
	var out []enroll.TicketRecord
	err := a.c.Do(ctx, "GET", "/v1/tickets", nil, &out)
	return out, err
}

// RevokeTicket implements Admin.
func (a *AdminClient) RevokeTicket(ctx context.Context, id string) (enroll.TicketRecord, error) {
	var out enroll.TicketRecord
	err := a.c.Do(ctx, "POST", "/v1/tickets/"+url.PathEscape(id)+"/revoke", nil, &out)
	return out, err
}

// Members implements Admin.
func (a *AdminClient) Members(ctx context.Context) ([]MemberStatus, error) {
	var out []MemberStatus
	err := a.c.Do(ctx, "GET", "/v1/members", nil, &out)
	return out, err
}

// Revoke implements Admin.
func (a *AdminClient) Revoke(ctx context.Context, id string) (enroll.Member, error) {
	var out enroll.Member
	err := a.c.Do(ctx, "POST", "/v1/members/"+url.PathEscape(id)+"/revoke", nil, &out)
	return out, err
}
