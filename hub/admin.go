// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/edgeportal/connect/enroll"
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
	path := filepath.Join(s.dir.Path, AdminSocket)
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	os.Chmod(path, 0o600)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/tickets", func(w http.ResponseWriter, r *http.Request) {
		var o enroll.TicketOptions
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&o); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		text, err := s.CreateTicket(r.Context(), o)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"ticket": text})
	})
	mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, r *http.Request) {
		ms, err := s.Members(r.Context())
		if err != nil {
			writeErr(w, http.StatusInternalServerError, err)
			return
		}
		json.NewEncoder(w).Encode(ms)
	})
	mux.HandleFunc("POST /v1/members/{id}/revoke", func(w http.ResponseWriter, r *http.Request) {
		m, err := s.Revoke(r.Context(), r.PathValue("id"))
		if err != nil {
			writeErr(w, http.StatusNotFound, err)
			return
		}
		json.NewEncoder(w).Encode(m)
	})
	mux.HandleFunc("POST /v1/commands", func(w http.ResponseWriter, r *http.Request) {
		var req PushRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		res, err := s.Push(r.Context(), req)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("POST /v1/commands/raw", func(w http.ResponseWriter, r *http.Request) {
		var req RawRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		res, err := s.PushRaw(r.Context(), req)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("GET /v1/commands", func(w http.ResponseWriter, r *http.Request) {
		cs, err := s.Commands(r.Context(), r.URL.Query().Get("relay"))
		if err != nil {
			writeErr(w, http.StatusInternalServerError, err)
			return
		}
		json.NewEncoder(w).Encode(cs)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	go func() {
		<-ctx.Done()
		srv.Close()
		os.Remove(path)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func writeErr(w http.ResponseWriter, code int, err error) {
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// AdminClient talks to a running hub's admin socket.
type AdminClient struct {
	hc *http.Client
}

// DialAdmin returns a client for the running hub in dir, or an error when
// no hub is listening there.
func DialAdmin(dir string) (*AdminClient, error) {
	path := filepath.Join(dir, AdminSocket)
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, err
	}
	c.Close()
	return &AdminClient{hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}, nil
}

func (a *AdminClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://hub"+path, body)
	if err != nil {
		return err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("hub admin socket: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return errors.New(e.Error)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out)
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
