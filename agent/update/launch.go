// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package update

import (
	"fmt"
	"time"

	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/release"
)

// LaunchOptions describe the launcher's start.
type LaunchOptions struct {
	Dir        string            // the update directory
	Binary     string            // the agent binary's file name
	Self       string            // the launcher's (installed binary's) version
	Project    string            // from the enrollment
	Platform   string            // "linux/amd64"
	ReleaseKey key.SigningPublic // the key staged releases must verify with
	Now        time.Time         // zero = time.Now()
}

// Decision is what the launcher does.
type Decision struct {
	// Exe is the verified staged binary to exec, or "" to run the
	// installed binary itself.
	Exe     string
	Version string // the version that will run
	Trial   bool   // Exe is on trial (attempt Attempt of MaxAttempts)
	Attempt int
	// Notes say what the launcher decided and why, for its log.
	Notes []string
}

// exeVersion is the staged version d runs, or "".
func (d Decision) exeVersion() string {
	if d.Exe == "" {
		return ""
	}
	return d.Version
}

// Decide is the launcher's choice at start, persisted before it returns:
// a version on trial gets its next attempt (counted now, so a crash
// counts) or, after MaxAttempts or when it gave up by itself, is rolled
// back; otherwise the confirmed staged version runs when it is newer than
// the installed binary. Every staged binary is verified first; one that
// does not verify is never run.
func Decide(o LaunchOptions) (Decision, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	stateMu.Lock()
	defer stateMu.Unlock()
	st, err := LoadState(o.Dir)
	if err != nil {
		return Decision{Version: o.Self}, err
	}
	var d Decision
	note := func(format string, args ...any) { d.Notes = append(d.Notes, fmt.Sprintf(format, args...)) }
	changed := false
	defer func() {
		if changed {
			prune(o.Dir, st.Current, d.exeVersion())
		}
	}()
	if t := st.Trial; t != nil {
		switch {
		case t.Reason != "":
			st.rollback(t.Reason, now)
			note("%s gave up its trial (%s): rolled back to %s", t.To, t.Reason, t.From)
			changed = true
		case t.Attempts >= MaxAttempts:
			reason := fmt.Sprintf("%s exited %d times before it reached the hub", t.To, t.Attempts)
			st.rollback(reason, now)
			note("%s: rolled back to %s", reason, t.From)
			changed = true
		default:
			exe, err := VerifyStaged(o.Dir, t.To, o.Binary, o.Project, o.Platform, o.ReleaseKey)
			if err != nil {
				reason := "refused to run it: " + err.Error()
				st.rollback(reason, now)
				note("%s on trial %s: rolled back to %s", t.To, reason, t.From)
				changed = true
				break
			}
			t.Attempts++
			if err := st.Save(o.Dir); err != nil {
				// Without a counted attempt a crashing binary could loop:
				// do not run it.
				return Decision{Version: o.Self, Notes: append(d.Notes, "cannot count the trial attempt; running the installed binary")}, err
			}
			d.Exe, d.Version, d.Trial, d.Attempt = exe, t.To, true, t.Attempts
			note("starting %s on trial (attempt %d of %d, from %s)", t.To, t.Attempts, MaxAttempts, t.From)
			return d, nil
		}
	}
	if st.Current != "" {
		if release.CompareStrings(st.Current, o.Self) <= 0 {
			note("the installed binary %s is at least as new as staged %s: running it", o.Self, st.Current)
			st.Current = ""
			changed = true
		} else if exe, err := VerifyStaged(o.Dir, st.Current, o.Binary, o.Project, o.Platform, o.ReleaseKey); err != nil {
			note("refusing to run staged %s (%v): running the installed binary %s", st.Current, err, o.Self)
			st.Current = ""
			changed = true
		} else {
			d.Exe, d.Version = exe, st.Current
			note("running verified %s (installed binary %s)", st.Current, o.Self)
		}
	}
	if d.Exe == "" {
		d.Version = o.Self
	}
	if changed {
		if err := st.Save(o.Dir); err != nil {
			return d, err
		}
	}
	return d, nil
}

// BeginTrial hands over from the running version to a staged one: the
// next launcher start runs it on trial.
func BeginTrial(dir, from, to string, explicit bool) error {
	return modify(dir, func(st *State) (bool, error) {
		if st.Trial != nil {
			return false, fmt.Errorf("%w: %s → %s is on trial", ErrInProgress, st.Trial.From, st.Trial.To)
		}
		st.Trial = &Trial{From: from, To: to, Started: time.Now().UTC(), Explicit: explicit}
		st.Result = nil
		return true, nil
	})
}

// StartCheck is what a node does at start about a pending trial, given its
// own version. It returns onTrial when this node is the version on trial
// (it must confirm within its deadline). A node of another version than
// the promised one ends the trial as failed: it came back at the wrong
// version (or no launcher ran it at all), and it will not be retried.
func StartCheck(dir, self string) (onTrial bool, t Trial, err error) {
	err = modify(dir, func(st *State) (bool, error) {
		if st.Trial == nil {
			return false, nil
		}
		t = *st.Trial
		switch {
		case t.To == self && t.Reason == "":
			onTrial = true
			return false, nil
		case t.To == self:
			// It gave up, yet no launcher rolled it back (it was started
			// some other way): end the trial; the next start runs the
			// previous version.
			st.rollback(t.Reason, time.Now())
		default:
			st.rollback(fmt.Sprintf("came back as %s, not the promised %s", self, t.To), time.Now())
			if t.To != st.Current {
				Discard(dir, t.To)
			}
		}
		return true, nil
	})
	return onTrial, t, err
}

// Record sets the pending outcome for the hub (an in-place update, which
// has no trial through the launcher).
func Record(dir string, o Outcome) error {
	return modify(dir, func(st *State) (bool, error) {
		st.Result = &o
		if !o.OK {
			st.markFailed(o.To, o.Reason, time.Now())
		}
		return true, nil
	})
}

// Confirm ends self's trial as a success: the launcher runs it from now
// on, and the versions other than it and the one it replaced are removed.
// It reports whether there was a trial to confirm.
func Confirm(dir, self string) (confirmed bool, err error) {
	var prev string
	err = modify(dir, func(st *State) (bool, error) {
		if st.Trial == nil || st.Trial.To != self {
			return false, nil
		}
		t := st.Trial
		prev = st.Current
		st.Current, st.Trial = t.To, nil
		delete(st.Failed, t.To)
		st.Result = &Outcome{From: t.From, To: t.To, OK: true}
		confirmed = true
		return true, nil
	})
	if confirmed && err == nil {
		prune(dir, self, prev)
	}
	return confirmed, err
}

// FailTrial records why self gives up its trial; the launcher rolls back
// at its next start.
func FailTrial(dir, self, reason string) error {
	return modify(dir, func(st *State) (bool, error) {
		if st.Trial == nil || st.Trial.To != self {
			return false, nil
		}
		st.Trial.Reason = reason
		return true, nil
	})
}

// Fail ends a trial that never ran (a foreground trial refused it) as
// failed, for the hub.
func Fail(dir, from, to, reason string) error {
	err := modify(dir, func(st *State) (bool, error) {
		st.Trial = &Trial{From: from, To: to}
		st.rollback(reason, time.Now())
		return true, nil
	})
	Discard(dir, to)
	return err
}

// PendingResult returns the outcome the hub has not acknowledged yet.
func PendingResult(dir string) (*Outcome, error) {
	st, err := LoadState(dir)
	if err != nil {
		return nil, err
	}
	return st.Result, nil
}

// Acknowledged clears the pending result if it is still r.
func Acknowledged(dir string, r Outcome) error {
	return modify(dir, func(st *State) (bool, error) {
		if st.Result == nil || *st.Result != r {
			return false, nil
		}
		st.Result = nil
		return true, nil
	})
}
