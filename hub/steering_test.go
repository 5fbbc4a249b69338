// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"slices"
	"strings"
	"testing"

	"github.com/edgeportal/connect/wire/control"
)

// TestChoose: steering's decision among a relay's live owners.
func TestChoose(t *testing.T) {
	ok := Health{}
	down := Health{Down: []string{"web"}}
	tests := []struct {
		name    string
		health  []Health // owners IA, IB, IC…
		load    []int
		avoid   []string
		outlet  string
		turn    uint
		want    string // the owner picked, "" for none
		healthy int
		why     string // with none picked: the reasons, joined
	}{
		{name: "sole owner", health: []Health{ok}, outlet: "web", want: "IA", healthy: 1},
		{name: "sole owner, target down: picked as before replicas", health: []Health{down}, outlet: "web", want: "IA", healthy: 0},
		{name: "sole owner, paused: picked (it refuses itself)", health: []Health{{Paused: true}}, want: "IA", healthy: 0},
		{name: "sole owner avoided", health: []Health{ok}, avoid: []string{"IA"}, outlet: "web",
			why: "node IA avoided by the asker (it refused the outlet lately, or the asker has a channel to it)", healthy: 1},
		{name: "one target down", health: []Health{down, ok}, outlet: "web", want: "IB", healthy: 1},
		{name: "down for another outlet only", health: []Health{down, ok}, load: []int{0, 3}, outlet: "db", want: "IA", healthy: 2},
		{name: "no outlet hint: down lists do not matter", health: []Health{down, ok}, load: []int{0, 1}, want: "IA", healthy: 2},
		{name: "draining and paused are skipped", health: []Health{{Draining: true}, {Paused: true}, ok}, outlet: "web", want: "IC", healthy: 1},
		{name: "fewest sessions", health: []Health{ok, ok, ok}, load: []int{4, 1, 2}, want: "IB", healthy: 3},
		{name: "ties in turn (0)", health: []Health{ok, ok, ok}, load: []int{1, 1, 5}, turn: 0, want: "IA", healthy: 3},
		{name: "ties in turn (1)", health: []Health{ok, ok, ok}, load: []int{1, 1, 5}, turn: 1, want: "IB", healthy: 3},
		{name: "ties in turn (2)", health: []Health{ok, ok, ok}, load: []int{1, 1, 5}, turn: 2, want: "IA", healthy: 3},
		{name: "avoided one skipped", health: []Health{ok, ok}, avoid: []string{"IA"}, want: "IB", healthy: 2},
		{name: "none healthy", health: []Health{down, {Draining: true}}, outlet: "web", healthy: 0,
			why: "node IA target down, node IB draining"},
		{name: "healthy one avoided, other down", health: []Health{down, ok}, avoid: []string{"IB"}, outlet: "web", healthy: 1,
			why: "node IA target down, node IB avoided by the asker (it refused the outlet lately, or the asker has a channel to it)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cands []candidate
			for i, h := range tt.health {
				cands = append(cands, candidate{id: "I" + string(rune('A'+i)), health: h})
			}
			load := tt.load
			if load == nil {
				load = make([]int, len(cands))
			}
			// Owner order must not matter: try the candidates reversed too.
			for _, rev := range []bool{false, true} {
				cs, ls := slices.Clone(cands), slices.Clone(load)
				if rev {
					slices.Reverse(cs)
					slices.Reverse(ls)
				}
				i, healthy, why := choose(cs, tt.outlet, tt.avoid, ls, tt.turn)
				got := ""
				if i >= 0 {
					got = cs[i].id
				}
				if got != tt.want || healthy != tt.healthy || strings.Join(why, ", ") != tt.why {
					t.Fatalf("reversed %v: choose = %q, %d healthy, why %q; want %q, %d, %q", rev, got, healthy, why, tt.want, tt.healthy, tt.why)
				}
			}
		})
	}
}

func TestUnhealthyMessage(t *testing.T) {
	e := unhealthy("acme-relay", "github", []string{"node IA target down", "node IB draining"})
	want := "no replica of relay acme-relay can reach outlet github now: node IA target down, node IB draining"
	if e.Code != control.ErrCodeRelayUnhealthy || e.Message != want {
		t.Fatalf("refusal = %+v, want %q", e, want)
	}
	if e := unhealthy("acme-relay", "bad\nname", nil); strings.Contains(e.Message, "\n") {
		t.Fatalf("a peer-chosen outlet name broke the line: %q", e.Message)
	}
}

func TestCheckDown(t *testing.T) {
	got, e := checkDown([]string{"web", "db", "web"})
	if e != nil || !slices.Equal(got, []string{"db", "web"}) {
		t.Fatalf("checkDown = %q, %v", got, e)
	}
	for _, bad := range [][]string{{""}, {"x\ny"}, {strings.Repeat("a", 65)}, make([]string, control.MaxDown+1)} {
		if _, e := checkDown(bad); e == nil || e.Code != control.ErrCodeBadRequest || strings.Contains(e.Message, "\n") {
			t.Errorf("checkDown(%q) = %v, want a one-line bad-request", bad, e)
		}
	}
}
