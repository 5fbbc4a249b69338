// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/internal/atomicfile"
	"github.com/edgeportal/connect/wire/control"
)

// The node's session with the hub: a control channel to the relay (which
// admits the node on its credential), and, at the credential's half-life,
// a short end-to-end channel to the authority for a fresh credential that
// the node then hands the relay.

// relayRetryMax bounds the wait between attempts to register the relay
// after a refusal: a node always gets its relay back once it is free.
const relayRetryMax = 30 * time.Second

// loop keeps a control connection to the relay, reconnecting with
// jittered exponential backoff.
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
			n.markRevoked(err)
			return err
		}
		if time.Since(start) > time.Minute {
			backoff = initialBackoff
		}
		n.mu.Lock()
		n.hubErr = err.Error()
		n.mu.Unlock()
		var cs *ClockSkewError
		if errors.As(err, &cs) {
			// Not a network problem: retrying fast would only spin. Say
			// what to fix and look again in a minute.
			n.log.Error("cannot work with the hub", "err", err)
			if sleepCtx(ctx, time.Minute) != nil {
				return nil
			}
			continue
		}
		n.metrics.reconnects.Inc()
		wait := jitter(backoff)
		n.log.Warn("hub connection lost; reconnecting", "hub", addr, "err", err, "retry_in", wait.Round(time.Millisecond))
		if sleepCtx(ctx, wait) != nil {
			return nil
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// revokedErr turns a refusal saying the node was revoked into a
// *RevokedError (wrapping ErrRevoked); other errors pass unchanged.
func revokedErr(err error) error {
	var ce *control.Error
	if !errors.As(err, &ce) || ce.Code != control.ErrCodeRevoked {
		return err
	}
	re := &RevokedError{}
	// The refusal names the time: "... revoked at 2026-12-01T10:00:00Z; ..."
	if _, rest, ok := strings.Cut(ce.Message, "revoked at "); ok {
		if j := strings.IndexAny(rest, "; "); j >= 0 {
			rest = rest[:j]
		}
		if t, err := time.Parse(time.RFC3339, rest); err == nil {
			re.At = t
		}
	}
	return re
}

// markRevoked records the revocation in the enrollment, so every later
// start says so instead of trying again.
func (n *Node) markRevoked(err error) {
	var re *RevokedError
	at := time.Now().UTC()
	if errors.As(err, &re) && !re.At.IsZero() {
		at = re.At
	}
	n.mu.Lock()
	enr := *n.enr
	enr.RevokedAt = &at
	n.enr = &enr
	n.mu.Unlock()
	if err := atomicfile.WriteJSON(filepath.Join(n.opts.StateDir, statedir.Enrollment), &enr); err != nil {
		n.log.Error("could not record the revocation", "err", err)
	}
}

// session runs one control connection until it fails.
func (n *Node) session(ctx context.Context, addr string) error {
	// A credential past its half-life (the node was away) is refreshed
	// first; one the authority cannot refresh now is still tried.
	if time.Now().After(n.refreshAt()) {
		if err := n.refreshCredential(ctx); errors.Is(err, ErrRevoked) {
			return err
		} else if err != nil {
			n.log.Warn("could not refresh the credential before connecting", "err", err)
		}
	}
	revoked := make(chan error, 1)
	// h is set once dialHub returns, which may be after its first pushes
	// arrive (a command queued while the node was away comes right after
	// the welcome): what needs h waits for ready, off the reader.
	var h *hubConn
	ready := make(chan struct{})
	var readyOnce sync.Once
	dialed := func() { readyOnce.Do(func() { close(ready) }) }
	defer dialed()
	hub := func() *hubConn { <-ready; return h } // nil: the dial failed
	// Pushes arrive on h's reader goroutine; none of them blocks it.
	onPush := func(m control.Msg) {
		switch m.Type {
		case control.TypeIncoming:
			var in control.Incoming
			if err := control.DecodeBody(m, &in); err != nil {
				n.log.Warn("bad incoming session push", "err", err)
				return
			}
			n.goTracked(func() {
				if h := hub(); h != nil {
					n.channels.accept(ctx, h.Addr(), in)
				}
			})
		case control.TypeCommand:
			var p control.CommandPush
			if err := control.DecodeBody(m, &p); err != nil {
				p = control.CommandPush{Data: m.Body}
			}
			n.queueCommand(hub, p)
		case control.TypeRevoked:
			var rp control.RevokedPush
			control.DecodeBody(m, &rp)
			select {
			case revoked <- &RevokedError{At: unixOrZero(rp.At)}:
			default:
			}
		}
	}
	h, err := dialHub(ctx, n.dial(), addr, n.static, n.enr.HubKey, n.credential(), onPush)
	var ce *control.Error
	if errors.As(err, &ce) && ce.Code == control.ErrCodeCredentialOld {
		// Away longer than a credential lives: get a fresh one, then
		// connect again at once.
		if rerr := n.refreshCredential(ctx); rerr != nil {
			return fmt.Errorf("%v; refreshing it: %w", err, rerr)
		}
		h, err = dialHub(ctx, n.dial(), addr, n.static, n.enr.HubKey, n.credential(), onPush)
	}
	dialed()
	if err != nil {
		return revokedErr(err)
	}
	defer h.Close()
	keepalive := DefaultKeepAlive
	if n.opts.KeepAlive > 0 {
		keepalive = n.opts.KeepAlive
	}
	h.SetReadIdle(3 * keepalive)

	relay := n.relayName()
	relayRetry := time.NewTimer(0)
	defer relayRetry.Stop()
	if relay == "" {
		relayRetry.Stop()
	}
	relayBackoff := time.Second
	n.warnOnce.Do(func() { n.goTracked(func() { n.logPortalWarnings(ctx) }) })
	n.mu.Lock()
	n.hub, n.hubErr = h, ""
	close(n.hubReady)
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.hub, n.relayUp = nil, false
		n.hubReady = make(chan struct{})
		n.mu.Unlock()
	}()
	// The relay starts from a node that is not paused, draining or down.
	n.reportState(ctx, h)
	// An update on trial is confirmed once the node is up: connected and,
	// if it has one, its relay registered.
	finished := false
	finish := func() {
		if !finished {
			finished = true
			n.goTracked(func() { n.finishUpdate(ctx, h) })
		}
	}
	if relay == "" {
		finish()
	}
	n.log.Info("connected to hub", "hub", addr)
	os.Remove(filepath.Join(n.opts.StateDir, statedir.LastError))

	ping := time.NewTicker(keepalive)
	defer ping.Stop()
	for {
		refreshT := time.NewTimer(max(time.Until(n.refreshAt()), time.Second))
		select {
		case <-ctx.Done():
			refreshT.Stop()
			return ctx.Err()
		case <-h.Done():
			refreshT.Stop()
			return fmt.Errorf("hub connection lost: %w", h.Err())
		case err := <-revoked:
			refreshT.Stop()
			return err
		case <-relayRetry.C:
			refreshT.Stop()
			if err := n.registerRelay(ctx, h, relay); err != nil {
				if errors.Is(err, ErrRevoked) {
					return err
				}
				wait := jitter(relayBackoff)
				if d, ok := slowDown(err); ok {
					wait = max(wait, d)
				}
				relayRetry.Reset(wait)
				relayBackoff = min(2*relayBackoff, relayRetryMax)
				continue
			}
			finish()
		case <-ping.C:
			refreshT.Stop()
			pctx, cancel := context.WithTimeout(ctx, keepalive)
			err := h.Call(pctx, control.TypePing, control.Ping{TimeUnix: time.Now().Unix()}, nil)
			cancel()
			if err != nil {
				return fmt.Errorf("keepalive: %w", err)
			}
		case <-refreshT.C:
			err := n.refreshCredential(ctx)
			if errors.Is(err, ErrRevoked) {
				return err
			}
			if err != nil {
				// The credential is still valid for a while: try again.
				wait := time.Minute
				if d, ok := slowDown(err); ok {
					wait = max(d, time.Second)
				}
				n.log.Warn("could not refresh the credential; trying again", "err", err, "retry_in", wait)
				n.postponeRefresh(wait)
				continue
			}
			if err := h.Call(ctx, control.TypeCredential, control.CredentialUpdate{Credential: n.credential()}, nil); err != nil {
				return revokedErr(fmt.Errorf("the relay refused the refreshed credential: %w", err))
			}
		}
	}
}

// registerRelay registers the node's relay; a refusal is recorded for
// status and retried by the caller.
func (n *Node) registerRelay(ctx context.Context, h *hubConn, relay string) error {
	err := h.Call(ctx, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: relay}, nil)
	n.mu.Lock()
	if err != nil {
		n.relayErr = err.Error()
	} else {
		n.relayUp, n.relayErr = true, ""
	}
	n.mu.Unlock()
	if err != nil {
		n.log.Error("relay registration refused; trying again", "relay", relay, "err", err)
		return revokedErr(err)
	}
	n.log.Info("relay connected", "relay", relay)
	return nil
}

// refreshAt is when the credential should be refreshed: at half-life
// (or later, after a failed attempt).
func (n *Node) refreshAt() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.refreshNotBefore.IsZero() {
		return n.refreshNotBefore
	}
	life := n.cred.Expires().Sub(n.cred.Issued())
	return n.cred.Issued().Add(life / 2)
}

func (n *Node) postponeRefresh(d time.Duration) {
	n.mu.Lock()
	n.refreshNotBefore = time.Now().Add(d)
	n.mu.Unlock()
}

// refreshCredential gets a fresh credential from the authority, end to
// end through the relay, and stores it.
func (n *Node) refreshCredential(ctx context.Context) error {
	var resp control.CredentialResponse
	err := askAuthority(ctx, n.dial(), n.static, n.enr.authority(n.hubAddrs()), func(h *hubConn) error {
		return h.Call(ctx, control.TypeRefresh, control.RefreshRequest{}, &resp)
	})
	if err != nil {
		return fmt.Errorf("refresh credential: %w", revokedErr(err))
	}
	c, err := enroll.VerifyCredential(n.enr.AuthorityKey, resp.Credential, n.static.Public(), time.Now())
	if err != nil {
		return fmt.Errorf("refresh credential: the authority sent one that does not verify: %w", err)
	}
	n.mu.Lock()
	enr := *n.enr
	enr.Credential = resp.Credential
	n.enr, n.cred = &enr, c
	n.refreshNotBefore = time.Time{}
	n.mu.Unlock()
	if err := atomicfile.WriteJSON(filepath.Join(n.opts.StateDir, statedir.Enrollment), &enr); err != nil {
		n.log.Error("could not save the refreshed credential; keeping it in memory", "err", err)
	}
	n.log.Debug("credential refreshed", "expires", c.Expires().UTC().Format(time.RFC3339))
	// Peers hear of it over the channels, which then outlive the old one.
	n.goTracked(func() { n.channels.credentialRefreshed(ctx) })
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

func unixOrZero(t int64) time.Time {
	if t == 0 {
		return time.Time{}
	}
	return time.Unix(t, 0)
}
