// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package unixhttp is the JSON-over-HTTP plumbing of the owner-only unix
// sockets: the node's local API (agent/localapi) and the hub's admin API
// (hub) both serve and call through it.
//
// A server listens on a socket file with mode 0600 (its directory is
// 0700), shuts down gracefully so answers in flight reach their client,
// and refuses to start when another process already answers there. Errors
// travel as {"error": "..."} with a non-200 status and come back as Go
// errors with the same text.
//
// A leaf: stdlib only.
package unixhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"
)

// Limits of a request or answer body.
const (
	MaxRequest  = 1 << 20
	MaxResponse = 64 << 20
	// ShutdownTimeout bounds how long Stop waits for requests in flight.
	ShutdownTimeout = 5 * time.Second
)

// ErrNotRunning means nothing answers on the socket.
var ErrNotRunning = errors.New("nothing is listening on the socket")

// ErrInUse means another process already serves on the socket.
var ErrInUse = errors.New("another process is already serving on the socket")

// Server is a running socket server.
type Server struct {
	path   string
	srv    *http.Server
	served chan struct{}
	once   sync.Once
	err    error
}

// Listen serves h on the socket at path. Requests carry ctx; errLog (nil:
// the log package's default) gets the server's own errors. The caller
// must call Stop.
func Listen(ctx context.Context, path string, h http.Handler, errLog *log.Logger) (*Server, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, ErrInUse
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	srv.ErrorLog = errLog
	s := &Server{path: path, srv: srv, served: make(chan struct{})}
	go func() {
		defer close(s.served)
		srv.Serve(ln)
	}()
	return s, nil
}

// Stop shuts the server down gracefully, waits for it and removes the
// socket file. It is idempotent.
func (s *Server) Stop() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if s.err = s.srv.Shutdown(ctx); s.err != nil {
			s.srv.Close()
		}
		<-s.served
		os.Remove(s.path)
	})
	return s.err
}

// Decode reads a JSON request body into v, answering 400 when it cannot.
func Decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := DecodeBody(r, v); err != nil {
		WriteError(w, http.StatusBadRequest, fmt.Errorf("bad request: %w", err))
		return false
	}
	return true
}

// DecodeBody reads a JSON request body (at most MaxRequest bytes) into v.
func DecodeBody(r *http.Request, v any) error {
	return json.NewDecoder(io.LimitReader(r.Body, MaxRequest)).Decode(v)
}

// Handle serves pattern on mux with f: its value is the JSON answer, its
// error a 400 with the error's text.
func Handle(mux *http.ServeMux, pattern string, f func(r *http.Request) (any, error)) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		v, err := f(r)
		if err != nil {
			WriteError(w, http.StatusBadRequest, err)
			return
		}
		Reply(w, v)
	})
}

// Reply writes v as the JSON answer.
func Reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// WriteError writes an error answer.
func WriteError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// Client calls a socket server.
type Client struct {
	hc   *http.Client
	what string // names the socket in errors ("local control socket")
}

// Dial returns a client for the server at path, or an error wrapping
// ErrNotRunning when nothing answers there. what names the socket in
// errors.
func Dial(path, what string) (*Client, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, ErrNotRunning
		}
		return nil, fmt.Errorf("%w (%v)", ErrNotRunning, err)
	}
	c.Close()
	return &Client{what: what, hc: &http.Client{Transport: &http.Transport{
		// One request per connection: nothing lingers after a CLI call.
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}, nil
}

// Do sends in (nil: no body) as JSON and decodes the answer into out (nil:
// ignore it). A non-200 answer returns its error text.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://socket"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", c.what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.NewDecoder(io.LimitReader(resp.Body, MaxRequest)).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return errors.New(e.Error)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, MaxResponse)).Decode(out)
}
