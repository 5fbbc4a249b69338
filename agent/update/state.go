// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package update

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/edgeportal/connect/internal/atomicfile"
	"github.com/edgeportal/connect/wire/release"
)

// Layout of the update directory (STATE/update).
const (
	StateFile    = "state.json"    // State
	BinDir       = "bin"           // bin/<version>/<binary> and bin/<version>/manifest.cbor
	ManifestFile = "manifest.cbor" // the signed manifest a staged binary came with
)

// MaxAttempts is how many times the launcher starts a version on trial
// that exits before confirming; then the previous version comes back.
const MaxAttempts = 3

// maxFailed bounds the failed releases remembered (oldest forgotten first).
const maxFailed = 32

// State is what the launcher and the node remember about updates. Only
// the node's own account writes it (atomically).
type State struct {
	// Current is the staged version the launcher runs; "" means the
	// installed binary.
	Current string `json:"current,omitempty"`
	// Trial is a version handed over to and not yet confirmed.
	Trial *Trial `json:"trial,omitempty"`
	// Failed releases, never tried again automatically.
	Failed map[string]Failure `json:"failed,omitempty"`
	// Result is the outcome of the last update, until the hub has it.
	Result *Outcome `json:"result,omitempty"`
}

// Trial is an update in progress.
type Trial struct {
	From     string    `json:"from"`               // the version that handed over
	To       string    `json:"to"`                 // the version promised
	Attempts int       `json:"attempts"`           // launcher starts so far
	Started  time.Time `json:"started"`            // when it was handed over
	Reason   string    `json:"reason,omitempty"`   // set by the new version when it gave up
	Explicit bool      `json:"explicit,omitempty"` // asked for by name
}

// Failure is why a release was given up.
type Failure struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Outcome is an update's result, for the hub (control.UpdateResult).
type Outcome struct {
	From   string `json:"from"`
	To     string `json:"to"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// stateMu serialises read-modify-write of state.json within the process
// (the node's update, its trial watchdog and finishUpdate run
// concurrently; the launcher runs before any of them).
var stateMu sync.Mutex

// modify loads dir's state, applies fn and saves it when fn changed it.
func modify(dir string, fn func(st *State) (changed bool, err error)) error {
	stateMu.Lock()
	defer stateMu.Unlock()
	st, err := LoadState(dir)
	if err != nil {
		return err
	}
	changed, err := fn(st)
	if err != nil || !changed {
		return err
	}
	return st.Save(dir)
}

// LoadState reads dir's state; a missing file is an empty state.
func LoadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return &State{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("update state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("update state %s: %w", filepath.Join(dir, StateFile), err)
	}
	return &s, nil
}

// Save writes the state atomically (0600).
func (s *State) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("update state: %w", err)
	}
	if err := atomicfile.WriteJSON(filepath.Join(dir, StateFile), s); err != nil {
		return fmt.Errorf("update state: %w", err)
	}
	return nil
}

// FailedBefore returns why version failed on this node, if it did.
func (s *State) FailedBefore(version string) (Failure, bool) {
	f, ok := s.Failed[version]
	return f, ok
}

// markFailed remembers a failed release (bounded).
func (s *State) markFailed(version, reason string, now time.Time) {
	if s.Failed == nil {
		s.Failed = map[string]Failure{}
	}
	s.Failed[version] = Failure{Reason: reason, At: now.UTC()}
	for len(s.Failed) > maxFailed {
		oldest := ""
		for v, f := range s.Failed {
			if oldest == "" || f.At.Before(s.Failed[oldest].At) {
				oldest = v
			}
		}
		delete(s.Failed, oldest)
	}
}

// rollback ends the trial as failed: the previous version (Current, which
// the trial never changed) runs again.
func (s *State) rollback(reason string, now time.Time) {
	t := s.Trial
	s.Trial = nil
	s.markFailed(t.To, reason, now)
	s.Result = &Outcome{From: t.From, To: t.To, OK: false, Reason: reason}
}

// versionDir is where a staged version lives.
func versionDir(dir, version string) string { return filepath.Join(dir, BinDir, version) }

// validVersion refuses versions that cannot be a directory name.
func validVersion(v string) error {
	if _, err := release.ParseVersion(v); err != nil {
		return err
	}
	if strings.ContainsAny(v, `/\`) || v == "." || v == ".." || strings.HasPrefix(v, ".") {
		return fmt.Errorf("version %q cannot name a directory", v)
	}
	return nil
}

// prune removes staged versions other than keep.
func prune(dir string, keep ...string) {
	ents, _ := os.ReadDir(filepath.Join(dir, BinDir))
	for _, e := range ents {
		k := false
		for _, v := range keep {
			if v != "" && e.Name() == v {
				k = true
			}
		}
		if !k {
			os.RemoveAll(filepath.Join(dir, BinDir, e.Name()))
		}
	}
}
