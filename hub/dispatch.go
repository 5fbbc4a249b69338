// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgeportal/connect/internal/escape"
	"github.com/edgeportal/connect/internal/ratelimit"
	"github.com/edgeportal/connect/wire/control"
)

// handler answers one control request. It returns the response body (nil
// for none) or an error that becomes the refusal the node sees.
type handler func(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error)

// handlers is the control protocol, one table per role, one entry per
// request type. Each handler lives in the file of its job. Redemption,
// refresh and tickets are not here: nodes ask the authority for them, end
// to end, over an authority connection.
var handlers map[string]map[control.Type]handler

func init() {
	handlers = map[string]map[control.Type]handler{
		control.RoleMember: {
			control.TypePing:          handlePing,
			control.TypeCredential:    handleCredential,
			control.TypeRegisterRelay: handleRegisterRelay,
			control.TypeOpenSession:   handleOpenSession,
			control.TypeCommandAck:    handleCommandAck,
			control.TypeNodeState:     handleNodeState,
			control.TypePortalCheck:   handlePortalCheck,
			control.TypeReleaseCheck:  handleReleaseCheck,
			control.TypeReleaseFetch:  handleReleaseFetch,
			control.TypeUpdateResult:  handleUpdateResult,
		},
		control.RoleAuthority: {
			control.TypePing:        handlePing,
			control.TypeRevocations: handleRevocations,
			control.TypeLiveStatus:  handleLiveStatus,
			ClusterNodesType:        handleClusterNodes,
		},
	}
}

// memberLimits are how often one member may ask for each kind of
// request (per identity, whatever its connections). A busy node's portals
// and release downloads stay well inside them; a member that floods the
// relay is told to slow down, and other members do not notice.
var memberLimits = map[int]ratelimit.Rule{
	int(control.TypePing):          {Every: 10, Per: time.Second, Burst: 20},
	int(control.TypeCredential):    {Every: 6, Per: time.Minute, Burst: 6},
	int(control.TypeRegisterRelay): {Every: 2, Per: time.Second, Burst: 10},
	int(control.TypeOpenSession):   {Every: 100, Per: time.Second, Burst: 400},
	int(control.TypeCommandAck):    {Every: 50, Per: time.Second, Burst: 200},
	int(control.TypeNodeState):     {Every: 2, Per: time.Second, Burst: 10},
	int(control.TypePortalCheck):   {Every: 2, Per: time.Second, Burst: 20},
	int(control.TypeReleaseCheck):  {Every: 2, Per: time.Second, Burst: 20},
	int(control.TypeReleaseFetch):  {Every: 400, Per: time.Second, Burst: 800},
	int(control.TypeUpdateResult):  {Every: 2, Per: time.Second, Burst: 10},
}

// dispatch answers m on cc's own queue. It returns an error only when the
// connection is gone.
func (s *Server) dispatch(ctx context.Context, cc *controlConn, m control.Msg) error {
	h := handlers[cc.role][m.Type]
	var resp any
	var err error
	switch {
	case h == nil:
		err = &control.Error{Code: control.ErrCodeUnsupported, Message: fmt.Sprintf("unsupported control message type %d", m.Type)}
	case cc.role == control.RoleMember:
		if ok, wait := s.limits.Allow(cc.id, int(m.Type)); !ok {
			s.metrics.slowDowns.Inc()
			err = control.SlowDown(typeName(m.Type), wait)
			break
		}
		fallthrough
	default:
		resp, err = h(ctx, s, cc, m)
	}
	var final *closeAfterReply
	if errors.As(err, &final) {
		err = final.err
	}
	var b []byte
	if err != nil {
		b, _ = control.EncodeError(m.ID, errorFor(err))
	} else {
		if resp == nil {
			resp = control.Empty{}
		}
		b, err = control.Encode(control.TypeResponse, m.ID, resp)
		if err != nil {
			b, _ = control.EncodeError(m.ID, errorFor(err))
		}
	}
	if err := cc.send(b); err != nil {
		return err
	}
	if final != nil {
		cc.send(nil) // the writer closes the connection after the answer
		return errClosing
	}
	return nil
}

// closeAfterReply wraps a handler's error: answer it, then close the
// connection (a revoked node hears why before the hub hangs up).
type closeAfterReply struct{ err error }

func (e *closeAfterReply) Error() string { return e.err.Error() }
func (e *closeAfterReply) Unwrap() error { return e.err }

// body decodes a request body, or returns a bad-request refusal.
func body[T any](m control.Msg) (T, error) {
	var v T
	if err := control.DecodeBody(m, &v); err != nil {
		return v, &control.Error{Code: control.ErrCodeBadRequest, Message: err.Error()}
	}
	return v, nil
}

// errorFor maps an error to the refusal a node sees.
func errorFor(err error) *control.Error {
	var ce *control.Error
	if errors.As(err, &ce) {
		return ce
	}
	if errors.Is(err, ErrStoreUnavailable) {
		return Unavailable("the relay's", err)
	}
	return &control.Error{Code: control.ErrCodeInternal, Message: err.Error()}
}

// handleCredential takes a member's refreshed credential: the relay then
// keeps the connection past the old one's expiry.
func handleCredential(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	req, err := body[control.CredentialUpdate](m)
	if err != nil {
		return nil, err
	}
	c, refusal := s.checkCredential(cc.peer, req.Credential)
	if refusal != nil {
		if refusal.Code == control.ErrCodeRevoked {
			return nil, &closeAfterReply{refusal}
		}
		return nil, refusal
	}
	cc.mu.Lock()
	cc.cred, cc.credRaw = c, req.Credential
	cc.mu.Unlock()
	return nil, nil
}

func handlePing(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	return control.Ping{TimeUnix: s.now().Unix()}, nil
}

// maxRelayName bounds a relay name a member asks about (config names are
// at most 64 bytes).
const maxRelayName = 64

// handlePortalCheck answers a node's question about the relay and the
// attribute names an inlet or outlet it is creating refers to.
func handlePortalCheck(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	req, err := body[control.PortalCheck](m)
	if err != nil {
		return nil, err
	}
	if len(req.Attributes) > control.MaxPortalCheckNames {
		return nil, &control.Error{Code: control.ErrCodeBadRequest, Message: fmt.Sprintf("portal check: %d names, at most %d", len(req.Attributes), control.MaxPortalCheckNames)}
	}
	var res control.PortalCheckResult
	if req.Relay != "" {
		if len(req.Relay) > maxRelayName {
			return nil, &control.Error{Code: control.ErrCodeBadRequest, Message: fmt.Sprintf("portal check: a relay name has at most %d bytes", maxRelayName)}
		}
		res.RelayUp = s.relays.lookup(req.Relay) != nil
		if !res.RelayUp && s.cluster != nil {
			_, err := s.cluster.lookup(ctx, req.Relay)
			res.RelayUp = err == nil
		}
		_, err := s.store.GetRelay(ctx, req.Relay)
		res.RelayKnown = res.RelayUp || err == nil
	}
	if len(req.Attributes) > 0 {
		have := s.members.attributeNames()
		for _, n := range req.Attributes {
			if have[n] {
				res.Attributes = append(res.Attributes, n)
			}
		}
	}
	return res, nil
}

// handleNodeState keeps what the node reports of itself (pause, drain,
// outlets whose target is down): steering reads it for every session,
// and in a cluster it goes into the node's presence for the others.
func handleNodeState(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	ns, err := body[control.NodeState](m)
	if err != nil {
		return nil, err
	}
	down, refusal := checkDown(ns.Down)
	if refusal != nil {
		return nil, refusal
	}
	h := Health{Paused: ns.Paused, Draining: ns.Draining, Down: down}
	cc.mu.Lock()
	cc.health = h
	relay := cc.relay
	cc.mu.Unlock()
	cc.log.Info("node state", "paused", h.Paused, "draining", h.Draining, "down", escape.String(strings.Join(h.Down, ",")))
	if s.cluster != nil && relay != "" {
		if err := s.cluster.store.SetPresenceHealth(ctx, relay, cc.id, s.cluster.id, h); err != nil {
			// Other relay nodes steer on the old health until the next
			// report; this one steers on the new one at once.
			cc.log.Warn("could not share the node's health with the cluster", "err", err)
		}
	}
	return nil, nil
}

func handleUpdateResult(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	req, err := body[control.UpdateResult](m)
	if err != nil {
		return nil, err
	}
	s.metrics.updates.WithLabelValues(map[bool]string{true: "ok", false: "failed"}[req.OK]).Inc()
	// Every field is the node's own words: kept bounded, shown escaped.
	from, to := escape.Clip(req.From, 64), escape.Clip(req.To, 64)
	res := fmt.Sprintf("%s → %s ok", from, to)
	if !req.OK {
		res = fmt.Sprintf("%s → %s FAILED, rolled back: %s", from, to, escape.Clip(req.Reason, MaxReason))
	}
	res += " at " + s.now().UTC().Format(time.RFC3339)
	s.store.UpdateNode(ctx, cc.id, func(n *NodeRecord) { n.LastUpdate = res })
	cc.log.Info("update result", "from", escape.String(from), "to", escape.String(to), "ok", req.OK, "reason", escape.String(req.Reason))
	return nil, nil
}

// typeName names a request type in a slow-down.
func typeName(t control.Type) string {
	switch t {
	case control.TypePing:
		return "ping"
	case control.TypeCredential:
		return "credential"
	case control.TypeRegisterRelay:
		return "register-relay"
	case control.TypeOpenSession:
		return "open-session"
	case control.TypeCommandAck:
		return "command-ack"
	case control.TypeNodeState:
		return "node-state"
	case control.TypeReleaseCheck:
		return "release-check"
	case control.TypeReleaseFetch:
		return "release-fetch"
	case control.TypeUpdateResult:
		return "update-result"
	}
	return fmt.Sprintf("type-%d", t)
}
