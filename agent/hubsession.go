// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/wire/control"
)

// loop keeps a control connection to the hub, reconnecting with jittered
// exponential backoff.
func (n *Node) loop(ctx context.Context) error {
	backoff := initialBackoff
	for attempt := 0; ; attempt++ {
		addrs := n.hubAddrs()
		addr := addrs[attempt%len(addrs)]
		start := time.Now()
		err := n.session(ctx, addr)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrRevoked) {
			n.log.Error("membership revoked; stopping", "err", err)
			os.Rename(filepath.Join(n.opts.StateDir, EnrollmentFile), filepath.Join(n.opts.StateDir, EnrollmentFile+".revoked"))
			return err
		}
		if time.Since(start) > time.Minute {
			backoff = initialBackoff
		}
		var cs *ClockSkewError
		if errors.As(err, &cs) {
			// Not a network problem: retrying fast would only spin. Say
			// what to fix and look again in a minute.
			n.mu.Lock()
			n.hubErr = err.Error()
			n.mu.Unlock()
			n.log.Error("cannot work with the hub", "err", err)
			if sleepCtx(ctx, time.Minute) != nil {
				return nil
			}
			continue
		}
		n.mu.Lock()
		n.hubErr = err.Error()
		n.mu.Unlock()
		n.metrics.reconnects.Inc()
		wait := jitter(backoff)
		n.log.Warn("hub connection lost; reconnecting", "hub", addr, "err", err, "retry_in", wait.Round(time.Millisecond))
		if sleepCtx(ctx, wait) != nil {
			return nil
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func isRevoked(err error) bool {
	var ce *control.Error
	return errors.As(err, &ce) && (ce.Code == control.ErrCodeRevoked || ce.Code == control.ErrCodeNotMember)
}

// session runs one control connection until it fails.
func (n *Node) session(ctx context.Context, addr string) error {
	revoked := make(chan struct{}, 1)
	var h *hubConn
	// Pushes arrive on h's reader goroutine; none of them blocks it.
	onPush := func(m control.Msg) {
		switch m.Type {
		case control.TypeIncoming:
			var in control.Incoming
			if err := control.DecodeBody(m, &in); err != nil {
				n.log.Warn("bad incoming session push", "err", err)
				return
			}
			n.goTracked(func() { n.serveIncoming(ctx, h.addr, in) })
		case control.TypeCommand:
			var p control.CommandPush
			if err := control.DecodeBody(m, &p); err != nil {
				p = control.CommandPush{Data: m.Body}
			}
			n.queueCommand(h, p)
		case control.TypeRevoked:
			select {
			case revoked <- struct{}{}:
			default:
			}
		}
	}
	h, err := dialHub(ctx, addr, n.static, n.enr.HubKey, onPush)
	if err != nil {
		return err
	}
	defer h.close()
	keepalive := DefaultKeepAlive
	if n.opts.KeepAlive > 0 {
		keepalive = n.opts.KeepAlive
	}
	h.setKeepalive(keepalive)
	if skew := time.Since(time.Unix(h.hello.TimeUnix, 0)); skew > enroll.ClockSkew || -skew > enroll.ClockSkew {
		return &ClockSkewError{Skew: skew}
	}
	if err := n.refresh(ctx, h); err != nil {
		return err
	}
	relay := n.relayName()
	if relay != "" {
		err := h.call(ctx, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: relay}, nil)
		n.mu.Lock()
		if err != nil {
			n.relayErr = err.Error()
		} else {
			n.relayUp, n.relayErr = true, ""
		}
		n.mu.Unlock()
		if err != nil {
			n.log.Error("relay registration refused", "relay", relay, "err", err)
		} else {
			n.log.Info("relay connected", "relay", relay)
		}
	}
	n.mu.Lock()
	n.hub, n.hubErr = h, ""
	close(n.hubReady)
	paused := n.paused
	n.mu.Unlock()
	if paused {
		h.call(ctx, control.TypeNodeState, control.NodeState{Paused: true}, nil)
	}
	n.goTracked(func() { n.finishUpdate(ctx, h) })
	n.log.Info("connected to hub", "hub", addr)
	os.Remove(filepath.Join(n.opts.StateDir, LastErrorFile))
	defer func() {
		n.mu.Lock()
		n.hub, n.relayUp = nil, false
		n.hubReady = make(chan struct{})
		n.mu.Unlock()
	}()

	ping := time.NewTicker(keepalive)
	defer ping.Stop()
	for {
		refreshIn := time.Until(n.refreshAt())
		refreshT := time.NewTimer(max(refreshIn, time.Second))
		select {
		case <-ctx.Done():
			refreshT.Stop()
			return ctx.Err()
		case <-h.done:
			refreshT.Stop()
			return fmt.Errorf("hub connection lost: %w", h.error())
		case <-revoked:
			refreshT.Stop()
			return ErrRevoked
		case <-ping.C:
			refreshT.Stop()
			pctx, cancel := context.WithTimeout(ctx, keepalive)
			err := h.call(pctx, control.TypePing, control.Ping{TimeUnix: time.Now().Unix()}, nil)
			cancel()
			if err != nil {
				return fmt.Errorf("keepalive: %w", err)
			}
		case <-refreshT.C:
			if err := n.refresh(ctx, h); err != nil {
				return err
			}
		}
	}
}

// refreshAt is when the credential should be refreshed: at half-life.
func (n *Node) refreshAt() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	life := n.cred.Expires().Sub(n.cred.Issued())
	return n.cred.Issued().Add(life / 2)
}

// refresh gets a fresh credential and stores it.
func (n *Node) refresh(ctx context.Context, h *hubConn) error {
	var resp control.CredentialResponse
	if err := h.call(ctx, control.TypeRefresh, control.RefreshRequest{}, &resp); err != nil {
		if isRevoked(err) {
			return fmt.Errorf("%w (%v)", ErrRevoked, err)
		}
		return fmt.Errorf("refresh credential: %w", err)
	}
	c, err := enroll.VerifyCredential(n.enr.AuthorityKey, resp.Credential, n.static.Public(), time.Now())
	if err != nil {
		return fmt.Errorf("refresh credential: %w", err)
	}
	n.mu.Lock()
	enr := *n.enr
	enr.Credential = resp.Credential
	n.enr, n.cred = &enr, c
	n.mu.Unlock()
	if err := saveJSON(filepath.Join(n.opts.StateDir, EnrollmentFile), &enr); err != nil {
		n.log.Error("could not save the refreshed credential; keeping it in memory", "err", err)
	}
	n.log.Debug("credential refreshed", "expires", c.Expires().UTC().Format(time.RFC3339))
	return nil
}

// currentHub waits briefly for a hub connection.
func (n *Node) currentHub(ctx context.Context, wait time.Duration) (*hubConn, error) {
	n.mu.Lock()
	h, ready := n.hub, n.hubReady
	n.mu.Unlock()
	if h != nil {
		return h, nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ready:
	case <-t.C:
		return nil, errors.New("not connected to the hub")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.hub == nil {
		return nil, errors.New("not connected to the hub")
	}
	return n.hub, nil
}

// ClockSkewError means this machine's clock is too far from the hub's for
// credentials to be accepted.
type ClockSkewError struct{ Skew time.Duration }

func (e *ClockSkewError) Error() string {
	dir := "ahead of"
	if e.Skew < 0 {
		dir = "behind"
	}
	return fmt.Sprintf("clock skew: this machine's clock is %s %s the hub's (tolerance %s); fix its time (NTP)",
		e.Skew.Abs().Round(time.Second), dir, enroll.ClockSkew)
}
