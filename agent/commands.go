// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/edgeportal/connect/agent/command"
	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/internal/atomicfile"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/policy"
	wcommand "github.com/edgeportal/connect/wire/command"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/signed"
)

// maxRecent bounds the outcomes kept to answer a redelivered command.
const maxRecent = 64

type cmdState struct {
	LastSeq uint64         `json:"last_seq"`
	Outlets []vendorOutlet `json:"outlets"`
	Recent  []outcome      `json:"recent"`
}

type vendorOutlet struct {
	Name  string `json:"name"`
	To    string `json:"to"`
	Allow string `json:"allow,omitempty"`
	Seq   uint64 `json:"seq"`
}

type outcome struct {
	Seq     uint64 `json:"seq"`
	Applied bool   `json:"applied"`
	Reason  string `json:"reason,omitempty"`
}

func loadCmdState(dir string) (cmdState, error) {
	var st cmdState
	b, err := os.ReadFile(filepath.Join(dir, statedir.Commands))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", statedir.Commands, err)
	}
	return st, nil
}

// setupCommands loads the allow-list, the audit log, the pause switch and
// the vendor outlets pushed earlier.
func (n *Node) setupCommands() error {
	if n.cfg.RemoteOutlets != nil {
		al, err := command.ParseAllowList(n.cfg.RemoteOutlets.Allow)
		if err != nil {
			return err
		}
		n.allow = al
	}
	fwd, err := command.NewForwarder(n.cfg.Audit.Forward, brand.ServiceName())
	if err != nil {
		return err
	}
	a, err := command.OpenAuditWith(n.opts.StateDir, command.AuditOptions{Forward: fwd, Logger: n.log.With("component", "audit")})
	if err != nil {
		if fwd != nil {
			fwd.Close()
		}
		return err
	}
	n.audit = a
	if _, err := os.Stat(filepath.Join(n.opts.StateDir, statedir.Paused)); err == nil {
		n.paused = true
		n.log.Warn("node is paused by the customer: no outlet is served and vendor commands are refused until resumed")
	}
	st, err := loadCmdState(n.opts.StateDir)
	if err != nil {
		return err
	}
	n.cmds = st
	for _, vo := range st.Outlets {
		if cur := n.outlets[vo.Name]; cur != nil {
			n.log.Warn("vendor outlet shadowed by a local one; local config wins", "outlet", vo.Name, "origin", cur.origin)
			continue
		}
		o, err := n.vendorOutlet(vo)
		if err != nil {
			n.log.Error("skipping vendor outlet", "outlet", vo.Name, "err", err)
			continue
		}
		n.outlets[vo.Name] = o
	}
	return nil
}

func (n *Node) vendorOutlet(vo vendorOutlet) (*outlet, error) {
	o := &outlet{name: vo.Name, to: vo.To, allow: vo.Allow, origin: OriginVendor}
	if vo.Allow != "" {
		e, err := policy.Parse(vo.Allow)
		if err != nil {
			return nil, err
		}
		o.expr = e
	}
	o.dialControl = n.allow.DialControl(vo.To)
	o.ceiling = n.ceiling(vo.To)
	switch {
	case o.ceiling == nil:
		// Nobody: the customer allowed the target but no one to use it.
	case o.expr == nil:
		o.effective = o.ceiling
	case o.expr.String() == o.ceiling.String():
		o.effective = o.expr
	default:
		o.effective = &policy.AndExpr{X: o.expr, Y: o.ceiling}
	}
	return o, nil
}

// ceiling is the customer's policy for a vendor outlet to dest: the
// allow of each remote-outlets entry that governs dest, or the node's
// tcp-outlet default for an entry without one; all of them when several
// govern it. nil (nobody) when an entry has neither, or none governs it.
func (n *Node) ceiling(dest string) policy.Expr {
	if n.cfg.RemoteOutlets == nil {
		return nil
	}
	idx := n.allow.Governing(dest)
	if len(idx) == 0 {
		return nil
	}
	var out policy.Expr
	seen := map[string]bool{}
	for _, i := range idx {
		x := n.cfg.RemoteOutlets.Entries[i].AllowExpr
		if x == nil {
			x = n.cfg.DefaultAllow(policy.TCPOutlet)
		}
		if x == nil {
			return nil
		}
		if seen[x.String()] {
			continue
		}
		seen[x.String()] = true
		if out == nil {
			out = x
		} else {
			out = &policy.AndExpr{X: out, Y: x}
		}
	}
	return out
}

// queueCommand hands a pushed command to the single command worker, so
// commands are judged one at a time, in the order they arrive.
func (n *Node) queueCommand(hub func() *hubConn, p control.CommandPush) {
	select {
	case n.cmdQueue <- queuedCommand{hub, p}:
	default:
		n.log.Warn("command queue full; the hub redelivers it on reconnect", "seq", p.Seq)
	}
}

type queuedCommand struct {
	hub func() *hubConn // the connection it came on, once its dial returned (nil: it failed)
	p   control.CommandPush
}

func (n *Node) commandWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case q := <-n.cmdQueue:
			applied, reason, _ := n.handleCommand(q.p)
			// Acknowledge under the hub's queue number; the signed sequence
			// inside is what the replay check used.
			seq := q.p.Seq
			h := q.hub()
			if h == nil {
				n.log.Warn("the connection a command came on failed; the hub redelivers it", "seq", q.p.Seq)
				continue
			}
			actx, cancel := context.WithTimeout(ctx, callTimeout)
			err := h.Call(actx, control.TypeCommandAck, control.CommandAck{Seq: seq, Applied: applied, Reason: reason}, nil)
			cancel()
			if err != nil {
				n.log.Warn("could not acknowledge a command; the hub redelivers it", "seq", seq, "err", err)
			}
		}
	}
}

// handleCommand judges, applies and records one command. It returns what
// to acknowledge.
func (n *Node) handleCommand(p control.CommandPush) (applied bool, reason string, seq uint64) {
	n.cmdMu.Lock()
	defer n.cmdMu.Unlock()
	seq = p.Seq
	n.mu.Lock()
	st, paused := n.cmds, n.paused
	project, cmdKey := n.enr.Project, n.enr.CommandKey
	n.mu.Unlock()
	self := string(n.static.Public().ID())
	entry := command.Entry{Kind: "command", Seq: p.Seq}

	c, err := command.Verify(cmdKey, project, self, p.Data, st.LastSeq, time.Now())
	if c != nil {
		seq = c.Seq
		entry.Seq = c.Seq
		entry.Op = c.Summary()
		if c.Outlet != nil {
			entry.Outlet = c.Outlet.Name
		}
	}
	authentic := c != nil && !errors.Is(err, wcommand.ErrBadSignature) && (err == nil || !errors.Is(err, wcommand.ErrWrongTarget))
	switch {
	case err != nil && errors.Is(err, wcommand.ErrReplay):
		for _, o := range st.Recent {
			if o.Seq == c.Seq && p.Seq == c.Seq {
				// The hub redelivering its own queue entry after a lost
				// acknowledgement: the same answer, nothing applied again.
				return o.Applied, o.Reason, o.Seq
			}
		}
		return n.refuse(entry, st, false, err.Error())
	case err != nil && c == nil:
		if _, derr := signed.Open(p.Data); derr != nil {
			return n.refuse(entry, st, false, "garbage on the command stream: "+err.Error())
		}
		return n.refuse(entry, st, false, err.Error())
	case err != nil:
		return n.refuse(entry, st, authentic && !errors.Is(err, wcommand.ErrBadSignature), err.Error())
	case paused:
		return n.refuse(entry, st, true, "the node is paused by the customer")
	}

	if c.Op == wcommand.OpUpdateCheck {
		next := st
		next.LastSeq = c.Seq
		next.Recent = remember(next.Recent, outcome{Seq: c.Seq, Applied: true})
		if err := atomicfile.WriteJSON(filepath.Join(n.opts.StateDir, statedir.Commands), next); err != nil {
			return n.refuse(entry, st, false, "could not persist: "+err.Error())
		}
		n.mu.Lock()
		n.cmds = next
		n.mu.Unlock()
		entry.Decision = "applied"
		n.audit.Append(entry)
		n.goTracked(func() {
			if !n.autoUpdateEnabled() {
				n.log.Info("vendor asked for an update check; updates are off on this node")
				return
			}
			if _, err := n.Update(n.runCtx, localapi.UpdateRequest{}); err != nil {
				n.log.Warn("update check asked by the vendor failed", "err", err)
			}
		})
		return true, "", c.Seq
	}
	next := st
	next.LastSeq = c.Seq
	next.Outlets = append([]vendorOutlet(nil), st.Outlets...)
	var add *outlet
	switch c.Op {
	case wcommand.OpOutletAdd:
		name := c.Outlet.Name
		n.mu.Lock()
		cur := n.outlets[name]
		n.mu.Unlock()
		if cur != nil && cur.origin != OriginVendor {
			return n.refuse(entry, st, true, fmt.Sprintf("outlet %q is defined locally (%s); local config wins", name, cur.origin))
		}
		if err := n.allow.CheckDestination(c.Outlet.To, resolve); err != nil {
			return n.refuse(entry, st, true, err.Error())
		}
		vo := vendorOutlet{Name: name, To: c.Outlet.To, Allow: c.Outlet.Allow, Seq: c.Seq}
		o, err := n.vendorOutlet(vo)
		if err != nil {
			return n.refuse(entry, st, true, err.Error())
		}
		next.Outlets = replaceOutlet(next.Outlets, vo)
		add = o
	case wcommand.OpOutletRemove:
		name := c.Outlet.Name
		found := false
		for i, vo := range next.Outlets {
			if vo.Name == name {
				next.Outlets = append(next.Outlets[:i:i], next.Outlets[i+1:]...)
				found = true
				break
			}
		}
		if !found {
			return n.refuse(entry, st, true, fmt.Sprintf("no vendor outlet named %q", name))
		}
	}
	next.Recent = remember(next.Recent, outcome{Seq: c.Seq, Applied: true})
	// Persist before applying and acknowledging: a crash never leaves an
	// acknowledged command unapplied after restart.
	if err := atomicfile.WriteJSON(filepath.Join(n.opts.StateDir, statedir.Commands), next); err != nil {
		entry.Decision, entry.Reason = "refused", "could not persist: "+err.Error()
		n.audit.Append(entry)
		return false, entry.Reason, c.Seq
	}
	n.mu.Lock()
	n.cmds = next
	switch c.Op {
	case wcommand.OpOutletAdd:
		n.outlets[c.Outlet.Name] = add
	case wcommand.OpOutletRemove:
		delete(n.outlets, c.Outlet.Name)
	}
	n.mu.Unlock()
	entry.Decision = "applied"
	n.metrics.commands.WithLabelValues("applied").Inc()
	if err := n.audit.Append(entry); err != nil {
		n.log.Error("audit log", "err", err)
	}
	n.log.Info("vendor command applied", "seq", c.Seq, "op", c.Summary())
	return true, "", c.Seq
}

// refuse records a refusal. advance moves the replay window past an
// authentic command for this node, so it cannot be replayed later.
func (n *Node) refuse(entry command.Entry, st cmdState, advance bool, reason string) (bool, string, uint64) {
	entry.Decision, entry.Reason = "refused", reason
	n.metrics.commands.WithLabelValues("refused").Inc()
	if advance && entry.Seq > st.LastSeq {
		next := st
		next.LastSeq = entry.Seq
		next.Recent = remember(st.Recent, outcome{Seq: entry.Seq, Reason: reason})
		if err := atomicfile.WriteJSON(filepath.Join(n.opts.StateDir, statedir.Commands), next); err == nil {
			n.mu.Lock()
			n.cmds = next
			n.mu.Unlock()
		}
	}
	if err := n.audit.Append(entry); err != nil {
		n.log.Error("audit log", "err", err)
	}
	n.log.Warn("vendor command refused", "seq", entry.Seq, "op", entry.Op, "reason", reason)
	return false, reason, entry.Seq
}

func remember(r []outcome, o outcome) []outcome {
	r = append(append([]outcome(nil), r...), o)
	if len(r) > maxRecent {
		r = r[len(r)-maxRecent:]
	}
	return r
}

func replaceOutlet(list []vendorOutlet, vo vendorOutlet) []vendorOutlet {
	for i := range list {
		if list[i].Name == vo.Name {
			list[i] = vo
			return list
		}
	}
	return append(list, vo)
}

// SetPaused implements localapi.Backend: the customer's kill switch.
func (n *Node) SetPaused(ctx context.Context, paused bool) error {
	path := filepath.Join(n.opts.StateDir, statedir.Paused)
	if paused {
		if err := os.WriteFile(path, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
			return err
		}
	} else if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	n.mu.Lock()
	n.paused = paused
	n.mu.Unlock()
	n.log.Warn("customer switch", "paused", paused)
	n.reportState(ctx, nil)
	return nil
}

// Explain implements localapi.Backend: what the vendor can reach now.
func (n *Node) Explain(ctx context.Context) []localapi.Explanation {
	st := n.Status(ctx)
	var out []localapi.Explanation
	for _, o := range st.Outlets {
		e := localapi.Explanation{Outlet: o.Name, To: o.To, Origin: o.Origin, Allow: o.Allow, VendorAllow: o.VendorAllow, Ceiling: o.Ceiling}
		switch {
		case st.Paused:
			e.Admits = "nobody: the node is paused"
		case o.Origin == OriginVendor && o.Ceiling == "":
			e.Admits = "nobody: the remote-outlets entry for its target has no allow and there is no tcp-outlet default"
		case o.Allow == "":
			e.Admits = "nobody: no allow policy and no tcp-outlet default"
		case o.Origin == OriginVendor && o.VendorAllow != "" && o.VendorAllow != o.Ceiling:
			e.Admits = fmt.Sprintf("peers whose attested attributes satisfy: %s (the vendor's %s, within the customer's %s)", o.Allow, o.VendorAllow, o.Ceiling)
		case o.Origin == OriginVendor:
			e.Admits = fmt.Sprintf("peers whose attested attributes satisfy: %s (the customer's ceiling)", o.Allow)
		default:
			e.Admits = "peers whose attested attributes satisfy: " + o.Allow
		}
		out = append(out, e)
	}
	return out
}

func resolve(host string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}
