// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"errors"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/wire/control"
)

// The authority's side of the control protocol: redemption, refresh,
// tickets made by enrollers, and a node leaving on its own.

func handleRedeem(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	req, err := body[control.RedeemRequest](m)
	if err != nil {
		return nil, err
	}
	mem, cred, err := s.auth.Redeem(ctx, enroll.RedeemOptions{
		Node: cc.peer, Secret: req.Secret, Relay: req.Relay, DryRun: req.DryRun,
		Version: cc.version, Platform: cc.platform,
	})
	if err != nil {
		cc.log.Info("ticket refused", "err", err, "dry_run", req.DryRun)
		return nil, err
	}
	if req.DryRun {
		return control.CredentialResponse{}, nil
	}
	cc.setMember()
	cc.log.Info("node enrolled", "ticket", mem.TicketID, "relay", mem.Relay, "enroller", mem.Enroller)
	cc.goTracked(func() { s.deliverPending(ctx, cc) })
	return control.CredentialResponse{Credential: cred}, nil
}

func handleRefresh(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	cred, err := s.auth.Refresh(ctx, cc.peer)
	if err != nil {
		if errors.Is(err, enroll.ErrRevoked) {
			return nil, &closeAfterReply{err}
		}
		return nil, err
	}
	cc.setMember()
	s.touch(cc.id, cc.version, cc.platform)
	return control.CredentialResponse{Credential: cred}, nil
}

func handleCreateTicket(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	req, err := body[control.CreateTicketRequest](m)
	if err != nil {
		return nil, err
	}
	mem, err := s.auth.Member(ctx, cc.peer)
	if err != nil {
		return nil, err
	}
	if !mem.Enroller {
		return nil, &control.Error{Code: control.ErrCodeForbidden, Message: "this node is not an enroller: its ticket did not grant the enroller role"}
	}
	text, g, err := s.auth.CreateTicket(ctx, enroll.TicketOptions{
		Attributes: req.Attributes,
		Relay:      req.Relay,
		ExpiresIn:  time.Duration(req.ExpiresIn) * time.Second,
		Uses:       req.Uses,
		CreatedBy:  cc.id,
	})
	if err != nil {
		return nil, &control.Error{Code: control.ErrCodeBadRequest, Message: err.Error()}
	}
	cc.log.Info("ticket created by enroller", "ticket", g.TicketID, "relay", g.Relay, "uses", g.Uses)
	return control.CreateTicketResponse{Ticket: text}, nil
}

func handleLeave(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	if _, err := s.auth.Member(ctx, cc.peer); err != nil {
		return nil, err
	}
	cc.log.Info("node left: revoking its own membership")
	// Revoke after the answer is queued: it closes this connection.
	s.goTracked(func() {
		if _, err := s.Revoke(context.Background(), cc.id); err != nil {
			cc.log.Error("revoking a leaving node", "err", err)
		}
	})
	return nil, nil
}

// touch records that a member was seen (and its build), best effort.
func (s *Server) touch(id, version, platform string) {
	s.store.UpdateMember(context.Background(), id, func(m *enroll.Member) error {
		m.LastSeen = s.now().Unix()
		if version != "" {
			m.Version = version
		}
		if platform != "" {
			m.Platform = platform
		}
		return nil
	})
}
