// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package localapi is the node's local control socket: an HTTP API on an
// owner-only unix socket in the state directory, serving status, outlet and
// inlet management and ticket creation, plus the typed Client the CLI uses.
//
// It does not import agent: the agent implements Backend and passes itself
// in. Imports: stdlib only. Imported by agent and cmd.
package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// SocketName is the socket's file name inside the state directory.
const SocketName = "agent.sock"

// Status is what `status --json` prints.
type Status struct {
	Identifier        string            `json:"identifier"`
	Attributes        map[string]string `json:"attributes"`
	Enroller          bool              `json:"enroller"`
	Project           string            `json:"project"`
	Vendor            string            `json:"vendor"`
	Hub               string            `json:"hub"`
	HubConnected      bool              `json:"hub_connected"`
	HubError          string            `json:"hub_error,omitempty"`
	Relay             RelayStatus       `json:"relay"`
	CredentialExpires time.Time         `json:"credential_expires"`
	Version           string            `json:"version"`
	StateDir          string            `json:"state_dir"`
	Outlets           []Outlet          `json:"outlets"`
	Inlets            []Inlet           `json:"inlets"`
	Paused            bool              `json:"paused"`
}

// RelayStatus is the node's relay registration.
type RelayStatus struct {
	Name      string `json:"name"`
	Connected bool   `json:"connected"`
	Error     string `json:"error,omitempty"`
}

// Outlet is one outlet.
type Outlet struct {
	Name   string `json:"name"`
	To     string `json:"to"`
	Allow  string `json:"allow,omitempty"`
	Origin string `json:"origin"` // config | cli | vendor
}

// Inlet is one inlet.
type Inlet struct {
	From      string `json:"from"`
	Via       string `json:"via"`
	To        string `json:"to"`
	Allow     string `json:"allow,omitempty"`
	Origin    string `json:"origin"`
	Listening string `json:"listening,omitempty"` // the bound address
}

// TicketRequest asks the node (an enroller) to create a ticket via the hub.
type TicketRequest struct {
	Attributes map[string]string `json:"attributes,omitempty"`
	Relay      string            `json:"relay,omitempty"`
	ExpiresIn  time.Duration     `json:"expires_in"`
	Uses       int               `json:"uses"`
}

// Explanation answers "what can the vendor reach through this outlet?".
type Explanation struct {
	Outlet string `json:"outlet"`
	To     string `json:"to"`
	Origin string `json:"origin"`
	Allow  string `json:"allow,omitempty"`
	Admits string `json:"admits"`
}

// UpdateRequest asks the node to check for or apply a release.
type UpdateRequest struct {
	Check   bool   `json:"check"`
	Version string `json:"version,omitempty"`
}

// UpdateResult says what the node found or did.
type UpdateResult struct {
	Current   string `json:"current"`
	Available string `json:"available,omitempty"`
	Updated   bool   `json:"updated"`
	Message   string `json:"message,omitempty"`
}

// Backend is implemented by the running node.
type Backend interface {
	Update(ctx context.Context, r UpdateRequest) (UpdateResult, error)
	Status(ctx context.Context) Status
	Explain(ctx context.Context) []Explanation
	SetPaused(ctx context.Context, paused bool) error
	AddOutlet(ctx context.Context, o Outlet) error
	RemoveOutlet(ctx context.Context, name string) error
	AddInlet(ctx context.Context, in Inlet) (Inlet, error)
	RemoveInlet(ctx context.Context, from string) error
	CreateTicket(ctx context.Context, r TicketRequest) (string, error)
}

// shutdownTimeout bounds how long stopping waits for requests in flight.
const shutdownTimeout = 5 * time.Second

// Serve serves b on the socket in stateDir until the returned stop is
// called; requests carry ctx. The socket is owner-only (0600, in a 0700
// directory).
func Serve(ctx context.Context, stateDir string, b Backend) (func() error, error) {
	path := filepath.Join(stateDir, SocketName)
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another node is already running with state directory %s", stateDir)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("local control socket: %w", err)
	}
	os.Chmod(path, 0o600)
	mux := http.NewServeMux()
	decode := func(w http.ResponseWriter, r *http.Request, v any) bool {
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v); err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("bad request: %w", err))
			return false
		}
		return true
	}
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(b.Status(r.Context()))
	})
	mux.HandleFunc("POST /v1/outlets", func(w http.ResponseWriter, r *http.Request) {
		var o Outlet
		if !decode(w, r, &o) {
			return
		}
		if err := b.AddOutlet(r.Context(), o); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		json.NewEncoder(w).Encode(o)
	})
	mux.HandleFunc("DELETE /v1/outlets/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := b.RemoveOutlet(r.Context(), r.PathValue("name")); err != nil {
			writeErr(w, http.StatusNotFound, err)
			return
		}
		json.NewEncoder(w).Encode(struct{}{})
	})
	mux.HandleFunc("POST /v1/inlets", func(w http.ResponseWriter, r *http.Request) {
		var in Inlet
		if !decode(w, r, &in) {
			return
		}
		got, err := b.AddInlet(r.Context(), in)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		json.NewEncoder(w).Encode(got)
	})
	mux.HandleFunc("DELETE /v1/inlets", func(w http.ResponseWriter, r *http.Request) {
		if err := b.RemoveInlet(r.Context(), r.URL.Query().Get("from")); err != nil {
			writeErr(w, http.StatusNotFound, err)
			return
		}
		json.NewEncoder(w).Encode(struct{}{})
	})
	mux.HandleFunc("POST /v1/tickets", func(w http.ResponseWriter, r *http.Request) {
		var req TicketRequest
		if !decode(w, r, &req) {
			return
		}
		t, err := b.CreateTicket(r.Context(), req)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"ticket": t})
	})
	mux.HandleFunc("POST /v1/update", func(w http.ResponseWriter, r *http.Request) {
		var req UpdateRequest
		if !decode(w, r, &req) {
			return
		}
		res, err := b.Update(r.Context(), req)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("GET /v1/explain", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(b.Explain(r.Context()))
	})
	for path, paused := range map[string]bool{"/v1/pause": true, "/v1/resume": false} {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			if err := b.SetPaused(r.Context(), paused); err != nil {
				writeErr(w, http.StatusInternalServerError, err)
				return
			}
			json.NewEncoder(w).Encode(struct{}{})
		})
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	var once sync.Once
	var stopErr error
	// stop shuts the server down gracefully (answers in flight, such as an
	// update's, still reach their client), waits for it and removes the
	// socket. It is idempotent; the caller must call it.
	stop := func() error {
		once.Do(func() {
			sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			stopErr = srv.Shutdown(sctx)
			if stopErr != nil {
				srv.Close()
			}
			<-served
			os.Remove(path)
		})
		return stopErr
	}
	return stop, nil
}

func writeErr(w http.ResponseWriter, code int, err error) {
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// ErrNotRunning means no node answers on the state directory's socket.
var ErrNotRunning = errors.New("no node is running")

// Client talks to a running node.
type Client struct {
	hc  *http.Client
	dir string
}

// Dial returns a client for the node running with stateDir, or an error
// wrapping ErrNotRunning.
func Dial(stateDir string) (*Client, error) {
	path := filepath.Join(stateDir, SocketName)
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("%w with state directory %s", ErrNotRunning, stateDir)
		}
		return nil, fmt.Errorf("%w with state directory %s (%v)", ErrNotRunning, stateDir, err)
	}
	c.Close()
	return &Client{dir: stateDir, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}, nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://node"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("local control socket: %w", err)
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
	if out == nil {
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out)
}

// Status returns the node's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, "GET", "/v1/status", nil, &s)
	return s, err
}

// AddOutlet creates an outlet.
func (c *Client) AddOutlet(ctx context.Context, o Outlet) error {
	return c.do(ctx, "POST", "/v1/outlets", o, nil)
}

// RemoveOutlet deletes an outlet.
func (c *Client) RemoveOutlet(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/v1/outlets/"+url.PathEscape(name), nil, nil)
}

// AddInlet creates an inlet and returns it with its bound address.
func (c *Client) AddInlet(ctx context.Context, in Inlet) (Inlet, error) {
	var out Inlet
	err := c.do(ctx, "POST", "/v1/inlets", in, &out)
	return out, err
}

// RemoveInlet deletes the inlet listening on from.
func (c *Client) RemoveInlet(ctx context.Context, from string) error {
	return c.do(ctx, "DELETE", "/v1/inlets?from="+url.QueryEscape(from), nil, nil)
}

// CreateTicket asks the node to create a ticket through the hub.
func (c *Client) CreateTicket(ctx context.Context, r TicketRequest) (string, error) {
	var out struct{ Ticket string }
	err := c.do(ctx, "POST", "/v1/tickets", r, &out)
	return out.Ticket, err
}

// Explain asks what the vendor can reach through this node.
func (c *Client) Explain(ctx context.Context) ([]Explanation, error) {
	var out []Explanation
	err := c.do(ctx, "GET", "/v1/explain", nil, &out)
	return out, err
}

// SetPaused pauses or resumes the node.
func (c *Client) SetPaused(ctx context.Context, paused bool) error {
	path := "/v1/resume"
	if paused {
		path = "/v1/pause"
	}
	return c.do(ctx, "POST", path, struct{}{}, nil)
}

// Update asks the node to check for or apply a release.
func (c *Client) Update(ctx context.Context, r UpdateRequest) (UpdateResult, error) {
	var out UpdateResult
	err := c.do(ctx, "POST", "/v1/update", r, &out)
	return out, err
}
