// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package ratelimit keeps one token bucket (golang.org/x/time/rate) per
// identity and request kind, so a member that asks too often is told to
// slow down while every other member is served as usual. Buckets idle for
// a while are forgotten, so memory follows the active identities, not all
// that ever came.
//
// A leaf: stdlib and x/time/rate. Used by the relay, the authority and the
// node.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rule is how often one kind of request may come: Every per Per, with
// bursts of Burst.
type Rule struct {
	Every int           // requests
	Per   time.Duration // per this long
	Burst int
}

func (r Rule) limit() rate.Limit { return rate.Limit(float64(r.Every) / r.Per.Seconds()) }

// idleForget is how long an unused bucket is kept.
const idleForget = 10 * time.Minute

type bucketKey struct {
	who  string
	kind int
}

type bucket struct {
	l    *rate.Limiter
	last time.Time
}

// Limiter holds the buckets of a set of rules.
type Limiter struct {
	rules map[int]Rule
	now   func() time.Time

	mu      sync.Mutex // guards buckets and swept
	buckets map[bucketKey]*bucket
	swept   time.Time
}

// New returns a Limiter for rules (kind → rule); kinds without a rule are
// never limited. now is the clock (nil: time.Now).
func New(rules map[int]Rule, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{rules: rules, now: now, buckets: map[bucketKey]*bucket{}}
}

// Allow takes a token for who's request of kind. When there is none it
// returns false and how long until there will be one.
func (l *Limiter) Allow(who string, kind int) (bool, time.Duration) {
	r, ok := l.rules[kind]
	if !ok {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > idleForget {
		for k, b := range l.buckets {
			if now.Sub(b.last) > idleForget {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	k := bucketKey{who, kind}
	b := l.buckets[k]
	if b == nil {
		b = &bucket{l: rate.NewLimiter(r.limit(), r.Burst)}
		l.buckets[k] = b
	}
	b.last = now
	res := b.l.ReserveN(now, 1)
	if !res.OK() {
		return false, r.Per
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Len is the number of buckets kept (for tests and metrics).
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
