// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/internal/unixhttp"
)

// Admin is what the hub's admin commands do. A running hub serves it on an
// owner-only unix socket in its directory (so revocation reaches live
// connections); with no hub running, the CLI uses the store directly.
type Admin interface {
	CreateTicket(ctx context.Context, o enroll.TicketOptions) (string, error)
	Members(ctx context.Context) ([]MemberStatus, error)
	Revoke(ctx context.Context, id string) (enroll.Member, error)
	Push(ctx context.Context, req PushRequest) (PushResult, error)
	Commands(ctx context.Context, relay string) ([]CommandRecord, error)
}

// MemberStatus is a member as `members list` shows it.
type MemberStatus struct {
	enroll.Member
	Connected bool   `json:"connected"`
	RelayUp   string `json:"relay_up,omitempty"`
	Paused    bool   `json:"paused,omitempty"`
}

// Offline is the Admin of a hub that is not running.
type Offline struct {
	Auth  *enroll.Authority
	Dir   *Dir
	Store Store
}

// CreateTicket implements Admin.
func (o *Offline) CreateTicket(ctx context.Context, opts enroll.TicketOptions) (string, error) {
	text, _, err := o.Auth.CreateTicket(ctx, opts)
	return text, err
}

// Members implements Admin.
func (o *Offline) Members(ctx context.Context) ([]MemberStatus, error) {
	ms, err := o.Auth.Store.ListMembers(ctx)
	out := make([]MemberStatus, 0, len(ms))
	for _, m := range ms {
		out = append(out, MemberStatus{Member: m})
	}
	return out, err
}

// Revoke implements Admin.
func (o *Offline) Revoke(ctx context.Context, id string) (enroll.Member, error) {
	return o.Auth.Revoke(ctx, id)
}

// CreateTicket implements Admin for a running hub.
func (s *Server) CreateTicket(ctx context.Context, o enroll.TicketOptions) (string, error) {
	text, g, err := s.auth.CreateTicket(ctx, o)
	if err == nil {
		s.log.Info("ticket created", "ticket", g.TicketID, "relay", g.Relay, "enroller", g.Enroller, "uses", g.Uses,
			"expires", g.Expires().UTC().Format(time.RFC3339))
	}
	return text, err
}

var _ Admin = (*Server)(nil)
var _ Admin = (*Offline)(nil)

// ServeAdmin serves the Admin API on the hub directory's unix socket until
// ctx is done.
func (s *Server) ServeAdmin(ctx context.Context) error {
	mux := http.NewServeMux()
	handle := func(pattern string, f func(r *http.Request) (any, int, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			v, code, err := f(r)
			if err != nil {
				unixhttp.WriteError(w, code, err)
				return
			}
			unixhttp.Reply(w, v)
		})
	}
	decode := func(r *http.Request, v any) error {
		return json.NewDecoder(io.LimitReader(r.Body, unixhttp.MaxRequest)).Decode(v)
	}
	handle("POST /v1/tickets", func(r *http.Request) (any, int, error) {
		var o enroll.TicketOptions
		if err := decode(r, &o); err != nil {
			return nil, http.StatusBadRequest, err
		}
		text, err := s.CreateTicket(r.Context(), o)
		return map[string]string{"ticket": text}, http.StatusBadRequest, err
	})
	handle("GET /v1/members", func(r *http.Request) (any, int, error) {
		ms, err := s.Members(r.Context())
		return ms, http.StatusInternalServerError, err
	})
	handle("POST /v1/members/{id}/revoke", func(r *http.Request) (any, int, error) {
		m, err := s.Revoke(r.Context(), r.PathValue("id"))
		return m, http.StatusNotFound, err
	})
	handle("POST /v1/commands", func(r *http.Request) (any, int, error) {
		var req PushRequest
		if err := decode(r, &req); err != nil {
			return nil, http.StatusBadRequest, err
		}
		res, err := s.Push(r.Context(), req)
		return res, http.StatusBadRequest, err
	})
	handle("POST /v1/commands/raw", func(r *http.Request) (any, int, error) {
		var req RawRequest
		if err := decode(r, &req); err != nil {
			return nil, http.StatusBadRequest, err
		}
		res, err := s.PushRaw(r.Context(), req)
		return res, http.StatusBadRequest, err
	})
	handle("GET /v1/commands", func(r *http.Request) (any, int, error) {
		cs, err := s.Commands(r.Context(), r.URL.Query().Get("relay"))
		return cs, http.StatusInternalServerError, err
	})
	srv, err := unixhttp.Listen(ctx, filepath.Join(s.dir.Path, AdminSocket), mux, slog.NewLogLogger(s.log.Handler(), slog.LevelDebug))
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	<-ctx.Done()
	return srv.Stop()
}

// AdminClient talks to a running hub's admin socket.
type AdminClient struct {
	c *unixhttp.Client
}

// DialAdmin returns a client for the running hub in dir, or an error when
// no hub is listening there.
func DialAdmin(dir string) (*AdminClient, error) {
	c, err := unixhttp.Dial(filepath.Join(dir, AdminSocket), "hub admin socket")
	if err != nil {
		return nil, err
	}
	return &AdminClient{c: c}, nil
}

func (a *AdminClient) do(ctx context.Context, method, path string, in, out any) error {
	return a.c.Do(ctx, method, path, in, out)
}

// CreateTicket implements Admin.
func (a *AdminClient) CreateTicket(ctx context.Context, o enroll.TicketOptions) (string, error) {
	var out struct{ Ticket string }
	err := a.do(ctx, "POST", "/v1/tickets", o, &out)
	return out.Ticket, err
}

// Members implements Admin.
func (a *AdminClient) Members(ctx context.Context) ([]MemberStatus, error) {
	var out []MemberStatus
	err := a.do(ctx, "GET", "/v1/members", nil, &out)
	return out, err
}

// Revoke implements Admin.
func (a *AdminClient) Revoke(ctx context.Context, id string) (enroll.Member, error) {
	var out enroll.Member
	err := a.do(ctx, "POST", "/v1/members/"+id+"/revoke", nil, &out)
	return out, err
}

var _ Admin = (*AdminClient)(nil)

// Push implements Admin.
func (a *AdminClient) Push(ctx context.Context, req PushRequest) (PushResult, error) {
	var out PushResult
	err := a.do(ctx, "POST", "/v1/commands", req, &out)
	return out, err
}

// Commands implements Admin.
func (a *AdminClient) Commands(ctx context.Context, relay string) ([]CommandRecord, error) {
	var out []CommandRecord
	err := a.do(ctx, "GET", "/v1/commands?relay="+url.QueryEscape(relay), nil, &out)
	return out, err
}

// PushRaw sends pre-signed command bytes through a running hub.
func (a *AdminClient) PushRaw(ctx context.Context, req RawRequest) (PushResult, error) {
	var out PushResult
	err := a.do(ctx, "POST", "/v1/commands/raw", req, &out)
	return out, err
}
