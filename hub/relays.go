// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/edgeportal/connect/internal/escape"
	"github.com/edgeportal/connect/wire/control"
)

// The relay registry. A relay name has one owner, the first identity to
// register it, until the vendor frees it. A name may be served by
// several nodes only on purpose: when its first owner registered it with
// a replica credential (its ticket said --replica), the binding is a
// replicas' binding, and every node whose credential makes it a replica
// of the name serves it too. An unplanned second node is refused as
// before, and a replica credential cannot join a sole owner's name (nor
// a plain one a replicas' name): the binding never changes kind.
//
// relayTable holds the live owners of each name on this relay node; in a
// cluster, presence rows (one per relay and owner) say which relay node
// holds each owner's registration, with the health the owner reported.

// relayTable maps a registered relay name to the connections that hold
// it (one, or one per replica).
type relayTable struct {
	mu     sync.Mutex                // guards byName, turn and each holder's controlConn.relay
	byName map[string][]*controlConn // the live owners of each name, in registration order
	turn   map[string]uint           // steering's round-robin position per name
}

func (t *relayTable) init() {
	t.byName = map[string][]*controlConn{}
	t.turn = map[string]uint{}
}

// lookup returns the connections holding relay (nil if none).
func (t *relayTable) lookup(relay string) []*controlConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.byName[relay])
}

// holder returns the connection of owner holding relay, or nil.
func (t *relayTable) holder(relay, owner string) *controlConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, cc := range t.byName[relay] {
		if cc.id == owner {
			return cc
		}
	}
	return nil
}

// nextTurn returns relay's round-robin counter and advances it.
func (t *relayTable) nextTurn(relay string) uint {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.turn[relay]
	t.turn[relay] = n + 1
	return n
}

// register gives name to cc (a replica when replica). The same node
// reconnecting takes its relay over from its stale connection
// (returned, for the caller to close). Another node holding it here is
// a refusal unless both are replicas.
func (t *relayTable) register(cc *controlConn, name string, replica bool) (stale *controlConn, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.byName[name]
	for i, h := range cur {
		if h.id == cc.id && h != cc {
			h.mu.Lock()
			h.relay = ""
			h.mu.Unlock()
			stale = h
			cur = slices.Delete(slices.Clone(cur), i, i+1)
			break
		}
	}
	for _, h := range cur {
		if h.id != cc.id && !(replica && h.isReplica()) {
			return nil, &control.Error{Code: control.ErrCodeRelayTaken, Message: fmt.Sprintf("relay name %q is already registered by another node (%s)", name, h.id)}
		}
	}
	if !slices.Contains(cur, cc) {
		cur = append(cur, cc)
	}
	t.byName[name] = cur
	cc.mu.Lock()
	cc.relay, cc.replica = name, replica
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
	if name == "" {
		return ""
	}
	cur := t.byName[name]
	i := slices.Index(cur, cc)
	if i < 0 {
		return ""
	}
	t.setLocked(name, slices.Delete(slices.Clone(cur), i, i+1))
	return name
}

// setLocked sets name's holders, forgetting a name nobody holds.
func (t *relayTable) setLocked(name string, holders []*controlConn) {
	if len(holders) == 0 {
		delete(t.byName, name)
		delete(t.turn, name)
		return
	}
	t.byName[name] = holders
}

// dropMember frees every relay a member holds.
func (t *relayTable) dropMember(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, cur := range t.byName {
		t.setLocked(name, slices.DeleteFunc(slices.Clone(cur), func(cc *controlConn) bool { return cc.id == id }))
	}
}

// dropRelay frees relay from every holder and returns them.
func (t *relayTable) dropRelay(relay string) []*controlConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.byName[relay]
	for _, cc := range cur {
		cc.mu.Lock()
		cc.relay = ""
		cc.mu.Unlock()
	}
	t.setLocked(relay, nil)
	return cur
}

// count is how many relay names are held here.
func (t *relayTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byName)
}

// handleRegisterRelay registers the relay the member's credential names.
// The first identity to register a name owns it durably: another one is
// refused, naming the owner, until the vendor frees it (relay release, or
// revoking the owner), unless the binding is a replicas' one and the
// node's credential makes it a replica of the name.
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
	b, err := s.store.ClaimRelay(ctx, req.Name, cc.id, cred.Replica, s.now().Unix())
	if err != nil {
		return nil, err
	}
	if refusal := bindingRefusal(b, cc.id, cred.Replica); refusal != nil {
		cc.log.Warn("relay name held by another identity; refused", "relay", req.Name, "owner", b.Owner, "replicas", b.Replicas, "replica", cred.Replica)
		return nil, refusal
	}
	stale, err := s.relays.register(cc, req.Name, cred.Replica)
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
	cc.log.Info("relay up", "relay", req.Name, "replica", cred.Replica)
	return nil, nil
}

// bindingRefusal says why node (a replica when replica) may not serve
// b's name, or nil when it may: it owns it, or both it and the binding
// are replicas'.
func bindingRefusal(b RelayBinding, node string, replica bool) *control.Error {
	since := time.Unix(b.Since, 0).UTC().Format(time.RFC3339)
	free := fmt.Sprintf("the vendor can free it with `relay release %s` or by revoking that node", b.Name)
	switch {
	case b.Owner == node, b.Replicas && replica:
		return nil
	case b.Replicas:
		return &control.Error{Code: control.ErrCodeRelayTaken, Message: fmt.Sprintf(
			"relay name %q is served by replicas (the first, node %s, since %s), and this node's credential does not make it one: its ticket needs --replica", b.Name, b.Owner, since)}
	case replica:
		return &control.Error{Code: control.ErrCodeRelayTaken, Message: fmt.Sprintf(
			"relay name %q belongs to node %s (since %s) as its sole owner, which takes no replica; %s", b.Name, b.Owner, since, free)}
	}
	return &control.Error{Code: control.ErrCodeRelayTaken, Message: fmt.Sprintf(
		"relay name %q belongs to node %s (since %s); %s", b.Name, b.Owner, since, free)}
}

// checkDown validates a reported Down list and returns it as the hub
// keeps it (sorted, without duplicates); a bad one is refused whole.
func checkDown(down []string) ([]string, *control.Error) {
	if len(down) > control.MaxDown {
		return nil, &control.Error{Code: control.ErrCodeBadRequest, Message: fmt.Sprintf("node state: %d outlets down, at most %d", len(down), control.MaxDown)}
	}
	for _, d := range down {
		if !outletNameRE.MatchString(d) {
			return nil, &control.Error{Code: control.ErrCodeBadRequest, Message: fmt.Sprintf("node state: %s is not an outlet name", escape.String(strconv.Quote(d)))}
		}
	}
	out := slices.Clone(down)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// outletNameRE is an outlet's name (as agent/config.ValidName has it).
var outletNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
