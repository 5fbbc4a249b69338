// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package localapi is the node's local control socket: an HTTP API on an
// owner-only unix socket in the state directory, serving status, outlet and
// inlet management, ticket creation, pause and drain, plus the typed
// Client the CLI uses.
//
// It does not import agent: the agent implements Backend and passes itself
// in. Imported by agent and cmd.
package localapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/internal/unixhttp"
)

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
	Channels          []Channel         `json:"channels"`
	// Replica: the node serves its relay as one of several replicas (its
	// ticket said --replica).
	Replica bool `json:"replica"`
	// Draining: `drain` was run; the node takes no new portal until it
	// restarts.
	Draining bool `json:"draining"`
	// Down lists the outlets whose target the node's health checks cannot
	// reach now (reported to the relay, which steers new portals to
	// replicas that can).
	Down []string `json:"down,omitempty"`
}

// Channel is one end-to-end channel to a peer node.
type Channel struct {
	Peer      string    `json:"peer"`
	Relay     string    `json:"relay"`
	Direction string    `json:"direction"` // out: this node opened it (its inlets); in: a peer did (this node's outlets)
	Suite     string    `json:"suite"`     // the Noise protocol, e.g. Noise_XXpsk3+MLKEM768_25519_AESGCM_SHA256
	Streams   int       `json:"streams"`   // portals open in it now
	Since     time.Time `json:"since"`
	RTT       string    `json:"rtt,omitempty"` // last measured round trip
	// Draining: the peer refused a portal because it is draining; this
	// node opens no new portal on the channel.
	Draining bool `json:"draining,omitempty"`
	// Refused lists the outlets the peer refused lately (target refused
	// or timed out, paused): new portals to them go to another replica.
	Refused []string `json:"refused,omitempty"`
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
	Allow  string `json:"allow,omitempty"` // the effective policy
	Origin string `json:"origin"`          // config | cli | vendor
	// For vendor outlets: the vendor's own allow and the customer's
	// ceiling; Allow is both.
	VendorAllow string `json:"vendor_allow,omitempty"`
	Ceiling     string `json:"ceiling,omitempty"`
	// Warnings (from AddOutlet) are what looks wrong but may come right
	// later: a target that does not resolve, an attribute no member has.
	Warnings []string `json:"warnings,omitempty"`
	// Down is why the node's health check cannot reach the target now
	// ("" while it can, or before the first check).
	Down string `json:"down,omitempty"`
}

// Warning is one thing `doctor` found wrong with an outlet or an inlet.
type Warning struct {
	Kind    string `json:"kind"` // outlet | inlet
	Name    string `json:"name"` // the outlet's name, the inlet's listen address
	Message string `json:"message"`
}

// Inlet is one inlet.
type Inlet struct {
	From      string `json:"from"`
	Via       string `json:"via"`
	To        string `json:"to"`
	Allow     string `json:"allow,omitempty"`
	Origin    string `json:"origin"`
	Listening string `json:"listening,omitempty"` // the bound address
	// Warnings (from AddInlet): a relay no node has registered, an
	// attribute no member has.
	Warnings []string `json:"warnings,omitempty"`
}

// TicketRequest asks the node (an enroller) to create a ticket via the hub.
type TicketRequest struct {
	Attributes map[string]string `json:"attributes,omitempty"`
	Relay      string            `json:"relay,omitempty"`
	Replica    bool              `json:"replica,omitempty"`
	ExpiresIn  time.Duration     `json:"expires_in"`
	Uses       int               `json:"uses"`
}

// Explanation answers "what can the vendor reach through this outlet?".
type Explanation struct {
	Outlet      string `json:"outlet"`
	To          string `json:"to"`
	Origin      string `json:"origin"`
	Allow       string `json:"allow,omitempty"` // the effective policy
	VendorAllow string `json:"vendor_allow,omitempty"`
	Ceiling     string `json:"ceiling,omitempty"`
	Admits      string `json:"admits"`
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

// DrainRequest asks the node to drain, with a deadline.
type DrainRequest struct {
	Deadline time.Duration `json:"deadline"`
}

// DrainStatus is where a drain is: the node reports Draining to the
// relay (which sends new portals to other replicas) and refuses new ones
// itself; open portals finish; when none is left, or at the deadline,
// it closes the channels peers opened to it.
type DrainStatus struct {
	Draining bool          `json:"draining"`
	Started  bool          `json:"started,omitempty"` // this request started it (Drain's answer only)
	Since    time.Time     `json:"since,omitempty"`
	Deadline time.Time     `json:"deadline,omitempty"`
	Open     []DrainPortal `json:"open"` // portals through this node's outlets still open
	// Done: no portal was left, or the deadline came; the channels peers
	// opened are closed. The node serves again after a restart.
	Done bool `json:"done"`
	// DeadlineReached: the deadline came first; Cut lists the portals it
	// closed.
	DeadlineReached bool          `json:"deadline_reached,omitempty"`
	Cut             []DrainPortal `json:"cut,omitempty"`
}

// DrainPortal is one portal through the node's outlets.
type DrainPortal struct {
	Outlet string    `json:"outlet"`
	Peer   string    `json:"peer"`
	Since  time.Time `json:"since"`
}

// Backend is implemented by the running node.
type Backend interface {
	Update(ctx context.Context, r UpdateRequest) (UpdateResult, error)
	Status(ctx context.Context) Status
	Explain(ctx context.Context) []Explanation
	SetPaused(ctx context.Context, paused bool) error
	AddOutlet(ctx context.Context, o Outlet) (Outlet, error)
	RemoveOutlet(ctx context.Context, name string) error
	AddInlet(ctx context.Context, in Inlet) (Inlet, error)
	RemoveInlet(ctx context.Context, from string) error
	CreateTicket(ctx context.Context, r TicketRequest) (string, error)
	// Check looks at every outlet and inlet as AddOutlet and AddInlet do.
	Check(ctx context.Context) []Warning
	// FlushAudit writes the audit records the node holds back.
	FlushAudit(ctx context.Context) error
	// Drain starts draining (or reports a drain already going) and
	// returns where it is.
	Drain(ctx context.Context, r DrainRequest) (DrainStatus, error)
	// DrainStatus reports where a drain is.
	DrainStatus(ctx context.Context) DrainStatus
}

// Serve serves b on the socket in stateDir until the returned stop is
// called; requests carry ctx. The socket is owner-only (0600, in a 0700
// directory).
func Serve(ctx context.Context, stateDir string, b Backend) (func() error, error) {
	path := filepath.Join(stateDir, statedir.Socket)
	decode := unixhttp.Decode
	writeErr := unixhttp.WriteError
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		unixhttp.Reply(w, b.Status(r.Context()))
	})
	mux.HandleFunc("POST /v1/outlets", func(w http.ResponseWriter, r *http.Request) {
		var o Outlet
		if !decode(w, r, &o) {
			return
		}
		got, err := b.AddOutlet(r.Context(), o)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		unixhttp.Reply(w, got)
	})
	mux.HandleFunc("GET /v1/check", func(w http.ResponseWriter, r *http.Request) {
		unixhttp.Reply(w, b.Check(r.Context()))
	})
	mux.HandleFunc("POST /v1/audit/flush", func(w http.ResponseWriter, r *http.Request) {
		if err := b.FlushAudit(r.Context()); err != nil {
			writeErr(w, http.StatusInternalServerError, err)
			return
		}
		unixhttp.Reply(w, struct{}{})
	})
	mux.HandleFunc("DELETE /v1/outlets/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := b.RemoveOutlet(r.Context(), r.PathValue("name")); err != nil {
			writeErr(w, http.StatusNotFound, err)
			return
		}
		unixhttp.Reply(w, struct{}{})
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
		unixhttp.Reply(w, got)
	})
	mux.HandleFunc("DELETE /v1/inlets", func(w http.ResponseWriter, r *http.Request) {
		if err := b.RemoveInlet(r.Context(), r.URL.Query().Get("from")); err != nil {
			writeErr(w, http.StatusNotFound, err)
			return
		}
		unixhttp.Reply(w, struct{}{})
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
		unixhttp.Reply(w, map[string]string{"ticket": t})
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
		unixhttp.Reply(w, res)
	})
	mux.HandleFunc("GET /v1/explain", func(w http.ResponseWriter, r *http.Request) {
		unixhttp.Reply(w, b.Explain(r.Context()))
	})
	mux.HandleFunc("POST /v1/drain", func(w http.ResponseWriter, r *http.Request) {
		var req DrainRequest
		if !decode(w, r, &req) {
			return
		}
		st, err := b.Drain(r.Context(), req)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		unixhttp.Reply(w, st)
	})
	mux.HandleFunc("GET /v1/drain", func(w http.ResponseWriter, r *http.Request) {
		unixhttp.Reply(w, b.DrainStatus(r.Context()))
	})
	for path, paused := range map[string]bool{"/v1/pause": true, "/v1/resume": false} {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			if err := b.SetPaused(r.Context(), paused); err != nil {
				writeErr(w, http.StatusInternalServerError, err)
				return
			}
			unixhttp.Reply(w, struct{}{})
		})
	}
	srv, err := unixhttp.Listen(ctx, path, mux, nil)
	if errors.Is(err, unixhttp.ErrInUse) {
		return nil, fmt.Errorf("another node is already running with state directory %s", stateDir)
	}
	if err != nil {
		return nil, fmt.Errorf("local control socket: %w", err)
	}
	stop := srv.Stop
	return stop, nil
}

// ErrNotRunning means no node answers on the state directory's socket.
var ErrNotRunning = errors.New("no node is running")

// Client talks to a running node.
type Client struct {
	c *unixhttp.Client
}

// Dial returns a client for the node running with stateDir, or an error
// wrapping ErrNotRunning.
func Dial(stateDir string) (*Client, error) {
	c, err := unixhttp.Dial(filepath.Join(stateDir, statedir.Socket), "local control socket")
	if err != nil {
		return nil, fmt.Errorf("%w with state directory %s%s", ErrNotRunning, stateDir, strings.TrimPrefix(err.Error(), unixhttp.ErrNotRunning.Error()))
	}
	return &Client{c: c}, nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.c.Do(ctx, method, path, in, out)
}

// Status returns the node's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, "GET", "/v1/status", nil, &s)
	return s, err
}

// AddOutlet creates an outlet and returns it with its warnings.
func (c *Client) AddOutlet(ctx context.Context, o Outlet) (Outlet, error) {
	var out Outlet
	err := c.do(ctx, "POST", "/v1/outlets", o, &out)
	return out, err
}

// FlushAudit asks the node to write the audit records it holds back.
func (c *Client) FlushAudit(ctx context.Context) error {
	return c.do(ctx, "POST", "/v1/audit/flush", struct{}{}, nil)
}

// Check returns what looks wrong with the node's outlets and inlets.
func (c *Client) Check(ctx context.Context) ([]Warning, error) {
	var out []Warning
	err := c.do(ctx, "GET", "/v1/check", nil, &out)
	return out, err
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

// Drain asks the node to drain with deadline (or reports a drain going).
func (c *Client) Drain(ctx context.Context, deadline time.Duration) (DrainStatus, error) {
	var out DrainStatus
	err := c.do(ctx, "POST", "/v1/drain", DrainRequest{Deadline: deadline}, &out)
	return out, err
}

// DrainStatus asks where the node's drain is.
func (c *Client) DrainStatus(ctx context.Context) (DrainStatus, error) {
	var out DrainStatus
	err := c.do(ctx, "GET", "/v1/drain", nil, &out)
	return out, err
}

// Update asks the node to check for or apply a release.
func (c *Client) Update(ctx context.Context, r UpdateRequest) (UpdateResult, error) {
	var out UpdateResult
	err := c.do(ctx, "POST", "/v1/update", r, &out)
	return out, err
}
