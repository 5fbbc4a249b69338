// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/edgeportal/connect/internal/escape"
	"github.com/edgeportal/connect/wire/control"
)

// Steering: which of a relay's live owners gets a new session.
//
// A relay served by one node gets every session, as it always did,
// whatever that node reports: a paused node, a draining one or one
// whose target is down refuses the portal itself with its own typed
// reason (paused, draining, target-refused), which is more precise than
// anything the relay could say. Health only steers among several owners
// (replicas): the relay picks one that is neither paused nor draining,
// that the asker does not avoid (it has a channel to it already, or it
// refused the outlet lately), and that does not report the hinted
// outlet's target down; among those, the one with the fewest live
// sessions on this relay node, ties taken in turn. When none qualifies
// the refusal names the relay and, owner by owner, why.
//
// In a cluster the candidates are the owners held here (their health as
// they reported it on this connection) and those held by other relay
// nodes (their health from their presence rows, which the relay node
// holding each one writes when it reports).

// candidate is one live owner of a relay.
type candidate struct {
	id       string
	conn     *controlConn // held here; nil: held by another relay node
	presence Presence     // held elsewhere: where, and its health
	health   Health
}

// candidates returns relay's live owners: those held here and, in a
// cluster, those held by other relay nodes. A relay held here by a sole
// owner costs no store query.
func (s *Server) candidates(ctx context.Context, relay string) ([]candidate, error) {
	var out []candidate
	replicas := false
	for _, cc := range s.relays.lookup(relay) {
		out = append(out, candidate{id: cc.id, conn: cc, health: cc.state()})
		replicas = replicas || cc.isReplica()
	}
	if s.cluster == nil || (len(out) > 0 && !replicas) {
		return out, nil
	}
	ps, err := s.cluster.lookup(ctx, relay)
	switch {
	case errors.Is(err, ErrNotFound):
		return out, nil
	case err != nil && len(out) == 0:
		return nil, fmt.Errorf("look the relay up: %w", err)
	case err != nil:
		// The store is away: the owners held here are still owners.
		return out, nil
	}
	for _, p := range ps {
		if p.Node == s.cluster.id || slices.ContainsFunc(out, func(c candidate) bool { return c.id == p.Owner }) {
			continue // held here: the connection is the truth, not the row
		}
		if _, listed := s.cluster.node(p.Node); !listed {
			continue
		}
		out = append(out, candidate{id: p.Owner, presence: p, health: p.Health})
	}
	return out, nil
}

// steer picks among cands (relay's live owners, at least one) for a
// portal to outlet, avoiding the owners in avoid. It returns the pick
// and how many owners could take the outlet now (avoided or not), or
// the refusal when none can.
func (s *Server) steer(relay, outlet string, avoid []string, cands []candidate) (candidate, int, *control.Error) {
	ids := make([]string, len(cands))
	for i, c := range cands {
		ids[i] = c.id
	}
	i, healthy, why := choose(cands, outlet, avoid, s.sessions.load(ids), s.relays.nextTurn(relay))
	if i < 0 {
		return candidate{}, 0, unhealthy(relay, outlet, why)
	}
	return cands[i], healthy, nil
}

// choose is steering's decision, without side effects: the index of the
// owner to pick in cands (-1 for none), how many are healthy for outlet
// (avoided ones included), and, when none is picked, why each one was
// not (sorted by owner). load[i] is cands[i]'s live sessions; turn breaks
// ties among the least loaded (in owner order).
func choose(cands []candidate, outlet string, avoid []string, load []int, turn uint) (pick, healthy int, why []string) {
	if len(cands) == 1 && !slices.Contains(avoid, cands[0].id) {
		// A sole owner gets the session whatever it reports (it refuses
		// the portal itself, with its own reason).
		return 0, btoi(cands[0].health.OK(outlet)), nil
	}
	var best []int
	for i, c := range cands {
		ok := c.health.OK(outlet)
		if ok {
			healthy++
		}
		switch {
		case !ok:
			why = append(why, fmt.Sprintf("node %s %s", c.id, notOK(c.health, outlet)))
		case slices.Contains(avoid, c.id):
			why = append(why, fmt.Sprintf("node %s avoided by the asker (it refused the outlet lately, or the asker has a channel to it)", c.id))
		case len(best) == 0 || load[i] < load[best[0]]:
			best = []int{i}
		case load[i] == load[best[0]]:
			best = append(best, i)
		}
	}
	if len(best) == 0 {
		slices.Sort(why)
		return -1, healthy, why
	}
	slices.SortFunc(best, func(a, b int) int { return strings.Compare(cands[a].id, cands[b].id) })
	return best[int(turn%uint(len(best)))], healthy, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// notOK says why h cannot take a portal to outlet.
func notOK(h Health, outlet string) string {
	switch {
	case h.Paused:
		return "paused"
	case h.Draining:
		return "draining"
	}
	return "target down"
}

// unhealthy is the refusal when no owner of relay can take outlet.
func unhealthy(relay, outlet string, why []string) *control.Error {
	what := "take a session"
	if outlet != "" {
		what = "reach outlet " + escape.String(outlet)
	}
	return &control.Error{Code: control.ErrCodeRelayUnhealthy, Message: fmt.Sprintf("no replica of relay %s can %s now: %s", relay, what, strings.Join(why, ", "))}
}
