// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/edgeportal/connect/wire/control"
)

// relayTable maps a registered relay name to the connection that holds it.
type relayTable struct {
	mu     sync.Mutex // guards byName and each holder's controlConn.relay
	byName map[string]*controlConn
}

func (t *relayTable) init() { t.byName = map[string]*controlConn{} }

// lookup returns the connection holding relay, or nil.
func (t *relayTable) lookup(relay string) *controlConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byName[relay]
}

// register gives name to cc. The same node reconnecting takes its relay
// over from its stale connection (returned, for the caller to close).
func (t *relayTable) register(cc *controlConn, name string) (stale *controlConn, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur := t.byName[name]; cur != nil && cur != cc {
		if cur.id != cc.id {
			return nil, &control.Error{Code: control.ErrCodeRelayTaken, Message: fmt.Sprintf("relay name %q is already registered by another node (%s)", name, cur.id)}
		}
		cur.mu.Lock()
		cur.relay = ""
		cur.mu.Unlock()
		stale = cur
	}
	t.byName[name] = cc
	cc.mu.Lock()
	cc.relay = name
	cc.mu.Unlock()
	return stale, nil
}

// release frees the relay cc holds, if any, and returns its name.
func (t *relayTable) release(cc *controlConn) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	cc.mu.Lock()
	name := cc.relay
	cc.relay = ""
	cc.mu.Unlock()
	if name != "" && t.byName[name] == cc {
		delete(t.byName, name)
		return name
	}
	return ""
}

// dropMember frees every relay a member holds.
func (t *relayTable) dropMember(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, cc := range t.byName {
		if cc.id == id {
			delete(t.byName, name)
		}
	}
}

func (t *relayTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byName)
}

// handleRegisterRelay registers the relay the member's credential names.
// The first identity to register a name owns it durably: another one is
// refused, naming the owner, until the vendor frees it (relay release, or
// revoking the owner).
func handleRegisterRelay(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	req, err := body[control.RegisterRelayRequest](m)
	if err != nil {
		return nil, err
	}
	cred := cc.credential()
	if req.Name == "" || req.Name != cred.Relay {
		allowed := "no relay"
		if cred.Relay != "" {
			allowed = fmt.Sprintf("only %q", cred.Relay)
		}
		return nil, &control.Error{Code: control.ErrCodeRelayRefused, Message: fmt.Sprintf("relay name %q refused: this node's credential allows %s", req.Name, allowed)}
	}
	b, err := s.store.ClaimRelay(ctx, req.Name, cc.id, s.now().Unix())
	if err != nil {
		return nil, err
	}
	if b.Owner != cc.id {
		cc.log.Warn("relay name claimed by another identity; refused", "relay", req.Name, "owner", b.Owner)
		return nil, &control.Error{Code: control.ErrCodeRelayTaken, Message: fmt.Sprintf(
			"relay name %q belongs to node %s (since %s); the vendor can free it with `relay release %s` or by revoking that node",
			req.Name, b.Owner, time.Unix(b.Since, 0).UTC().Format(time.RFC3339), req.Name)}
	}
	stale, err := s.relays.register(cc, req.Name)
	if err != nil {
		return nil, err
	}
	if s.cluster != nil {
		if err := s.claimPresence(ctx, cc, req.Name); err != nil {
			s.relays.release(cc)
			return nil, err
		}
	}
	if stale != nil {
		stale.close()
	}
	cc.log.Info("relay up", "relay", req.Name)
	return nil, nil
}
