// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"time"

	"github.com/edgeportal/connect/internal/unixhttp"
	"github.com/edgeportal/connect/wire/control"
)

// Admin is what the relay's admin commands do. A running relay serves it
// on an owner-only unix socket in its directory (so a command reaches a
// connected node at once); with no relay running, the CLI uses the store
// directly (Offline). Nothing here signs: commands arrive signed.
type Admin interface {
	CommandAdmin
	Commands(ctx context.Context, relay string) ([]CommandRecord, error)
	Relays(ctx context.Context) ([]RelayStatus, error)
	ReleaseRelay(ctx context.Context, name string) (RelayBinding, error)
}

// RelayStatus is a relay name as `relay list` shows it.
type RelayStatus struct {
	RelayBinding
	Up bool `json:"up"` // an owner is connected and registered it
	// Owners are the nodes serving it now (one, or one per replica), with
	// the health each reports. Empty when the relay is not running.
	Owners []RelayOwner `json:"owners,omitempty"`
}

// RelayOwner is one live owner of a relay name.
type RelayOwner struct {
	ID string `json:"id"`
	// RelayNode is the relay node holding its registration (in a
	// cluster; "" for a single relay).
	RelayNode string `json:"relay_node,omitempty"`
	Health
}

var (
	_ Admin = (*Server)(nil)
	_ Admin = (*Offline)(nil)
	_ Admin = (*AdminClient)(nil)
)

// Offline is the Admin of a relay that is not running.
type Offline struct {
	Dir   *Dir
	Store Store
}

func (o *Offline) queue() commandQueue {
	return commandQueue{dir: o.Dir, store: o.Store, now: time.Now}
}

// PrepareCommand implements Admin.
func (o *Offline) PrepareCommand(ctx context.Context, relay string) (CommandSlot, error) {
	return o.queue().prepare(ctx, relay)
}

// SubmitCommand implements Admin: the command is delivered when the relay
// next serves and the node connects.
func (o *Offline) SubmitCommand(ctx context.Context, req SubmitRequest) (PushResult, error) {
	rec, err := o.queue().add(ctx, req)
	if err != nil {
		return PushResult{}, err
	}
	return PushResult{Target: rec.Target, Seq: rec.Seq, State: CommandQueued}, nil
}

// Commands implements Admin.
func (o *Offline) Commands(ctx context.Context, relay string) ([]CommandRecord, error) {
	return o.Store.ListCommands(ctx, relay)
}

// Relays implements Admin.
func (o *Offline) Relays(ctx context.Context) ([]RelayStatus, error) {
	return relayStatus(ctx, o.Store, nil)
}

// ReleaseRelay implements Admin.
func (o *Offline) ReleaseRelay(ctx context.Context, name string) (RelayBinding, error) {
	return releaseRelay(ctx, o.Store, name)
}

// relayStatus lists the bindings with their live owners (owners[name]).
func relayStatus(ctx context.Context, st Store, owners map[string][]RelayOwner) ([]RelayStatus, error) {
	bs, err := st.ListRelays(ctx)
	out := make([]RelayStatus, 0, len(bs))
	for _, b := range bs {
		os := owners[b.Name]
		sort.Slice(os, func(i, j int) bool { return os[i].ID < os[j].ID })
		out = append(out, RelayStatus{RelayBinding: b, Up: len(os) > 0, Owners: os})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

func releaseRelay(ctx context.Context, st Store, name string) (RelayBinding, error) {
	b, err := st.ReleaseRelay(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return b, fmt.Errorf("relay %q is not owned by any node", name)
	}
	return b, err
}

// Commands implements Admin.
func (s *Server) Commands(ctx context.Context, relay string) ([]CommandRecord, error) {
	return s.store.ListCommands(ctx, relay)
}

// Relays implements Admin: the bindings, each with the owners serving
// it now (held here, with the health they reported on their
// connection; in a cluster, held by other relay nodes, from presence).
func (s *Server) Relays(ctx context.Context) ([]RelayStatus, error) {
	return relayStatus(ctx, s.store, s.liveOwners(ctx))
}

// liveOwners returns every relay's live owners, by relay name.
func (s *Server) liveOwners(ctx context.Context) map[string][]RelayOwner {
	owners := map[string][]RelayOwner{}
	here := map[[2]string]bool{}
	me := ""
	if s.cluster != nil {
		me = s.cluster.id
	}
	for _, cc := range s.members.all() {
		if name := cc.relayName(); name != "" {
			owners[name] = append(owners[name], RelayOwner{ID: cc.id, RelayNode: me, Health: cc.state()})
			here[[2]string{name, cc.id}] = true
		}
	}
	if s.cluster != nil {
		ps, _ := s.cluster.store.ListPresence(ctx)
		for _, p := range ps {
			if here[[2]string{p.Relay, p.Owner}] || p.Node == me {
				continue
			}
			owners[p.Relay] = append(owners[p.Relay], RelayOwner{ID: p.Owner, RelayNode: p.Node, Health: p.Health})
		}
	}
	return owners
}

// ReleaseRelay implements Admin: the binding goes, and the owner's live
// registration and the channels to it with it.
func (s *Server) ReleaseRelay(ctx context.Context, name string) (RelayBinding, error) {
	b, err := releaseRelay(ctx, s.store, name)
	if err != nil {
		return b, err
	}
	for _, cc := range s.relays.dropRelay(name) {
		cc.close() // the node reconnects and claims it again if it may
	}
	for _, sess := range s.sessions.dropRelay(name) {
		sess.close()
	}
	s.log.Info("relay released by the vendor", "relay", name, "owner", b.Owner)
	return b, nil
}

// Nodes returns what the relay knows of every node (connected or not).
func (s *Server) Nodes(ctx context.Context) []control.NodeLive { return s.liveNodes(ctx) }

// ServeAdmin serves the Admin API on the relay directory's unix socket
// until ctx is done.
func (s *Server) ServeAdmin(ctx context.Context) error {
	mux := http.NewServeMux()
	handle := func(pattern string, f func(r *http.Request) (any, error)) { unixhttp.Handle(mux, pattern, f) }
	handle("GET /v1/commands/slot", func(r *http.Request) (any, error) {
		return s.PrepareCommand(r.Context(), r.URL.Query().Get("relay"))
	})
	handle("POST /v1/commands", func(r *http.Request) (any, error) {
		var req SubmitRequest
		if err := unixhttp.DecodeBody(r, &req); err != nil {
			return nil, err
		}
		return s.SubmitCommand(r.Context(), req)
	})
	handle("GET /v1/commands", func(r *http.Request) (any, error) {
		return s.Commands(r.Context(), r.URL.Query().Get("relay"))
	})
	handle("GET /v1/relays", func(r *http.Request) (any, error) { return s.Relays(r.Context()) })
	handle("POST /v1/relays/{name}/release", func(r *http.Request) (any, error) {
		return s.ReleaseRelay(r.Context(), r.PathValue("name"))
	})
	srv, err := unixhttp.Listen(ctx, filepath.Join(s.dir.Path, AdminSocket), mux, slog.NewLogLogger(s.log.Handler(), slog.LevelDebug))
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	<-ctx.Done()
	return srv.Stop()
}

// AdminClient talks to a running relay's admin socket.
type AdminClient struct {
	c *unixhttp.Client
}

// DialAdmin returns a client for the running relay in dir, or an error
// when none is listening there.
func DialAdmin(dir string) (*AdminClient, error) {
	c, err := unixhttp.Dial(filepath.Join(dir, AdminSocket), "relay admin socket")
	if err != nil {
		return nil, err
	}
	return &AdminClient{c: c}, nil
}

// PrepareCommand implements Admin.
func (a *AdminClient) PrepareCommand(ctx context.Context, relay string) (CommandSlot, error) {
	var out CommandSlot
	err := a.c.Do(ctx, "GET", "/v1/commands/slot?relay="+url.QueryEscape(relay), nil, &out)
	return out, err
}

// SubmitCommand implements Admin.
func (a *AdminClient) SubmitCommand(ctx context.Context, req SubmitRequest) (PushResult, error) {
	var out PushResult
	err := a.c.Do(ctx, "POST", "/v1/commands", req, &out)
	return out, err
}

// Commands implements Admin.
func (a *AdminClient) Commands(ctx context.Context, relay string) ([]CommandRecord, error) {
	var out []CommandRecord
	err := a.c.Do(ctx, "GET", "/v1/commands?relay="+url.QueryEscape(relay), nil, &out)
	return out, err
}

// Relays implements Admin.
func (a *AdminClient) Relays(ctx context.Context) ([]RelayStatus, error) {
	var out []RelayStatus
	err := a.c.Do(ctx, "GET", "/v1/relays", nil, &out)
	return out, err
}

// ReleaseRelay implements Admin.
func (a *AdminClient) ReleaseRelay(ctx context.Context, name string) (RelayBinding, error) {
	var out RelayBinding
	err := a.c.Do(ctx, "POST", "/v1/relays/"+url.PathEscape(name)+"/release", nil, &out)
	return out, err
}
